// /v1/agents: list, create, read, replace, delete, scale, the autoscaler's view, reset the breaker.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {
namespace {

http::Response create(HandlerContext& ctx, const Call& call) {
  const auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto spec = json_io::agent_spec_from_json(*body);
  if (!spec) return error_response(spec.error());
  http::Response r = reply(201, ctx.api.create_agent(*spec));
  if (r.status == 201) r.headers.emplace_back("Location", "/v1/agents/" + spec->name);
  return r;
}

http::Response replace(HandlerContext& ctx, const Call& call) {
  const std::string& name = call.params.at("name");
  const auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto spec = json_io::agent_spec_from_json(*body, name);
  if (!spec) return error_response(spec.error());
  return reply(200, ctx.api.replace_agent(name, *spec));
}

http::Response scale(HandlerContext& ctx, const Call& call) {
  const auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto request = json_io::scale_request_from_json(*body);
  if (!request) return error_response(request.error());
  return reply(200, ctx.api.scale_agent(call.params.at("name"), *request));
}

http::Response reset_breaker(HandlerContext& ctx, const Call& call) {
  if (const auto none = expect_no_parameters(call, "breaker reset"); !none) return error_response(none.error());
  return reply(200, ctx.api.reset_breaker(call.params.at("name")));
}

}  // namespace

void add_agents(Router& r) {
  r.add(RouteDef{"GET", "/v1/agents", {}, [](HandlerContext& ctx, const Call&) {
                   return reply_list("agents", ctx.api.list_agents());
                 }});
  r.add(RouteDef{"POST", "/v1/agents", {}, create});
  r.add(RouteDef{"GET", "/v1/agents/{name}", {}, [](HandlerContext& ctx, const Call& call) {
                   return reply(200, ctx.api.get_agent(call.params.at("name")));
                 }});
  r.add(RouteDef{"PUT", "/v1/agents/{name}", {}, replace});
  r.add(RouteDef{"DELETE", "/v1/agents/{name}", {}, [](HandlerContext& ctx, const Call& call) {
                   return reply_no_content(ctx.api.delete_agent(call.params.at("name")));
                 }});
  r.add(RouteDef{"POST", "/v1/agents/{name}/scale", {}, scale});
  r.add(RouteDef{"GET", "/v1/agents/{name}/scaling", {}, [](HandlerContext& ctx, const Call& call) {
                   return reply(200, ctx.api.get_scaling(call.params.at("name")));
                 }});
  r.add(RouteDef{"POST", "/v1/agents/{name}/breaker/reset", {}, reset_breaker});
}

}  // namespace axon::controlplane::api::handlers

// /v1/agents: list, create, read, replace, delete, scale, reset the breaker.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {
namespace {

http::Response create(HandlerContext& ctx, const Call& call) {
  const AgentSpec spec = json_io::agent_spec_from_json(body_json(call));
  http::Response r = json_response(201, json_io::to_json(ctx.api.create_agent(spec)));
  r.headers.emplace_back("Location", "/v1/agents/" + spec.name);
  return r;
}

http::Response replace(HandlerContext& ctx, const Call& call) {
  const std::string& name = call.params.at("name");
  const AgentSpec spec = json_io::agent_spec_from_json(body_json(call), name);
  return json_response(200, json_io::to_json(ctx.api.replace_agent(name, spec)));
}

http::Response scale(HandlerContext& ctx, const Call& call) {
  const ScaleRequest request = json_io::scale_request_from_json(body_json(call));
  return json_response(200, json_io::to_json(ctx.api.scale_agent(call.params.at("name"), request)));
}

http::Response reset_breaker(HandlerContext& ctx, const Call& call) {
  expect_no_parameters(call, "breaker reset");
  return json_response(200, json_io::to_json(ctx.api.reset_breaker(call.params.at("name"))));
}

}  // namespace

void add_agents(Router& r) {
  r.add(RouteDef{"GET", "/v1/agents", {}, [](HandlerContext& ctx, const Call&) {
                   return json_response(200, list_of("agents", ctx.api.list_agents()));
                 }});
  r.add(RouteDef{"POST", "/v1/agents", {}, create});
  r.add(RouteDef{"GET", "/v1/agents/{name}", {}, [](HandlerContext& ctx, const Call& call) {
                   return json_response(200, json_io::to_json(ctx.api.get_agent(call.params.at("name"))));
                 }});
  r.add(RouteDef{"PUT", "/v1/agents/{name}", {}, replace});
  r.add(RouteDef{"DELETE", "/v1/agents/{name}", {}, [](HandlerContext& ctx, const Call& call) {
                   ctx.api.delete_agent(call.params.at("name"));
                   return no_content();
                 }});
  r.add(RouteDef{"POST", "/v1/agents/{name}/scale", {}, scale});
  r.add(RouteDef{"POST", "/v1/agents/{name}/breaker/reset", {}, reset_breaker});
}

}  // namespace axon::controlplane::api::handlers

// /v1/agents: list, create, read, replace, delete, scale, the autoscaler's view, reset the
// breaker. Agents carry their revision; replace, delete and scale may be conditional on one
// (If-Match or a body's `revision`; see revisions.h).
#include "api/handlers/respond.h"
#include "api/handlers/revisions.h"

namespace axon::controlplane::api::handlers {
namespace {

// One agent with its revision (read first: see revision_of).
http::Response agent_reply(HandlerContext& ctx, int status, const std::string& name) {
  const auto revision = revision_of(ctx.api, Resource::agent, name);
  const auto agent = ctx.api.get_agent(name);
  if (!agent) return error_response(agent.error());
  return with_revision(status, json_io::to_json(*agent), revision);
}

// After a write: the agent as it is now; if it went meanwhile, what the write returned.
http::Response agent_written(HandlerContext& ctx, int status, const ApiResult<AgentStatus>& written) {
  if (!written) return error_response(written.error());
  http::Response now = agent_reply(ctx, status, written->spec.name);
  return now.status == status ? now : reply(status, written);
}

http::Response agents_list(HandlerContext& ctx, const Call&) {
  const auto revisions = ctx.api.revisions(Resource::agent);
  const auto agents = ctx.api.list_agents();
  if (!agents) return error_response(agents.error());
  json items = json::array();
  for (const auto& a : *agents) {
    items.push_back(json_io::to_json(a));
    add_revision(items.back(), revisions, a.spec.name);
  }
  return json_response(200, json{{"agents", std::move(items)}});
}

http::Response agent_create(HandlerContext& ctx, const Call& call) {
  auto body = body_json(call);
  if (!body) return error_response(body.error());
  if (const auto none = expect_no_precondition(call, &*body, "POST /v1/agents"); !none) {
    return error_response(none.error());
  }
  const auto spec = json_io::agent_spec_from_json(*body);
  if (!spec) return error_response(spec.error());
  http::Response r = agent_written(ctx, 201, ctx.api.create_agent(*spec));
  if (r.status == 201) r.headers.emplace_back("Location", "/v1/agents/" + spec->name);
  return r;
}

http::Response agent_replace(HandlerContext& ctx, const Call& call) {
  const std::string& name = call.params.at("name");
  auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto pre = precondition_of(call, &*body);
  if (!pre) return error_response(pre.error());
  const auto spec = json_io::agent_spec_from_json(*body, name);
  if (!spec) return error_response(spec.error());
  return agent_written(ctx, 200, ctx.api.replace_agent_if(name, *spec, *pre));
}

http::Response agent_delete(HandlerContext& ctx, const Call& call) {
  const auto pre = precondition_of(call, nullptr);
  if (!pre) return error_response(pre.error());
  return reply_no_content(ctx.api.delete_agent_if(call.params.at("name"), *pre));
}

http::Response agent_scale(HandlerContext& ctx, const Call& call) {
  auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto pre = precondition_of(call, &*body);
  if (!pre) return error_response(pre.error());
  const auto request = json_io::scale_request_from_json(*body);
  if (!request) return error_response(request.error());
  return agent_written(ctx, 200, ctx.api.scale_agent_if(call.params.at("name"), *request, *pre));
}

http::Response reset_breaker(HandlerContext& ctx, const Call& call) {
  if (const auto none = expect_no_parameters(call, "breaker reset"); !none) return error_response(none.error());
  return reply(200, ctx.api.reset_breaker(call.params.at("name")));
}

}  // namespace

void add_agents(Router& r) {
  r.add(RouteDef{"GET", "/v1/agents", {}, agents_list});
  r.add(RouteDef{"POST", "/v1/agents", {}, agent_create});
  r.add(RouteDef{"GET", "/v1/agents/{name}", {}, [](HandlerContext& ctx, const Call& call) {
                   return agent_reply(ctx, 200, call.params.at("name"));
                 }});
  r.add(RouteDef{"PUT", "/v1/agents/{name}", {}, agent_replace});
  r.add(RouteDef{"DELETE", "/v1/agents/{name}", {}, agent_delete});
  r.add(RouteDef{"POST", "/v1/agents/{name}/scale", {}, agent_scale});
  r.add(RouteDef{"GET", "/v1/agents/{name}/scaling", {}, [](HandlerContext& ctx, const Call& call) {
                   return reply(200, ctx.api.get_scaling(call.params.at("name")));
                 }});
  r.add(RouteDef{"POST", "/v1/agents/{name}/breaker/reset", {}, reset_breaker});
}

}  // namespace axon::controlplane::api::handlers

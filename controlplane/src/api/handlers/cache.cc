// The data plane's response cache: invalidate one agent's entries or all of them, and read an
// agent's cache settings and the cache's figures (docs/operations.md, "Response cache").
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {
namespace {

http::Response invalidate_agent(HandlerContext& ctx, const Call& call) {
  if (const auto none = expect_no_parameters(call, "cache invalidation"); !none) return error_response(none.error());
  return reply_no_content(ctx.api.invalidate_cache(call.params.at("name")));
}

http::Response invalidate_all(HandlerContext& ctx, const Call& call) {
  if (const auto none = expect_no_parameters(call, "cache invalidation"); !none) return error_response(none.error());
  return reply_no_content(ctx.api.invalidate_cache(std::nullopt));
}

}  // namespace

void add_cache(Router& r) {
  r.add(RouteDef{"GET", "/v1/agents/{name}/cache", {}, [](HandlerContext& ctx, const Call& call) {
                   return reply(200, ctx.api.get_cache(call.params.at("name")));
                 }});
  r.add(RouteDef{"DELETE", "/v1/agents/{name}/cache", {}, invalidate_agent});
  r.add(RouteDef{"DELETE", "/v1/cache", {}, invalidate_all});
}

}  // namespace axon::controlplane::api::handlers

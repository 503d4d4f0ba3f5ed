// /v1/workers: list (optionally by agent), drain, kill.
#include <optional>

#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_workers(Router& r) {
  r.add(RouteDef{"GET", "/v1/workers", {"agent"}, [](HandlerContext& ctx, const Call& call) {
                   std::optional<std::string> agent;
                   if (const auto it = call.query.find("agent"); it != call.query.end()) agent = it->second;
                   return reply_list("workers", ctx.api.list_workers(agent));
                 }});
  r.add(RouteDef{"POST", "/v1/workers/{id}/drain", {}, [](HandlerContext& ctx, const Call& call) {
                   if (const auto none = expect_no_parameters(call, "drain"); !none)
                     return error_response(none.error());
                   return reply(200, ctx.api.drain_worker(call.params.at("id")));
                 }});
  r.add(RouteDef{"POST", "/v1/workers/{id}/kill", {}, [](HandlerContext& ctx, const Call& call) {
                   if (const auto none = expect_no_parameters(call, "kill"); !none) return error_response(none.error());
                   return reply(200, ctx.api.kill_worker(call.params.at("id")));
                 }});
}

}  // namespace axon::controlplane::api::handlers

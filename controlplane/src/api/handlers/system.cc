// /v1/health (liveness for probes: no token, never rate limited) and /v1/status.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_system(Router& r) {
  r.add(RouteDef{"GET",
                 "/v1/health",
                 {},
                 [](HandlerContext&, const Call&) {
                   return json_response(200, json{{"status", "ok"}});
                 },
                 false});
  r.add(
      RouteDef{"GET", "/v1/status", {}, [](HandlerContext& ctx, const Call&) { return reply(200, ctx.api.status()); }});
}

}  // namespace axon::controlplane::api::handlers

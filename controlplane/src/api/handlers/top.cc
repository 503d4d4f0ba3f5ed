// /v1/top: one sample of the live counters behind `axonctl top` and the dashboard (model.h,
// TopSnapshot). Clients poll it and compute rates and interval quantiles from two samples.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_top(Router& r) {
  r.add(RouteDef{"GET", "/v1/top", {}, [](HandlerContext& ctx, const Call&) { return reply(200, ctx.api.top()); }});
}

}  // namespace axon::controlplane::api::handlers

// /v1/routes: the routes the control plane pushes to the data plane, read-only.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_routes(Router& r) {
  r.add(RouteDef{"GET", "/v1/routes", {}, [](HandlerContext& ctx, const Call&) {
                   return reply_list("routes", ctx.api.list_routes());
                 }});
}

}  // namespace axon::controlplane::api::handlers

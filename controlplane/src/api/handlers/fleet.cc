// /v1/fleet: the fleet's members (from etcd) and this appliance's view of etcd (docs/fleet.md).
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_fleet(Router& r) {
  r.add(RouteDef{"GET", "/v1/fleet", {}, [](HandlerContext& ctx, const Call&) {
                   const auto view = ctx.api.fleet();
                   if (!view) return error_response(view.error());
                   return json_response(200, json::parse(view.value()));
                 }});
}

}  // namespace axon::controlplane::api::handlers

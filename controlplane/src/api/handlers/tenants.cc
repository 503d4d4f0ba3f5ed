// /v1/tenants: list, read, create or replace, delete.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_tenants(Router& r) {
  r.add(RouteDef{"GET", "/v1/tenants", {}, [](HandlerContext& ctx, const Call&) {
                   return json_response(200, list_of("tenants", ctx.api.list_tenants()));
                 }});
  r.add(RouteDef{"GET", "/v1/tenants/{id}", {}, [](HandlerContext& ctx, const Call& call) {
                   return json_response(200, json_io::to_json(ctx.api.get_tenant(tenant_id_param(call))));
                 }});
  r.add(RouteDef{"PUT", "/v1/tenants/{id}", {}, [](HandlerContext& ctx, const Call& call) {
                   const std::uint32_t id = tenant_id_param(call);
                   const TenantSpec spec = json_io::tenant_spec_from_json(body_json(call), id);
                   return json_response(200, json_io::to_json(ctx.api.put_tenant(id, spec)));
                 }});
  r.add(RouteDef{"DELETE", "/v1/tenants/{id}", {}, [](HandlerContext& ctx, const Call& call) {
                   ctx.api.delete_tenant(tenant_id_param(call));
                   return no_content();
                 }});
}

}  // namespace axon::controlplane::api::handlers

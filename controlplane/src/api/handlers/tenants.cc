// /v1/tenants: list, read, create or replace, delete.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {
namespace {

http::Response put(HandlerContext& ctx, const Call& call) {
  const auto id = tenant_id_param(call);
  if (!id) return error_response(id.error());
  const auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto spec = json_io::tenant_spec_from_json(*body, *id);
  if (!spec) return error_response(spec.error());
  return reply(200, ctx.api.put_tenant(*id, *spec));
}

}  // namespace

void add_tenants(Router& r) {
  r.add(RouteDef{"GET", "/v1/tenants", {}, [](HandlerContext& ctx, const Call&) {
                   return reply_list("tenants", ctx.api.list_tenants());
                 }});
  r.add(RouteDef{"GET", "/v1/tenants/{id}", {}, [](HandlerContext& ctx, const Call& call) {
                   const auto id = tenant_id_param(call);
                   if (!id) return error_response(id.error());
                   return reply(200, ctx.api.get_tenant(*id));
                 }});
  r.add(RouteDef{"PUT", "/v1/tenants/{id}", {}, put});
  r.add(RouteDef{"DELETE", "/v1/tenants/{id}", {}, [](HandlerContext& ctx, const Call& call) {
                   const auto id = tenant_id_param(call);
                   if (!id) return error_response(id.error());
                   return reply_no_content(ctx.api.delete_tenant(*id));
                 }});
}

}  // namespace axon::controlplane::api::handlers

// /v1/tenants: list, read, create or replace, delete; each with its revision, and writes
// conditional on one (If-Match or a body's `revision`; see revisions.h).
#include "api/handlers/respond.h"
#include "api/handlers/revisions.h"

namespace axon::controlplane::api::handlers {
namespace {

// One tenant with its revision (read first: see revision_of).
http::Response tenant_reply(HandlerContext& ctx, int status, std::uint32_t id) {
  const auto revision = revision_of(ctx.api, Resource::tenant, std::to_string(id));
  const auto tenant = ctx.api.get_tenant(id);
  if (!tenant) return error_response(tenant.error());
  return with_revision(status, json_io::to_json(*tenant), revision);
}

http::Response tenants_list(HandlerContext& ctx, const Call&) {
  const auto revisions = ctx.api.revisions(Resource::tenant);
  const auto tenants = ctx.api.list_tenants();
  if (!tenants) return error_response(tenants.error());
  json items = json::array();
  for (const auto& t : *tenants) {
    items.push_back(json_io::to_json(t));
    add_revision(items.back(), revisions, std::to_string(t.id));
  }
  return json_response(200, json{{"tenants", std::move(items)}});
}

http::Response tenant_put(HandlerContext& ctx, const Call& call) {
  const auto id = tenant_id_param(call);
  if (!id) return error_response(id.error());
  auto body = body_json(call);
  if (!body) return error_response(body.error());
  const auto pre = precondition_of(call, &*body);
  if (!pre) return error_response(pre.error());
  const auto spec = json_io::tenant_spec_from_json(*body, *id);
  if (!spec) return error_response(spec.error());
  const auto put = ctx.api.put_tenant_if(*id, *spec, *pre);
  if (!put) return error_response(put.error());
  // The tenant as it is now, with its new revision; if it went meanwhile, what was written.
  http::Response now = tenant_reply(ctx, 200, *id);
  return now.status == 200 ? now : reply(200, put);
}

http::Response tenant_remove(HandlerContext& ctx, const Call& call) {
  const auto id = tenant_id_param(call);
  if (!id) return error_response(id.error());
  const auto pre = precondition_of(call, nullptr);
  if (!pre) return error_response(pre.error());
  return reply_no_content(ctx.api.delete_tenant_if(*id, *pre));
}

}  // namespace

void add_tenants(Router& r) {
  r.add(RouteDef{"GET", "/v1/tenants", {}, tenants_list});
  r.add(RouteDef{"GET", "/v1/tenants/{id}", {}, [](HandlerContext& ctx, const Call& call) {
                   const auto id = tenant_id_param(call);
                   if (!id) return error_response(id.error());
                   return tenant_reply(ctx, 200, *id);
                 }});
  r.add(RouteDef{"PUT", "/v1/tenants/{id}", {}, tenant_put});
  r.add(RouteDef{"DELETE", "/v1/tenants/{id}", {}, tenant_remove});
}

}  // namespace axon::controlplane::api::handlers

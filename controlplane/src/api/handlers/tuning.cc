// /v1/tuning: the host tuning service's resource (docs/tuning.md). The tuning service answers
// with its own status and JSON; this file only routes (apply and rollback are POSTs, so the
// pipeline already required the admin role for them).
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {
namespace {

http::Response forward(HandlerContext& ctx, const char* method, const char* path, const Call& call) {
  std::string query;
  if (const auto it = call.query.find("profile"); it != call.query.end()) query = "profile=" + it->second;
  auto reply = ctx.api.tuning(method, path, query, call.body);
  if (!reply) return error_response(reply.error());
  http::Response r;
  r.status = reply->status;
  r.body = reply->body;
  if (r.body.empty() || r.body.back() != '\n') r.body += '\n';
  return r;
}

}  // namespace

void add_tuning(Router& r) {
  for (const char* path : {"/v1/tuning", "/v1/tuning/profiles"}) {
    r.add(RouteDef{
        "GET", path, {}, [path](HandlerContext& ctx, const Call& call) { return forward(ctx, "GET", path, call); }});
  }
  for (const char* path : {"/v1/tuning/check", "/v1/tuning/verify", "/v1/tuning/diff"}) {
    r.add(RouteDef{"GET", path, {"profile"}, [path](HandlerContext& ctx, const Call& call) {
                     return forward(ctx, "GET", path, call);
                   }});
  }
  for (const char* path : {"/v1/tuning/apply", "/v1/tuning/rollback"}) {
    r.add(RouteDef{
        "POST", path, {}, [path](HandlerContext& ctx, const Call& call) { return forward(ctx, "POST", path, call); }});
  }
}

}  // namespace axon::controlplane::api::handlers

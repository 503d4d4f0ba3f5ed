// /v1/tuning: the host tuning service's resource (docs/tuning.md). The tuning service answers
// with its own status and JSON; this file only routes (apply and rollback are POSTs, so the
// pipeline already required the admin role for them). An apply may be conditional on the
// fleet's tuning profile revision (If-Match or a body's `revision`; docs/fleet.md).
#include "api/handlers/respond.h"
#include "api/handlers/revisions.h"

namespace axon::controlplane::api::handlers {
namespace {

http::Response tuning_response(const ApiResult<ControlApi::TuningReply>& reply) {
  if (!reply) return error_response(reply.error());
  http::Response r;
  r.status = reply->status;
  r.body = reply->body;
  if (r.body.empty() || r.body.back() != '\n') r.body += '\n';
  return r;
}

http::Response forward(HandlerContext& ctx, const char* method, const char* path, const Call& call) {
  std::string query;
  if (const auto it = call.query.find("profile"); it != call.query.end()) query = "profile=" + it->second;
  return tuning_response(ctx.api.tuning(method, path, query, call.body));
}

http::Response tuning_apply(HandlerContext& ctx, const Call& call) {
  std::string body = call.body;
  // A body that does not parse goes on as it is: the tuning service says what it wants.
  auto parsed_body = json_io::parse_body(body.empty() ? std::string("{}") : body);
  json parsed = parsed_body ? *parsed_body : json();
  const bool has_revision = parsed.is_object() && parsed.contains("revision");
  const auto pre = precondition_of(call, has_revision ? &parsed : nullptr);
  if (!pre) return error_response(pre.error());
  if (has_revision) body = parsed.dump();  // without it: the tuning service knows only "profile"
  return tuning_response(ctx.api.tuning_apply(body, *pre));
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
  r.add(RouteDef{"POST", "/v1/tuning/apply", {}, tuning_apply});
  r.add(RouteDef{"POST", "/v1/tuning/rollback", {}, [](HandlerContext& ctx, const Call& call) {
                   return forward(ctx, "POST", "/v1/tuning/rollback", call);
                 }});
}

}  // namespace axon::controlplane::api::handlers

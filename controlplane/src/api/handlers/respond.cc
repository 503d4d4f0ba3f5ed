// Shared handler helpers (see respond.h).
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

http::Response json_response(int status, json body) {
  http::Response r;
  r.status = status;
  r.body = body.dump() + "\n";
  return r;
}

http::Response error_response(int status, const std::string& message) {
  return json_response(status, json{{"error", message}});
}

http::Response no_content() {
  http::Response r;
  r.status = 204;
  return r;
}

int status_of(ApiError::Kind kind) {
  switch (kind) {
    case ApiError::Kind::bad_request: return 400;
    case ApiError::Kind::not_found: return 404;
    case ApiError::Kind::conflict: return 409;
    case ApiError::Kind::unavailable: return 503;
    case ApiError::Kind::internal: return 500;
  }
  return 500;
}

json body_json(const Call& call) {
  return json_io::parse_body(call.body);
}

std::uint32_t tenant_id_param(const Call& call) {
  const std::string& s = call.params.at("id");
  std::uint64_t v = 0;
  bool ok = !s.empty() && s.size() <= 10;
  for (const char c : s) {
    if (c < '0' || c > '9') ok = false;
    if (ok) v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (!ok || v == 0 || v > 0xffffffffULL) {
    throw ApiError(ApiError::Kind::bad_request, "tenant id '" + s + "' must be an integer from 1 to 4294967295");
  }
  return static_cast<std::uint32_t>(v);
}

void expect_no_parameters(const Call& call, const char* what) {
  if (call.body.find_first_not_of(" \t\r\n") == std::string::npos) return;
  const json j = body_json(call);
  if (!j.is_object()) throw ApiError(ApiError::Kind::bad_request, std::string(what) + " body must be a JSON object");
  if (!j.empty()) {
    throw ApiError(ApiError::Kind::bad_request, "unknown field '" + j.begin().key() + "' in " + what);
  }
}

}  // namespace axon::controlplane::api::handlers

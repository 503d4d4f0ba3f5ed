// Shared handler helpers (see respond.h).
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

http::Response json_response(int status, const json& body) {
  http::Response r;
  r.status = status;
  // replace: a message quoting a path with invalid UTF-8 must not make the dump throw.
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

http::Response error_response(int status, const std::string& message) {
  return json_response(status, json{{"error", message}});
}

http::Response error_response(const ApiError& error) {
  return error_response(status_of(error.code), error.message);
}

int status_of(ApiErrorCode code) {
  switch (code) {
    case ApiErrorCode::invalid_argument: return 400;
    case ApiErrorCode::not_found: return 404;
    case ApiErrorCode::conflict: return 409;
    case ApiErrorCode::unavailable: return 503;
    case ApiErrorCode::internal: return 500;
  }
  return 500;
}

http::Response reply_no_content(const ApiResult<Ok>& result) {
  if (!result) return error_response(result.error());
  http::Response r;
  r.status = 204;
  return r;
}

ApiResult<json> body_json(const Call& call) {
  return json_io::parse_body(call.body);
}

ApiResult<std::uint32_t> tenant_id_param(const Call& call) {
  const std::string& s = call.params.at("id");
  std::uint64_t v = 0;
  bool ok = !s.empty() && s.size() <= 10;
  for (const char c : s) {
    if (c < '0' || c > '9') ok = false;
    if (ok) v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (!ok || v == 0 || v > 0xffffffffULL) {
    return api_error(ApiErrorCode::invalid_argument, "tenant id '" + s + "' must be an integer from 1 to 4294967295");
  }
  return static_cast<std::uint32_t>(v);
}

ApiResult<Ok> expect_no_parameters(const Call& call, const char* what) {
  if (call.body.find_first_not_of(" \t\r\n") == std::string::npos) return Ok{};
  const auto j = body_json(call);
  if (!j) return j.error();
  if (!j->is_object()) {
    return api_error(ApiErrorCode::invalid_argument, std::string(what) + " body must be a JSON object");
  }
  if (!j->empty()) {
    return api_error(ApiErrorCode::invalid_argument, "unknown field '" + j->begin().key() + "' in " + what);
  }
  return Ok{};
}

}  // namespace axon::controlplane::api::handlers

// Helpers every handler file shares: JSON responses, the ApiErrorCode -> HTTP status mapping
// (the only place a ControlApi error becomes a status), and the small request readers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/json.h"
#include "api/router.h"

namespace axon::controlplane::api::handlers {

using json = nlohmann::json;

http::Response json_response(int status, const json& body);
http::Response error_response(int status, const std::string& message);
http::Response error_response(const ApiError& error);

// invalid_argument 400, not_found 404, conflict 409, unavailable 503, internal 500.
int status_of(ApiErrorCode code);

ApiResult<json> body_json(const Call& call);  // the body as JSON, or invalid_argument

// The {id} path parameter as a tenant id (1..2^32-1), or invalid_argument.
ApiResult<std::uint32_t> tenant_id_param(const Call& call);

// An empty body or "{}": for actions that take no parameters today.
ApiResult<Ok> expect_no_parameters(const Call& call, const char* what);

template <typename T>
json list_of(const char* key, const std::vector<T>& items) {
  json arr = json::array();
  for (const auto& item : items) arr.push_back(json_io::to_json(item));
  return json{{key, std::move(arr)}};
}

// The call's value as JSON with `status`, or its error with the error's status.
template <typename T>
http::Response reply(int status, const ApiResult<T>& result) {
  if (!result) return error_response(result.error());
  return json_response(status, json_io::to_json(result.value()));
}

template <typename T>
http::Response reply_list(const char* key, const ApiResult<std::vector<T>>& result) {
  if (!result) return error_response(result.error());
  return json_response(200, list_of(key, result.value()));
}

http::Response reply_no_content(const ApiResult<Ok>& result);  // 204

}  // namespace axon::controlplane::api::handlers

// Helpers every handler file shares: JSON responses, the ApiError -> HTTP status mapping
// (the only place a ControlApi error becomes a status), and the small request readers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/json.h"
#include "api/router.h"

namespace axon::controlplane::api::handlers {

using json = nlohmann::json;

http::Response json_response(int status, json body);
http::Response error_response(int status, const std::string& message);
http::Response no_content();  // 204

// bad_request 400, not_found 404, conflict 409, unavailable 503, internal 500.
int status_of(ApiError::Kind kind);

json body_json(const Call& call);  // the body as JSON; ApiError bad_request when malformed

// The {id} path parameter as a tenant id (1..2^32-1); ApiError bad_request otherwise.
std::uint32_t tenant_id_param(const Call& call);

// An empty body or "{}": for actions that take no parameters today.
void expect_no_parameters(const Call& call, const char* what);

template <typename T>
json list_of(const char* key, const std::vector<T>& items) {
  json arr = json::array();
  for (const auto& item : items) arr.push_back(json_io::to_json(item));
  return json{{key, std::move(arr)}};
}

}  // namespace axon::controlplane::api::handlers

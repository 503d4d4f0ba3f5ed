// Strict JSON (de)serialisation of the resource model (model.h) for the REST layer.
//
// Readers reject unknown fields, wrong types and missing required fields with an ApiError
// (invalid_argument) whose message names the field, so an operator's typo never silently turns
// into a default. Writers emit every field; optional values that are absent are omitted.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "axon/controlplane/model.h"

namespace axon::controlplane::json_io {

using nlohmann::json;

// Parses a request body. Malformed JSON (or nesting deeper than 64) -> ApiError
// invalid_argument with the byte position.
ApiResult<json> parse_body(std::string_view body);

json to_json(const PoolSize& value);
json to_json(const AgentSpec& value);
json to_json(const AgentStatus& value);
json to_json(const WorkerInfo& value);
json to_json(const TenantSpec& value);
json to_json(const RouteInfo& value);
json to_json(const DataplaneStatus& value);
json to_json(const SystemStatus& value);
json to_json(const ScaleRequest& value);
json to_json(const ScaleEvent& value);
json to_json(const ScalingStatus& value);
json to_json(const CacheStatus& value);
json to_json(const TopSnapshot& value);

const char* to_string(PriorityClass value);
const char* to_string(BreakerState value);
const char* to_string(WorkerState value);

// Readers. A body must be an object; `name` defaults to the path parameter when the body
// omits it (PUT /v1/agents/{name}) and must match it when present.
ApiResult<AgentSpec> agent_spec_from_json(const json& j, const std::optional<std::string>& path_name = std::nullopt);
ApiResult<TenantSpec> tenant_spec_from_json(const json& j, const std::optional<std::uint32_t>& path_id = std::nullopt);
ApiResult<ScaleRequest> scale_request_from_json(const json& j);
ApiResult<PoolSize> pool_size_from_json(const json& j);
ApiResult<AgentStatus> agent_status_from_json(const json& j);
ApiResult<WorkerInfo> worker_info_from_json(const json& j);
ApiResult<RouteInfo> route_info_from_json(const json& j);
ApiResult<DataplaneStatus> dataplane_status_from_json(const json& j);
ApiResult<SystemStatus> system_status_from_json(const json& j);

}  // namespace axon::controlplane::json_io

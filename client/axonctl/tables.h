// axonctl's human-readable output: aligned tables and key/value blocks rendered from the
// REST API's JSON. Every renderer tolerates missing or mistyped fields (printing "-"), so a
// newer server never makes the CLI throw.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace axon::ctl {

// Columns separated by two spaces, padded to the widest cell; no trailing spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add_row(std::vector<std::string> cells);
  std::string str() const;
  std::size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "key   value" lines with the keys padded to the widest.
std::string render_key_values(const std::vector<std::pair<std::string, std::string>>& items);

// 90061000 -> "1d 1h 1m"; 3723000 -> "1h 2m 3s"; 1500 -> "1.5s"; 42 -> "42ms".
std::string format_duration_ms(std::int64_t ms);

std::string render_status(const nlohmann::json& status);
std::string render_agents(const nlohmann::json& list);      // {"agents": [...]}
std::string render_agent(const nlohmann::json& agent);      // one AgentStatus
std::string render_workers(const nlohmann::json& list);     // {"workers": [...]}
std::string render_scaling(const nlohmann::json& scaling);  // one ScalingStatus
std::string render_tenants(const nlohmann::json& list);     // {"tenants": [...]}
std::string render_tenant(const nlohmann::json& tenant);
std::string render_routes(const nlohmann::json& list);  // {"routes": [...]}

}  // namespace axon::ctl

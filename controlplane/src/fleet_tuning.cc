// The fleet's tuning profile (docs/fleet.md, "The tuning profile"): `<prefix>config/tuning/profile`
// = {"name": "<profile>"} is applied on each appliance through its tuning service, by the very
// call POST /v1/tuning/apply makes without a fleet; in a fleet that REST apply is written to
// etcd (compare-and-swap like tenants and agents) and comes back through the watch.
#include <cctype>
#include <nlohmann/json.hpp>

#include "axon/common/log.h"

#include "control_plane.h"

namespace axon::controlplane {
namespace ftune {

using json = nlohmann::json;

constexpr const char* kLog = "fleet";

// Profile names as the tuning service finds them in its profile directories.
bool plain_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return name.find("..") == std::string::npos;
}

// The message of a tuning service reply ({"error": code, "message": text}), or its body.
std::string message_of(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  return body.substr(0, 200);
}

}  // namespace ftune

void ControlPlane::apply_fleet_tuning(const FleetConfig::Change& c) {
  if (c.name != "profile") {
    return fleet_refused(c, "unknown key tuning/" + c.name + ": the fleet's tuning is the key tuning/profile");
  }
  if (c.deleted) return forget_fleet_tuning();
  const ftune::json value = ftune::json::parse(c.value, nullptr, false);
  if (!value.is_object() || value.size() != 1 || !value.contains("name") || !value["name"].is_string() ||
      !ftune::plain_name(value["name"].get<std::string>())) {
    const std::string why = "tuning/profile must be {\"name\": \"<profile>\"} with a profile name, not " + c.value;
    {
      std::lock_guard lock(mutex_);
      fleet_tuning_ = FleetTuning{"", c.mod_revision, false, 400, ftune::json{{"message", why}}.dump()};
    }
    return fleet_refused(c, why);
  }
  const std::string profile = value["name"].get<std::string>();
  {
    std::lock_guard lock(mutex_);
    // A re-list (etcd came back, or the first list) of what this appliance acted on already.
    if (fleet_tuning_.revision == c.mod_revision && fleet_tuning_.profile == profile) return;
  }
  // Exactly what POST /v1/tuning/apply does without a fleet.
  const auto reply = tuning_->handle("POST", "/v1/tuning/apply", "", ftune::json{{"profile", profile}}.dump(), true);
  {
    std::lock_guard lock(mutex_);
    fleet_tuning_ = FleetTuning{profile, c.mod_revision, reply.status == 200, reply.status, reply.body};
  }
  if (reply.status != 200) {
    return fleet_refused(c, "the tuning service refused profile '" + profile + "' (" + std::to_string(reply.status) +
                                "): " + ftune::message_of(reply.body));
  }
  AXON_LOG_INFO(ftune::kLog, "the fleet's tuning profile %s (revision %lld) is applied", profile.c_str(),
                static_cast<long long>(c.mod_revision));
}

void ControlPlane::forget_fleet_tuning() {
  std::lock_guard lock(mutex_);
  if (!fleet_tuning_.profile.empty()) {
    AXON_LOG_INFO(ftune::kLog,
                  "the fleet sets no tuning profile any more; %s stays applied here until `axonctl tune rollback`",
                  fleet_tuning_.profile.c_str());
  }
  fleet_tuning_ = FleetTuning{};
}

ApiResult<ControlApi::TuningReply> ControlPlane::tuning_apply(const std::string& body, const Precondition& pre) {
  if (!tuning_) return api_error(ApiErrorCode::unavailable, "the control plane is still starting");
  if (fleet_config_) return fleet_tuning_write(body, pre);
  if (pre.kind != Precondition::Kind::none) {
    return api_error(ApiErrorCode::invalid_argument,
                     "without a fleet the tuning profile has no revision: apply it without If-Match or 'revision'");
  }
  return tuning("POST", "/v1/tuning/apply", "", body);
}

ApiResult<ControlApi::TuningReply> ControlPlane::fleet_tuning_write(const std::string& body, const Precondition& pre) {
  const ftune::json j = body.empty() ? ftune::json::object() : ftune::json::parse(body, nullptr, false);
  if (!j.is_object()) {
    return api_error(ApiErrorCode::invalid_argument, "the body must be a JSON object like {\"profile\": \"latency\"}");
  }
  for (const auto& [key, v] : j.items()) {
    if (key != "profile")
      return api_error(ApiErrorCode::invalid_argument, "unknown field '" + key + "'; only \"profile\"");
  }
  const std::string profile =
      j.contains("profile") && j["profile"].is_string() ? j["profile"].get<std::string>() : config_.tuning.profile;
  if (!ftune::plain_name(profile)) {
    return api_error(ApiErrorCode::invalid_argument,
                     "send {\"profile\": NAME} with a profile name (GET /v1/tuning/profiles lists them)");
  }
  // Checked here as this appliance would apply it (404 unknown, 400 invalid) before the fleet gets it.
  const auto check = tuning_->handle("GET", "/v1/tuning/check", "profile=" + profile, "", false);
  if (check.status != 200) return TuningReply{check.status, check.body};
  auto revision = fleet_config_->put(FleetConfig::Change::Kind::tuning, "profile",
                                     ftune::json{{"name", profile}}.dump(), false, pre);
  if (!revision) return revision.error();
  const bool applied = fleet_config_->wait_applied(*revision, config_.fleet.request_timeout * 2);
  std::lock_guard lock(mutex_);
  if (!applied || fleet_tuning_.revision != *revision) {
    return api_error(ApiErrorCode::unavailable, "the profile is in etcd (revision " + std::to_string(*revision) +
                                                    ") but not applied here yet; see GET /v1/fleet shortly");
  }
  return TuningReply{fleet_tuning_.status, fleet_tuning_.reply};
}

std::string ControlPlane::with_fleet_tuning(const std::string& view) const {
  ftune::json j = ftune::json::parse(view, nullptr, false);
  if (!j.is_object()) return view;
  std::lock_guard lock(mutex_);
  ftune::json t{{"profile", fleet_tuning_.profile.empty() ? ftune::json(nullptr) : ftune::json(fleet_tuning_.profile)},
                {"revision", fleet_tuning_.revision},
                {"applied", fleet_tuning_.applied}};
  if (fleet_tuning_.status != 0 && !fleet_tuning_.applied) t["error"] = ftune::message_of(fleet_tuning_.reply);
  j["tuning"] = std::move(t);
  return j.dump();
}

}  // namespace axon::controlplane

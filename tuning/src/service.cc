// TuningService (see service.h).
#include "axon/tuning/service.h"

#include <nlohmann/json.hpp>

namespace axon::tuning {
namespace {

using nlohmann::json;

std::string error_body(const std::string& code, const std::string& message) {
  return json{{"error", code}, {"message", message}}.dump();
}

// "profile=latency&x=1" -> "latency" for key "profile"; percent-escapes are not needed for
// profile names (letters, digits, -_.) and anything else is refused by the loader.
std::string query_value(const std::string& query, const std::string& key) {
  std::size_t pos = 0;
  while (pos <= query.size()) {
    auto amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string part = query.substr(pos, amp - pos);
    const auto eq = part.find('=');
    if (eq != std::string::npos && part.substr(0, eq) == key) return part.substr(eq + 1);
    pos = amp + 1;
  }
  return "";
}

// Over the API, profiles come from the profile directories only: a caller cannot make the
// root daemon read a file of its choosing.
constexpr const char* kNameOnly = "a profile name, not a path (GET /v1/tuning/profiles lists them)";
bool name_only(const std::string& profile) {
  return profile.find('/') == std::string::npos && !profile.ends_with(".toml");
}

std::string label(const std::string& profile) {
  std::string out;
  for (char c : profile) {
    if (c == '"' || c == '\\') out += '\\';
    if (c != '\n') out += c;
  }
  return out;
}

}  // namespace

int http_status(TuningError error) noexcept {
  switch (error) {
    case TuningError::profile_not_found: return 404;
    case TuningError::invalid_profile:
    case TuningError::invalid_input:
    case TuningError::not_netns: return 400;
    case TuningError::locked:
    case TuningError::wrong_namespace: return 409;
    case TuningError::io_error:
    case TuningError::snapshot_corrupt: return 500;
  }
  return 500;
}

TuningService::TuningService(ServiceConfig config) : config_(std::move(config)) {
  state_.profile = config_.profile;
}

void TuningService::record(const TResult<Report>& report) {
  std::lock_guard lock(mu_);
  if (!report) {
    state_.error = report.message();
    ++errors_;
    return;
  }
  state_.error.clear();
  const Report& r = report.value();
  if (r.verb == Verb::verify) {
    state_.verified = true;
    state_.in_force = r.in_force();
    state_.drift = r.count(Status::drift);
    state_.skipped = r.count(Status::skipped);
    state_.cmdline_missing = 0;
    for (const auto& c : r.cmdline) state_.cmdline_missing += c.ok ? 0 : 1;
    ++state_.verifications;
  }
}

TResult<Report> TuningService::start() {
  last_verify_ = std::chrono::steady_clock::now();
  if (config_.profile.empty()) {
    Report none;
    none.notes.push_back("no tuning profile configured: nothing applied or verified");
    return none;
  }
  if (config_.apply_at_start) {
    auto applied = tuning::apply(config_.profile, config_.options);
    record(applied);
    if (!applied) return applied;
    record(tuning::verify(config_.profile, config_.options));
    return applied;
  }
  auto verified = tuning::verify(config_.profile, config_.options);
  record(verified);
  return verified;
}

bool TuningService::tick(std::chrono::steady_clock::time_point now) {
  if (config_.profile.empty() || config_.verify_interval.count() <= 0) return false;
  if (now - last_verify_ < config_.verify_interval) return false;
  last_verify_ = now;
  record(tuning::verify(config_.profile, config_.options));
  return true;
}

TuningService::State TuningService::state() const {
  State s;
  {
    std::lock_guard lock(mu_);
    s = state_;
  }
  if (auto applied = applied_profile(config_.options)) s.applied = applied.value();
  return s;
}

std::string TuningService::metrics() const {
  const State s = state();
  std::size_t errors;
  {
    std::lock_guard lock(mu_);
    errors = errors_;
  }
  std::string out;
  const std::string l = "{profile=\"" + label(s.profile) + "\"}";
  out += "# HELP axon_tuning_drift Knobs whose live value differs from the tuning profile at the last verify.\n";
  out += "# TYPE axon_tuning_drift gauge\n";
  out += "axon_tuning_drift" + l + " " + std::to_string(s.drift) + "\n";
  out += "# HELP axon_tuning_in_force 1 when the last verify found the profile in force.\n";
  out += "# TYPE axon_tuning_in_force gauge\n";
  out += "axon_tuning_in_force" + l + " " + std::string(s.in_force ? "1" : "0") + "\n";
  out += "# HELP axon_tuning_skipped Knobs of the profile that cannot be set on this host.\n";
  out += "# TYPE axon_tuning_skipped gauge\n";
  out += "axon_tuning_skipped" + l + " " + std::to_string(s.skipped) + "\n";
  out += "# HELP axon_tuning_cmdline_missing Kernel parameters the profile needs that the running kernel lacks.\n";
  out += "# TYPE axon_tuning_cmdline_missing gauge\n";
  out += "axon_tuning_cmdline_missing" + l + " " + std::to_string(s.cmdline_missing) + "\n";
  out += "# HELP axon_tuning_verifications_total Periodic and requested verifications run.\n";
  out += "# TYPE axon_tuning_verifications_total counter\n";
  out += "axon_tuning_verifications_total " + std::to_string(s.verifications) + "\n";
  out += "# HELP axon_tuning_errors_total Tuning verbs that failed (profile, snapshot or state directory).\n";
  out += "# TYPE axon_tuning_errors_total counter\n";
  out += "axon_tuning_errors_total " + std::to_string(errors) + "\n";
  return out;
}

TuningService::HttpReply TuningService::handle(const std::string& method, const std::string& path,
                                               const std::string& query, const std::string& body, bool admin) {
  auto report_reply = [this](const TResult<Report>& r) -> HttpReply {
    record(r);
    if (!r) return {http_status(r.code()), error_body(to_string(r.code()), r.message())};
    return {200, render_json(r.value())};
  };
  const std::string base = "/v1/tuning";
  if (path.rfind(base, 0) != 0) return {404, error_body("not_found", "no such resource: " + path)};
  const std::string rest = path.substr(base.size());

  if (rest.empty() || rest == "/") {
    if (method != "GET") return {405, error_body("method_not_allowed", "use GET on /v1/tuning")};
    const State s = state();
    json j = {{"profile", s.profile},
              {"applied", s.applied ? json(*s.applied) : json(nullptr)},
              {"verified", s.verified},
              {"in_force", s.in_force},
              {"drift", s.drift},
              {"skipped", s.skipped},
              {"cmdline_missing", s.cmdline_missing},
              {"verifications", s.verifications},
              {"verify_interval_ms", config_.verify_interval.count()},
              {"error", s.error}};
    return {200, j.dump()};
  }
  if (rest == "/profiles") {
    if (method != "GET") return {405, error_body("method_not_allowed", "use GET on /v1/tuning/profiles")};
    auto list = list_profiles(config_.options);
    if (!list) return {http_status(list.code()), error_body(to_string(list.code()), list.message())};
    json arr = json::array();
    for (const auto& p : list.value()) {
      arr.push_back({{"name", p.name}, {"path", p.path}, {"description", p.description}, {"includes", p.includes}});
    }
    return {200, arr.dump()};
  }
  if (rest == "/check" || rest == "/verify" || rest == "/diff") {
    if (method != "GET") return {405, error_body("method_not_allowed", "use GET on " + path + "?profile=NAME")};
    std::string profile = query_value(query, "profile");
    if (profile.empty()) profile = config_.profile;
    if (profile.empty()) {
      return {400, error_body("invalid_input", "no profile: pass ?profile=NAME (GET /v1/tuning/profiles lists them)")};
    }
    if (!name_only(profile)) return {400, error_body("invalid_input", kNameOnly)};
    if (rest == "/check") return report_reply(tuning::check(profile, config_.options));
    if (rest == "/verify") return report_reply(tuning::verify(profile, config_.options));
    return report_reply(tuning::diff(profile, config_.options));
  }
  if (rest == "/apply" || rest == "/rollback") {
    if (method != "POST") return {405, error_body("method_not_allowed", "use POST on " + path)};
    if (!admin)
      return {403, error_body("forbidden", "tuning " + rest.substr(1) + " changes the host: needs the admin role")};
    if (rest == "/rollback") return report_reply(tuning::rollback(config_.options));
    json j = body.empty() ? json::object() : json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return {400, error_body("invalid_input", "the body must be a JSON object like {\"profile\": \"latency\"}")};
    }
    std::string profile = config_.profile;
    if (j.contains("profile")) {
      if (!j["profile"].is_string()) return {400, error_body("invalid_input", "\"profile\" must be a string")};
      profile = j["profile"].get<std::string>();
    }
    for (const auto& [key, value] : j.items()) {
      if (key != "profile") return {400, error_body("invalid_input", "unknown field '" + key + "'; only \"profile\"")};
    }
    if (profile.empty()) return {400, error_body("invalid_input", "no profile: send {\"profile\": NAME}")};
    if (!name_only(profile)) return {400, error_body("invalid_input", kNameOnly)};
    return report_reply(tuning::apply(profile, config_.options));
  }
  return {404, error_body("not_found", "no such resource: " + path)};
}

}  // namespace axon::tuning

// TuningService: the control plane's tuning duty as one component, ready to be wired into
// the daemon beside the registry, the pools and the data plane link.
//
//   - at start, optionally applies the configured profile (a snapshot first, as always);
//   - verifies it periodically from the daemon's loop (tick), and keeps the outcome;
//   - exports that outcome as Prometheus metrics (drift as a gauge);
//   - answers the REST resource /v1/tuning (framework-neutral: method, path, query, body in,
//     status and JSON out), so the HTTP layer only routes and authenticates.
//
// Thread-safe: tick() runs on the daemon's thread, handle() and metrics() on API threads;
// apply and rollback are serialised with axonctl by the state directory's lock.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "axon/tuning/tuning.h"

namespace axon::tuning {

struct ServiceConfig {
  std::string profile;          // "" = no profile: verify does nothing, the API still works
  bool apply_at_start = false;  // apply `profile` in start()
  std::chrono::milliseconds verify_interval{std::chrono::seconds(60)};  // 0 = never periodically
  Options options;  // root, state dir, profile dirs, the data plane's config
};

class TuningService {
 public:
  explicit TuningService(ServiceConfig config);

  // Applies the profile when apply_at_start is set, then verifies once. The report of the
  // apply (or of the verify) is returned for the daemon's log; an error is not fatal to a
  // control plane (it serves without tuning) but is kept in state().error.
  TResult<Report> start();

  // Verifies when verify_interval has passed since the last verification; true if it ran.
  bool tick(std::chrono::steady_clock::time_point now);

  struct State {
    std::string profile;                 // the configured profile
    std::optional<std::string> applied;  // what the snapshot says is applied
    bool verified = false;               // at least one verification ran
    bool in_force = false;
    std::size_t drift = 0;            // knobs that differ from the profile
    std::size_t skipped = 0;          // knobs that cannot be set here
    std::size_t cmdline_missing = 0;  // kernel parameters not on the command line
    std::size_t verifications = 0;
    std::string error;  // last verb error, "" when none
  };
  [[nodiscard]] State state() const;

  // Prometheus text (no HELP for the process-level families the daemon writes itself):
  //   axon_tuning_drift{profile}, axon_tuning_in_force{profile}, axon_tuning_skipped{profile},
  //   axon_tuning_cmdline_missing{profile}, axon_tuning_verifications_total, axon_tuning_errors_total
  [[nodiscard]] std::string metrics() const;

  struct HttpReply {
    int status = 200;
    std::string body;  // JSON
  };
  // /v1/tuning and below. `admin` is the caller's role: apply and rollback need it (403
  // otherwise); everything else is a read. Routes:
  //   GET  /v1/tuning                       state, configured and applied profile, last verify
  //   GET  /v1/tuning/profiles              the profiles found
  //   GET  /v1/tuning/{check,verify,diff}?profile=NAME   a report (profile defaults to the configured one)
  //   POST /v1/tuning/apply     {"profile": NAME}         a report (admin)
  //   POST /v1/tuning/rollback  {}                        a report (admin)
  HttpReply handle(const std::string& method, const std::string& path, const std::string& query,
                   const std::string& body, bool admin);

 private:
  void record(const TResult<Report>& report);

  ServiceConfig config_;
  mutable std::mutex mu_;
  State state_;
  std::size_t errors_ = 0;
  std::chrono::steady_clock::time_point last_verify_{};
};

// Maps a verb error to an HTTP status: 404 no such profile, 400 a bad profile or input,
// 409 locked / another namespace, 500 the state directory or the snapshot.
int http_status(TuningError error) noexcept;

}  // namespace axon::tuning

// Fleet: this appliance's membership in a fleet of appliances through etcd (docs/fleet.md).
//
// One job: keep `<prefix>members/<appliance_id>` in etcd, under a lease of [fleet]
// lease_ttl_s, saying how clients reach this appliance (AXP front doors, the API), its
// capacity and its health, and answer what this appliance sees of the fleet (GET /v1/fleet,
// the axon_fleet_* metrics). Its own thread grants the lease, puts the member key, renews the
// lease every ttl/3, re-puts the key when the health changes, and re-registers under a new
// lease when the old one was lost (etcd down longer than the TTL). An unreachable etcd never
// stops the appliance: it is counted, reported and retried.
//
// The control plane gives it a callback for the local view (health, capacity); the callback
// runs on the fleet thread and may take the control plane's lock, so the control plane never
// calls into Fleet while holding that lock except for the non-blocking getters.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "axon/common/result.h"
#include "axon/controlplane/config.h"
#include "axon/fleet/etcd.h"

#include "registry.h"  // DaemonError

namespace axon::controlplane {

class Fleet {
 public:
  struct Local {
    std::string health = "ok";  // ok | degraded (no data plane) | draining
    std::uint32_t workers = 0;  // warm workers
    std::uint32_t lcores = 0;   // the data plane's lcores (0 while it is down)
  };
  using LocalFn = std::function<Local()>;

  // Checks the settings; nothing is contacted yet.
  static Result<std::unique_ptr<Fleet>, DaemonError> create(const FleetSettings& settings, const ApiSettings& api,
                                                            LocalFn local);
  ~Fleet();  // stop(false)
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  void start();
  // Ends the thread. revoke: the member key goes now (the appliance stops serving);
  // otherwise it stays until its lease expires (a restarted control plane takes it over).
  void stop(bool revoke);
  // Re-checks the local view now instead of within a second (e.g. the data plane went away).
  void poke();

  // GET /v1/fleet: the members as etcd has them now, and this appliance's view of etcd.
  // Never fails: an unreachable etcd is part of the answer.
  std::string view_json();
  // The axon_fleet_* families (Prometheus text).
  std::string metrics() const;

  // Counts a failed etcd operation and marks etcd down / a successful one marks it up.
  void etcd_failed(const char* op, const std::string& message);
  void etcd_answered();
  bool etcd_up() const { return etcd_up_.load(); }

  // The revision of the shared configuration this appliance applied (published in its
  // member key; 0 = none).
  void set_config_revision(std::int64_t revision);
  std::int64_t config_revision() const { return config_revision_.load(); }

  const fleet::EtcdClient& etcd() const { return etcd_; }
  const FleetSettings& settings() const { return settings_; }
  const std::string& appliance_id() const { return id_; }

 private:
  Fleet(const FleetSettings& settings, std::string id, std::string api_url, fleet::EtcdClient etcd, LocalFn local);
  void run();
  std::chrono::milliseconds step();  // one pass of the membership loop; how long to sleep
  std::string member_json(const Local& local) const;
  std::string member_key() const { return settings_.prefix + "members/" + id_; }

  const FleetSettings settings_;
  const std::string id_;
  const std::string api_url_;
  fleet::EtcdClient etcd_;
  const LocalFn local_;
  const std::int64_t started_unix_ms_;

  // The fleet thread's own state.
  std::int64_t lease_ = 0;
  std::string published_;  // the member value in etcd under lease_
  std::chrono::steady_clock::time_point next_keepalive_{};
  std::chrono::steady_clock::time_point last_alive_{};  // the lease was last granted or renewed

  mutable std::mutex mu_;  // guards what follows and wakes the thread
  std::condition_variable cv_;
  bool stopping_ = false;
  bool wake_ = false;
  bool registered_ = false;
  std::int64_t lease_shown_ = 0;
  std::string health_shown_;
  std::string last_error_;
  std::int64_t last_error_unix_ms_ = 0;
  std::map<std::string, std::uint64_t> errors_;  // by operation
  std::uint64_t registrations_ = 0;              // member key (re)written under a new lease
  std::thread thread_;

  std::atomic<bool> etcd_up_{false};
  std::atomic<std::int64_t> config_revision_{0};
};

}  // namespace axon::controlplane

// FleetConfig: the fleet's shared configuration in etcd (docs/fleet.md, "Shared configuration").
//
// One job: keep this appliance's tenants and agents in step with `<prefix>config/` and write
// REST changes there with compare-and-swap. Its thread lists the prefix, hands the whole
// list to the control plane (which applies the difference through the same code paths local
// REST writes take), then watches from the next revision and hands over each batch of
// changes; after a broken watch (etcd down, compaction) it lists and watches again, which
// catches up on everything missed. Writes compare the key's mod_revision with the one this
// appliance last applied (0 = must not exist): a lost compare means someone else changed it
// first, and the REST caller gets 409. The applied revision is published in the member key
// and /v1/fleet, and in axon_fleet_config_revision.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "axon/controlplane/model.h"

#include "fleet.h"

namespace axon::controlplane {

class FleetConfig {
 public:
  struct Change {
    enum class Kind { tenant, agent, tuning };
    Kind kind = Kind::tenant;
    std::string name;  // tenant id, agent name, "profile"
    bool deleted = false;
    std::string value;              // JSON (puts)
    std::int64_t mod_revision = 0;  // the key's etcd mod_revision (puts)
  };
  // full: `changes` is everything under the prefix, and what is not in it must go.
  using ApplyFn = std::function<void(const std::vector<Change>& changes, bool full)>;
  // Key suffixes under <prefix>config/ and their values: what this appliance has when the
  // prefix is still empty (the first appliance of a fleet publishes its configuration).
  using SeedFn = std::function<std::vector<std::pair<std::string, std::string>>()>;

  FleetConfig(Fleet& fleet, ApplyFn apply, SeedFn seed);
  ~FleetConfig();  // stop()
  FleetConfig(const FleetConfig&) = delete;
  FleetConfig& operator=(const FleetConfig&) = delete;

  void start();
  void stop();

  // Compare-and-swap writes; each returns the store revision it created. unavailable when
  // etcd cannot be reached; conflict when the key is not at the expected mod_revision: the
  // request's (`pre`, If-Match) when it names one, else the one this appliance applied.
  ApiResult<std::int64_t> put(Change::Kind kind, const std::string& name, const std::string& value, bool must_not_exist,
                              const Precondition& pre = {});
  ApiResult<std::int64_t> remove(Change::Kind kind, const std::string& name, const Precondition& pre = {});
  // Waits until the watch applied `revision` here; false when `timeout` passed first.
  bool wait_applied(std::int64_t revision, std::chrono::milliseconds timeout);
  std::int64_t applied_revision() const;

 private:
  std::string key_of(Change::Kind kind, const std::string& name) const;
  bool parse_key(const std::string& key, Change& change) const;
  // The mod_revision a write compares with (see put), or conflict for If-Match: * on a key
  // this appliance does not have.
  ApiResult<std::int64_t> expected_revision(const std::string& key, const std::string& what,
                                            const Precondition& pre) const;
  void run();
  bool list_and_apply(std::int64_t& revision);  // false: etcd failed (counted)
  void applied(std::int64_t revision);
  void pause(std::chrono::milliseconds how_long);

  Fleet& fleet_;
  const ApplyFn apply_;
  const SeedFn seed_;
  const std::string root_;  // <prefix>config/

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::int64_t> mod_revisions_;  // key -> mod_revision applied here
  std::int64_t applied_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace axon::controlplane

// Agent -> worker routing, swappable at run time without stopping traffic.
//
// A RouteTable is immutable once built. Lcores read the current one through an atomic
// pointer once per burst; a new table is published with one store, and the old one is
// freed only after every lcore has passed a quiescent point (it finished the loop
// iteration that might have read it), so readers never lock and never see a freed table.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/model.h"
#include "axon/common/result.h"
#include "axon/dataplane/config.h"
#include "axon/protocol/axp.h"

namespace axon::dataplane {

inline constexpr std::size_t kMaxWorkersPerAgent = 64;

struct AgentRoute {
  std::uint32_t agent_id = 0;
  std::uint32_t tenant_id = 0;
  std::uint16_t worker_count = 0;
  std::uint16_t workers[kMaxWorkersPerAgent] = {};  // worker slot indices
  model::Scheduling scheduling{};                   // dispatch policy, reservation, admission
};

struct CreditCell;
class CreditRefresher;

// One GCRA bucket (as the XDP program's struct axon_rate), shared by every lcore.
struct RateBucket {
  std::uint64_t interval_ns = 0;  // 0: no limit
  std::uint64_t burst_ns = 0;
  mutable std::atomic<std::uint64_t> tat_ns{0};
};

// A tenant's allowlist, rate limits and credits, enforced in userspace for backends without the
// XDP program (io_uring, DPDK): the same rules as bpf/axon_xdp.bpf.c (source must match one of
// the tenant's prefixes; the class's bucket, then the all-classes bucket; then one credit) and
// the same reasons.
struct TenantPolicy {
  std::uint32_t tenant_id = 0;
  std::vector<model::IpPrefix> prefixes;  // parsed once by the shared strict parse
  RateBucket rates[3];                    // by AXP priority (0, 1), then [2]: all classes
  const CreditCell* credits = nullptr;    // the refresher's cell; nullptr: no credits (unlimited)
};

class RouteTable {
 public:
  // Builds the table from config; worker names resolve to their index in config.workers.
  // With userspace_policy, [xdp] enforce_allowlist/enforce_rate are applied by admit() (for
  // backends where no XDP program does it).
  // With userspace_policy and credits, tenants with credits spend them from the refresher's
  // cells ([xdp] enforce_credits), which must outlive the table.
  static Result<std::unique_ptr<RouteTable>, ConfigError> build(const DataplaneConfig& config,
                                                                bool userspace_policy = false,
                                                                const CreditRefresher* credits = nullptr);

  [[nodiscard]] bool enforces_policy() const noexcept {
    return enforce_allowlist_ || enforce_rate_ || enforce_credits_;
  }
  // ok, prefix_denied, rate_limited or busy_no_credits for a valid request of tenant_id (host
  // order) from the source and of the class in info. For busy_no_credits, *retry_after_us (when
  // given) is what the BUSY reply should say.
  [[nodiscard]] protocol::Reason admit(std::uint32_t tenant_id, const axon_packet_info& info, std::uint64_t now_ns,
                                       std::uint32_t* retry_after_us = nullptr) const noexcept;

  [[nodiscard]] const AgentRoute* find(std::uint32_t agent_id) const noexcept {
    std::uint32_t mask = std::uint32_t(slots_.size() - 1);
    for (std::uint32_t i = hash(agent_id) & mask, probes = 0; probes <= mask; i = (i + 1) & mask, ++probes) {
      std::int32_t at = slots_[i];
      if (at < 0) return nullptr;
      if (routes_[std::size_t(at)].agent_id == agent_id) return &routes_[std::size_t(at)];
    }
    return nullptr;
  }
  // The tenant is configured (has a [[tenants]] entry or came in the control plane's tables).
  [[nodiscard]] bool has_tenant(std::uint32_t tenant_id) const noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return routes_.size(); }
  // Provisional: the data plane waits for its control plane's first tables (it has generic
  // slots and no [[agents]] of its own). Requests it cannot route yet get a retryable
  // ERROR worker_failed instead of unknown_agent/unknown_tenant, which say "do not retry".
  [[nodiscard]] bool provisional() const noexcept { return provisional_; }
  void set_provisional(bool provisional) noexcept { provisional_ = provisional; }
  [[nodiscard]] const std::vector<AgentRoute>& routes() const noexcept { return routes_; }

 private:
  static std::uint32_t hash(std::uint32_t v) noexcept {
    v ^= v >> 16;
    v *= 0x7feb352du;
    v ^= v >> 15;
    return v;
  }
  std::vector<AgentRoute> routes_;
  std::vector<std::int32_t> slots_;                     // open addressing, -1 = empty
  std::vector<std::unique_ptr<TenantPolicy>> tenants_;  // sorted by tenant_id (userspace policy only)
  std::vector<std::uint32_t> tenant_ids_;               // every configured tenant, sorted
  bool enforce_allowlist_ = false;
  bool enforce_rate_ = false;
  bool enforce_credits_ = false;
  bool provisional_ = false;
};

// The published table plus the quiescent-state bookkeeping that makes freeing safe.
class RouteHolder {
 public:
  explicit RouteHolder(std::uint32_t readers);
  ~RouteHolder();

  [[nodiscard]] const RouteTable* current() const noexcept { return current_.load(std::memory_order_acquire); }
  // Reader `id` announces it holds no table pointer from before this call.
  void quiescent(std::uint32_t id) noexcept {
    epochs_[id].value.store(epochs_[id].value.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // Reader `id` stopped reading for good (its lcore exited).
  void offline(std::uint32_t id) noexcept { epochs_[id].offline.store(true, std::memory_order_release); }
  // Publishes `table` and frees the previous one once all online readers moved on (waits at
  // most timeout_ms; past that the old table is leaked rather than freed under a reader).
  void publish(std::unique_ptr<RouteTable> table, int timeout_ms = 1000);

 private:
  struct alignas(128) Epoch {
    std::atomic<std::uint64_t> value{0};
    std::atomic<bool> offline{false};
  };
  std::atomic<const RouteTable*> current_{nullptr};
  std::unique_ptr<Epoch[]> epochs_;
  std::uint32_t readers_;
};

}  // namespace axon::dataplane

// Breakwater-style credits: how many requests each tenant may send in the next refresh
// interval, adjusted from what its workers drain and how long requests queue there.
//
// The data plane's control thread (never an lcore) calls CreditRefresher::tick(); every
// [credits] refresh_us it measures, per tenant with credits_max > 0, the requests its workers
// completed since the last refresh (the drain rate) and the requests waiting in their rings
// (the backlog), estimates the queueing delay as backlog / drain rate, and moves the tenant's
// budget by AIMD (next_budget). The budget is written where requests spend it: the XDP
// program's credit map (BUSY from XDP_TX when it runs out) and the CreditCells the userspace
// backends' RouteTable::admit spends. docs/scheduling.md, "Credits and BUSY from XDP".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "axon/dataplane/config.h"

namespace axon::dataplane {

// One tenant's credits as the userspace backends spend them (RouteTable::admit): rewritten by
// the refresher, decremented by the lcores. Never freed while the data plane runs, so a route
// table may point at it without owning it.
struct alignas(64) CreditCell {
  mutable std::atomic<std::int64_t> credits{0};  // spent through const pointers (route tables)
  std::atomic<std::uint32_t> retry_after_us{0};
};

// What one refresh measured for a tenant.
struct CreditSample {
  std::uint64_t completed = 0;    // requests its workers completed since the last refresh
  std::uint64_t backlog = 0;      // requests waiting in its workers' rings now
  std::uint64_t interval_ns = 0;  // time since the last refresh
};

struct CreditDecision {
  std::uint32_t budget = 0;          // requests allowed in the next interval
  std::uint32_t retry_after_us = 0;  // what a BUSY says until the next refresh
  std::uint64_t delay_us = 0;        // the estimated queueing delay (UINT64_MAX: nothing drains)
};

// The AIMD rule, pure: from the current budget and one sample to the next budget.
//   delay = backlog / (completed / interval)   (0 without backlog; "infinite" when it does not drain)
//   delay <= target: budget + max(1, credits_max * increase_permille / 1000)
//   delay >  target: budget * max(0.5, 1 - decrease_permille / 1000 * (delay - target) / delay)
// always within [credits_min, credits_max]. retry_after_us is the refresh interval plus, above
// the target, the excess delay (capped at 1 s): when a retry can expect a credit.
[[nodiscard]] CreditDecision next_budget(const CreditSettings& settings, const TenantConfig& tenant,
                                         std::uint32_t current, const CreditSample& sample) noexcept;

// Where budgets go besides the CreditCells: the XDP program's credit map (set_credits), or
// nothing on backends without it. Called on the control thread.
using CreditSink = std::function<void(std::uint32_t tenant_id, std::int64_t credits, std::uint32_t retry_after_us)>;
using CreditClear = std::function<void(std::uint32_t tenant_id)>;

// Reads per-worker counters: completed requests (monotonic) and ring depth now, by slot index.
struct WorkerLoad {
  std::uint64_t completed = 0;
  std::uint64_t depth = 0;
};
using WorkerLoadReader = std::function<WorkerLoad(std::size_t worker)>;

class CreditRefresher {
 public:
  CreditRefresher(CreditSettings settings, WorkerLoadReader reader, CreditSink sink, CreditClear clear);

  // New tables: which tenants have credits, and which worker slots serve each (the agents'
  // routes). A tenant that keeps its credits_max keeps its budget; a new or changed one starts
  // at credits_max; one whose credits went off is cleared (unlimited again).
  void configure(const std::vector<TenantConfig>& tenants, const std::vector<AgentConfig>& agents,
                 const std::vector<WorkerConfig>& workers, std::uint64_t now_ns);
  // Refreshes every tenant when refresh_us has passed since the last refresh.
  void tick(std::uint64_t now_ns);
  // When tick() next has work, for the control loop's poll timeout.
  [[nodiscard]] std::uint64_t next_refresh_ns() const noexcept { return next_ns_; }
  // The cell of a tenant with credits (stable address), or nullptr when it has none.
  [[nodiscard]] const CreditCell* cell(std::uint32_t tenant_id) const noexcept;
  [[nodiscard]] std::uint32_t budget(std::uint32_t tenant_id) const noexcept;

 private:
  struct Tenant {
    TenantConfig config;
    std::vector<std::size_t> workers;
    std::uint64_t completed = 0;  // the workers' completed total at the last refresh
    std::uint32_t budget = 0;
    std::uint32_t retry_after_us = 0;
  };
  void publish(std::uint32_t id, const Tenant& tenant);
  std::uint64_t completed_of(const Tenant& tenant) const;

  CreditSettings settings_;
  WorkerLoadReader reader_;
  CreditSink sink_;
  CreditClear clear_;
  std::map<std::uint32_t, Tenant> tenants_;  // credits on only
  std::map<std::uint32_t, std::unique_ptr<CreditCell>> cells_;
  std::uint64_t last_ns_ = 0;
  std::uint64_t next_ns_ = UINT64_MAX;
};

}  // namespace axon::dataplane

// Route table construction and quiescent-state publication.
#include "axon/dataplane/routing.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>

#include "axon/common/clock.h"
#include "axon/common/log.h"
#include "axon/dataplane/credits.h"

namespace axon::dataplane {

namespace {

// GCRA, as the XDP program: one shared word per bucket, compare-and-swap, bounded retries.
bool take(const RateBucket& bucket, std::uint64_t now_ns) noexcept {
  if (bucket.interval_ns == 0) return true;
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::uint64_t tat = bucket.tat_ns.load(std::memory_order_relaxed);
    const std::uint64_t next = (tat > now_ns ? tat : now_ns) + bucket.interval_ns;
    if (next - now_ns > bucket.burst_ns) return false;
    if (bucket.tat_ns.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
  return false;
}

void set_bucket(RateBucket& bucket, std::uint32_t rate_pps, std::uint32_t burst) {
  if (rate_pps == 0) return;
  bucket.interval_ns = 1'000'000'000ull / rate_pps;
  bucket.burst_ns = bucket.interval_ns * std::max<std::uint32_t>(burst, 1);
}

}  // namespace

protocol::Reason RouteTable::admit(std::uint32_t tenant_id, const axon_packet_info& info, std::uint64_t now_ns,
                                   std::uint32_t* retry_after_us) const noexcept {
  auto it =
      std::lower_bound(tenants_.begin(), tenants_.end(), tenant_id,
                       [](const std::unique_ptr<TenantPolicy>& t, std::uint32_t id) { return t->tenant_id < id; });
  const TenantPolicy* tenant = it != tenants_.end() && (*it)->tenant_id == tenant_id ? it->get() : nullptr;
  if (enforce_allowlist_) {
    bool allowed = false;
    if (tenant != nullptr) {
      for (const model::IpPrefix& p : tenant->prefixes) {
        if (p.ip_version == info.ip_version && p.contains(info.src_addr)) {
          allowed = true;
          break;
        }
      }
    }
    if (!allowed) return protocol::Reason::prefix_denied;
  }
  if (tenant == nullptr) return protocol::Reason::ok;
  if (enforce_rate_ && (!take(tenant->rates[info.priority & 1], now_ns) || !take(tenant->rates[2], now_ns))) {
    return protocol::Reason::rate_limited;
  }
  if (enforce_credits_ && tenant->credits != nullptr) {
    // As the XDP program: read first, so an empty counter is not written by every request.
    std::atomic<std::int64_t>& credits = tenant->credits->credits;
    if (credits.load(std::memory_order_relaxed) <= 0 || credits.fetch_sub(1, std::memory_order_relaxed) <= 0) {
      if (retry_after_us != nullptr) *retry_after_us = tenant->credits->retry_after_us.load(std::memory_order_relaxed);
      return protocol::Reason::busy_no_credits;
    }
  }
  return protocol::Reason::ok;
}

bool RouteTable::has_tenant(std::uint32_t tenant_id) const noexcept {
  return std::binary_search(tenant_ids_.begin(), tenant_ids_.end(), tenant_id);
}

Result<std::unique_ptr<RouteTable>, ConfigError> RouteTable::build(const DataplaneConfig& config, bool userspace_policy,
                                                                   const CreditRefresher* credits) {
  std::map<std::string, std::uint16_t> index;
  for (std::size_t i = 0; i < config.workers.size(); ++i) index[config.workers[i].name] = std::uint16_t(i);
  auto table = std::make_unique<RouteTable>();
  for (const AgentConfig& agent : config.agents) {
    AgentRoute route;
    route.agent_id = agent.id;
    route.tenant_id = agent.tenant;
    route.scheduling = agent.scheduling;
    if (agent.workers.size() > kMaxWorkersPerAgent) {
      return make_error(ConfigError::invalid_value, "agent " + std::to_string(agent.id) + " lists more than " +
                                                        std::to_string(kMaxWorkersPerAgent) + " workers");
    }
    for (const std::string& name : agent.workers) {
      auto it = index.find(name);
      if (it == index.end()) {
        return make_error(ConfigError::unknown_reference,
                          "agent " + std::to_string(agent.id) + " names unknown worker '" + name + "'");
      }
      route.workers[route.worker_count++] = it->second;
    }
    table->routes_.push_back(route);
  }
  for (const TenantConfig& t : config.tenants) table->tenant_ids_.push_back(t.id);
  std::sort(table->tenant_ids_.begin(), table->tenant_ids_.end());
  std::size_t slots = std::bit_ceil(std::max<std::size_t>(16, table->routes_.size() * 2));
  table->slots_.assign(slots, -1);
  for (std::size_t i = 0; i < table->routes_.size(); ++i) {
    std::uint32_t mask = std::uint32_t(slots - 1);
    std::uint32_t at = hash(table->routes_[i].agent_id) & mask;
    while (table->slots_[at] >= 0) at = (at + 1) & mask;
    table->slots_[at] = std::int32_t(i);
  }
  if (userspace_policy) {
    table->enforce_allowlist_ = config.xdp.enforce_allowlist;
    table->enforce_rate_ = config.xdp.enforce_rate;
    table->enforce_credits_ = config.xdp.enforce_credits && credits != nullptr;
    for (const TenantConfig& t : config.tenants) {
      auto policy = std::make_unique<TenantPolicy>();
      policy->tenant_id = t.id;
      for (const std::string& text : t.prefixes) {
        auto prefix = model::parse_ip_prefix(text);
        if (!prefix)
          return make_error(ConfigError::invalid_value, "tenant " + std::to_string(t.id) + ": " + prefix.message());
        policy->prefixes.push_back(prefix.value());
      }
      set_bucket(policy->rates[AXP_PRIO_INTERACTIVE], t.interactive_rate_pps, t.interactive_burst);
      set_bucket(policy->rates[AXP_PRIO_BACKGROUND], t.background_rate_pps, t.background_burst);
      set_bucket(policy->rates[2], t.rate_pps, t.burst);
      if (credits != nullptr) policy->credits = credits->cell(t.id);
      table->tenants_.push_back(std::move(policy));
    }
    std::sort(table->tenants_.begin(), table->tenants_.end(),
              [](const auto& a, const auto& b) { return a->tenant_id < b->tenant_id; });
  }
  return table;
}

RouteHolder::RouteHolder(std::uint32_t readers) : epochs_(new Epoch[readers]), readers_(readers) {}

RouteHolder::~RouteHolder() {
  delete current_.load(std::memory_order_acquire);
}

void RouteHolder::publish(std::unique_ptr<RouteTable> table, int timeout_ms) {
  const RouteTable* old = current_.exchange(table.release(), std::memory_order_acq_rel);
  if (old == nullptr) return;
  std::vector<std::uint64_t> seen(readers_);
  for (std::uint32_t i = 0; i < readers_; ++i) seen[i] = epochs_[i].value.load(std::memory_order_acquire);
  const std::uint64_t deadline = monotonic_ns() + std::uint64_t(timeout_ms) * 1'000'000u;
  for (;;) {
    bool all_moved = true;
    for (std::uint32_t i = 0; i < readers_; ++i) {
      if (!epochs_[i].offline.load(std::memory_order_acquire) &&
          epochs_[i].value.load(std::memory_order_acquire) == seen[i]) {
        all_moved = false;
      }
    }
    if (all_moved) {
      delete old;
      return;
    }
    if (monotonic_ns() > deadline) {
      AXON_LOG_WARN("routing",
                    "an lcore did not pass a quiescent point within %d ms; keeping the old route table "
                    "allocated (a few KiB) rather than risk freeing it under a reader",
                    timeout_ms);
      return;
    }
    usleep(100);
  }
}

}  // namespace axon::dataplane

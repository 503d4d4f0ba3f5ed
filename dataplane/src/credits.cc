// Credit refresh: the AIMD rule and its bookkeeping per tenant (see credits.h).
#include "axon/dataplane/credits.h"

#include <algorithm>
#include <map>
#include <set>

namespace axon::dataplane {

namespace {

constexpr std::uint64_t kNoDrain = UINT64_MAX;
constexpr std::uint64_t kMaxRetryUs = 1'000'000;

std::uint64_t estimate_delay_us(const CreditSample& s) noexcept {
  if (s.backlog == 0) return 0;
  if (s.completed == 0 || s.interval_ns == 0) return kNoDrain;
  // backlog / (completed / interval), in µs; 128-bit so a long interval cannot overflow.
  const auto ns = static_cast<unsigned __int128>(s.backlog) * s.interval_ns / s.completed;
  return std::uint64_t(std::min<unsigned __int128>(ns / 1000, kNoDrain - 1));
}

}  // namespace

CreditDecision next_budget(const CreditSettings& settings, const TenantConfig& tenant, std::uint32_t current,
                           const CreditSample& sample) noexcept {
  CreditDecision d;
  const std::uint64_t target =
      tenant.credit_delay_target_us != 0 ? tenant.credit_delay_target_us : settings.target_delay_us;
  const std::uint64_t ceiling = tenant.credits_max;
  const std::uint64_t floor = std::min<std::uint64_t>(tenant.credits_min, ceiling);
  d.delay_us = estimate_delay_us(sample);
  std::uint64_t next = current;
  if (d.delay_us <= target) {
    next += std::max<std::uint64_t>(1, ceiling * settings.increase_permille / 1000);
    d.retry_after_us = settings.refresh_us;
  } else {
    // factor = 1 - beta * (delay - target) / delay, at least 1/2; in per mille.
    const std::uint64_t excess = d.delay_us - target;
    const std::uint64_t cut =
        d.delay_us == kNoDrain ? 500 : std::min<std::uint64_t>(500, settings.decrease_permille * excess / d.delay_us);
    next = next * (1000 - cut) / 1000;
    d.retry_after_us = std::uint32_t(std::min<std::uint64_t>(settings.refresh_us + excess, kMaxRetryUs));
  }
  d.budget = std::uint32_t(std::clamp(next, floor, ceiling));
  return d;
}

CreditRefresher::CreditRefresher(CreditSettings settings, WorkerLoadReader reader, CreditSink sink, CreditClear clear)
    : settings_(settings), reader_(std::move(reader)), sink_(std::move(sink)), clear_(std::move(clear)) {}

std::uint64_t CreditRefresher::completed_of(const Tenant& tenant) const {
  std::uint64_t total = 0;
  for (std::size_t w : tenant.workers) total += reader_(w).completed;
  return total;
}

void CreditRefresher::configure(const std::vector<TenantConfig>& tenants, const std::vector<AgentConfig>& agents,
                                const std::vector<WorkerConfig>& workers, std::uint64_t now_ns) {
  std::map<std::string, std::size_t> slot_index;
  for (std::size_t i = 0; i < workers.size(); ++i) slot_index[workers[i].name] = i;
  std::map<std::uint32_t, std::set<std::size_t>> served_by;
  for (const AgentConfig& agent : agents) {
    for (const std::string& name : agent.workers) {
      if (auto it = slot_index.find(name); it != slot_index.end()) served_by[agent.tenant].insert(it->second);
    }
  }
  std::map<std::uint32_t, Tenant> next;
  for (const TenantConfig& t : tenants) {
    if (t.credits_max == 0) continue;
    Tenant entry;
    entry.config = t;
    const auto& slots = served_by[t.id];
    entry.workers.assign(slots.begin(), slots.end());
    entry.completed = completed_of(entry);
    auto before = tenants_.find(t.id);
    const bool same = before != tenants_.end() && before->second.config.credits_max == t.credits_max &&
                      before->second.config.credits_min == t.credits_min;
    entry.budget = same ? before->second.budget : t.credits_max;
    entry.retry_after_us = same ? before->second.retry_after_us : settings_.refresh_us;
    auto& cell = cells_[t.id];
    if (!cell) cell = std::make_unique<CreditCell>();
    if (!same) publish(t.id, entry);
    next.emplace(t.id, std::move(entry));
  }
  for (const auto& [id, old] : tenants_) {
    if (!next.contains(id) && clear_) clear_(id);
  }
  tenants_ = std::move(next);
  if (!tenants_.empty() && next_ns_ == UINT64_MAX) {
    last_ns_ = now_ns;
    next_ns_ = now_ns + std::uint64_t(settings_.refresh_us) * 1000;
  } else if (tenants_.empty()) {
    next_ns_ = UINT64_MAX;
  }
}

void CreditRefresher::publish(std::uint32_t id, const Tenant& tenant) {
  if (auto it = cells_.find(id); it != cells_.end()) {
    it->second->retry_after_us.store(tenant.retry_after_us, std::memory_order_relaxed);
    it->second->credits.store(tenant.budget, std::memory_order_release);
  }
  if (sink_) sink_(id, tenant.budget, tenant.retry_after_us);
}

void CreditRefresher::tick(std::uint64_t now_ns) {
  if (now_ns < next_ns_) return;
  const std::uint64_t interval = now_ns - last_ns_;
  for (auto& [id, tenant] : tenants_) {
    CreditSample sample;
    sample.interval_ns = interval;
    std::uint64_t completed = 0;
    for (std::size_t w : tenant.workers) {
      const WorkerLoad load = reader_(w);
      completed += load.completed;
      sample.backlog += load.depth;
    }
    sample.completed = completed >= tenant.completed ? completed - tenant.completed : 0;
    tenant.completed = completed;
    const CreditDecision d = next_budget(settings_, tenant.config, tenant.budget, sample);
    tenant.budget = d.budget;
    tenant.retry_after_us = d.retry_after_us;
    publish(id, tenant);
  }
  last_ns_ = now_ns;
  // From now, not from the missed deadline: a stalled control thread does not refresh in a burst.
  next_ns_ = now_ns + std::uint64_t(settings_.refresh_us) * 1000;
}

const CreditCell* CreditRefresher::cell(std::uint32_t tenant_id) const noexcept {
  if (!tenants_.contains(tenant_id)) return nullptr;
  auto it = cells_.find(tenant_id);
  return it == cells_.end() ? nullptr : it->second.get();
}

std::uint32_t CreditRefresher::budget(std::uint32_t tenant_id) const noexcept {
  auto it = tenants_.find(tenant_id);
  return it == tenants_.end() ? 0 : it->second.budget;
}

}  // namespace axon::dataplane

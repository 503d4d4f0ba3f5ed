// ControlPlane's side of the autoscaler (autoscaler.h): one sample per pool per scale
// interval from the data plane's view of the workers, the decisions applied to the pools,
// counted and logged, and the scaling view for the API and the metrics.
#include <algorithm>
#include <optional>
#include <string>

#include "axon/common/log.h"

#include "control_plane.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "controlplane";

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The queueing delay the data plane publishes for the worker in slot `slot` (pid `pid`), in
// us; nullopt while it has no drain rate for it yet (its 0 then means "unknown") or when its
// stats segment is not mapped (an older data plane): the autoscaler estimates instead.
std::optional<std::uint64_t> published_delay_us(const dataplane::StatsReader* stats, const std::string& slot,
                                                pid_t pid) {
  if (stats == nullptr) return std::nullopt;
  for (std::uint32_t i = 0; i < stats->worker_count(); ++i) {
    const auto& w = stats->worker(i);
    if (slot != w.name || w.pid.load(std::memory_order_relaxed) != pid) continue;
    if (stats->worker_counter(i, &dataplane::WorkerStats::drain_rate) == 0) return std::nullopt;
    return stats->worker_counter(i, &dataplane::WorkerStats::queue_delay_ns) / 1000;
  }
  return std::nullopt;
}

}  // namespace

AutoscalerPolicy autoscaler_policy(const PoolSettings& pools) {
  AutoscalerPolicy p;
  p.up_sustain = pools.scale_up_sustain;
  p.up_cooldown = pools.scale_up_cooldown;
  p.down_idle = pools.scale_down_idle;
  p.down_cooldown = pools.scale_down_cooldown;
  p.down_ratio = pools.scale_down_delay_ratio;
  return p;
}

// The agent's own target (which also drives the data plane's admission control), or the
// [pools] default for agents that set none (0: no delay-based admission).
std::uint64_t ControlPlane::queue_delay_target_us(const AgentSpec& agent) const {
  return agent.scheduling.queue_delay_target_us > 0 ? agent.scheduling.queue_delay_target_us
                                                    : config_.pools.queue_delay_target_us;
}

// The pool's attached, non-draining workers, as the data plane last reported them.
PoolSample ControlPlane::pool_sample(const AgentSpec& agent, const Pool& pool, Clock::time_point now) const {
  PoolSample sample;
  sample.now = now;
  sample.unix_ms = unix_now_ms();
  sample.size = pool.target;
  sample.min = agent.pool.min;
  sample.max = agent.pool.max;
  sample.target_delay_us = queue_delay_target_us(agent);
  for (const auto& [id, w] : workers_) {
    if (w.agent != agent.name || w.draining) continue;
    const auto* slot = link_.slot(w.slot);
    if (slot == nullptr || slot->state != "alive") continue;
    sample.workers.push_back(WorkerSample{id, slot->depth, slot->inflight, slot->completed,
                                          published_delay_us(link_.stats(), w.slot, slot->pid)});
  }
  return sample;
}

void ControlPlane::apply_scale(const std::string& agent, Pool& pool, const ScaleDecision& decision) {
  pool.target = decision.to;
  ++scale_events_[{agent, decision.direction, decision.reason}];
  AXON_LOG_INFO(kLog, "agent %s: scaling %s to %u (%s): %s", agent.c_str(), decision.direction.c_str(), decision.to,
                decision.reason.c_str(), decision.message.c_str());
  if (decision.worker.empty()) return;
  // The idle worker goes first; reconcile_pools would otherwise drain the newest.
  auto it = workers_.find(decision.worker);
  if (it != workers_.end()) begin_drain(it->second);
}

void ControlPlane::scale_pools() {
  const auto now = Clock::now();
  if (now < next_scale_) return;
  next_scale_ = now + config_.pools.scale_interval;
  // Without a link there is no measurement; the pools keep their size meanwhile.
  if (!link_.connected()) return;
  for (auto& [name, pool] : pools_) {
    const auto agent = registry_.agents().find(name);
    if (agent == registry_.agents().end() || pool.deleting) continue;
    if (auto decision = autoscaler_.observe(name, pool_sample(agent->second, pool, now))) {
      apply_scale(name, pool, *decision);
    }
  }
}

ScalingStatus ControlPlane::scaling_status(const AgentSpec& spec) const {
  ScalingStatus s;
  s.agent = spec.name;
  const auto pool = pools_.find(spec.name);
  s.target = pool != pools_.end() ? pool->second.target : 0;
  s.min = spec.pool.min;
  s.max = spec.pool.max;
  s.queue_delay_target_us = queue_delay_target_us(spec);
  const ScalingView view = autoscaler_.view(spec.name);
  s.queue_delay_us = view.delay_us;
  s.delay_source = to_string(view.source);
  for (const auto& d : view.decisions) {
    s.decisions.push_back(ScaleEvent{d.at_ms, d.from, d.to, d.direction, d.reason, d.delay_us, d.target_us,
                                     to_string(d.source), d.worker, d.message});
  }
  return s;
}

ApiResult<ScalingStatus> ControlPlane::get_scaling(const std::string& name) {
  std::lock_guard lock(mutex_);
  const auto spec = find_agent(name);
  if (!spec) return spec.error();
  return scaling_status(*spec.value());
}

}  // namespace axon::controlplane

// Autoscaler: queueing-delay measurement and the scale decisions (see autoscaler.h).
#include "autoscaler.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace axon::controlplane {

using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

std::int64_t ms_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return duration_cast<milliseconds>(to - from).count();
}

}  // namespace

const char* to_string(DelaySource source) noexcept {
  return source == DelaySource::published ? "published" : "estimated";
}

// The pool's queueing delay: the mean of what the data plane publishes per worker when
// every worker has it; otherwise Little's law over the pool, (depth + in flight) / drain
// rate, the rate from the completed counters between two samples. Requests waiting while
// nothing completed have waited at least since the last completion.
Autoscaler::Measure Autoscaler::measure(AgentTrack& track, const PoolSample& sample) {
  const double dt_s = track.last_sample ? duration<double>(sample.now - *track.last_sample).count() : 0.0;
  std::uint64_t queued = 0, published_sum = 0;
  double rate = 0;
  bool all_published = !sample.workers.empty();
  bool completed_any = false;
  std::map<std::string, WorkerTrack> seen;
  for (const auto& w : sample.workers) {
    queued += w.depth + w.inflight;
    if (w.queue_delay_us) {
      published_sum += *w.queue_delay_us;
    } else {
      all_published = false;
    }
    WorkerTrack t{w.completed, sample.now};  // a worker seen for the first time counts as active now
    if (auto it = track.workers.find(w.id); it != track.workers.end()) {
      t.last_active = it->second.last_active;
      // A smaller counter is a new process in the slot (respawn): active, no rate this time.
      if (w.completed != it->second.completed) t.last_active = sample.now;
      if (w.completed > it->second.completed && dt_s > 0) {
        rate += static_cast<double>(w.completed - it->second.completed) / dt_s;
        completed_any = true;
      }
    }
    if (w.depth > 0 || w.inflight > 0) t.last_active = sample.now;
    seen.emplace(w.id, t);
  }
  track.workers = std::move(seen);
  if (completed_any || !track.last_completion) track.last_completion = sample.now;
  const bool first = !track.last_sample;
  track.last_sample = sample.now;

  Measure m;
  if (all_published) {
    m.source = DelaySource::published;
    m.delay_us = published_sum / sample.workers.size();
  } else if (rate > 0) {
    m.delay_us = static_cast<std::uint64_t>(std::llround(static_cast<double>(queued) / rate * 1e6));
  } else if (queued > 0 && !first) {
    m.delay_us = static_cast<std::uint64_t>(ms_between(*track.last_completion, sample.now)) * 1000;
  }
  if (all_published || !first) {
    track.view.delay_us = m.delay_us;
    track.view.source = m.source;
  }
  return m;
}

ScaleDecision Autoscaler::record(AgentTrack& track, const PoolSample& sample, const Measure& m, std::uint32_t to,
                                 const char* reason, std::string worker) {
  ScaleDecision d;
  d.at_ms = sample.unix_ms;
  d.from = sample.size;
  d.to = to;
  d.direction = to > sample.size ? "up" : "down";
  d.reason = reason;
  d.delay_us = m.delay_us;
  d.target_us = sample.target_delay_us;
  d.source = m.source;
  d.worker = std::move(worker);
  const std::string delay = "queueing delay " + std::to_string(m.delay_us) + " us (" + to_string(m.source) + ")";
  const std::string sizes = ": " + std::to_string(d.from) + " -> " + std::to_string(d.to);
  if (d.reason == "queue_delay") {
    d.message = delay + " above the target " + std::to_string(d.target_us) + " us for at least " +
                std::to_string(policy_.up_sustain.count()) + " ms" + sizes;
  } else if (d.reason == "idle") {
    const auto idle = track.workers.at(d.worker).last_active;
    d.message =
        "worker " + d.worker + " idle for " + std::to_string(ms_between(idle, sample.now)) + " ms, " + delay + sizes;
  } else {
    d.message = std::string("outside ") + (d.reason == "min" ? "min_workers " : "max_workers ") +
                std::to_string(d.reason == "min" ? sample.min : sample.max) + sizes;
  }
  track.view.decisions.push_back(d);
  while (track.view.decisions.size() > std::max<std::size_t>(policy_.history, 1)) track.view.decisions.pop_front();
  track.last_change = sample.now;
  return d;
}

std::optional<ScaleDecision> Autoscaler::clamp(AgentTrack& track, const PoolSample& sample, const Measure& m) {
  if (sample.size < sample.min) return record(track, sample, m, sample.min, "min", "");
  if (sample.size > sample.max) return record(track, sample, m, sample.max, "max", "");
  return std::nullopt;
}

std::optional<ScaleDecision> Autoscaler::decide(AgentTrack& track, const PoolSample& sample, const Measure& m) {
  if (auto bounded = clamp(track, sample, m)) return bounded;
  const auto now = sample.now;
  // While a worker of the pool has not attached yet, the measurement has not seen the
  // capacity it adds: the sustain period starts once it has.
  const bool above =
      !sample.workers.empty() && sample.workers.size() >= sample.size && m.delay_us > sample.target_delay_us;
  if (!above) {
    track.above_since.reset();
  } else if (!track.above_since) {
    track.above_since = now;
  }
  // Up: above the target for the whole sustain period (growing again while a worker still
  // starts would overshoot).
  if (above && now - *track.above_since >= policy_.up_sustain && sample.size < sample.max &&
      (!track.last_up || now - *track.last_up >= policy_.up_cooldown)) {
    track.above_since.reset();
    track.last_up = now;
    return record(track, sample, m, sample.size + 1, "queue_delay", "");
  }
  // Down: well below the target (the hysteresis band) and one worker idle long enough.
  const double low = static_cast<double>(sample.target_delay_us) * policy_.down_ratio;
  if (sample.size <= sample.min || static_cast<double>(m.delay_us) > low) return std::nullopt;
  if (track.last_change && now - *track.last_change < policy_.down_cooldown) return std::nullopt;
  const WorkerSample* idlest = nullptr;
  for (const auto& w : sample.workers) {
    if (w.depth > 0 || w.inflight > 0) continue;
    if (idlest == nullptr || track.workers.at(w.id).last_active < track.workers.at(idlest->id).last_active) idlest = &w;
  }
  if (idlest == nullptr || now - track.workers.at(idlest->id).last_active < policy_.down_idle) return std::nullopt;
  return record(track, sample, m, sample.size - 1, "idle", idlest->id);
}

std::optional<ScaleDecision> Autoscaler::observe(const std::string& agent, const PoolSample& sample) {
  AgentTrack& track = agents_[agent];
  const Measure m = measure(track, sample);
  return decide(track, sample, m);
}

std::optional<ScaleDecision> Autoscaler::bound(const std::string& agent, const PoolSample& sample) {
  AgentTrack& track = agents_[agent];
  Measure m;
  if (track.view.delay_us) m = Measure{*track.view.delay_us, track.view.source};
  return clamp(track, sample, m);
}

ScalingView Autoscaler::view(const std::string& agent) const {
  auto it = agents_.find(agent);
  return it == agents_.end() ? ScalingView{} : it->second.view;
}

void Autoscaler::forget(const std::string& agent) {
  agents_.erase(agent);
}

}  // namespace axon::controlplane

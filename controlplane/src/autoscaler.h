// Autoscaler: sizes each agent's warm pool from its queueing delay (docs/scheduling.md,
// "Warm pools and autoscaling"). Pure decision logic: the daemon feeds it one sample per
// agent per scale interval (the workers' ring depth, in-flight and completed counters, and
// the queueing delay the data plane publishes when it does) and applies what it decides.
// No processes, no clock of its own, no I/O: the tests drive it with fake samples.
//
// Rules, per agent (every threshold from AutoscalerPolicy or the agent's target):
// - up by one when the measured delay stays above the agent's target for up_sustain, at
//   most once per up_cooldown, up to max;
// - down by one (draining the idlest worker) when a worker has been idle for down_idle and
//   the delay is at most target * down_ratio, at most once per down_cooldown after any
//   change, down to min;
// - back within [min, max] at once when an operator moves the bounds.
// The separate up/down thresholds and cool-downs are the hysteresis that keeps a pool
// from flapping around its target.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace axon::controlplane {

struct AutoscalerPolicy {
  std::chrono::milliseconds up_sustain{1000};
  std::chrono::milliseconds up_cooldown{2000};
  std::chrono::milliseconds down_idle{30000};
  std::chrono::milliseconds down_cooldown{10000};
  double down_ratio = 0.5;
  std::size_t history = 32;  // decisions kept per agent
};

// One attached, non-draining worker as the data plane reports it.
struct WorkerSample {
  std::string id;
  std::uint64_t depth = 0;                      // requests in its rings, not taken yet
  std::uint64_t inflight = 0;                   // handed to it, not answered yet
  std::uint64_t completed = 0;                  // counter since its slot was claimed
  std::optional<std::uint64_t> queue_delay_us;  // published by the data plane, when it does
};

struct PoolSample {
  std::chrono::steady_clock::time_point now;
  std::int64_t unix_ms = 0;  // for the decision's timestamp
  std::uint32_t size = 0;    // the pool's current target
  std::uint32_t min = 0, max = 0;
  std::uint64_t target_delay_us = 0;  // the agent's queue_delay_target_us
  std::vector<WorkerSample> workers;
};

// Where a measured delay came from.
enum class DelaySource { published, estimated };
const char* to_string(DelaySource source) noexcept;

struct ScaleDecision {
  std::int64_t at_ms = 0;  // unix ms
  std::uint32_t from = 0, to = 0;
  std::string direction;  // "up" | "down"
  std::string reason;     // "queue_delay" | "idle" | "min" | "max"
  std::uint64_t delay_us = 0;
  std::uint64_t target_us = 0;
  DelaySource source = DelaySource::estimated;
  std::string worker;   // down on "idle": the worker to drain
  std::string message;  // one line for the log and the API
};

// The last measurement of one agent, for the API.
struct ScalingView {
  std::optional<std::uint64_t> delay_us;  // none before two samples
  DelaySource source = DelaySource::estimated;
  std::deque<ScaleDecision> decisions;  // oldest first
};

class Autoscaler {
 public:
  explicit Autoscaler(AutoscalerPolicy policy) : policy_(policy) {}

  // One sample of `agent`'s pool; a decision when its size should change.
  std::optional<ScaleDecision> observe(const std::string& agent, const PoolSample& sample);
  // Only the min/max rule, without a measurement: for bounds an operator just moved.
  std::optional<ScaleDecision> bound(const std::string& agent, const PoolSample& sample);
  ScalingView view(const std::string& agent) const;
  void forget(const std::string& agent);
  const AutoscalerPolicy& policy() const { return policy_; }

 private:
  struct WorkerTrack {
    std::uint64_t completed = 0;
    std::chrono::steady_clock::time_point last_active;
  };
  struct AgentTrack {
    std::optional<std::chrono::steady_clock::time_point> last_sample;
    std::map<std::string, WorkerTrack> workers;
    std::optional<std::chrono::steady_clock::time_point> above_since;
    std::optional<std::chrono::steady_clock::time_point> last_change;
    std::optional<std::chrono::steady_clock::time_point> last_up;
    std::optional<std::chrono::steady_clock::time_point> last_completion;
    ScalingView view;
  };
  struct Measure {
    std::uint64_t delay_us = 0;
    DelaySource source = DelaySource::estimated;
  };
  Measure measure(AgentTrack& track, const PoolSample& sample);
  std::optional<ScaleDecision> decide(AgentTrack& track, const PoolSample& sample, const Measure& m);
  std::optional<ScaleDecision> clamp(AgentTrack& track, const PoolSample& sample, const Measure& m);
  ScaleDecision record(AgentTrack& track, const PoolSample& sample, const Measure& m, std::uint32_t to,
                       const char* reason, std::string worker);

  AutoscalerPolicy policy_;
  std::map<std::string, AgentTrack> agents_;
};

}  // namespace axon::controlplane

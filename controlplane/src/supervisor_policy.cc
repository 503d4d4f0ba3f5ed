// The supervisor's pure state machines: per-member exponential backoff and the per-group
// circuit breaker (see supervisor.h). No processes and no clock here: callers pass the
// times, so the tests drive them with a fake clock.
#include <algorithm>
#include <cmath>
#include <limits>

#include "axon/controlplane/supervisor.h"

namespace axon::controlplane {

using std::chrono::milliseconds;

// --- pure state machines --------------------------------------------------------------

milliseconds Backoff::next_delay(SteadyTime started, SteadyTime crashed) {
  // `crashed > started`: a failed spawn (no run at all) never ends a streak, even with
  // stable_after = 0, so a spawn that keeps failing cannot respawn at once forever.
  if (crashed > started && crashed - started >= policy_.stable_after) streak_ = 0;
  if (streak_ < std::numeric_limits<std::uint32_t>::max()) ++streak_;
  // A first crash is not a loop: waiting would only keep the pool short of a worker. Backoff
  // starts at the second crash in a row (crash_loop in docs/scheduling.md).
  if (streak_ == 1) return milliseconds(0);
  double delay = static_cast<double>(policy_.initial.count()) * std::pow(policy_.multiplier, streak_ - 2);
  double cap = static_cast<double>(policy_.max.count());
  if (delay >= cap || !std::isfinite(delay)) delay = cap;
  return milliseconds(static_cast<std::int64_t>(delay));
}

void CircuitBreaker::prune(SteadyTime now) {
  while (!crashes_.empty() && crashes_.front() <= now - policy_.window) crashes_.pop_front();
}

bool CircuitBreaker::record_crash(SteadyTime now) {
  prune(now);
  crashes_.push_back(now);
  if (state_ == BreakerState::half_open ||
      (state_ == BreakerState::closed && policy_.failures > 0 && crashes_.size() >= policy_.failures)) {
    state_ = BreakerState::open;
    opened_at_ = now;
    return true;
  }
  return false;
}

std::optional<SteadyTime> CircuitBreaker::half_open_at() const {
  if (state_ != BreakerState::open) return std::nullopt;
  return opened_at_ + policy_.cooldown;
}

void CircuitBreaker::close() {
  state_ = BreakerState::closed;
  crashes_.clear();
}

void CircuitBreaker::reset() {
  close();
}

std::uint64_t CircuitBreaker::crashes_in_window(SteadyTime now) const {
  return static_cast<std::uint64_t>(
      std::count_if(crashes_.begin(), crashes_.end(), [&](SteadyTime t) { return t > now - policy_.window; }));
}

const char* to_string(MemberPhase phase) noexcept {
  switch (phase) {
    case MemberPhase::starting: return "starting";
    case MemberPhase::running: return "running";
    case MemberPhase::backoff: return "backoff";
    case MemberPhase::stopping: return "stopping";
    case MemberPhase::stopped: return "stopped";
    case MemberPhase::blocked: return "blocked";
  }
  return "unknown";
}

const char* to_string(BreakerState state) noexcept {
  switch (state) {
    case BreakerState::closed: return "closed";
    case BreakerState::open: return "open";
    case BreakerState::half_open: return "half_open";
  }
  return "unknown";
}

}  // namespace axon::controlplane

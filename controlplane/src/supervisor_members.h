// What the Supervisor keeps per member and per group; private to supervisor*.cc.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "axon/controlplane/supervisor.h"

namespace axon::controlplane {

// Milliseconds from now until `when`, 0 if it has passed.
inline std::int64_t ms_until(SteadyTime when, SteadyTime now) {
  return std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count());
}

struct Supervisor::Member {
  Member(std::string i, std::string g, SpawnSpec s, BackoffPolicy policy)
      : id(std::move(i)), group(std::move(g)), spec(std::move(s)), backoff(policy) {}
  std::string id, group;
  SpawnSpec spec;
  MemberPhase phase = MemberPhase::starting;
  pid_t pid = 0;
  int pidfd = -1;
  std::uint64_t token = 0;  // epoll data of the current pidfd
  bool adopted = false;
  std::uint64_t restarts = 0;
  std::int64_t started_at_ms = 0;
  SteadyTime started{};
  std::string last_exit;
  Backoff backoff;
  std::chrono::milliseconds last_delay{0};  // chosen at the last crash (0 = respawned at once)
  std::optional<SteadyTime> due;            // backoff: respawn; stopping: SIGKILL
  bool kill_requested = false;              // kill(): restart at once, not a crash
};

struct Supervisor::Group {
  explicit Group(BreakerPolicy policy) : breaker(policy) {}
  CircuitBreaker breaker;
  std::uint64_t restarts = 0;
  std::string last_exit;
  std::string trial;                   // half_open: the member on trial
  std::optional<SteadyTime> close_at;  // half_open: trial stable by then -> closed
};

}  // namespace axon::controlplane

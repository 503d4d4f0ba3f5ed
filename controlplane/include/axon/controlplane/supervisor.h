// Supervisor: keeps named worker processes alive, grouped (one group per agent), with
// exponential backoff per member and a circuit breaker per group.
//
// Any exit not requested by stop() is a crash. A first crash (the process had run
// `stable_after`, or the member never crashed) is respawned at once, in the same process()
// call that saw the exit: a pool is back at its size as fast as a spawn. Only repeated quick
// crashes of one member (a crash loop) wait, for an exponential backoff.
// `failures` crashes of a group within `window` open the group's breaker: nothing of that
// group is respawned until `cooldown`; then one member is respawned as a trial
// (half_open); if it stays up `stable_after` the breaker closes and the rest follow, if it
// crashes the breaker opens again. So a binary that exits at once cannot fork-bomb.
//
// Exits are seen through pidfds in an epoll set (fd()); timers through a timerfd in the same
// set. Not thread-safe: the daemon calls it from one thread (or under its lock). It stops
// nothing on destruction: workers outlive the daemon by design and are adopted again.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"
#include "axon/controlplane/model.h"
#include "axon/controlplane/spawn.h"

namespace axon::controlplane {

class CgroupDriver;

struct BackoffPolicy {
  std::chrono::milliseconds initial{100}, max{10000};
  double multiplier = 2.0;
  std::chrono::milliseconds stable_after{10000};  // running this long resets the backoff
};

struct BreakerPolicy {
  std::uint32_t failures = 5;
  std::chrono::milliseconds window{30000};
  std::chrono::milliseconds cooldown{15000};
};

// running from the moment the process has exec'd (or was adopted); `starting` and
// `stopped` are never reported by the supervisor (stopped members are removed) and are
// left for callers' own views.
enum class MemberPhase { starting, running, backoff, stopping, stopped, blocked /* breaker open */ };

const char* to_string(MemberPhase phase) noexcept;
const char* to_string(BreakerState state) noexcept;

struct MemberStatus {
  std::string id, group;
  pid_t pid = 0;  // 0 while in backoff or blocked
  MemberPhase phase = MemberPhase::starting;
  std::uint64_t restarts = 0;
  std::int64_t started_at_ms = 0;           // unix ms of the current process's spawn (or adoption)
  std::string last_exit;                    // "exited with status 1", "killed by signal 9 (SIGKILL)"
  bool adopted = false;                     // the current process was adopted, not spawned by us
  std::optional<std::int64_t> retry_in_ms;  // in backoff: until the respawn
  std::uint32_t crash_streak = 0;           // quick crashes in a row (1 = a first crash); 0 after a stable run
  std::int64_t last_respawn_delay_ms = 0;   // the delay chosen at the last crash (backoff_initial for a first)
};

struct GroupStatus {
  std::string group;
  BreakerState breaker = BreakerState::closed;
  std::uint64_t crashes_in_window = 0;
  std::optional<std::int64_t> retry_in_ms;  // while open: until half_open
  std::uint64_t restarts = 0;
  std::string last_exit;
};

struct MemberEvent {
  enum class Kind {
    spawned,
    exited,
    respawn_scheduled,
    breaker_opened,
    breaker_half_open,
    breaker_closed,
    spawn_failed,
    stopped
  } kind;
  std::string id, group;  // id is "" for breaker events
  pid_t pid = 0;
  std::string detail;
};

using SteadyTime = std::chrono::steady_clock::time_point;
using SupervisorClock = std::function<SteadyTime()>;  // CLOCK_MONOTONIC unless a test fakes it

// Per-member crash-loop backoff. The n-th quick crash in a row (n >= 1; the first crash of
// a streak is n = 1) gets initial * multiplier^(n-1), capped at max. A process that ran at
// least stable_after before crashing starts a new streak. Pure: the caller passes the times.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy) : policy_(policy) {}
  // Delay before respawning a process that started at `started` and crashed at `crashed`.
  std::chrono::milliseconds next_delay(SteadyTime started, SteadyTime crashed);
  void reset() { streak_ = 0; }
  std::uint32_t streak() const { return streak_; }  // quick crashes in a row, this one included

 private:
  BackoffPolicy policy_;
  std::uint32_t streak_ = 0;
};

// Per-group circuit breaker. Pure: the caller passes the times and drives half_open/close.
class CircuitBreaker {
 public:
  explicit CircuitBreaker(BreakerPolicy policy) : policy_(policy) {}
  // Counts a crash; returns true when it opened the breaker (from closed or half_open).
  bool record_crash(SteadyTime now);
  BreakerState state() const { return state_; }
  // While open: when the cooldown ends.
  std::optional<SteadyTime> half_open_at() const;
  void to_half_open() { state_ = BreakerState::half_open; }
  void close();  // half_open -> closed after a stable trial; forgets the window
  void reset();  // operator reset: closed, window forgotten
  std::uint64_t crashes_in_window(SteadyTime now) const;

 private:
  void prune(SteadyTime now);
  BreakerPolicy policy_;
  BreakerState state_ = BreakerState::closed;
  std::deque<SteadyTime> crashes_;
  SteadyTime opened_at_{};
};

enum class SupervisorError { epoll_failed, timer_failed };

const char* to_string(SupervisorError error) noexcept;

class Supervisor {
 public:
  // The epoll set and the timerfd; fails only when the process is out of file
  // descriptors or kernel memory (the message says which call failed and why).
  static Result<std::unique_ptr<Supervisor>, SupervisorError> create(CgroupDriver* cgroups, BackoffPolicy backoff,
                                                                     BreakerPolicy breaker, SupervisorClock clock = {});
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  int fd() const { return epoll_fd_; }             // readable when a member exited or a timer is due
  void process();                                  // reap exits, run due respawns and stop deadlines; non-blocking
  std::chrono::milliseconds next_timeout() const;  // for the caller's poll; max 1 h when idle

  // Spawns a new member. If the group's breaker is open the member is registered `blocked`
  // (spawned when the breaker lets it). A failed spawn returns the error, registers nothing
  // and counts as a crash of the group, so a caller retrying in a loop trips the breaker.
  Result<MemberStatus, SpawnError> start(const std::string& id, const std::string& group, const SpawnSpec& spec);
  // Supervises an existing process (a previous control plane's worker) through
  // pidfd_open; when it exits it is respawned with spec. invalid_argument if it is gone,
  // or, when spec.cgroup is set (and a driver given), if it is not in that group.
  // Its exit status is unknown unless it is our child: "exited (adopted; status unavailable)".
  Result<MemberStatus, SpawnError> adopt(const std::string& id, const std::string& group, pid_t pid,
                                         const SpawnSpec& spec);
  // SIGTERM, SIGKILL after grace, no respawn; the member is removed once reaped (at once
  // when it has no process).
  void stop(const std::string& id, std::chrono::milliseconds grace);
  // SIGKILL; the member is respawned at once (a restart, not a crash for the breaker).
  // false if unknown or without a process.
  bool kill(const std::string& id);
  void reset_breaker(const std::string& group);
  void forget_group(const std::string& group);  // drop a memberless group's counters

  std::optional<MemberStatus> member(const std::string& id) const;
  std::vector<MemberStatus> members() const;
  GroupStatus group(const std::string& group) const;

  std::function<void(const MemberEvent&)> on_event;

 private:
  struct Member;
  struct Group;
  Supervisor(CgroupDriver* cgroups, BackoffPolicy backoff, BreakerPolicy breaker, SupervisorClock clock, int epoll_fd,
             int timer_fd);
  SteadyTime now() const;
  Group& group_of(const std::string& name);
  void emit(MemberEvent::Kind kind, const std::string& id, const std::string& group, pid_t pid,
            const std::string& detail);
  Result<Ok, SpawnError> spawn_member(Member& m);
  Result<Ok, SpawnError> watch(Member& m);
  void unwatch(Member& m);
  void handle_ready(std::uint64_t token);
  void on_exit(Member& m, const std::string& how);
  void respawn(Member& m);
  void count_crash(Member& m, SteadyTime when);
  void schedule_respawn(Member& m, std::chrono::milliseconds delay);
  void open_breaker(const std::string& group);
  void start_trial(const std::string& group);
  void close_breaker(const std::string& group);
  void run_timers();
  void rearm_timer();
  MemberStatus status_of(const Member& m) const;
  void remove_member(const std::string& id);
  void flush_events();

  CgroupDriver* cgroups_;
  BackoffPolicy backoff_policy_;
  BreakerPolicy breaker_policy_;
  SupervisorClock clock_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  std::uint64_t next_token_ = 1;
  std::map<std::string, std::unique_ptr<Member>> members_;
  std::map<std::string, std::unique_ptr<Group>> groups_;
  // Delivered at the end of each public call, so that a handler may call back in.
  std::vector<MemberEvent> pending_events_;
};

}  // namespace axon::controlplane

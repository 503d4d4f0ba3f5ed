// Supervisor: pidfd-based process supervision with per-member backoff and a per-group
// circuit breaker (see supervisor.h for the semantics).
#include "axon/controlplane/supervisor.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "axon/controlplane/cgroup.h"

#include "supervisor_members.h"

namespace axon::controlplane {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

constexpr std::uint64_t kTimerToken = 0;
constexpr milliseconds kIdleTimeout{3'600'000};

std::int64_t unix_ms() {
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string describe_exit(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED: return "exited with status " + std::to_string(info.si_status);
    case CLD_KILLED:
    case CLD_DUMPED: {
      std::string s = "killed by signal " + std::to_string(info.si_status);
      if (const char* abbrev = sigabbrev_np(info.si_status)) s += std::string(" (SIG") + abbrev + ")";
      if (info.si_code == CLD_DUMPED) s += " (core dumped)";
      return s;
    }
    default: return "exited (code " + std::to_string(info.si_code) + ")";
  }
}

bool send_signal(int pidfd, int sig) {
  return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0;
}

}  // namespace

// --- supervisor -----------------------------------------------------------------------

const char* to_string(SupervisorError error) noexcept {
  switch (error) {
    case SupervisorError::epoll_failed: return "epoll_failed";
    case SupervisorError::timer_failed: return "timer_failed";
  }
  return "unknown";
}

Result<std::unique_ptr<Supervisor>, SupervisorError> Supervisor::create(CgroupDriver* cgroups, BackoffPolicy backoff,
                                                                        BreakerPolicy breaker, SupervisorClock clock) {
  auto failed = [](SupervisorError code, const char* call, int err) {
    return make_error(code, std::string("supervisor: ") + call + ": " + std::strerror(err) +
                                " (raise the daemon's open-file limit, LimitNOFILE=, or free memory)");
  };
  int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return failed(SupervisorError::epoll_failed, "epoll_create1", errno);
  int timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd < 0) {
    int err = errno;
    ::close(epoll_fd);
    return failed(SupervisorError::timer_failed, "timerfd_create", err);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerToken;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &ev) != 0) {
    int err = errno;
    ::close(timer_fd);
    ::close(epoll_fd);
    return failed(SupervisorError::epoll_failed, "epoll_ctl(timerfd)", err);
  }
  return std::unique_ptr<Supervisor>(new Supervisor(cgroups, backoff, breaker, std::move(clock), epoll_fd, timer_fd));
}

Supervisor::Supervisor(CgroupDriver* cgroups, BackoffPolicy backoff, BreakerPolicy breaker, SupervisorClock clock,
                       int epoll_fd, int timer_fd)
    : cgroups_(cgroups),
      backoff_policy_(backoff),
      breaker_policy_(breaker),
      clock_(std::move(clock)),
      epoll_fd_(epoll_fd),
      timer_fd_(timer_fd) {}

Supervisor::~Supervisor() {
  // Workers keep running: a restarted control plane adopts them.
  for (auto& [id, m] : members_) {
    if (m->pidfd >= 0) ::close(m->pidfd);
  }
  ::close(timer_fd_);
  ::close(epoll_fd_);
}

SteadyTime Supervisor::now() const {
  return clock_ ? clock_() : std::chrono::steady_clock::now();
}

Supervisor::Group& Supervisor::group_of(const std::string& name) {
  auto& slot = groups_[name];
  if (!slot) slot = std::make_unique<Group>(breaker_policy_);
  return *slot;
}

void Supervisor::emit(MemberEvent::Kind kind, const std::string& id, const std::string& group, pid_t pid,
                      const std::string& detail) {
  pending_events_.push_back(MemberEvent{kind, id, group, pid, detail});
}

void Supervisor::flush_events() {
  while (!pending_events_.empty()) {
    auto batch = std::move(pending_events_);
    pending_events_.clear();
    if (!on_event) continue;
    for (const auto& e : batch) on_event(e);
  }
}

Result<Ok, SpawnError> Supervisor::watch(Member& m) {
  m.token = next_token_++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = m.token;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, m.pidfd, &ev) != 0) {
    int err = errno;
    m.token = 0;
    return make_error(SpawnError::supervise_failed, "cannot watch process " + std::to_string(m.pid) +
                                                        ": epoll_ctl(pidfd): " + std::strerror(err) +
                                                        " (raise the daemon's open-file limit, LimitNOFILE=)");
  }
  return Ok{};
}

void Supervisor::unwatch(Member& m) {
  if (m.pidfd >= 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, m.pidfd, nullptr);
    ::close(m.pidfd);
  }
  m.pidfd = -1;
  m.token = 0;
  m.pid = 0;
}

Result<Ok, SpawnError> Supervisor::spawn_member(Member& m) {
  auto r = spawn(m.spec, cgroups_);
  if (!r) {
    emit(MemberEvent::Kind::spawn_failed, m.id, m.group, 0, r.message());
    return r.error();
  }
  m.pid = r->pid;
  m.pidfd = r->pidfd;
  if (auto watched = watch(m); !watched) {
    // An unwatched worker would never be respawned or stopped: end it rather than leak it.
    send_signal(m.pidfd, SIGKILL);
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(m.pidfd), &info, WEXITED);
    ::close(m.pidfd);
    m.pidfd = -1;
    m.pid = 0;
    emit(MemberEvent::Kind::spawn_failed, m.id, m.group, 0, watched.message());
    return watched.error();
  }
  m.adopted = false;
  m.started = now();
  m.started_at_ms = unix_ms();
  m.phase = MemberPhase::running;
  m.due.reset();
  emit(MemberEvent::Kind::spawned, m.id, m.group, m.pid, m.spec.argv[0]);
  return Ok{};
}

void Supervisor::respawn(Member& m) {
  m.due.reset();
  auto r = spawn_member(m);
  if (r) {
    ++m.restarts;
    ++group_of(m.group).restarts;
    return;
  }
  // A spawn that fails is a crash like any other: backoff, and it counts for the breaker.
  m.last_exit = "spawn failed: " + r.message();
  group_of(m.group).last_exit = m.last_exit;
  m.started = now();
  count_crash(m, m.started);
}

void Supervisor::schedule_respawn(Member& m, milliseconds delay) {
  m.phase = MemberPhase::backoff;
  m.due = now() + delay;
  emit(MemberEvent::Kind::respawn_scheduled, m.id, m.group, 0,
       "in " + std::to_string(delay.count()) + " ms (crash " + std::to_string(m.backoff.streak()) + " in a row)");
}

void Supervisor::count_crash(Member& m, SteadyTime when) {
  milliseconds delay = m.backoff.next_delay(m.started, when);
  m.last_delay = delay;
  Group& g = group_of(m.group);
  if (g.breaker.record_crash(when)) open_breaker(m.group);
  if (g.breaker.state() == BreakerState::closed) {
    if (delay.count() == 0) {
      // A first crash: respawned now, not on the next timer tick. A failed spawn comes back
      // here with a streak of 2, so this cannot recurse more than once.
      emit(MemberEvent::Kind::respawn_scheduled, m.id, m.group, 0, "at once (first crash)");
      respawn(m);
    } else {
      schedule_respawn(m, delay);
    }
  } else {
    m.phase = MemberPhase::blocked;
    m.due.reset();
  }
}

void Supervisor::open_breaker(const std::string& group) {
  Group& g = group_of(group);
  g.trial.clear();
  g.close_at.reset();
  SteadyTime t = now();
  std::string detail = std::to_string(g.breaker.crashes_in_window(t)) + " crashes in " +
                       std::to_string(breaker_policy_.window.count()) + " ms; retry in " +
                       std::to_string(ms_until(g.breaker.half_open_at().value_or(t), t)) + " ms";
  emit(MemberEvent::Kind::breaker_opened, "", group, 0, detail);
}

void Supervisor::start_trial(const std::string& group) {
  Group& g = group_of(group);
  Member* candidate = nullptr;
  for (auto& [id, m] : members_) {
    if (m->group == group && (m->phase == MemberPhase::blocked || m->phase == MemberPhase::backoff)) {
      candidate = m.get();
      break;
    }
  }
  if (candidate == nullptr) {
    close_breaker(group);  // nothing left that crashes: nothing to try
    return;
  }
  g.trial = candidate->id;
  g.close_at = now() + backoff_policy_.stable_after;
  respawn(*candidate);  // a failed spawn reopens the breaker through count_crash
}

void Supervisor::close_breaker(const std::string& group) {
  Group& g = group_of(group);
  g.breaker.close();
  g.trial.clear();
  g.close_at.reset();
  emit(MemberEvent::Kind::breaker_closed, "", group, 0, "");
  std::vector<std::string> blocked;
  for (auto& [id, m] : members_) {
    if (m->group == group && m->phase == MemberPhase::blocked) blocked.push_back(id);
  }
  for (const auto& id : blocked) {
    auto it = members_.find(id);
    if (it == members_.end() || g.breaker.state() != BreakerState::closed) break;
    it->second->backoff.reset();
    respawn(*it->second);
  }
}

void Supervisor::remove_member(const std::string& id) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = *it->second;
  unwatch(m);
  std::string group = m.group;
  emit(MemberEvent::Kind::stopped, id, group, 0, m.last_exit);
  members_.erase(it);
  Group& g = group_of(group);
  if (g.breaker.state() == BreakerState::half_open && g.trial == id) {
    g.trial.clear();
    start_trial(group);
  }
}

void Supervisor::on_exit(Member& m, const std::string& how) {
  pid_t pid = m.pid;
  unwatch(m);
  m.last_exit = how;
  Group& g = group_of(m.group);
  g.last_exit = how;
  emit(MemberEvent::Kind::exited, m.id, m.group, pid, how);
  if (m.phase == MemberPhase::stopping) {
    remove_member(m.id);
    return;
  }
  if (m.kill_requested) {
    m.kill_requested = false;
    if (g.breaker.state() == BreakerState::open) {
      m.phase = MemberPhase::blocked;
    } else {
      respawn(m);
    }
    return;
  }
  count_crash(m, now());
}

void Supervisor::handle_ready(std::uint64_t token) {
  Member* m = nullptr;
  for (auto& [id, candidate] : members_) {
    if (candidate->token == token) {
      m = candidate.get();
      break;
    }
  }
  if (m == nullptr || m->pidfd < 0) return;
  siginfo_t info{};
  int rc;
  do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(m->pidfd), &info, WEXITED | WNOHANG);
  while (rc != 0 && errno == EINTR);
  if (rc == 0 && info.si_pid == 0) return;  // not exited yet
  // ECHILD: not our child (adopted from a previous control plane); the pidfd being
  // readable is all we learn.
  std::string how = rc == 0 ? describe_exit(info)
                            : (m->adopted ? "exited (adopted; status unavailable)" : "exited (status unavailable)");
  on_exit(*m, how);
}

void Supervisor::process() {
  epoll_event events[32];
  for (;;) {
    int n = ::epoll_wait(epoll_fd_, events, 32, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTimerToken) {
        std::uint64_t expirations;
        [[maybe_unused]] ssize_t r = ::read(timer_fd_, &expirations, sizeof expirations);
      } else {
        handle_ready(events[i].data.u64);
      }
    }
    if (n < 32) break;
  }
  run_timers();
  rearm_timer();
  flush_events();
}

void Supervisor::run_timers() {
  SteadyTime t = now();
  std::vector<std::string> due;
  for (auto& [id, m] : members_) {
    if (m->due && *m->due <= t) due.push_back(id);
  }
  for (const auto& id : due) {
    auto it = members_.find(id);
    if (it == members_.end()) continue;
    Member& m = *it->second;
    m.due.reset();
    if (m.phase == MemberPhase::stopping) {
      if (m.pidfd >= 0) send_signal(m.pidfd, SIGKILL);
    } else if (m.phase == MemberPhase::backoff) {
      if (group_of(m.group).breaker.state() != BreakerState::closed) {
        m.phase = MemberPhase::blocked;
      } else {
        respawn(m);
      }
    }
  }
  std::vector<std::string> names;
  for (auto& [name, g] : groups_) names.push_back(name);
  for (const auto& name : names) {
    auto it = groups_.find(name);
    if (it == groups_.end()) continue;
    Group& g = *it->second;
    if (g.breaker.state() == BreakerState::open && g.breaker.half_open_at() && *g.breaker.half_open_at() <= t) {
      g.breaker.to_half_open();
      emit(MemberEvent::Kind::breaker_half_open, "", name, 0, "");
      start_trial(name);
    } else if (g.breaker.state() == BreakerState::half_open) {
      if (g.trial.empty()) {
        start_trial(name);
      } else if (g.close_at && *g.close_at <= t) {
        close_breaker(name);
      }
    }
  }
}

std::chrono::milliseconds Supervisor::next_timeout() const {
  SteadyTime t = now();
  std::optional<SteadyTime> next;
  auto consider = [&](SteadyTime when) {
    if (!next || when < *next) next = when;
  };
  for (const auto& [id, m] : members_) {
    if (m->due) consider(*m->due);
  }
  for (const auto& [name, g] : groups_) {
    if (auto at = g->breaker.half_open_at()) consider(*at);
    if (g->breaker.state() == BreakerState::half_open && g->close_at) consider(*g->close_at);
  }
  if (!next) return kIdleTimeout;
  if (*next <= t) return milliseconds(0);
  // Round up so that a poll with this timeout never wakes just before the deadline.
  return duration_cast<milliseconds>(*next - t + milliseconds(1) - std::chrono::nanoseconds(1));
}

void Supervisor::rearm_timer() {
  milliseconds wait = next_timeout();
  itimerspec spec{};
  if (wait != kIdleTimeout) {
    auto ns = duration_cast<std::chrono::nanoseconds>(wait).count();
    if (ns <= 0) ns = 1;  // due now: fire at once (0 would disarm)
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  }
  ::timerfd_settime(timer_fd_, 0, &spec, nullptr);
}

Result<MemberStatus, SpawnError> Supervisor::start(const std::string& id, const std::string& group,
                                                   const SpawnSpec& spec) {
  if (id.empty() || members_.count(id))
    return make_error(SpawnError::invalid_argument, "member id '" + id + "' is empty or already supervised");
  auto owned = std::make_unique<Member>(id, group, spec, backoff_policy_);
  Member& m = *owned;
  Group& g = group_of(group);
  if (g.breaker.state() == BreakerState::open) {
    m.phase = MemberPhase::blocked;
    members_.emplace(id, std::move(owned));
    return status_of(m);
  }
  auto r = spawn_member(m);
  if (!r) {
    // Not registered, but counted: a caller that retries a broken command trips the breaker.
    g.last_exit = "spawn failed: " + r.message();
    if (g.breaker.record_crash(now())) open_breaker(group);
    rearm_timer();
    flush_events();
    return r.error();
  }
  members_.emplace(id, std::move(owned));
  MemberStatus status = status_of(m);
  rearm_timer();
  flush_events();
  return status;
}

Result<MemberStatus, SpawnError> Supervisor::adopt(const std::string& id, const std::string& group, pid_t pid,
                                                   const SpawnSpec& spec) {
  if (id.empty() || members_.count(id))
    return make_error(SpawnError::invalid_argument, "member id '" + id + "' is empty or already supervised");
  if (pid <= 0) return make_error(SpawnError::invalid_argument, "cannot adopt pid " + std::to_string(pid));
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0)
    return make_error(SpawnError::invalid_argument,
                      "cannot adopt process " + std::to_string(pid) + ": " + std::strerror(errno));
  // The pidfd pins the process, so this check cannot race with pid reuse: a recycled pid
  // belongs to some unrelated process outside our group.
  if (cgroups_ != nullptr && !spec.cgroup.empty()) {
    auto inside = cgroups_->pids(spec.cgroup);
    if (std::find(inside.begin(), inside.end(), pid) == inside.end()) {
      ::close(pidfd);
      return make_error(SpawnError::invalid_argument, "not adopting process " + std::to_string(pid) +
                                                          ": it is not in cgroup " + cgroups_->path_of(spec.cgroup) +
                                                          " (exited and its pid reused?)");
    }
  }
  auto owned = std::make_unique<Member>(id, group, spec, backoff_policy_);
  Member& m = *owned;
  m.pid = pid;
  m.pidfd = pidfd;
  if (auto watched = watch(m); !watched) {
    ::close(pidfd);  // the process keeps running, unsupervised, as it was before
    return watched.error();
  }
  group_of(group);
  m.adopted = true;
  m.started = now();
  m.started_at_ms = unix_ms();
  m.phase = MemberPhase::running;
  members_.emplace(id, std::move(owned));
  emit(MemberEvent::Kind::spawned, id, group, pid, "adopted");
  MemberStatus status = status_of(m);
  flush_events();
  return status;
}

void Supervisor::stop(const std::string& id, milliseconds grace) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = *it->second;
  if (m.pidfd < 0) {
    remove_member(id);
  } else {
    SteadyTime deadline = now() + grace;
    if (m.phase != MemberPhase::stopping) {
      m.phase = MemberPhase::stopping;
      m.kill_requested = false;
      send_signal(m.pidfd, grace.count() > 0 ? SIGTERM : SIGKILL);
      m.due = deadline;
    } else if (!m.due || deadline < *m.due) {
      m.due = deadline;
    }
  }
  rearm_timer();
  flush_events();
}

bool Supervisor::kill(const std::string& id) {
  auto it = members_.find(id);
  if (it == members_.end() || it->second->pidfd < 0) return false;
  Member& m = *it->second;
  if (m.phase != MemberPhase::stopping) m.kill_requested = true;
  return send_signal(m.pidfd, SIGKILL);
}

void Supervisor::reset_breaker(const std::string& group) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return;
  if (it->second->breaker.state() != BreakerState::closed) {
    close_breaker(group);  // respawns the blocked members
  } else {
    it->second->breaker.reset();
  }
  rearm_timer();
  flush_events();
}

void Supervisor::forget_group(const std::string& group) {
  for (const auto& [id, m] : members_) {
    if (m->group == group) return;
  }
  groups_.erase(group);
}

}  // namespace axon::controlplane

// Supervisor: the backoff and breaker math against a fake clock (pure and with real
// short-lived processes), then real processes in real time: kill -> respawn (measured),
// a crash-looping binary tripping the breaker, half_open -> closed, stop's SIGTERM ->
// SIGKILL escalation, adoption of processes we did not spawn.
#include "axon/controlplane/supervisor.h"

#include <gtest/gtest.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "axon/controlplane/cgroup.h"

namespace axon::controlplane {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Kind = MemberEvent::Kind;

SteadyTime at(std::int64_t ms) {
  return SteadyTime{} + milliseconds(ms);
}

// Supervisor::create, failing the test (not the process) if the kernel refuses.
std::unique_ptr<Supervisor> make_supervisor(CgroupDriver* cgroups, BackoffPolicy backoff, BreakerPolicy breaker,
                                            SupervisorClock clock = {}) {
  auto created = Supervisor::create(cgroups, backoff, breaker, std::move(clock));
  if (!created) throw std::runtime_error(created.message());
  return std::move(created).value();
}

// --- pure state machines ----------------------------------------------------------------

TEST(Backoff, FirstCrashAtOnceThenGrowsCapsAndResetsAfterStableRun) {
  Backoff b(BackoffPolicy{100ms, 1000ms, 2.0, 5000ms});
  std::vector<std::int64_t> delays;
  std::vector<std::uint32_t> streaks;
  for (int i = 0; i < 8; ++i) {
    delays.push_back(b.next_delay(at(0), at(10)).count());
    streaks.push_back(b.streak());
  }
  EXPECT_EQ(delays, (std::vector<std::int64_t>{0, 100, 200, 400, 800, 1000, 1000, 1000}));
  EXPECT_EQ(streaks, (std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  // Ran for stable_after: a first crash again, respawned at once; the next quick one waits.
  EXPECT_EQ(b.next_delay(at(0), at(5000)).count(), 0);
  EXPECT_EQ(b.streak(), 1u);
  EXPECT_EQ(b.next_delay(at(6000), at(6001)).count(), 100);
  b.reset();
  EXPECT_EQ(b.next_delay(at(0), at(1)).count(), 0);
  // A failed spawn (started == crashed) never ends a streak, even with stable_after 0.
  Backoff zero(BackoffPolicy{10ms, 10ms, 2.0, 0ms});
  EXPECT_EQ(zero.next_delay(at(0), at(0)).count(), 0);
  EXPECT_EQ(zero.next_delay(at(5), at(5)).count(), 10);

  Backoff flat(BackoffPolicy{50ms, 50ms, 3.0, 1000ms});
  EXPECT_EQ(flat.next_delay(at(0), at(1)).count(), 0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(flat.next_delay(at(0), at(1)).count(), 50);
}

TEST(CircuitBreaker, OpensOnFailuresWithinWindowThenHalfOpenAndClose) {
  CircuitBreaker b(BreakerPolicy{3, 1000ms, 500ms});
  EXPECT_FALSE(b.record_crash(at(0)));
  EXPECT_FALSE(b.record_crash(at(400)));
  EXPECT_FALSE(b.record_crash(at(1200))) << "the crash at 0 left the window";
  EXPECT_EQ(b.crashes_in_window(at(1200)), 2u);
  EXPECT_EQ(b.state(), BreakerState::closed);
  EXPECT_FALSE(b.half_open_at());
  EXPECT_TRUE(b.record_crash(at(1300)));
  EXPECT_EQ(b.state(), BreakerState::open);
  ASSERT_TRUE(b.half_open_at());
  EXPECT_EQ(*b.half_open_at(), at(1800));
  EXPECT_FALSE(b.record_crash(at(1400))) << "already open";
  b.to_half_open();
  EXPECT_EQ(b.state(), BreakerState::half_open);
  EXPECT_TRUE(b.record_crash(at(1900))) << "the trial crashed: open again";
  EXPECT_EQ(*b.half_open_at(), at(2400));
  b.to_half_open();
  b.close();
  EXPECT_EQ(b.state(), BreakerState::closed);
  EXPECT_EQ(b.crashes_in_window(at(1900)), 0u);
  b.reset();
  EXPECT_EQ(b.state(), BreakerState::closed);
}

// --- helpers for real processes ---------------------------------------------------------

struct Recorder {
  std::vector<MemberEvent> events;
  std::vector<SteadyTime> times;
  void attach(Supervisor& s) {
    s.on_event = [this](const MemberEvent& e) {
      events.push_back(e);
      times.push_back(std::chrono::steady_clock::now());
    };
  }
  std::size_t count(Kind k) const {
    return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), [&](auto& e) { return e.kind == k; }));
  }
  std::string trace() const {
    static const char* names[] = {"spawned",           "exited",         "respawn_scheduled", "breaker_opened",
                                  "breaker_half_open", "breaker_closed", "spawn_failed",      "stopped"};
    std::string out;
    for (const auto& e : events)
      out += std::string(names[static_cast<int>(e.kind)]) + "(" + e.id + " " + e.detail + ") ";
    return out;
  }
};

// Waits (real time) for the supervisor's fd or its next timer, then processes, until pred.
template <typename Pred>
bool pump_until(Supervisor& s, Pred pred, milliseconds limit = 20000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return false;
    pollfd p{s.fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min({left, s.next_timeout(), milliseconds(50)}).count()) + 1);
    s.process();
  }
  return true;
}

void stop_all(Supervisor& s) {
  for (const auto& m : s.members()) s.stop(m.id, 0ms);
  EXPECT_TRUE(pump_until(s, [&] { return s.members().empty(); }));
}

bool alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

SpawnSpec command(std::vector<std::string> argv) {
  SpawnSpec spec;
  spec.argv = std::move(argv);
  return spec;
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (spawn drops capabilities)";
  }
};

// Fake time, real processes: every transition of backoff and breaker at exact times.
TEST_F(SupervisorTest, FakeClockBackoffAndBreakerTransitions) {
  SteadyTime fake = at(1'000'000);
  auto owned = make_supervisor(nullptr, BackoffPolicy{1000ms, 4000ms, 2.0, 10000ms}, BreakerPolicy{3, 60000ms, 30000ms},
                               [&] { return fake; });
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  auto advance = [&](milliseconds d) {
    fake += d;
    s.process();
  };
  auto exits = [&](std::size_t n) { return pump_until(s, [&] { return rec.count(Kind::exited) >= n; }); };

  auto started = s.start("w0", "agent", command({"/bin/false"}));
  ASSERT_TRUE(started.ok()) << started.message();
  EXPECT_EQ(started->phase, MemberPhase::running);
  ASSERT_TRUE(exits(1)) << rec.trace();
  // The first crash is respawned at once, in the process() call that saw it: no time passed.
  EXPECT_EQ(rec.count(Kind::spawned), 2u) << rec.trace();
  EXPECT_EQ(s.member("w0")->restarts, 1u);
  EXPECT_EQ(s.member("w0")->crash_streak, 1u);
  EXPECT_EQ(s.member("w0")->last_respawn_delay_ms, 0);
  EXPECT_EQ(s.member("w0")->last_exit, "exited with status 1");
  EXPECT_EQ(s.group("agent").crashes_in_window, 1u);
  // The second quick crash is a loop: backoff_initial.
  ASSERT_TRUE(exits(2)) << rec.trace();
  EXPECT_EQ(s.member("w0")->phase, MemberPhase::backoff);
  EXPECT_EQ(s.member("w0")->retry_in_ms, 1000);
  EXPECT_EQ(s.member("w0")->crash_streak, 2u);
  EXPECT_EQ(s.member("w0")->last_respawn_delay_ms, 1000);
  EXPECT_EQ(s.next_timeout(), 1000ms);

  advance(999ms);
  EXPECT_EQ(rec.count(Kind::spawned), 2u);
  advance(1ms);
  EXPECT_EQ(rec.count(Kind::spawned), 3u);
  EXPECT_EQ(s.member("w0")->restarts, 2u);
  ASSERT_TRUE(exits(3)) << rec.trace();

  // Third crash within the window: open, nothing scheduled.
  EXPECT_EQ(rec.count(Kind::breaker_opened), 1u);
  EXPECT_EQ(s.member("w0")->phase, MemberPhase::blocked);
  auto g = s.group("agent");
  EXPECT_EQ(g.breaker, BreakerState::open);
  EXPECT_EQ(g.retry_in_ms, 30000);
  EXPECT_EQ(g.crashes_in_window, 3u);
  EXPECT_EQ(g.restarts, 2u);
  EXPECT_EQ(s.next_timeout(), 30000ms);

  // A new member of an open group waits too.
  auto blocked = s.start("w1", "agent", command({"/bin/false"}));
  ASSERT_TRUE(blocked.ok());
  EXPECT_EQ(blocked->phase, MemberPhase::blocked);
  EXPECT_EQ(blocked->pid, 0);

  advance(29999ms);
  EXPECT_EQ(rec.count(Kind::spawned), 3u);
  EXPECT_EQ(s.member("w0")->last_respawn_delay_ms, 2000) << "the third would have waited initial * 2";
  advance(1ms);
  EXPECT_EQ(rec.count(Kind::breaker_half_open), 1u);
  EXPECT_EQ(s.group("agent").breaker, BreakerState::half_open);
  EXPECT_EQ(rec.count(Kind::spawned), 4u) << "exactly one trial";
  ASSERT_TRUE(exits(4)) << rec.trace();
  EXPECT_EQ(rec.count(Kind::breaker_opened), 2u) << "the trial crashed";
  EXPECT_EQ(s.group("agent").breaker, BreakerState::open);

  s.reset_breaker("agent");
  EXPECT_EQ(rec.count(Kind::breaker_closed), 1u);
  EXPECT_EQ(s.group("agent").breaker, BreakerState::closed);
  EXPECT_EQ(rec.count(Kind::spawned), 6u) << "both blocked members respawned: " << rec.trace();
  stop_all(s);
  EXPECT_EQ(rec.count(Kind::stopped), 2u);
}

// Issue 13: a crash (kill -9 from outside, not kill()) is respawned at once, in the
// process() call that reaps it; only a member that crashes again before stable_after waits,
// and the decision is recorded on the member (crash_streak, last_respawn_delay_ms, phase).
TEST_F(SupervisorTest, FirstCrashIsRespawnedAtOnceAndACrashLoopBacksOff) {
  // A backoff long enough that a member in backoff stays there for the whole test.
  auto owned =
      make_supervisor(nullptr, BackoffPolicy{60000ms, 120000ms, 2.0, 60000ms}, BreakerPolicy{10, 60000ms, 60000ms});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  ASSERT_TRUE(s.start("w0", "agent", command({"/bin/sleep", "1000"})).ok());
  ASSERT_TRUE(s.start("w1", "agent", command({"/bin/sleep", "1000"})).ok());
  const pid_t first = s.member("w0")->pid;
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(pump_until(s, [&] { return rec.count(Kind::spawned) >= 3; })) << rec.trace();
  auto m = s.member("w0");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->phase, MemberPhase::running);
  EXPECT_NE(m->pid, first);
  EXPECT_GT(m->pid, 0);
  EXPECT_EQ(m->restarts, 1u);
  EXPECT_EQ(m->crash_streak, 1u);
  EXPECT_EQ(m->last_respawn_delay_ms, 0);
  EXPECT_EQ(m->last_exit, "killed by signal 9 (SIGKILL)");
  EXPECT_FALSE(m->retry_in_ms);
  EXPECT_EQ(s.group("agent").crashes_in_window, 1u) << "a crash all the same, for the breaker";
  const auto scheduled = std::find_if(rec.events.begin(), rec.events.end(),
                                      [](const MemberEvent& e) { return e.kind == Kind::respawn_scheduled; });
  ASSERT_NE(scheduled, rec.events.end()) << rec.trace();
  EXPECT_EQ(scheduled->detail, "at once (first crash)");

  // The replacement crashes right away: a crash loop, backed off.
  const pid_t second = m->pid;
  ASSERT_EQ(::kill(second, SIGKILL), 0);
  ASSERT_TRUE(pump_until(s, [&] { return rec.count(Kind::exited) >= 2; })) << rec.trace();
  m = s.member("w0");
  EXPECT_EQ(m->phase, MemberPhase::backoff);
  EXPECT_EQ(m->pid, 0);
  EXPECT_EQ(m->crash_streak, 2u);
  EXPECT_EQ(m->last_respawn_delay_ms, 60000);
  ASSERT_TRUE(m->retry_in_ms);
  EXPECT_GT(*m->retry_in_ms, 0);
  EXPECT_LE(*m->retry_in_ms, 60000);
  EXPECT_EQ(rec.count(Kind::spawned), 3u) << "nothing respawned during the backoff: " << rec.trace();
  EXPECT_EQ(rec.events.back().detail, "in 60000 ms (crash 2 in a row)") << rec.trace();

  // The streak is per member: the other member's first crash is respawned at once.
  const pid_t other = s.member("w1")->pid;
  ASSERT_EQ(::kill(other, SIGKILL), 0);
  ASSERT_TRUE(pump_until(s, [&] { return rec.count(Kind::spawned) >= 4; })) << rec.trace();
  EXPECT_EQ(s.member("w1")->phase, MemberPhase::running);
  EXPECT_EQ(s.member("w1")->last_respawn_delay_ms, 0);
  EXPECT_EQ(s.member("w1")->crash_streak, 1u);
  stop_all(s);
}

// A member that ran stable_after before crashing is a first crash again (real time).
TEST_F(SupervisorTest, AStableRunEndsTheCrashLoop) {
  auto owned = make_supervisor(nullptr, BackoffPolicy{30ms, 60ms, 2.0, 300ms}, BreakerPolicy{10, 60000ms, 60000ms});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  ASSERT_TRUE(s.start("w", "agent", command({"/bin/sleep", "1000"})).ok());
  auto kill_and_respawn = [&](std::size_t spawned) {
    EXPECT_EQ(::kill(s.member("w")->pid, SIGKILL), 0);
    return pump_until(s, [&] { return rec.count(Kind::spawned) >= spawned; });
  };
  ASSERT_TRUE(kill_and_respawn(2)) << rec.trace();
  EXPECT_EQ(s.member("w")->last_respawn_delay_ms, 0);
  ASSERT_TRUE(kill_and_respawn(3)) << rec.trace();
  EXPECT_EQ(s.member("w")->last_respawn_delay_ms, 30) << "killed within stable_after of its respawn";
  EXPECT_EQ(s.member("w")->crash_streak, 2u);
  std::this_thread::sleep_for(400ms);  // longer than stable_after
  ASSERT_TRUE(kill_and_respawn(4)) << rec.trace();
  EXPECT_EQ(s.member("w")->last_respawn_delay_ms, 0);
  EXPECT_EQ(s.member("w")->crash_streak, 1u);
  stop_all(s);
}

// kill() -> SIGKILL -> pidfd readable -> reaped -> respawned; the figure is the time from
// kill() to the replacement having exec'd (spawn() returns only then), with no cgroup,
// with v1 placement (4 hierarchies, child held until placed) and with v2 CLONE_INTO_CGROUP.
void measure_kill_respawn(CgroupDriver* cgroups, const std::string& group, const char* label) {
  auto owned = make_supervisor(cgroups, BackoffPolicy{}, BreakerPolicy{});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  SpawnSpec spec = command({"/bin/sleep", "1000"});
  spec.cgroup = group;
  auto started = s.start("w", "agent", spec);
  ASSERT_TRUE(started.ok()) << started.message();
  std::vector<double> latencies_us;
  constexpr int kIterations = 20;
  for (int i = 0; i < kIterations; ++i) {
    pid_t old_pid = s.member("w")->pid;
    std::size_t spawned_before = rec.count(Kind::spawned);
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(s.kill("w"));
    ASSERT_TRUE(pump_until(s, [&] { return rec.count(Kind::spawned) > spawned_before; })) << rec.trace();
    auto t1 = rec.times.back();  // stamped right after spawn() returned, i.e. after the exec
    latencies_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    auto m = s.member("w");
    ASSERT_TRUE(m);
    EXPECT_NE(m->pid, old_pid);
    EXPECT_EQ(m->phase, MemberPhase::running);
    EXPECT_EQ(m->restarts, static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(m->last_exit, "killed by signal 9 (SIGKILL)");
    EXPECT_FALSE(alive(old_pid));
    if (cgroups) {
      auto inside = cgroups->pids(group);
      EXPECT_EQ(inside, std::vector<pid_t>{m->pid}) << "the replacement is in the group, the old one gone";
    }
  }
  auto g = s.group("agent");
  EXPECT_EQ(g.crashes_in_window, 0u) << "kill() is a restart, not a crash";
  EXPECT_EQ(g.breaker, BreakerState::closed);
  EXPECT_EQ(g.restarts, static_cast<std::uint64_t>(kIterations));
  std::sort(latencies_us.begin(), latencies_us.end());
  double median = latencies_us[latencies_us.size() / 2];
  double p99 = latencies_us[std::min(latencies_us.size() - 1, latencies_us.size() * 99 / 100)];
  std::printf(
      "[ MEASURED ] kill() -> replacement exec'd (/bin/sleep, %s), %d runs: median %.0f us, p99 %.0f us, "
      "min %.0f us\n",
      label, kIterations, median, p99, latencies_us.front());
  stop_all(s);
}

TEST_F(SupervisorTest, KillIsRespawnedAtOnceMeasured) {
  measure_kill_respawn(nullptr, "", "no cgroup");
}

TEST_F(SupervisorTest, KillIsRespawnedIntoItsCgroupV1Measured) {
  struct statfs st {};
  if (::statfs("/sys/fs/cgroup/memory", &st) != 0 || st.f_type != CGROUP_SUPER_MAGIC) GTEST_SKIP() << "no cgroup v1";
  CgroupOptions options;
  options.name = "axon-test-super-sup-" + std::to_string(::getpid());
  options.mode = "v1";
  auto driver = CgroupDriver::open(options);
  ASSERT_TRUE(driver.ok()) << driver.message();
  CgroupLimits limits;
  limits.pids_max = 16;
  ASSERT_TRUE(driver->ensure("standard/t1", limits).ok());
  measure_kill_respawn(&driver.value(), "standard/t1", "v1 cgroup placement");
  EXPECT_TRUE(driver->remove_if_empty("standard/t1").ok());
  EXPECT_TRUE(driver->remove_all_empty().ok());
}

TEST_F(SupervisorTest, KillIsRespawnedIntoItsCgroupV2Measured) {
  struct statfs st {};
  if (::statfs("/sys/fs/cgroup/unified", &st) != 0 || st.f_type != CGROUP2_SUPER_MAGIC) GTEST_SKIP() << "no cgroup2";
  CgroupOptions options;
  options.name = "axon-test-super-sup-" + std::to_string(::getpid());
  options.mode = "v2";
  options.v2_root = "/sys/fs/cgroup/unified";
  options.controllers = {};
  auto driver = CgroupDriver::open(options);
  ASSERT_TRUE(driver.ok()) << driver.message();
  ASSERT_TRUE(driver->ensure("standard/t1", {}).ok());
  measure_kill_respawn(&driver.value(), "standard/t1", "v2 CLONE_INTO_CGROUP");
  EXPECT_TRUE(driver->remove_if_empty("standard/t1").ok());
  EXPECT_TRUE(driver->remove_all_empty().ok());
}

TEST_F(SupervisorTest, ExitingBinaryOpensBreakerAndSpawnsStayBounded) {
  // stable_after is long so that even a heavily loaded machine never sees /bin/false "stay up".
  auto owned = make_supervisor(nullptr, BackoffPolicy{20ms, 100ms, 2.0, 10000ms}, BreakerPolicy{4, 30000ms, 400ms});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  ASSERT_TRUE(s.start("f", "broken", command({"/bin/false"})).ok());
  ASSERT_TRUE(pump_until(s, [&] { return rec.count(Kind::breaker_opened) == 1; })) << rec.trace();
  EXPECT_EQ(rec.count(Kind::spawned), 4u) << "start + 3 respawns, the 4th crash opens: " << rec.trace();
  EXPECT_EQ(s.member("f")->phase, MemberPhase::blocked);

  // Keep running for 1.5 s: half_open trials every cooldown, each crashing and reopening.
  pump_until(
      s, [] { return false; }, 1500ms);
  std::size_t spawns = rec.count(Kind::spawned);
  EXPECT_GE(rec.count(Kind::breaker_half_open), 2u) << rec.trace();
  EXPECT_EQ(rec.count(Kind::breaker_opened),
            1 + rec.count(Kind::breaker_half_open) - (s.group("broken").breaker == BreakerState::half_open ? 1 : 0));
  EXPECT_EQ(spawns, 4 + rec.count(Kind::breaker_half_open)) << "one trial per half_open: " << rec.trace();
  EXPECT_LE(spawns, 10u);
  EXPECT_EQ(rec.count(Kind::breaker_closed), 0u);
  stop_all(s);
}

TEST_F(SupervisorTest, HalfOpenTrialThatStaysUpClosesBreaker) {
  std::string dir = "/tmp/axon-test-super-sup-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  // Crashes three times (exit 3), then stays up.
  std::string script = "n=$(cat " + dir + "/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > " + dir +
                       "/count; [ $n -le 3 ] && exit 3; exec /bin/sleep 30";
  auto owned = make_supervisor(nullptr, BackoffPolicy{10ms, 50ms, 2.0, 300ms}, BreakerPolicy{3, 10000ms, 200ms});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  ASSERT_TRUE(s.start("healthy", "agent", command({"/bin/sleep", "30"})).ok());
  ASSERT_TRUE(s.start("flaky", "agent", command({"/bin/sh", "-c", script})).ok());
  ASSERT_TRUE(pump_until(s, [&] { return rec.count(Kind::breaker_closed) == 1; })) << rec.trace();
  std::vector<Kind> breaker;
  for (const auto& e : rec.events) {
    if (e.kind == Kind::breaker_opened || e.kind == Kind::breaker_half_open || e.kind == Kind::breaker_closed)
      breaker.push_back(e.kind);
  }
  EXPECT_EQ(breaker, (std::vector<Kind>{Kind::breaker_opened, Kind::breaker_half_open, Kind::breaker_closed}));
  auto flaky = s.member("flaky");
  EXPECT_EQ(flaky->phase, MemberPhase::running);
  EXPECT_EQ(flaky->restarts, 3u);
  EXPECT_EQ(flaky->last_exit, "exited with status 3");
  EXPECT_EQ(s.member("healthy")->restarts, 0u) << "a running member is not touched by the breaker";
  EXPECT_EQ(s.group("agent").breaker, BreakerState::closed);
  EXPECT_EQ(s.group("agent").last_exit, "exited with status 3");
  stop_all(s);
  std::filesystem::remove_all(dir);
}

TEST_F(SupervisorTest, StopSendsSigtermThenSigkillAfterGrace) {
  std::string log = "/tmp/axon-test-super-stop-" + std::to_string(::getpid()) + ".log";
  auto owned = make_supervisor(nullptr, BackoffPolicy{}, BreakerPolicy{});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  SpawnSpec stubborn = command({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do /bin/sleep 0.05; done"});
  stubborn.log_path = log;
  ASSERT_TRUE(s.start("stubborn", "agent", stubborn).ok());
  ASSERT_TRUE(s.start("polite", "agent", command({"/bin/sleep", "30"})).ok());
  auto ready = [&] {
    std::ifstream in(log);
    std::string line;
    return std::getline(in, line) && line == "ready";
  };
  ASSERT_TRUE(pump_until(s, ready));

  pid_t stubborn_pid = s.member("stubborn")->pid;
  auto t0 = std::chrono::steady_clock::now();
  s.stop("stubborn", 1000ms);
  s.stop("polite", 1000ms);
  EXPECT_EQ(s.member("stubborn")->phase, MemberPhase::stopping);
  ASSERT_TRUE(pump_until(s, [&] { return !s.member("polite"); }));
  EXPECT_TRUE(s.member("stubborn")) << "ignores SIGTERM: still there before the grace ends";
  ASSERT_TRUE(pump_until(s, [&] { return !s.member("stubborn"); }));
  auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(elapsed, 1000ms) << "SIGKILL only after the grace";
  EXPECT_FALSE(alive(stubborn_pid));

  std::vector<std::string> exits;
  for (const auto& e : rec.events) {
    if (e.kind == Kind::exited) exits.push_back(e.id + ": " + e.detail);
  }
  EXPECT_EQ(exits, (std::vector<std::string>{"polite: killed by signal 15 (SIGTERM)",
                                             "stubborn: killed by signal 9 (SIGKILL)"}));
  EXPECT_EQ(rec.count(Kind::stopped), 2u);
  EXPECT_EQ(rec.count(Kind::spawned), 2u) << "no respawn after stop";
  EXPECT_EQ(s.group("agent").crashes_in_window, 0u);
  std::filesystem::remove(log);
}

TEST_F(SupervisorTest, AdoptsChildAndNonChildAndRespawnsWithSpec) {
  auto owned = make_supervisor(nullptr, BackoffPolicy{10ms, 100ms, 2.0, 1000ms}, BreakerPolicy{});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);

  // Our own child (forked here, as a restarted daemon's leftover would not be): real status.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sleep", "sleep", "0.3", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto adopted = s.adopt("a", "agent", child, command({"/bin/sleep", "30"}));
  ASSERT_TRUE(adopted.ok()) << adopted.message();
  EXPECT_TRUE(adopted->adopted);
  EXPECT_EQ(adopted->pid, child);

  // Not our child: a helper forks it and reaps it, we only hold a pidfd.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t helper = ::fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::execl("/bin/sleep", "sleep", "0.4", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    [[maybe_unused]] auto n = ::write(pipefd[1], &grandchild, sizeof grandchild);
    int status;
    ::waitpid(grandchild, &status, 0);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  pid_t stranger = 0;
  ASSERT_EQ(::read(pipefd[0], &stranger, sizeof stranger), static_cast<ssize_t>(sizeof stranger));
  ::close(pipefd[0]);
  ASSERT_TRUE(s.adopt("b", "agent", stranger, command({"/bin/sleep", "30"})).ok());

  ASSERT_TRUE(pump_until(s, [&] {
    auto a = s.member("a"), b = s.member("b");
    return a && b && a->restarts == 1 && b->restarts == 1 && a->phase == MemberPhase::running &&
           b->phase == MemberPhase::running;
  })) << rec.trace();
  EXPECT_EQ(s.member("a")->last_exit, "exited with status 0");
  EXPECT_EQ(s.member("b")->last_exit, "exited (adopted; status unavailable)");
  EXPECT_FALSE(s.member("a")->adopted) << "respawned by us";
  EXPECT_NE(s.member("b")->pid, stranger);
  int status = 0;
  EXPECT_EQ(::waitpid(helper, &status, 0), helper);

  auto gone = s.adopt("c", "agent", stranger, command({"/bin/sleep", "30"}));
  EXPECT_FALSE(gone.ok());
  EXPECT_EQ(gone.code(), SpawnError::invalid_argument);
  stop_all(s);
}

// After a control-plane restart the pids come from state on disk; one may have been
// reused by an unrelated process. With a cgroup in the spec, adopt() only takes processes
// that are in that group.
TEST_F(SupervisorTest, AdoptChecksTheCgroup) {
  struct statfs st {};
  if (::statfs("/sys/fs/cgroup/pids", &st) != 0 || st.f_type != CGROUP_SUPER_MAGIC) GTEST_SKIP() << "no cgroup v1";
  CgroupOptions options;
  options.name = "axon-test-super-adopt-" + std::to_string(::getpid());
  options.mode = "v1";
  auto driver = CgroupDriver::open(options);
  ASSERT_TRUE(driver.ok()) << driver.message();
  ASSERT_TRUE(driver->ensure("batch/t2", {}).ok());
  SpawnSpec spec = command({"/bin/sleep", "30"});
  spec.cgroup = "batch/t2";
  auto previous = spawn(spec, &driver.value());  // as the previous control plane did
  ASSERT_TRUE(previous.ok()) << previous.message();
  auto outsider = spawn(command({"/bin/sleep", "30"}), nullptr);
  ASSERT_TRUE(outsider.ok()) << outsider.message();
  {
    auto owned = make_supervisor(&driver.value(), BackoffPolicy{}, BreakerPolicy{});
    Supervisor& s = *owned;
    auto refused = s.adopt("x", "agent", outsider->pid, spec);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.code(), SpawnError::invalid_argument);
    EXPECT_NE(refused.message().find("is not in cgroup /sys/fs/cgroup/"), std::string::npos) << refused.message();
    auto adopted = s.adopt("w", "agent", previous->pid, spec);
    ASSERT_TRUE(adopted.ok()) << adopted.message();
    EXPECT_TRUE(adopted->adopted);
    stop_all(s);  // stops the adopted one (our child here, so the supervisor reaps it)
  }
  ::kill(outsider->pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(::waitpid(outsider->pid, &status, 0), outsider->pid);
  ::close(outsider->pidfd);
  ::close(previous->pidfd);
  EXPECT_TRUE(driver->remove_all_empty().ok());
}

TEST_F(SupervisorTest, FailedStartsCountForTheBreaker) {
  auto owned = make_supervisor(nullptr, BackoffPolicy{}, BreakerPolicy{3, 10000ms, 60000ms});
  Supervisor& s = *owned;
  Recorder rec;
  rec.attach(s);
  for (int i = 0; i < 3; ++i) {
    auto r = s.start("bad", "agent", command({"/nonexistent/axon-worker"}));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), SpawnError::exec_failed);
    EXPECT_EQ(r.message(), "cannot exec /nonexistent/axon-worker: No such file or directory");
    EXPECT_FALSE(s.member("bad"));
  }
  EXPECT_EQ(s.group("agent").breaker, BreakerState::open);
  EXPECT_EQ(rec.count(Kind::spawn_failed), 3u);
  auto r = s.start("bad", "agent", command({"/nonexistent/axon-worker"}));
  ASSERT_TRUE(r.ok()) << "registered, blocked, nothing spawned";
  EXPECT_EQ(r->phase, MemberPhase::blocked);
  EXPECT_EQ(rec.count(Kind::spawn_failed), 3u);
  s.stop("bad", 0ms);
  EXPECT_FALSE(s.member("bad"));
  EXPECT_EQ(s.start("dup", "x", command({"/bin/sleep", "30"})).ok(), true);
  EXPECT_EQ(s.start("dup", "x", command({"/bin/sleep", "30"})).code(), SpawnError::invalid_argument);
  EXPECT_FALSE(s.kill("nobody-here"));
  stop_all(s);
}

// Out of file descriptors, create() reports epoll_failed with a hint instead of throwing
// (the constructor used to throw std::system_error, which terminated the daemon).
// Runs in the death test's child: exit 0 when create() returns the error, 3 when it throws.
[[noreturn]] void create_without_file_descriptors() {
  rlimit none{0, 0};
  if (::setrlimit(RLIMIT_NOFILE, &none) != 0) ::_exit(2);
  bool ok = false;
  try {
    auto created = Supervisor::create(nullptr, BackoffPolicy{}, BreakerPolicy{});
    ok = !created && created.code() == SupervisorError::epoll_failed &&
         created.message().find("LimitNOFILE") != std::string::npos;
  } catch (...) {
    ::_exit(3);
  }
  ::_exit(ok ? 0 : 1);
}

TEST(SupervisorCreate, OutOfFileDescriptorsIsAnErrorNotAnException) {
  EXPECT_EXIT(create_without_file_descriptors(), ::testing::ExitedWithCode(0), "");
}

TEST_F(SupervisorTest, DestructorLeavesWorkersRunning) {
  pid_t pid = 0;
  {
    auto owned = make_supervisor(nullptr, BackoffPolicy{}, BreakerPolicy{});
    Supervisor& s = *owned;
    auto r = s.start("w", "agent", command({"/bin/sleep", "30"}));
    ASSERT_TRUE(r.ok()) << r.message();
    pid = r->pid;
  }
  EXPECT_TRUE(alive(pid)) << "workers outlive the supervisor";
  ::kill(pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
}

}  // namespace
}  // namespace axon::controlplane

// The real axon-controlplane driving the real axon-dataplane on a veth pair in a namespace the
// test creates: warm pools of real echo_worker processes in real cgroups, respawn after
// kill -9, the crash-loop breaker, takeover after the control plane itself is killed, the data
// plane restarting underneath, drains and scaling, sd_notify through a NOTIFY_SOCKET the test
// listens on, and the REST API over real HTTPS with real tokens (curl) and its unix socket.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "daemon_fixture.h"

namespace axon::controlplane {
namespace {

using namespace daemon_it;

TEST_F(ControlplaneDaemon, PoolComesUpWarmInCgroupsAndServes) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << "\n" << controlplane_->log();
  EXPECT_TRUE(notify_->saw("STATUS=")) << "no STATUS= line";

  auto reply = request(7, 1);
  ASSERT_TRUE(reply) << "no reply through the control plane's routes\n" << controlplane_->log();
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
  EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "ping");

  Http routes = call("GET", "/v1/routes");
  ASSERT_EQ(routes.status, 200) << routes.body;
  ASSERT_EQ(routes.parsed()["routes"].size(), 1u) << routes.body;
  EXPECT_EQ(routes.parsed()["routes"][0]["slots"].size(), 2u) << routes.body;

  // Each worker: in our cgroup in every v1 hierarchy (or the v2 leaf), no capabilities,
  // no_new_privs.
  auto in_cgroup = cgroup_pids();
  for (const auto& w : warm_workers()) {
    pid_t pid = pid_of(w);
    ASSERT_GT(pid, 0);
    std::string cgroups = read_file("/proc/" + std::to_string(pid) + "/cgroup");
    EXPECT_NE(cgroups.find(cgroup_name_ + "/standard/t1/echo"), std::string::npos) << cgroups;
    EXPECT_NE(std::find(in_cgroup.begin(), in_cgroup.end(), pid), in_cgroup.end());
    std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
    EXPECT_NE(status.find("CapEff:\t0000000000000000"), std::string::npos) << status;
    EXPECT_NE(status.find("CapBnd:\t0000000000000000"), std::string::npos) << status;
    EXPECT_NE(status.find("NoNewPrivs:\t1"), std::string::npos) << status;
    EXPECT_NE(status.find("Uid:\t65534\t65534\t65534\t65534"), std::string::npos) << status;
  }
  EXPECT_EQ(read_file("/sys/fs/cgroup/memory/" + cgroup_name_ + "/standard/t1/echo/memory.limit_in_bytes"),
            std::to_string(256ull << 20) + "\n");
  EXPECT_EQ(read_file("/sys/fs/cgroup/pids/" + cgroup_name_ + "/standard/t1/echo/pids.max"), "64\n");

  Http status = call("GET", "/v1/status");
  ASSERT_EQ(status.status, 200) << status.body;
  EXPECT_TRUE(status.parsed()["dataplane"]["connected"].get<bool>()) << status.body;
  EXPECT_EQ(status.parsed()["warm"].get<int>(), 2) << status.body;
  EXPECT_EQ(status.parsed()["cgroup_mode"].get<std::string>(), "v1") << status.body;
}

// Issue 11 item 13, control plane side: a hung worker (SIGSTOP) that the data plane reports
// stalled is killed and replaced, and the replacement is counted by reason.
TEST_F(ControlplaneDaemon, AStalledWorkerIsKilledAndReplaced) {
  ASSERT_EQ(dataplane_->stop(), 0);
  ASSERT_TRUE(start_dataplane("worker_stall_timeout_ms = 300\n"));
  start_controlplane(config_text("", 100));
  ASSERT_TRUE(wait_warm(2)) << workers().dump();
  const pid_t hung = pid_of(warm_workers()[0]);
  ASSERT_EQ(::kill(hung, SIGSTOP), 0);
  // Requests queue at the hung worker (the data plane spreads them over both) until it is
  // found stalled; every one is answered, by the other worker or with an ERROR.
  for (std::uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(request(7, 5000 + i)) << "request " << i << " unanswered";
  EXPECT_TRUE(eventually([&] { return ::kill(hung, 0) != 0; }, 10s)) << "the stalled worker was not killed\n"
                                                                     << workers().dump() << controlplane_->log();
  ::kill(hung, SIGCONT);
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << controlplane_->log();
  const std::string metrics = call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("axon_worker_replacements_total{reason=\"stalled\"} 1"), std::string::npos) << metrics;
  auto reply = request(7, 6000);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
}

TEST_F(ControlplaneDaemon, KilledWorkerIsRespawnedAndRequestsNeverGoUnanswered) {
  // Every kill -9 counts as a crash: keep the breaker out of this test's way. Each kill
  // comes after its victim ran stable_after (300 ms), so each is a first crash.
  std::string config = config_text("", 100);
  config.replace(config.find("stable_after_ms = 2000"), 22, "stable_after_ms = 300");
  start_controlplane(config);
  ASSERT_TRUE(wait_warm(2)) << workers().dump();
  std::vector<double> respawn_ms;
  for (int round = 0; round < 10; ++round) {
    auto before = warm_workers();
    ASSERT_EQ(before.size(), 2u);
    pid_t victim = pid_of(before[0]);
    pid_t other = pid_of(before[1]);
    auto killed_at = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    // In the first rounds, requests sent meanwhile must all be answered: by the surviving
    // worker, or with an ERROR. The later rounds only time the respawn.
    if (round < 3) {
      for (std::uint64_t i = 0; i < 10; ++i) {
        auto reply = request(7, 1000 + round * 100 + i);
        ASSERT_TRUE(reply) << "request " << i << " after kill -9 went unanswered";
      }
    }
    ASSERT_TRUE(eventually([&] {
      // At most ~100 polls a second: eventually's 2 ms cadence would outrun the API's rate
      // limit (200/s, burst 400) during a slow respawn and read only 429s from then on.
      std::this_thread::sleep_for(8ms);
      auto now = warm_pids_via_unix_socket();
      return now && now->size() == 2 && std::find(now->begin(), now->end(), victim) == now->end();
    })) << "round "
        << round << ", victim " << victim << " " << describe_pids({victim}) << "\n"
        << workers().dump() << "\nlast answer on the unix socket: " << unix_api_status_ << "\n"
        << controlplane_->log() << "\n"
        << read_file(tmp_.path() + "/log/workers/echo-0.log") << read_file(tmp_.path() + "/log/workers/echo-1.log");
    if (round >= 3) {
      respawn_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed_at).count());
    }
    bool other_kept = false;
    bool at_once = false;
    for (const auto& w : warm_workers()) {
      other_kept |= pid_of(w) == other;
      // The replacement's record: a first crash, respawned with no backoff.
      if (pid_of(w) != other) {
        at_once = w.value("last_respawn_delay_ms", -1) == 0 && w.value("crash_streak", 0) == 1 &&
                  w.value("last_exit", "") == "killed by signal 9 (SIGKILL)";
      }
    }
    EXPECT_TRUE(other_kept) << "the surviving worker was replaced too";
    EXPECT_TRUE(at_once) << "a first crash waited for a backoff: " << workers().dump();
    EXPECT_EQ(cgroup_pids().size(), 2u) << "duplicate or missing workers in the cgroup";
    std::this_thread::sleep_for(350ms);  // the next kill is a first crash again
  }
  std::sort(respawn_ms.begin(), respawn_ms.end());
  // The figure for the notes (kill -9 -> pool back to min warm, seen through the API on its unix socket).
  std::printf(
      "[ figure ] kill -9 -> pool back to 2 warm (first crashes, no backoff): median %.1f ms, max %.1f ms over "
      "%zu kills\n",
      respawn_ms[respawn_ms.size() / 2], respawn_ms.back(), respawn_ms.size());
  Http agent = call("GET", "/v1/agents/echo");
  EXPECT_GE(agent.parsed()["restarts"].get<int>(), 10) << agent.body;
  EXPECT_EQ(agent.parsed()["breaker"].get<std::string>(), "closed") << agent.body;
}

TEST_F(ControlplaneDaemon, CrashLoopOpensTheBreakerAndTheAgentGetsErrors) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  json spec{
      {"name", "crashy"}, {"id", 9}, {"tenant", 1}, {"command", {"/bin/false"}}, {"pool", {{"min", 1}, {"max", 1}}}};
  // The reader role cannot change anything; no token is 401.
  Http denied = call("POST", "/v1/agents", spec.dump(), &reader_token_);
  EXPECT_EQ(denied.status, 403) << denied.body;
  std::string none;
  EXPECT_EQ(call("POST", "/v1/agents", spec.dump(), &none).status, 401);
  Http created = call("POST", "/v1/agents", spec.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  ASSERT_TRUE(eventually([&] { return call("GET", "/v1/agents/crashy").parsed().value("breaker", "") == "open"; }))
      << call("GET", "/v1/agents/crashy").body << "\n"
      << controlplane_->log();
  // Bounded: the breaker stops respawns at `breaker_failures` crashes.
  std::this_thread::sleep_for(500ms);
  json agent = call("GET", "/v1/agents/crashy").parsed();
  EXPECT_LE(agent["restarts"].get<int>(), 5) << agent.dump();
  EXPECT_NE(agent.value("last_exit", "").find("status 1"), std::string::npos) << agent.dump();
  // Its requests get an explicit ERROR, never silence.
  auto reply = request(9, 42);
  ASSERT_TRUE(reply) << "a request for an agent with an open breaker went unanswered";
  EXPECT_EQ(reply->header.type, protocol::MessageType::error);
  // The healthy agent is unaffected.
  auto ok = request(7, 43);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->header.type, protocol::MessageType::response);
  // The audit log names who did what.
  std::string audit = read_file(tmp_.path() + "/audit.log");
  EXPECT_NE(audit.find("test-admin"), std::string::npos) << audit;
  EXPECT_NE(audit.find("test-reader"), std::string::npos) << audit;
  EXPECT_EQ(call("DELETE", "/v1/agents/crashy").status, 204);
}

// Issue 11 item 7: deleting an agent whose breaker is open stopped its workers (in backoff,
// no process) from inside the loop over the workers, and the stop erased the entry being
// visited: SIGSEGV in progress_drains. The daemon must survive and forget the agent.
TEST_F(ControlplaneDaemon, DeletingAnAgentWithAnOpenBreakerKeepsTheDaemonRunning) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  json spec{
      {"name", "crashy"}, {"id", 9}, {"tenant", 1}, {"command", {"/bin/false"}}, {"pool", {{"min", 2}, {"max", 2}}}};
  ASSERT_EQ(call("POST", "/v1/agents", spec.dump()).status, 201);
  ASSERT_TRUE(eventually([&] { return call("GET", "/v1/agents/crashy").parsed().value("breaker", "") == "open"; }))
      << controlplane_->log();
  ASSERT_EQ(call("DELETE", "/v1/agents/crashy").status, 204);
  // Its workers leave the list, and the daemon lives on through several ticks.
  EXPECT_TRUE(eventually([&] { return workers("crashy").empty() || !controlplane_->running(); }));
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(controlplane_->running()) << controlplane_->log();
  EXPECT_EQ(call("GET", "/v1/agents/crashy").status, 404);
  // The same name can be registered again once the old pool is gone.
  spec["command"] = {AXON_ECHO_WORKER_BIN};
  spec["pool"] = {{"min", 1}, {"max", 1}};
  EXPECT_TRUE(eventually([&] { return call("POST", "/v1/agents", spec.dump()).status == 201; }))
      << controlplane_->log();
  EXPECT_TRUE(wait_warm(1, "crashy")) << controlplane_->log();
  ASSERT_TRUE(controlplane_->running()) << controlplane_->log();
}

TEST_F(ControlplaneDaemon, KillingTheControlPlaneKeepsTrafficAndARestartAdoptsTheWorkers) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  std::set<pid_t> pids;
  for (const auto& w : warm_workers()) pids.insert(pid_of(w));
  controlplane_->kill_now();  // SIGKILL
  // The data plane keeps serving with its last tables.
  for (std::uint64_t i = 0; i < 20; ++i) {
    auto reply = request(7, 5000 + i);
    ASSERT_TRUE(reply) << "traffic stopped with the control plane";
    EXPECT_EQ(reply->header.type, protocol::MessageType::response);
  }
  for (pid_t pid : pids) EXPECT_EQ(::kill(pid, 0), 0) << "worker " << pid << " died with the control plane";

  notify_ = std::make_unique<NotifyListener>(tmp_.path() + "/notify2.sock");
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << controlplane_->log();
  std::set<pid_t> after;
  for (const auto& w : warm_workers()) after.insert(pid_of(w));
  EXPECT_EQ(after, pids) << "the restarted control plane did not adopt the running workers";
  // No duplicates, no orphans: exactly the two adopted workers in the agent's cgroup.
  std::this_thread::sleep_for(500ms);
  auto in_cgroup = cgroup_pids();
  EXPECT_EQ(std::set<pid_t>(in_cgroup.begin(), in_cgroup.end()), pids);
  Http metrics = call("GET", "/metrics");
  EXPECT_NE(metrics.body.find("axon_workers_adopted_total 2"), std::string::npos) << metrics.body;
  // An adopted worker that crashes is respawned like any other.
  ::kill(*pids.begin(), SIGKILL);
  ASSERT_TRUE(eventually([&] {
    auto now = warm_workers();
    return now.size() == 2 &&
           std::none_of(now.begin(), now.end(), [&](const json& w) { return pid_of(w) == *pids.begin(); });
  })) << workers().dump();
}

TEST_F(ControlplaneDaemon, DataPlaneRestartIsFollowed) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  ASSERT_EQ(dataplane_->stop(), 0);
  ASSERT_TRUE(eventually([&] { return !call("GET", "/v1/status").parsed()["dataplane"]["connected"].get<bool>(); }));
  ASSERT_TRUE(start_dataplane());
  // Workers of the old data plane exit; the pools respawn them on the new one's slots and
  // the tables are pushed again.
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << controlplane_->log();
  ASSERT_TRUE(eventually([&] {
    auto reply = request(7, 77, 500ms);
    return reply && reply->header.type == protocol::MessageType::response;
  })) << controlplane_->log();
}

TEST_F(ControlplaneDaemon, DrainScaleAndDelete) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  Http scaled = call("POST", "/v1/agents/echo/scale", R"({"min": 3, "max": 3})");
  ASSERT_EQ(scaled.status, 200) << scaled.body;
  ASSERT_TRUE(wait_warm(3)) << workers().dump();

  json victim = warm_workers()[0];
  Http drained = call("POST", "/v1/workers/" + victim["id"].get<std::string>() + "/drain");
  ASSERT_EQ(drained.status, 200) << drained.body;
  // The drained worker exits; min = 3 brings a replacement.
  ASSERT_TRUE(eventually([&] { return ::kill(pid_of(victim), 0) != 0; })) << "drained worker still running";
  ASSERT_TRUE(wait_warm(3)) << workers().dump();

  ASSERT_EQ(call("POST", "/v1/agents/echo/scale", R"({"min": 1, "max": 1})").status, 200);
  ASSERT_TRUE(wait_warm(1)) << workers().dump();
  auto reply = request(7, 9);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);

  EXPECT_EQ(call("POST", "/v1/workers/nope-1/drain").status, 404);
  ASSERT_EQ(call("DELETE", "/v1/agents/echo").status, 204);
  ASSERT_TRUE(eventually([&] { return cgroup_pids().empty(); }))
      << "still in the deleted agent's cgroup: " << describe_pids(cgroup_pids()) << "\n"
      << workers().dump() << "\n"
      << controlplane_->log();
  ASSERT_TRUE(eventually([&] {
    return !std::filesystem::exists("/sys/fs/cgroup/pids/" + cgroup_name_ + "/standard/t1/echo");
  })) << "a deleted agent's cgroup was left behind";
  // Deleted: its requests are answered unknown_agent.
  auto gone = request(7, 10);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->header.type, protocol::MessageType::error);
}

TEST_F(ControlplaneDaemon, MetricsPassPromtoolAndUnixSocketIsRootAdmin) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  ASSERT_TRUE(request(7, 1));
  Http metrics = call("GET", "/metrics", "", &reader_token_);
  ASSERT_EQ(metrics.status, 200) << metrics.body;
  EXPECT_NE(metrics.body.find("axon_agent_workers_warm{agent=\"echo\"} 2"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("axon_dataplane_responses_total"), std::string::npos);
  EXPECT_NE(metrics.body.find("axon_dataplane_busy_reasons_total{reason=\"queue_delay\"} "), std::string::npos);
  EXPECT_NE(metrics.body.find("axon_dataplane_deadline_refused_total{kind=\"unmeetable\"} "), std::string::npos);
  // Issue 15: the per-stage histograms, in seconds, labelled by stage and class only; the
  // request above counted in every stage.
  EXPECT_NE(metrics.body.find("# TYPE axon_dataplane_stage_latency_seconds histogram"), std::string::npos);
  for (const char* stage : {"ingress", "queue", "handler", "return", "egress", "total"}) {
    const std::string count =
        std::string("axon_dataplane_stage_latency_seconds_count{stage=\"") + stage + "\",class=\"interactive\"} ";
    const auto at = metrics.body.find(count);
    ASSERT_NE(at, std::string::npos) << count;
    EXPECT_GE(std::stoull(metrics.body.substr(at + count.size())), 1u) << count;
  }
  std::string file = tmp_.path() + "/metrics.txt";
  {
    std::ofstream out(file);
    out << metrics.body;
  }
  std::string out;
  int rc = run_command({"sh", "-c", "promtool check metrics < " + file}, &out);
  EXPECT_EQ(rc, 0) << out;

  Http via_unix = call("GET", "/v1/status", "", nullptr, /*unix_socket=*/true);
  EXPECT_EQ(via_unix.status, 200) << via_unix.body;
  Http scale_unix = call("POST", "/v1/agents/echo/scale", R"({"max": 4})", nullptr, true);
  EXPECT_EQ(scale_unix.status, 200) << scale_unix.body;
}

TEST_F(ControlplaneDaemon, SdNotifyLifecycleAndCleanStop) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  ASSERT_TRUE(eventually([&] { return notify_->saw("WATCHDOG=1"); })) << "no watchdog ping at WATCHDOG_USEC/2";
  std::vector<pid_t> pids;
  for (const auto& w : warm_workers()) pids.push_back(pid_of(w));
  controlplane_->signal(SIGTERM);
  auto code = controlplane_->wait_exit(20s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << controlplane_->log();
  EXPECT_TRUE(notify_->saw("STOPPING=1"));
  // on_exit = "stop": workers drained and stopped, our cgroups removed.
  for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "worker " << pid << " still running";
  EXPECT_FALSE(std::filesystem::exists("/sys/fs/cgroup/pids/" + cgroup_name_ + "/standard/t1/echo"));
  controlplane_.reset();
}

TEST_F(ControlplaneDaemon, RunsTheDataPlaneItselfAndAdoptsItAfterARestart) {
  // [dataplane] command: no systemd; the control plane starts and supervises the data plane.
  ASSERT_EQ(dataplane_->stop(), 0);
  std::string config = config_text();
  config.replace(config.find("[dataplane]\n"), 12,
                 "[dataplane]\ncommand = [\"" + std::string(AXON_DATAPLANE_BIN) + "\", \"--config\", \"" +
                     dataplane_->config_path() + "\"]\n");
  start_controlplane(config);
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << controlplane_->log();
  pid_t dataplane_pid = call("GET", "/v1/status").parsed()["dataplane"]["pid"].get<pid_t>();
  ASSERT_GT(dataplane_pid, 0);
  auto reply = request(7, 1);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
  // A control-plane crash does not take the data plane (or its workers) with it, and the
  // next control plane adopts it instead of starting a second one.
  controlplane_->kill_now();
  ASSERT_TRUE(request(7, 2));
  notify_ = std::make_unique<NotifyListener>(tmp_.path() + "/notify3.sock");
  start_controlplane(config);
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << controlplane_->log();
  EXPECT_EQ(call("GET", "/v1/status").parsed()["dataplane"]["pid"].get<pid_t>(), dataplane_pid);
  // on_exit = "stop" stops the data plane it runs, too.
  controlplane_->signal(SIGTERM);
  ASSERT_TRUE(controlplane_->wait_exit(30s));
  EXPECT_TRUE(eventually([&] { return ::kill(dataplane_pid, 0) != 0; })) << "the data plane outlived its stop";
  controlplane_.reset();
}

// Issue 11 item 14: the control plane never reports ready while a pool cannot start. A
// seeded agent whose workers exit at once opens its breaker before the pool is warm: the
// daemon says why and exits instead of sending READY=1.
TEST_F(ControlplaneDaemon, NeverReadyWhileAPoolCannotStart) {
  start_controlplane(config_text("[[agents]]\nname = \"crashy\"\nid = 9\ntenant = 1\ncommand = [\"/bin/false\"]\n"
                                 "min_workers = 1\nmax_workers = 1\n"),
                     false);
  auto code = controlplane_->wait_exit(30s);
  ASSERT_TRUE(code) << "still running: " << controlplane_->log();
  EXPECT_NE(*code, 0);
  EXPECT_FALSE(notify_->saw("READY=1")) << controlplane_->log();
  EXPECT_NE(controlplane_->log().find("agent crashy cannot start its workers"), std::string::npos)
      << controlplane_->log();
  controlplane_.reset();
}

// Issue 16 leftover: the tuning service runs in the daemon ([tuning]), answers /v1/tuning and
// exports its metrics. Verify only (read-only): the test never changes the host.
TEST_F(ControlplaneDaemon, TuningServiceIsWiredIntoTheDaemon) {
  start_controlplane(config_text() + "[tuning]\nprofile = \"latency\"\nverify_interval_ms = 0\nstate_dir = \"" +
                     tmp_.path() + "/tuning\"\nprofile_dirs = [\"" + AXON_TUNING_PROFILE_DIR + "\"]\n");
  Http state = call("GET", "/v1/tuning");
  ASSERT_EQ(state.status, 200) << state.body << controlplane_->log();
  EXPECT_NE(state.body.find("latency"), std::string::npos) << state.body;
  Http profiles = call("GET", "/v1/tuning/profiles");
  EXPECT_EQ(profiles.status, 200) << profiles.body;
  EXPECT_NE(profiles.body.find("latency"), std::string::npos) << profiles.body;
  // Applying needs the admin role; a reader is refused before the tuning service is asked.
  EXPECT_EQ(call("POST", "/v1/tuning/apply", R"({"profile":"latency"})", &reader_token_).status, 403);
  Http metrics = call("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("axon_tuning_verifications_total"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("axon_tuning_drift{profile=\"latency\"}"), std::string::npos) << metrics.body;
}

// A damaged <run_dir>/controlplane-workers.json (entries of the wrong shape) is ignored
// entry by entry: the control plane starts and fills its pools. It used to let nlohmann's
// type_error escape start() and die.
TEST_F(ControlplaneDaemon, ADamagedWorkersFileDoesNotStopTheStart) {
  std::ofstream(run_dir_ + "/controlplane-workers.json")
      << R"([{"id": 5}, 7, {"id":"x","agent":"echo","slot":"s","pid":"1"}])";
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << controlplane_->log();
  EXPECT_NE(controlplane_->log().find("ignoring a worker entry"), std::string::npos) << controlplane_->log();
}

TEST_F(ControlplaneDaemon, BadConfigAndUnusableCgroupsFailClearly) {
  start_controlplane(config_text() + "\n[bogus]\nx = 1\n", false);
  auto code = controlplane_->wait_exit(10s);
  ASSERT_TRUE(code);
  EXPECT_NE(*code, 0);
  EXPECT_NE(controlplane_->log().find("unknown key 'bogus'"), std::string::npos) << controlplane_->log();
  EXPECT_NE(controlplane_->log().find("controlplane.toml:"), std::string::npos) << controlplane_->log();

  std::string config = config_text();
  config.replace(config.find("[cgroups]\n"), 10, "[cgroups]\nmode = \"v2\"\nv2_root = \"/nonexistent/cg\"\n");
  start_controlplane(config, false);
  code = controlplane_->wait_exit(10s);
  ASSERT_TRUE(code);
  EXPECT_NE(*code, 0);
  EXPECT_NE(controlplane_->log().find("/nonexistent/cg"), std::string::npos) << controlplane_->log();
  controlplane_.reset();
}

// Issue 11 item 15: with worker_uids, every worker runs under its own uid, owns its slot
// socket (0600) alone, and is not dumpable. A second process of a worker's uid, and a
// process of another worker's uid, can open neither the worker's segment through
// /proc/<pid>/fd/ nor its slot socket.
TEST_F(ControlplaneDaemon, EachWorkerHasItsOwnUidAndNoOtherProcessReachesItsSegment) {
  controlplane_extra_ = "worker_uids = \"61000-61099\"\n";
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << "\n" << controlplane_->log();
  struct Seen {
    pid_t pid;
    uid_t uid;
    std::string socket;
    std::vector<std::string> segment_links;  // /proc/<pid>/fd/N naming a memfd
  };
  std::vector<Seen> seen;
  for (const auto& w : warm_workers()) {
    Seen s{pid_of(w), 0, run_dir_ + "/workers/" + w.value("slot", "") + ".sock", {}};
    struct stat st {};
    ASSERT_EQ(::stat(("/proc/" + std::to_string(s.pid) + "/fd").c_str(), &st), 0);
    std::string status = read_file("/proc/" + std::to_string(s.pid) + "/status");
    auto at = status.find("Uid:\t");
    ASSERT_NE(at, std::string::npos) << status;
    s.uid = uid_t(std::stoul(status.substr(at + 5)));
    EXPECT_GE(s.uid, 61000u);
    EXPECT_LE(s.uid, 61099u);
    EXPECT_NE(status.find("Gid:\t" + std::to_string(s.uid) + "\t"), std::string::npos) << status;
    auto groups = status.find("Groups:\t");
    ASSERT_NE(groups, std::string::npos) << status;
    EXPECT_EQ(status.substr(groups + 8, status.find('\n', groups) - groups - 8).find_first_not_of(' '),
              std::string::npos)
        << "supplementary groups: " << status;
    // Not dumpable: the kernel hands /proc/<pid>/fd (and the rest but the directory) to root.
    EXPECT_EQ(st.st_uid, 0u) << "the worker is dumpable: /proc/" << s.pid << "/fd belongs to uid " << st.st_uid;
    struct stat sock {};
    ASSERT_EQ(::stat(s.socket.c_str(), &sock), 0) << s.socket;
    EXPECT_EQ(sock.st_uid, s.uid) << s.socket;
    EXPECT_EQ(sock.st_mode & 07777, 0600u) << s.socket;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(s.pid) + "/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(fd.path(), ec);
      if (!ec && target.string().find("memfd:") != std::string::npos) s.segment_links.push_back(fd.path());
    }
    EXPECT_FALSE(s.segment_links.empty()) << "worker " << s.pid << " holds no memfd";
    seen.push_back(s);
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0].uid, seen[1].uid);

  // How many of `paths` (and `socket`, unless empty) a fresh process of `uid` opens,
  // reported through its exit status.
  auto opened_as = [](uid_t uid, const std::vector<std::string>& paths, const std::string& socket) {
    pid_t child = ::fork();
    if (child == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)
        _exit(100);
      int opened = 0;
      for (const auto& path : paths) {
        int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        if (fd >= 0) ++opened;
      }
      if (socket.empty()) _exit(opened);
      int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
      if (::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) ++opened;
      _exit(opened);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
  };
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const Seen& victim = seen[i];
    const Seen& other = seen[1 - i];
    // Its own uid may connect to the slot socket (item 16's grant check refuses it there).
    EXPECT_EQ(opened_as(victim.uid, victim.segment_links, ""), 0)
        << "a second process of worker " << victim.pid << "'s own uid " << victim.uid << " opened its segment";
    EXPECT_EQ(opened_as(other.uid, victim.segment_links, victim.socket), 0)
        << "worker uid " << other.uid << " opened worker " << victim.pid << "'s segment or slot socket";
  }
  // The workers still serve.
  auto reply = request(7, 1);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
}

// Issue 11 item 17: an admin token is not a root shell. Through the real HTTPS API with a
// real token, an agent whose user or command is outside the configured allowlists is
// refused with 400 and the reason, on create and on update, and nothing is started.
TEST_F(ControlplaneDaemon, WorkerUsersAndCommandsOutsideTheAllowlistsAreRefused) {
  controlplane_extra_ = "allowed_worker_users = [\"daemon\"]\n";
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  struct Case {
    json spec;
    const char* reason;
  };
  auto agent = [](const std::string& command, const std::string& user) {
    json j{{"name", "evil"}, {"id", 66}, {"tenant", 1}, {"command", {command}}, {"pool", {{"min", 1}, {"max", 1}}}};
    if (!user.empty()) j["user"] = user;
    return j;
  };
  const Case cases[] = {
      {agent(AXON_ECHO_WORKER_BIN, "root"), "allowed_worker_users"},
      {agent(AXON_ECHO_WORKER_BIN, "bin"), "user 'bin' is not allowed"},
      {agent("/bin/sh", ""), "command '/bin/sh' is not allowed"},
      {agent("/bin/sh", "daemon"), "allowed_worker_commands"},
      {agent(std::filesystem::path(AXON_ECHO_WORKER_BIN).parent_path().string() + "/../../../../../bin/sh", ""),
       "allowed_worker_commands"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec.dump());
    Http r = call("POST", "/v1/agents", c.spec.dump());
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find(c.reason), std::string::npos) << r.body;
  }
  EXPECT_EQ(call("GET", "/v1/agents/evil").status, 404);
  // An allowed user is accepted; turning the existing agent into root is refused.
  Http ok = call("POST", "/v1/agents", agent(AXON_ECHO_WORKER_BIN, "daemon").dump());
  ASSERT_EQ(ok.status, 201) << ok.body;
  json to_root = agent(AXON_ECHO_WORKER_BIN, "root");
  Http update = call("PUT", "/v1/agents/evil", to_root.dump());
  EXPECT_EQ(update.status, 400) << update.body;
  EXPECT_NE(update.body.find("allowed_worker_users"), std::string::npos) << update.body;
  EXPECT_EQ(call("GET", "/v1/agents/evil").parsed()["spec"].value("user", ""), "daemon");
  // No process of ours ever ran as root.
  for (const auto& w : workers("evil")) {
    std::string status = read_file("/proc/" + std::to_string(pid_of(w)) + "/status");
    EXPECT_EQ(status.find("Uid:\t0\t"), std::string::npos) << status;
  }
  EXPECT_EQ(call("DELETE", "/v1/agents/evil").status, 204);
}

// Tries, as `uid`, to claim the slot behind `socket` until `for_ms` have passed: 1 when the
// data plane handed it a segment, 0 when every attempt was refused. Runs in a forked child:
// raw system calls only.
int claim_slot_as(uid_t uid, const std::string& socket, int for_ms) {
  pid_t child = ::fork();
  if (child != 0) {
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
  }
  if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) _exit(101);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
  timespec start{}, now{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1'000'000 > for_ms) _exit(0);
    int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      pollfd pfd{s, POLLIN, 0};
      if (::poll(&pfd, 1, 5000) > 0) {
        char data[256];
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
        iovec iov{data, sizeof data};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        if (::recvmsg(s, &msg, MSG_CMSG_CLOEXEC) > 0 && CMSG_FIRSTHDR(&msg) != nullptr) _exit(1);  // a segment
      }
    }
    ::close(s);
    ::usleep(10'000);
  }
}

// Issue 11 item 16: after a worker dies, a process of its uid connecting to the slot before
// the control plane's respawn is refused (the slot is granted to the respawned pid only),
// and the respawn attaches.
TEST_F(ControlplaneDaemon, ADeadWorkersSlotIsClaimedOnlyByItsRespawn) {
  controlplane_extra_ = "worker_uids = \"61000-61099\"\n";
  std::string config = config_text("", 100);
  // A first crash is respawned at once; the second quick crash of the same worker waits
  // 1.5 s (crash-loop backoff): time for the impostor to try.
  config.replace(config.find("backoff_initial_ms = 20"), 23, "backoff_initial_ms = 1500");
  config.replace(config.find("backoff_max_ms = 200"), 20, "backoff_max_ms = 3000");
  start_controlplane(config);
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << "\n" << controlplane_->log();
  json victim = warm_workers()[0];
  const std::string slot = victim.value("slot", "");
  const std::string socket = run_dir_ + "/workers/" + slot + ".sock";
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  const uid_t uid = st.st_uid;
  ASSERT_NE(uid, 0u);
  const pid_t first_pid = pid_of(victim);
  ASSERT_EQ(::kill(first_pid, SIGKILL), 0);
  pid_t victim_pid = 0;
  ASSERT_TRUE(eventually([&] {
    for (const auto& w : warm_workers()) {
      if (w.value("slot", "") == slot && pid_of(w) != first_pid) victim_pid = pid_of(w);
    }
    return victim_pid != 0;
  })) << workers().dump();
  ASSERT_EQ(::kill(victim_pid, SIGKILL), 0);
  EXPECT_EQ(claim_slot_as(uid, socket, 1300), 0)
      << "a process of uid " << uid << " took slot " << slot << " before the respawn\n"
      << dataplane_->log();
  // The control plane's respawn gets the slot.
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& w : warm_workers()) {
          if (w.value("slot", "") == slot && pid_of(w) != victim_pid) return true;
        }
        return false;
      },
      10s))
      << workers().dump() << "\n"
      << controlplane_->log() << "\n"
      << dataplane_->log();
  EXPECT_NE(dataplane_->log().find("refusing pid"), std::string::npos) << dataplane_->log();
  auto reply = request(7, 2);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
}

// Issue 12 item 5: after setup the data plane keeps only its run-time capabilities
// (docs/operations.md, "Capabilities at run time"): on the XDP backend CAP_KILL and
// CAP_NET_ADMIN, in every thread that serves (the control thread and the lcores) and in the
// bounding set. Workers hold nothing at all. Both read from /proc of the real processes
// while they serve.
TEST_F(ControlplaneDaemon, DataPlaneKeepsOnlyItsRunTimeCapabilitiesAndWorkersNone) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  auto field = [](const std::string& status, const std::string& key) {
    auto at = status.find(key + ":\t");
    return at == std::string::npos ? std::string("?")
                                   : status.substr(at + key.size() + 2, status.find('\n', at) - at - key.size() - 2);
  };
  const std::string dp = "/proc/" + std::to_string(dataplane_->pid());
  const std::string backend = dataplane_->stats().header().backend;
  std::uint64_t expected = 1ull << CAP_KILL;
  if (backend == "xdp") expected |= 1ull << CAP_NET_ADMIN;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(expected));
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(dp + "/task")) {
    std::string status = read_file(task.path().string() + "/status");
    std::string name = field(status, "Name");
    SCOPED_TRACE("thread " + name + " (backend " + backend + ")");
    EXPECT_EQ(field(status, "CapEff"), hex);
    EXPECT_EQ(field(status, "CapPrm"), hex);
    EXPECT_EQ(field(status, "CapInh"), "0000000000000000");
    EXPECT_EQ(field(status, "CapAmb"), "0000000000000000");
    EXPECT_EQ(field(status, "CapBnd"), hex);
    ++threads;
  }
  EXPECT_GE(threads, 2) << "the control thread and at least one lcore";
  EXPECT_NE(dataplane_->log().find("capabilities after setup: "), std::string::npos) << dataplane_->log();
  for (const auto& w : warm_workers()) {
    std::string status = read_file("/proc/" + std::to_string(pid_of(w)) + "/status");
    for (const char* key : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      EXPECT_EQ(field(status, key), "0000000000000000") << key;
    }
    EXPECT_EQ(field(status, "NoNewPrivs"), "1");
  }
  // It still does its run-time jobs: serve, and take new tables.
  auto reply = request(7, 3);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
}

// Issue 12 item 5: the control plane does its whole job with only the unit's
// CapabilityBoundingSet and NoNewPrivileges (as systemd would run it, through setpriv):
// workers in their cgroups under their own uids, slot sockets handed over, a worker killed
// and respawned, traffic served.
TEST_F(ControlplaneDaemon, RunsWithOnlyTheUnitsBoundingSet) {
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv (util-linux) not installed";
  std::ifstream unit(AXON_SOURCE_DIR "/deploy/systemd/axon-controlplane.service");
  std::string line, caps;
  while (std::getline(unit, line)) {
    if (line.rfind("CapabilityBoundingSet=", 0) != 0) continue;
    std::istringstream names(line.substr(22));
    for (std::string cap; names >> cap;) {
      std::string name = cap.substr(4);  // CAP_SETUID -> setuid
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      caps += ",+" + name;
    }
  }
  ASSERT_FALSE(caps.empty()) << "axon-controlplane.service has no CapabilityBoundingSet";
  launch_prefix_ = {"/usr/bin/setpriv", "--bounding-set=-all" + caps, "--no-new-privs", "--"};
  controlplane_extra_ = "worker_uids = \"61000-61099\"\n";
  start_controlplane(config_text("", 100));
  ASSERT_TRUE(wait_warm(2)) << workers().dump() << "\n" << controlplane_->log();
  std::string status = read_file("/proc/" + std::to_string(controlplane_->pid()) + "/status");
  EXPECT_NE(status.find("NoNewPrivs:\t1"), std::string::npos) << status;
  pid_t victim = pid_of(warm_workers()[0]);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto warm = warm_workers();
    return warm.size() == 2 && pid_of(warm[0]) != victim && pid_of(warm[1]) != victim;
  })) << workers().dump()
      << "\n"
      << controlplane_->log();
  auto reply = request(7, 4);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
}

}  // namespace
}  // namespace axon::controlplane

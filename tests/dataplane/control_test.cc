// End-to-end tests of the data plane's control socket and of the worker-side behaviour the
// control plane relies on when it respawns workers: the real axon-dataplane on a veth pair
// in a namespace this test creates, real echo_worker processes, tables pushed through
// ControlClient, and AXP requests from inside the namespace.
//
// Nothing asserts on a sleep: every wait polls a condition against a deadline.
#include "axon/dataplane/control.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <thread>

#include "axon/bpf/xdp_program.h"
#include "axon/testing/dataplane_it.h"

namespace axon::dataplane::it {
namespace {

using control::ControlClient;
using control::ControlError;
using control::Tables;
using protocol::ErrorCode;
using protocol::Header;
using protocol::MessageType;
using protocol::Reason;

constexpr std::uint32_t kSlots = 4;

std::string describe(const Received& rx) {
  if (rx.reason != Reason::ok) return std::string("invalid AXP (") + protocol::to_string(rx.reason) + ")";
  std::string s = protocol::to_string(rx.header.type);
  if (rx.header.type == MessageType::error) s += std::string(" ") + protocol::to_string(rx.header.error_code);
  return s;
}

bool is_error(const Received& rx, ErrorCode code) {
  return rx.reason == Reason::ok && rx.header.type == MessageType::error && rx.header.error_code == code;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Tables: tenant 1 (allowing the test network), agent 7 -> the given slots.
Tables tables_for(const TestNetwork& net, std::uint64_t version, std::vector<std::string> agent7_slots) {
  Tables t;
  t.version = version;
  t.tenants.push_back({1, "t1", 0, 0, {net.prefix4}});
  t.agents.push_back({7, 1, "echo", std::move(agent7_slots), {}});
  return t;
}

class ControlIT : public DataplaneIT<ControlIT> {
 protected:
  static void SetUpTestSuite() { create_network(axon::testing::NetworkSpec{}); }

  // Generic slots only, no tables: everything routed comes from the control socket.
  ConfigSpec generic_spec(const std::string& extra = "") const {
    ConfigSpec spec;
    spec.workers.clear();
    spec.tables.clear();
    spec.dataplane_extra = "worker_slots = " + std::to_string(kSlots) + "\n" + extra;
    return spec;
  }

  // echo_worker on a slot, with extra environment; does not wait for it to attach.
  ChildProcess* spawn_worker(const std::string& slot, const std::vector<std::string>& env = {}) {
    processes_.push_back(std::make_unique<ChildProcess>());
    ChildProcess* w = processes_.back().get();
    std::vector<std::string> full_env{"AXON_WORKER_SOCKET=" + daemon_->socket_path(slot)};
    full_env.insert(full_env.end(), env.begin(), env.end());
    std::string error;
    static int serial = 0;
    EXPECT_TRUE(w->start({AXON_ECHO_WORKER_BIN}, full_env,
                         dir_->path() + "/worker-" + slot + "-" + std::to_string(serial++) + ".log", &error))
        << error;
    return w;
  }

  ChildProcess* start_worker(const std::string& slot, std::size_t index) {
    ChildProcess* w = spawn_worker(slot);
    if (!eventually([&] { return slot_alive_with(index, w->pid()); })) {
      ADD_FAILURE() << "slot " << slot << " never showed pid " << w->pid() << " alive";
      return nullptr;
    }
    return w;
  }

  ControlClient connect_client() {
    auto client = ControlClient::connect(dir_->path());
    EXPECT_TRUE(client.ok()) << client.message();
    if (!client.ok()) std::abort();  // every caller needs a client; fail loudly
    return std::move(client).value();
  }

  std::optional<Received> roundtrip(AxpClient& client, const Header& h, std::span<const std::uint8_t> payload = {}) {
    if (!client.send(h, payload)) return std::nullopt;
    // Skip replies to earlier requests that arrived late.
    auto got = client.receive_until(
        [&](const std::vector<Received>& all) {
          return !all.empty() && all.back().reason == Reason::ok && all.back().header.request_id == h.request_id;
        },
        kPatience);
    if (got.empty() || got.back().header.request_id != h.request_id) return std::nullopt;
    return got.back();
  }

  void expect_echo(AxpClient& client, std::uint32_t agent, const char* context) {
    Header h = request_header(1, agent);
    auto payload = pattern_payload(40, std::uint8_t(agent));
    auto rx = roundtrip(client, h, payload);
    ASSERT_TRUE(rx) << context << ": no reply from agent " << agent;
    ASSERT_EQ(rx->header.type, MessageType::response) << context << ": " << describe(*rx);
    EXPECT_EQ(rx->payload, payload) << context;
  }

  void expect_error_reply(AxpClient& client, std::uint32_t agent, ErrorCode code, const char* context) {
    Header h = request_header(1, agent);
    auto rx = roundtrip(client, h);
    ASSERT_TRUE(rx) << context << ": no reply at all (a request must never be met with silence)";
    EXPECT_TRUE(is_error(*rx, code)) << context << ": expected ERROR " << protocol::to_string(code) << ", got "
                                     << describe(*rx);
  }
};

TEST_F(ControlIT, HelloDescribesTheDataPlaneAndItsGenericSlots) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  struct stat st {};
  ASSERT_EQ(stat(control::control_socket_path(dir_->path()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u) << "control.sock must be 0660";
  ChildProcess* w = start_worker("slot-1", 1);
  ASSERT_NE(w, nullptr);

  ControlClient client = connect_client();
  auto hello = client.hello();
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_EQ(hello->protocol, control::kProtocolVersion);
  EXPECT_EQ(hello->pid, daemon_->pid());
  EXPECT_EQ(hello->interface, net_->root_if);
  EXPECT_EQ(hello->backend, "xdp");
  EXPECT_EQ(hello->mode, "copy");  // veth has no zero copy
  EXPECT_EQ(hello->run_dir, dir_->path());
  EXPECT_EQ(hello->table_version, 0u);
  ASSERT_EQ(hello->slots.size(), std::size_t(kSlots));
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    EXPECT_EQ(hello->slots[i].name, "slot-" + std::to_string(i));
    EXPECT_EQ(hello->slots[i].state, i == 1 ? "alive" : "vacant") << "slot " << i;
    EXPECT_EQ(hello->slots[i].pid, i == 1 ? w->pid() : 0) << "slot " << i;
  }
  auto slots = client.slots();
  ASSERT_TRUE(slots.ok()) << slots.message();
  ASSERT_EQ(slots->size(), std::size_t(kSlots));
  EXPECT_EQ((*slots)[1].state, "alive");
  EXPECT_GT((*slots)[1].generation, 0u);
}

TEST_F(ControlIT, AppliedTablesRouteToGenericSlotsAndInvalidAppliesKeepTheOldTables) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  ASSERT_NE(start_worker("slot-2", 2), nullptr);
  AxpClient axp(*net_, AF_INET);
  ASSERT_TRUE(axp.ok());
  // Before the control plane's first tables: retryable (BeforeTheFirstApply... below).
  ASSERT_NO_FATAL_FAILURE(expect_error_reply(axp, 7, ErrorCode::worker_failed, "before any apply"));

  ControlClient client = connect_client();
  auto applied = client.apply(tables_for(*net_, 41, {"slot-2"}));
  ASSERT_TRUE(applied.ok()) << applied.message();
  EXPECT_EQ(applied.value(), 41u);
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "after apply"));
  EXPECT_GT(daemon_->stats().worker_counter(2, &WorkerStats::completed), 0u) << "slot-2 served the request";

  struct Bad {
    const char* what;
    Tables tables;
    const char* message;
  };
  std::vector<Bad> bad;
  bad.push_back({"unknown slot", tables_for(*net_, 42, {"slot-2", "slot-9"}), "slot-9"});
  {
    Tables t = tables_for(*net_, 43, {"slot-2"});
    t.agents[0].tenant = 5;
    bad.push_back({"unknown tenant", t, "tenant 5"});
  }
  {
    Tables t = tables_for(*net_, 44, {"slot-2"});
    t.tenants[0].prefixes.push_back("10.0.0.0/33");
    bad.push_back({"bad prefix", t, "10.0.0.0/33"});
  }
  {
    Tables t = tables_for(*net_, 45, {"slot-2"});
    t.agents.push_back(t.agents[0]);
    bad.push_back({"duplicate agent", t, "agent 7"});
  }
  for (const Bad& b : bad) {
    auto r = client.apply(b.tables);
    ASSERT_FALSE(r.ok()) << b.what << " was accepted";
    EXPECT_EQ(r.code(), ControlError::rejected) << b.what;
    EXPECT_NE(r.message().find(b.message), std::string::npos) << b.what << ": " << r.message();
    ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, b.what));
  }
  auto hello = client.hello();
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_EQ(hello->table_version, 41u) << "rejected applies must not change the version in force";
  EXPECT_EQ(hello->applies, 1u);
  EXPECT_EQ(hello->rejected_applies, bad.size());

  // The tables outlive the control plane's connection.
  { ControlClient gone = std::move(client); }
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "after the control client disconnected"));
}

// Issue 11 item 10: for about a second after a restart, before the control plane pushed its
// tables, clients got unknown_agent, which §4 says never to retry. A data plane that waits for
// its control plane (generic slots, no [[agents]]) answers a retryable worker_failed instead;
// once tables arrive, an unknown agent or tenant is final again.
TEST_F(ControlIT, BeforeTheFirstApplyRequestsGetARetryableWorkerFailed) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  AxpClient axp(*net_, AF_INET);
  ASSERT_TRUE(axp.ok());
  for (std::uint32_t tenant : {1u, 9u}) {
    Header h = request_header(tenant, 7);
    auto rx = roundtrip(axp, h);
    ASSERT_TRUE(rx) << "tenant " << tenant << ": no reply before the first apply";
    EXPECT_TRUE(is_error(*rx, ErrorCode::worker_failed)) << "tenant " << tenant << ": " << describe(*rx);
    EXPECT_EQ(rx->header.retry_after_us, 100000u) << "a retry hint comes with it";
  }
  ASSERT_NE(start_worker("slot-0", 0), nullptr);
  ControlClient client = connect_client();
  ASSERT_TRUE(client.apply(tables_for(*net_, 3, {"slot-0"})).ok());
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "after the first apply"));
  ASSERT_NO_FATAL_FAILURE(expect_error_reply(axp, 8, ErrorCode::unknown_agent, "unknown agent after apply"));
  Header stranger = request_header(9, 7);
  auto rx = roundtrip(axp, stranger);
  ASSERT_TRUE(rx);
  EXPECT_TRUE(is_error(*rx, ErrorCode::unknown_tenant)) << describe(*rx);
}

// Issue 11 item 8: SIGHUP (systemctl reload) with a control plane attached replaced its tables
// with the file's, which have no agents: every request then got unknown_agent. The applied
// tables now stay, and the reload says so in the log.
TEST_F(ControlIT, SighupKeepsTheTablesTheControlPlaneApplied) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  ASSERT_NE(start_worker("slot-1", 1), nullptr);
  AxpClient axp(*net_, AF_INET);
  ASSERT_TRUE(axp.ok());
  ControlClient client = connect_client();
  ASSERT_TRUE(client.apply(tables_for(*net_, 17, {"slot-1"})).ok());
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "before SIGHUP"));
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  ASSERT_TRUE(eventually([&] {
    return daemon_->log().find("stay as the control plane applied them") != std::string::npos;
  })) << daemon_->log();
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "after SIGHUP"));
  auto hello = client.hello();
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_EQ(hello->table_version, 17u) << "the control plane's version must stay in force";
}

TEST_F(ControlIT, EmptyWorkerListAndAllWorkersDeadBothAnswerWorkerFailed) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  ChildProcess* w = start_worker("slot-3", 3);
  ASSERT_NE(w, nullptr);
  ControlClient client = connect_client();
  Tables t = tables_for(*net_, 1, {"slot-3"});
  t.agents.push_back({8, 1, "unstaffed", {}, {}});
  t.agents.push_back({9, 1, "doomed", {"slot-3"}, {}});
  auto applied = client.apply(t);
  ASSERT_TRUE(applied.ok()) << applied.message();
  AxpClient axp(*net_, AF_INET);
  ASSERT_TRUE(axp.ok());
  const std::uint64_t errors_before = daemon_->stats().errors_sent(ErrorCode::worker_failed);
  ASSERT_NO_FATAL_FAILURE(expect_error_reply(axp, 8, ErrorCode::worker_failed, "agent with no workers"));
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 9, "agent 9 while its worker lives"));

  w->kill_now();  // SIGKILL + reap
  ASSERT_TRUE(eventually([&] { return daemon_->stats().worker_state(3) == WorkerSlotState::vacant; }));
  ASSERT_NO_FATAL_FAILURE(expect_error_reply(axp, 9, ErrorCode::worker_failed, "agent whose only worker died"));
  EXPECT_GE(daemon_->stats().errors_sent(ErrorCode::worker_failed) - errors_before, 2u);
  auto slots = client.slots();
  ASSERT_TRUE(slots.ok()) << slots.message();
  EXPECT_EQ((*slots)[3].state, "vacant");
  EXPECT_EQ((*slots)[3].deaths, 1u);
}

TEST_F(ControlIT, PeersOfAnotherUidAreRefusedAndCountedUnlessListed) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec("control_uids = [65533]\n")));
  // Let uid 65534 reach the socket (0660, group root): the uid check is what must stop it.
  ASSERT_EQ(chmod(dir_->path().c_str(), 0750), 0);
  auto try_as = [&](uid_t uid) -> int {
    pid_t child = fork();
    if (child == 0) {
      if (setresuid(uid, uid, uid) != 0) _exit(10);
      auto c = ControlClient::connect(dir_->path(), 2000);
      if (!c) {
        std::fprintf(stderr, "connect as uid %u: %s\n", unsigned(uid), c.message().c_str());
        _exit(c.code() == ControlError::refused ? 2 : 11);
      }
      auto h = c->hello();
      if (h.ok()) _exit(0);
      std::fprintf(stderr, "hello as uid %u: %s\n", unsigned(uid), h.message().c_str());
      if (h.code() == ControlError::refused && h.message().find("uid") != std::string::npos) _exit(2);
      _exit(12);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
  };
  EXPECT_EQ(try_as(65534), 2) << "uid 65534 must get an explicit refusal (2); 0 = served, 11/12 = other errors";
  EXPECT_EQ(try_as(65533), 0) << "uid 65533 is in control_uids and must be served";
  ControlClient client = connect_client();
  auto hello = client.hello();
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_EQ(hello->refused_peers, 1u);
  EXPECT_NE(daemon_->log().find("refused control connection"), std::string::npos);
}

TEST_F(ControlIT, MalformedUnknownAndOversizeRequestsGetErrorRepliesAndTheDaemonCarriesOn) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  int size = 4 << 20;
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size), 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = control::control_socket_path(dir_->path());
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
  auto exchange = [&](const std::string& request) {
    EXPECT_EQ(send(fd, request.data(), request.size(), 0), ssize_t(request.size())) << std::strerror(errno);
    std::string reply(control::kMaxMessageBytes + 1, '\0');
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 15000) != 1) return std::string("<no reply>");
    ssize_t got = recv(fd, reply.data(), reply.size(), 0);
    reply.resize(got > 0 ? std::size_t(got) : 0);
    return reply;
  };
  std::string r = exchange("{not json");
  EXPECT_NE(r.find("\"ok\":false"), std::string::npos) << r;
  EXPECT_NE(r.find("not valid JSON"), std::string::npos) << r;
  r = exchange(R"({"op":"reboot"})");
  EXPECT_NE(r.find("unknown op 'reboot'"), std::string::npos) << r;
  r = exchange(R"({"op":"apply","version":1,"tenants":[{"id":-1}],"agents":[]})");
  EXPECT_NE(r.find("tenants[0]"), std::string::npos) << r;
  r = exchange(std::string(control::kMaxMessageBytes + 10, ' '));
  EXPECT_NE(r.find("exceeds"), std::string::npos) << r.substr(0, 200);
  r = exchange(R"({"op":"hello"})");
  EXPECT_NE(r.find("\"ok\":true"), std::string::npos) << r.substr(0, 200);
  EXPECT_NE(r.find("\"bad_requests\":4"), std::string::npos) << r.substr(0, 400);
  close(fd);
  EXPECT_TRUE(daemon_->running());
}

TEST_F(ControlIT, ClientSeesNotRunningWhileTheDataPlaneIsDownAndReconnectsAfterRestart) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  ControlClient client = connect_client();
  auto first = client.hello();
  ASSERT_TRUE(first.ok()) << first.message();
  const pid_t first_pid = first->pid;

  ASSERT_EQ(daemon_->stop(), std::optional<int>(0));
  auto stale = client.hello();
  ASSERT_FALSE(stale.ok()) << "a call on a connection to a stopped data plane must fail";
  EXPECT_TRUE(stale.code() == ControlError::not_running || stale.code() == ControlError::io_error) << stale.message();
  auto down = ControlClient::connect(dir_->path());
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.code(), ControlError::not_running);
  EXPECT_NE(down.message().find("is axon-dataplane running with run_dir=" + dir_->path()), std::string::npos)
      << down.message();

  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  auto up = ControlClient::connect(dir_->path());
  ASSERT_TRUE(up.ok()) << up.message();
  auto hello = up->hello();
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_NE(hello->pid, first_pid);
  EXPECT_EQ(hello->pid, daemon_->pid());
}

TEST_F(ControlIT, RefusedWorkerRetriesUntilItsSlotFreesUp) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  ChildProcess* first = start_worker("slot-0", 0);
  ASSERT_NE(first, nullptr);
  // A short retry budget against an occupied slot ends in a clear failure.
  ChildProcess* impatient = spawn_worker("slot-0", {"AXON_WORKER_CONNECT_TIMEOUT_MS=1000"});
  auto code = impatient->wait_exit(kPatience);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_NE(impatient->log().find("refused the handoff"), std::string::npos) << impatient->log();

  // With a budget, it keeps trying while the slot is occupied, then dying, and attaches
  // once the slot is vacant again.
  ChildProcess* patient = spawn_worker("slot-0", {"AXON_WORKER_CONNECT_TIMEOUT_MS=20000"});
  const std::string refused = "refusing pid " + std::to_string(patient->pid());
  ASSERT_TRUE(eventually([&] { return count_of(daemon_->log(), refused) >= 2; }))
      << "the second worker did not retry against the occupied slot";
  first->kill_now();
  ASSERT_TRUE(eventually([&] { return slot_alive_with(0, patient->pid()); }))
      << "the retrying worker never attached after the slot was reclaimed";
  ControlClient client = connect_client();
  ASSERT_TRUE(client.apply(tables_for(*net_, 2, {"slot-0"})).ok());
  AxpClient axp(*net_, AF_INET);
  ASSERT_TRUE(axp.ok());
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "served by the respawned worker"));
}

TEST_F(ControlIT, WorkerExitsCleanlyWhenTheDataPlaneIsKilled) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  ChildProcess* w = start_worker("slot-0", 0);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(daemon_->signal(SIGKILL));
  ASSERT_TRUE(daemon_->wait_exit(kPatience).has_value());
  auto code = w->wait_exit(kPatience);
  ASSERT_TRUE(code.has_value()) << "the worker kept sleeping after its data plane died";
  EXPECT_EQ(*code, 0);
  EXPECT_NE(w->log().find("the data plane exited"), std::string::npos) << w->log();
}

// Issue 11 item 11: a second data plane on the same run_dir used to fall back to io_uring and
// replace the first one's control and slot sockets. It must refuse, naming the first's pid,
// and leave the first one fully reachable.
TEST_F(ControlIT, SecondDataPlaneWithTheSameRunDirRefusesAndNamesTheRunningOne) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  struct stat control_before {
  }, slot_before{};
  ASSERT_EQ(stat(control::control_socket_path(dir_->path()).c_str(), &control_before), 0);
  ASSERT_EQ(stat(daemon_->socket_path("slot-0").c_str(), &slot_before), 0);

  ChildProcess second;
  std::string error;
  ASSERT_TRUE(
      second.start({AXON_DATAPLANE_BIN, "--config", daemon_->config_path()}, {}, dir_->path() + "/second.log", &error))
      << error;
  auto code = second.wait_exit(kPatience);
  ASSERT_TRUE(code.has_value()) << "the second data plane kept running:\n" << second.log();
  EXPECT_NE(*code, 0);
  EXPECT_NE(second.log().find("another axon-dataplane (pid " + std::to_string(daemon_->pid()) + ") is running"),
            std::string::npos)
      << second.log();

  // The first instance keeps its sockets (same inodes) and its stats file.
  struct stat control_after {
  }, slot_after{};
  ASSERT_EQ(stat(control::control_socket_path(dir_->path()).c_str(), &control_after), 0);
  ASSERT_EQ(stat(daemon_->socket_path("slot-0").c_str(), &slot_after), 0);
  EXPECT_EQ(control_after.st_ino, control_before.st_ino) << "the control socket was replaced";
  EXPECT_EQ(slot_after.st_ino, slot_before.st_ino) << "the slot socket was replaced";
  EXPECT_TRUE(daemon_->stats().ready()) << "the first instance's stats file was replaced";
  ControlClient client = connect_client();
  auto hello = client.hello();
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_EQ(hello->pid, daemon_->pid());
  ASSERT_NE(start_worker("slot-0", 0), nullptr) << "a worker must still attach to the first instance";
}

// Issue 11 item 12: after kill -9 or SIGTERM the stats file kept ready = 1 and readers took the
// data plane for ready. Readiness now means a live process.
TEST_F(ControlIT, StatsReadyMeansALiveDataPlaneAfterKillAndAfterStop) {
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  auto killed = StatsReader::open(daemon_->stats_path());
  ASSERT_TRUE(killed.ok()) << killed.message();
  ASSERT_TRUE(killed->ready());
  ASSERT_TRUE(daemon_->signal(SIGKILL));
  ASSERT_TRUE(daemon_->wait_exit(kPatience).has_value());
  EXPECT_FALSE(killed->alive());
  EXPECT_FALSE(killed->ready()) << "the stats file of a data plane killed with SIGKILL still reads as ready";

  // A restart in the same run_dir is not blocked by the dead instance's lock, and its stats
  // file replaces the old one.
  ASSERT_NO_FATAL_FAILURE(start_daemon(generic_spec()));
  auto stopped = StatsReader::open(daemon_->stats_path());
  ASSERT_TRUE(stopped.ok()) << stopped.message();
  ASSERT_TRUE(stopped->ready());
  ASSERT_EQ(daemon_->stop(), std::optional<int>(0));
  EXPECT_EQ(stopped->header().ready.load(), 0u) << "a clean stop clears the flag itself";
  EXPECT_FALSE(stopped->ready());
}

// Issue 11 item 9: every table push removed all of a tenant's prefixes before adding them back,
// and valid requests arriving in between were dropped as prefix_denied (11 over 30 updates that
// changed only a rate). Pushes now update by difference, adding before removing.
TEST_F(ControlIT, TablePushesUnderLoadNeverDenyAnAllowedSource) {
  // generic_spec() runs the xdp backend; the allowlist is the XDP program's.
  ConfigSpec spec = generic_spec();
  spec.xdp_extra = "enforce_allowlist = true\n";
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("slot-0", 0), nullptr);
  ControlClient client = connect_client();
  // The allowed source's prefix first, then 255 others: a tenant with many prefixes, so the
  // time between removing a prefix and adding it back (if an update does that) is not a
  // few microseconds but the time of hundreds of map updates.
  std::vector<std::string> many;
  for (int b = 0; b < 255; ++b) many.push_back("172.16." + std::to_string(b) + ".0/24");
  Tables first = tables_for(*net_, 1, {"slot-0"});
  first.tenants[0].prefixes.insert(first.tenants[0].prefixes.end(), many.begin(), many.end());
  ASSERT_TRUE(client.apply(first).ok());
  AxpClient axp(*net_, AF_INET);
  ASSERT_TRUE(axp.ok());
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "allowed source before the pushes"));
  const std::uint64_t denied_before = daemon_->stats().xdp(Reason::prefix_denied);
  const std::uint64_t ok_before = daemon_->stats().xdp(Reason::ok);

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> sent{0};
  std::thread sender([&] {
    // On the lcore's core (1), so that XDP runs there while the data plane's control thread
    // writes the maps from the other core: otherwise one CPU would serialise the two.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1 % std::max(1u, std::thread::hardware_concurrency()), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    AxpClient load(*net_, AF_INET);
    if (!load.ok()) return;
    // Bounded: at most 2 million requests, or until the pushes are done.
    for (std::uint64_t i = 0; i < 2'000'000 && !stop.load(std::memory_order_relaxed); ++i) {
      if (load.send(request_header(1, 7))) sent.fetch_add(1, std::memory_order_relaxed);
    }
  });
  constexpr int kPushes = 60;
  for (int i = 0; i < kPushes; ++i) {
    Tables t = tables_for(*net_, std::uint64_t(10 + i), {"slot-0"});
    t.tenants[0].rate_pps = 100000 + std::uint32_t(i);  // only the rate changes
    t.tenants[0].burst = 1000;
    t.tenants[0].prefixes.insert(t.tenants[0].prefixes.end(), many.begin(), many.end());
    auto applied = client.apply(t);
    ASSERT_TRUE(applied.ok()) << applied.message();
    std::this_thread::sleep_for(2ms);
  }
  stop.store(true);
  sender.join();
  // XDP's counters reach the stats file every 100 ms: wait until the ok count covers what was sent.
  EXPECT_TRUE(eventually([&] {
    const std::uint64_t seen = daemon_->stats().xdp(Reason::ok) + daemon_->stats().xdp(Reason::prefix_denied);
    return seen - ok_before - denied_before >= sent.load();
  })) << "sent "
      << sent.load();
  EXPECT_GT(sent.load(), 1000u) << "too little traffic to cover the pushes";
  EXPECT_EQ(daemon_->stats().xdp(Reason::prefix_denied) - denied_before, 0u)
      << "requests from an allowed source were denied while tables were pushed (" << sent.load() << " sent over "
      << kPushes << " pushes)";
  ASSERT_NO_FATAL_FAILURE(expect_echo(axp, 7, "after the pushes"));
}

}  // namespace
}  // namespace axon::dataplane::it

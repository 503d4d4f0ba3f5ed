// FleetClient (client/include/axon/client/fleet.h): the placement contract (reference values,
// ~1/N of the keys move when a member joins or leaves, only the lost member's keys move),
// failover on timeout, nothing listening and ERROR worker_failed with one request id, the
// probe that brings a member back, and the etcd range answer's parsing. Against real
// axon-baseline-server processes (killed with SIGKILL) and scripted fake servers on loopback.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "axon/client/fleet.h"
#include "axon/common/clock.h"

#include "base64_util.h"
#include "fake_server.h"

namespace {

namespace p = axon::protocol;
using axon::client::CallOptions;
using axon::client::FleetClient;
using axon::client::FleetMember;
using axon::client::FleetOptions;
using axon::client::RequestOptions;
using axon::client::testing::FakeServer;
using namespace std::chrono_literals;

std::vector<std::string> names(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("appliance-" + std::to_string(i));
  return out;
}

std::string owner(const std::vector<std::string>& ids, std::uint64_t key) {
  return ids[axon::client::rendezvous_order(ids, key).front()];
}

// Reference values: SplitMix64's first output from state 0, and FNV-1a 64 of "a", as published
// with those algorithms. The Python client pins the same ones (test_fleet.py).
TEST(FleetPlacement, HashMatchesTheReferenceAlgorithms) {
  EXPECT_EQ(axon::client::fleet_mix64(0), 0xe220a8397b1dcdafull);
  EXPECT_EQ(axon::client::fleet_member_hash("a"), axon::client::fleet_mix64(0xaf63dc4c8601ec8cull));
  EXPECT_NE(axon::client::fleet_key(1, 7, 1), axon::client::fleet_key(1, 7, 2));
  EXPECT_NE(axon::client::fleet_key(1, 7, 1), axon::client::fleet_key(7, 1, 1));
}

TEST(FleetPlacement, AddingAFourthMemberMovesAboutAQuarterOfTheKeysAllToIt) {
  const auto three = names(3), four = names(4);
  int moved = 0;
  std::map<std::string, int> load;
  for (std::uint64_t s = 1; s <= 10000; ++s) {
    const auto key = axon::client::fleet_key(1, 7, s);
    const auto before = owner(three, key), after = owner(four, key);
    ++load[after];
    if (before != after) {
      ++moved;
      EXPECT_EQ(after, four[3]) << "a key moved between two old members";
    }
  }
  EXPECT_GE(moved, 2000);
  EXPECT_LE(moved, 3000);
  for (const auto& id : four) EXPECT_GE(load[id], 2000) << id << " gets about a quarter";
}

TEST(FleetPlacement, LosingAMemberMovesOnlyItsKeys) {
  const auto four = names(4);
  std::vector<std::string> without = {four[0], four[2], four[3]};
  int moved = 0;
  for (std::uint64_t s = 1; s <= 10000; ++s) {
    const auto key = axon::client::fleet_key(3, 9, s);
    const auto before = owner(four, key), after = owner(without, key);
    if (before != four[1]) {
      EXPECT_EQ(before, after);
    } else {
      ++moved;
      // It goes to its second choice among the four.
      EXPECT_EQ(after, four[axon::client::rendezvous_order(four, key)[1]]);
    }
  }
  EXPECT_GE(moved, 2000);
  EXPECT_LE(moved, 3000);
}

TEST(FleetPlacement, StaticListParsing) {
  auto ok = axon::client::parse_static_members({"127.0.0.1:7401", "[::1]:7402", "10.0.0.3"});
  ASSERT_TRUE(ok) << ok.message();
  ASSERT_EQ(ok->size(), 3u);
  EXPECT_EQ((*ok)[0].id, "127.0.0.1:7401");
  EXPECT_EQ((*ok)[1].host, "::1");
  EXPECT_EQ((*ok)[1].port, 7402);
  EXPECT_EQ((*ok)[2].port, p::kDefaultPort);
  EXPECT_FALSE(axon::client::parse_static_members({"127.0.0.1:notaport"}));
}

using axon::client::testing::b64;

std::string kv(const std::string& key, const std::string& value) {
  return R"({"key":")" + b64(key) + R"(","value":")" + b64(value) + R"(","mod_revision":"5"})";
}

TEST(FleetEtcd, RangeAnswerGivesTheServingMembers) {
  const std::string body =
      R"({"header":{"revision":"7"},"count":"5","kvs":[)" +
      kv("/axon/members/a1", R"({"id":"a1","axp":[{"address":"10.0.0.1","port":7401}],"health":"ok"})") + "," +
      kv("/axon/members/a2", R"({"axp":[{"address":"10.0.0.2"}],"health":"degraded"})") + "," +
      kv("/axon/members/a3", R"({"id":"a3","axp":[{"address":"10.0.0.3","port":7400}],"health":"draining"})") + "," +
      kv("/axon/members/a4", R"({"id":"a4","axp":[]})") + "," + kv("/axon/members/a5", "not json") + "," +
      kv("/axon/members/a6", R"({"id":"a6","axp":[{"address":"10.0.0.6","port":7400}],"health":6})") + "," +
      kv("/axon/members/a7", R"({"id":7,"axp":[{"address":"10.0.0.7","port":"7400"}]})") + "]}";
  auto members = axon::client::parse_etcd_members(body);
  ASSERT_TRUE(members) << members.message();
  ASSERT_EQ(members->size(), 3u) << "a3 drains, a4 has no address, a5 is not JSON, a7's port is a string";
  EXPECT_EQ((*members)[0].id, "a1");
  EXPECT_EQ((*members)[0].host, "10.0.0.1");
  EXPECT_EQ((*members)[0].port, 7401);
  EXPECT_EQ((*members)[1].id, "a2") << "the key's last part when the value has no id";
  EXPECT_EQ((*members)[1].port, p::kDefaultPort);
  EXPECT_TRUE((*members)[1].degraded);
  EXPECT_FALSE((*members)[0].degraded);
  EXPECT_EQ((*members)[2].id, "a6") << "a health that is not a string reads as ok";
  auto none = axon::client::parse_etcd_members(R"({"header":{"revision":"7"}})");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(axon::client::parse_etcd_members("<html>"));
  EXPECT_FALSE(axon::client::parse_etcd_members(R"({"error":"etcdserver: permission denied","code":7})"));
}

// ---- failover against scripted servers ---------------------------------------------------

RequestOptions session(std::uint64_t key) {
  RequestOptions r;
  r.tenant = 1;
  r.agent = 7;
  r.session_key = key;
  return r;
}

// A session key whose first choice is `first` among `ids`.
std::uint64_t key_placed_on(const std::vector<std::string>& ids, const std::string& first) {
  for (std::uint64_t s = 1;; ++s)
    if (owner(ids, axon::client::fleet_key(1, 7, s)) == first) return s;
}

TEST(FleetPlacement, DegradedMembersComeLast) {
  const auto ids = names(3);
  const std::uint64_t s = key_placed_on(ids, ids[0]);
  std::vector<FleetMember> members;
  for (const auto& id : ids) members.push_back({id, "127.0.0.1", 7400, id == ids[0]});
  auto fleet = FleetClient::open(members);
  ASSERT_TRUE(fleet);
  auto order = fleet->placement(session(s));
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order.back(), ids[0]) << "its key's first choice, but degraded";
  members[0].degraded = false;
  fleet->set_members(members);
  EXPECT_EQ(fleet->placement(session(s)).front(), ids[0]) << "healthy again: its keys return";
}

TEST(FleetFailover, WorkerFailedAndSilenceMoveTheRequestOnWithTheSameId) {
  FakeServer a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<FleetMember> members = {{"a", "127.0.0.1", a.port()}, {"b", "127.0.0.1", b.port()}};
  std::vector<std::string> ids = {"a", "b"};
  FleetOptions fo;
  fo.member_timeout = 200ms;
  auto fleet = FleetClient::open(members, fo);
  ASSERT_TRUE(fleet) << fleet.message();
  const std::vector<std::uint8_t> payload = {1, 2, 3};

  // a answers ERROR worker_failed, b answers: the caller sees b's RESPONSE.
  const auto req = session(key_placed_on(ids, "a"));
  std::thread script([&] {
    auto got = a.receive();
    ASSERT_FALSE(got.empty());
    auto h = p::decode_header(got);
    p::Header e = h;
    e.type = p::MessageType::error;
    e.error_code = p::ErrorCode::worker_failed;
    e.retry_after_us = 100000;
    e.segment_count = 1;
    a.reply(e, {});
    auto again = b.receive();
    ASSERT_FALSE(again.empty());
    auto h2 = p::decode_header(again);
    EXPECT_EQ(h2.request_id, h.request_id) << "the same request id on every member";
    p::Header r = h2;
    r.type = p::MessageType::response;
    b.reply(r, p::payload_of(again));
  });
  CallOptions co;
  co.timeout = 2s;
  auto reply = fleet->call(req, payload, co);
  script.join();
  ASSERT_TRUE(reply) << reply.message();
  EXPECT_EQ(reply->reply.type, p::MessageType::response);
  EXPECT_EQ(reply->member, "b");
  EXPECT_EQ(reply->members_tried, 2u);
  EXPECT_EQ(fleet->counters().failovers, 1u);
  EXPECT_EQ(fleet->counters().member_down, 0u) << "an ERROR reply is from a live appliance";

  // a is silent: after member_timeout the request goes to b, and a is marked down.
  std::thread silent([&] {
    auto first = a.receive();
    ASSERT_FALSE(first.empty());
    auto got = b.receive();
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(p::decode_header(got).request_id, p::decode_header(first).request_id);
    p::Header r = p::decode_header(got);
    r.type = p::MessageType::response;
    b.reply(r, p::payload_of(got));
  });
  const auto t0 = axon::monotonic_ns();
  reply = fleet->call(req, payload, co);
  const auto took = axon::monotonic_ns() - t0;
  silent.join();
  ASSERT_TRUE(reply) << reply.message();
  EXPECT_EQ(reply->member, "b");
  EXPECT_GE(took, 190'000'000u) << "a had its member_timeout first";
  EXPECT_EQ(fleet->counters().member_down, 1u);
  EXPECT_EQ(fleet->members_down(), 1u);
  EXPECT_EQ(fleet->placement(req), (std::vector<std::string>{"b", "a"})) << "a is left out while down";
}

TEST(FleetFailover, TheLastMemberGetsWhatIsLeftAndErrorsAreExplicit) {
  FakeServer a;
  ASSERT_TRUE(a.ok());
  auto fleet = FleetClient::open({{"a", "127.0.0.1", a.port()}});
  ASSERT_TRUE(fleet);
  CallOptions co;
  co.timeout = 300ms;
  const std::vector<std::uint8_t> payload = {9};
  auto reply = fleet->call(session(5), payload, co);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.code(), axon::client::ClientError::timeout) << reply.message();
  EXPECT_EQ(fleet->counters().failed_calls, 1u);
  auto empty = FleetClient::open({});
  ASSERT_TRUE(empty);
  auto none = empty->call(session(5), payload, co);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.code(), axon::client::ClientError::invalid_argument);
}

// ---- against real servers, one killed with SIGKILL --------------------------------------

// An axon-baseline-server on 127.0.0.1:port (0: it picks), its port read from its banner.
class Baseline {
 public:
  bool start(std::uint16_t port = 0) {
    int out[2];
    if (pipe(out) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      const std::string port_text = std::to_string(port);
      execl(AXON_BASELINE_SERVER, AXON_BASELINE_SERVER, "--port", port_text.c_str(), "--bind", "127.0.0.1", "--workers",
            "1", "--tenants", "1", "--agents", "1-10", "--duration", "60", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    std::string text;
    char buf[256];
    const std::uint64_t give_up = axon::monotonic_ns() + 10'000'000'000ull;
    while (text.find('\n') == std::string::npos && axon::monotonic_ns() < give_up) {
      pollfd pfd{out[0], POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    close(out[0]);
    auto at = text.find("127.0.0.1:");
    if (at == std::string::npos) return false;
    port_ = static_cast<std::uint16_t>(std::stoi(text.substr(at + 10)));
    return port_ != 0;
  }
  void kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  ~Baseline() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

TEST(FleetBaseline, SessionsSpreadAKilledMembersSessionsMoveAndItComesBack) {
  Baseline servers[3];
  std::vector<FleetMember> members;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(servers[i].start()) << "cannot start " << AXON_BASELINE_SERVER;
    members.push_back({"m" + std::to_string(i), "127.0.0.1", servers[i].port()});
  }
  FleetOptions fo;
  fo.member_timeout = 1s;  // above any live member's latency on a loaded machine
  fo.probe_after = 300ms;
  auto fleet = FleetClient::open(members, fo);
  ASSERT_TRUE(fleet) << fleet.message();
  CallOptions co;
  co.timeout = 3s;
  co.busy_retries = 20;

  constexpr int kSessions = 150;
  std::map<std::uint64_t, std::string> home;
  std::map<std::string, int> load;
  for (std::uint64_t s = 1; s <= kSessions; ++s) {
    const std::vector<std::uint8_t> payload = {std::uint8_t(s), 42};
    auto r = fleet->call(session(s), payload, co);
    ASSERT_TRUE(r) << r.message();
    ASSERT_EQ(r->reply.type, p::MessageType::response);
    EXPECT_EQ(r->reply.payload, payload);
    EXPECT_EQ(r->member, fleet->placement(session(s)).front());
    home[s] = r->member;
    ++load[r->member];
  }
  for (const auto& m : members) EXPECT_GE(load[m.id], kSessions / 6) << m.id << " got few sessions";

  // Requests without a session key spread too.
  std::set<std::string> spread;
  for (int i = 0; i < 30; ++i) {
    auto r = fleet->call(session(0), std::vector<std::uint8_t>{1}, co);
    ASSERT_TRUE(r) << r.message();
    spread.insert(r->member);
  }
  EXPECT_EQ(spread.size(), 3u);

  servers[1].kill9();
  int moved = 0, failed = 0;
  for (std::uint64_t s = 1; s <= kSessions; ++s) {
    const std::vector<std::uint8_t> payload = {std::uint8_t(s), 43};
    auto r = fleet->call(session(s), payload, co);
    if (!r || r->reply.type != p::MessageType::response) {
      ++failed;  // explicit, never silent; none expected with two members alive
      continue;
    }
    EXPECT_EQ(r->reply.payload, payload);
    if (home[s] != "m1") {
      EXPECT_EQ(r->member, home[s]) << "session " << s << " moved though its member lives";
    } else {
      EXPECT_NE(r->member, "m1");
      ++moved;
    }
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(moved, load["m1"]);
  EXPECT_EQ(fleet->counters().member_down, 1u);
  EXPECT_GE(fleet->counters().failovers, 1u);
  EXPECT_EQ(fleet->members_up(), 2u);

  // m1 comes back on its port: after probe_after a request of its sessions probes it, and its
  // sessions go home.
  ASSERT_TRUE(servers[1].start(members[1].port));
  std::uint64_t first_home = 0;
  for (const auto& [s, m] : home)
    if (m == "m1") first_home = s;
  const std::uint64_t give_up = axon::monotonic_ns() + 15'000'000'000ull;  // probe_max is 10 s
  for (;;) {
    auto r = fleet->call(session(first_home), std::vector<std::uint8_t>{6}, co);
    ASSERT_TRUE(r) << r.message();
    if (r->member == "m1") break;
    ASSERT_LT(axon::monotonic_ns(), give_up) << "m1 was never probed again";
    std::this_thread::sleep_for(50ms);
  }
  for (std::uint64_t s = 1; s <= kSessions; ++s) {
    if (home[s] != "m1") continue;
    auto r = fleet->call(session(s), std::vector<std::uint8_t>{7}, co);
    ASSERT_TRUE(r) << r.message();
    EXPECT_EQ(r->member, "m1");
  }
  EXPECT_EQ(fleet->counters().member_up, 1u);
  EXPECT_EQ(fleet->members_down(), 0u);
}

}  // namespace

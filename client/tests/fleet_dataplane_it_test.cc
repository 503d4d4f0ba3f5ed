// FleetClient against three REAL data planes (issue 18, "Clients"): three axon-dataplane
// processes with the uring backend on the root end of one veth pair (prefix axfc), on three
// free UDP ports, each with its own run directory and a real echo_worker; the FleetClient's
// sockets live in the namespace. Sessions spread over the three; after one data plane is killed
// with SIGKILL, only its sessions move, and every request gets a RESPONSE (after a failover for
// the moved ones) or an explicit error: none is lost. Nothing asserts on time. (Three appliances
// on one host share its cores; the test needs correctness, not speed.)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "axon/client/fleet.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {
namespace {

namespace p = axon::protocol;
using axon::client::CallOptions;
using axon::client::FleetClient;
using axon::client::FleetMember;
using axon::client::FleetOptions;
using axon::client::RequestOptions;

constexpr int kAppliances = 3;

// A UDP port nothing is bound to now (fixed ports would collide with a concurrent run).
std::uint16_t free_udp_port() {
  const int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  socklen_t len = sizeof a;
  std::uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin6_port);
  close(fd);
  return port;
}
constexpr std::uint64_t kSessions = 90;

class FleetDataplaneIT : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    axon::testing::NetworkSpec spec;
    spec.prefix = "axfc";
    spec.ipv6 = false;
    net_ = TestNetwork::create(spec, net_error_).release();
  }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: it creates a namespace and a veth pair";
    ASSERT_NE(net_, nullptr) << "cannot create the test network: " << net_error_;
  }

  void TearDown() override {
    for (int i = 0; i < kAppliances; ++i) {
      if (daemons_[i] && daemons_[i]->running()) {
        EXPECT_EQ(daemons_[i]->stop(), std::optional<int>(0)) << "SIGTERM must drain and exit 0";
      }
      if (HasFailure() && daemons_[i]) {
        std::cerr << "---- axon-dataplane " << i << " log:\n" << daemons_[i]->log() << "----\n";
        dirs_[i]->keep();
      }
    }
    for (auto& w : workers_) w.reset();
    for (auto& d : daemons_) d.reset();
    for (auto& t : dirs_) t.reset();
  }

  // Appliance i: the uring data plane on ports_[i] with one echo worker, ready and attached.
  void start_appliance(int i) {
    ports_[i] = free_udp_port();
    ASSERT_NE(ports_[i], 0);
    dirs_[i] = std::make_unique<TempDir>();
    ASSERT_FALSE(dirs_[i]->path().empty());
    ConfigSpec spec;
    spec.backend = "uring";
    spec.port = ports_[i];
    spec.core = i;
    daemons_[i] = std::make_unique<Daemon>(dirs_[i]->path());
    std::string error;
    ASSERT_TRUE(daemons_[i]->start(make_config(*net_, dirs_[i]->path(), spec), &error)) << error;
    ASSERT_TRUE(daemons_[i]->wait_ready(30s, &error)) << error;
    workers_[i] = std::make_unique<Worker>();
    ASSERT_TRUE(workers_[i]->start(*daemons_[i], "w0", 0, &error)) << error;
    ASSERT_TRUE(eventually([&] {
      auto& s = daemons_[i]->stats();
      return s.worker_state(0) == WorkerSlotState::alive && s.worker(0).pid.load() == workers_[i]->pid();
    })) << "the echo worker of appliance "
        << i << " never attached";
  }

  static inline TestNetwork* net_ = nullptr;
  static inline std::string net_error_;
  std::unique_ptr<TempDir> dirs_[kAppliances];
  std::unique_ptr<Daemon> daemons_[kAppliances];
  std::unique_ptr<Worker> workers_[kAppliances];
  std::uint16_t ports_[kAppliances] = {};
};

RequestOptions session(std::uint64_t key) {
  RequestOptions r;
  r.tenant = 1;
  r.agent = 7;
  r.session_key = key;
  return r;
}

TEST_F(FleetDataplaneIT, SessionsSpreadAndAKilledAppliancesSessionsMoveWithNoRequestLost) {
  std::vector<FleetMember> members;
  for (int i = 0; i < kAppliances; ++i) {
    ASSERT_NO_FATAL_FAILURE(start_appliance(i));
    members.push_back({"dp" + std::to_string(i), net_->root_ip4, ports_[i]});
  }
  std::map<std::string, int> load;  // sessions per appliance before the kill
  std::string why;
  const bool entered = axon::testing::in_netns(
      net_->ns,
      [&] {
        FleetOptions fo;
        fo.member_timeout = 1s;  // above any live appliance's latency on a loaded machine
        fo.client.max_datagram_bytes = 1472;
        auto fleet = FleetClient::open(members, fo);
        ASSERT_TRUE(fleet) << fleet.message();
        CallOptions co;
        co.timeout = 10s;
        co.busy_retries = 50;  // a worker still coming up to speed answers BUSY

        std::map<std::uint64_t, std::string> home;
        for (std::uint64_t s = 1; s <= kSessions; ++s) {
          const std::vector<std::uint8_t> payload = {std::uint8_t(s), 1, 2, 3};
          auto r = fleet->call(session(s), payload, co);
          ASSERT_TRUE(r) << "session " << s << ": " << r.message();
          ASSERT_EQ(r->reply.type, p::MessageType::response) << p::to_string(r->reply.error_code);
          EXPECT_EQ(r->reply.payload, payload);
          EXPECT_EQ(r->members_tried, 1u);
          home[s] = r->member;
          ++load[r->member];
        }
        for (const auto& m : members) EXPECT_GE(load[m.id], 10) << m.id << " got few of the sessions";

        ASSERT_TRUE(daemons_[1]->signal(SIGKILL));
        ASSERT_TRUE(daemons_[1]->wait_exit(10s).has_value());

        int moved = 0, errors = 0;
        for (std::uint64_t s = 1; s <= kSessions; ++s) {
          const std::vector<std::uint8_t> payload = {std::uint8_t(s), 4, 5};
          auto r = fleet->call(session(s), payload, co);
          if (!r) {  // explicit: a ClientError with its reason
            ++errors;
            ADD_FAILURE() << "session " << s << ": " << r.message();
            continue;
          }
          if (r->reply.type != p::MessageType::response) {  // explicit: BUSY or ERROR
            ++errors;
            ADD_FAILURE() << "session " << s << ": " << p::to_string(r->reply.error_code);
            continue;
          }
          EXPECT_EQ(r->reply.payload, payload);
          if (home[s] == "dp1") {
            EXPECT_NE(r->member, "dp1");
            auto order = fleet->placement(session(s));
            std::erase(order, std::string("dp1"));
            EXPECT_EQ(r->member, order.front()) << "its next member, in rendezvous order";
            ++moved;
          } else {
            EXPECT_EQ(r->member, home[s]) << "session " << s << " moved though its appliance lives";
          }
        }
        EXPECT_EQ(errors, 0);
        EXPECT_EQ(moved, load["dp1"]);
        EXPECT_EQ(fleet->counters().member_down, 1u);
        EXPECT_GE(fleet->counters().failovers, 1u);
        EXPECT_EQ(fleet->members_down(), 1u);
      },
      &why);
  ASSERT_TRUE(entered) << why;
  // The survivors answered their own sessions twice and the moved ones once: RESPONSEs their
  // data planes counted themselves.
  const std::uint64_t served = 2 * kSessions - std::uint64_t(load["dp1"]);
  EXPECT_TRUE(eventually([&] {
    return daemons_[0]->stats().lcores(&LcoreStats::responses) + daemons_[2]->stats().lcores(&LcoreStats::responses) >=
           served;
  })) << "expected at least "
      << served << " RESPONSEs from dp0 and dp2";
}

}  // namespace
}  // namespace axon::dataplane::it

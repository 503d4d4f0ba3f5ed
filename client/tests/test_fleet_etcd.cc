// FleetClient's etcd member source against a REAL etcd (Debian's etcd-server, started by this
// test on loopback with a temporary data directory): member keys put, changed to draining and
// deleted through etcd's JSON gateway, and the client's member list following each change; an
// etcd that stops leaves the last list in place (counted), and one that returns is read again.
// With a poll interval far longer than the test, changes (a delete, a revoked lease) still
// arrive: the client watches the members prefix.
// Skips when the etcd binary is not installed (apt-get install etcd-server).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "axon/client/fleet.h"
#include "axon/client/rest.h"
#include "axon/common/clock.h"
#include "axon/fleet/etcd.h"

#include "base64_util.h"

namespace {

namespace ac = axon::client;
using namespace std::chrono_literals;

std::string find_etcd() {
  for (const char* p : {"/usr/bin/etcd", "/usr/local/bin/etcd", "/usr/sbin/etcd"})
    if (access(p, X_OK) == 0) return p;
  return {};
}

std::uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

using axon::client::testing::b64;

// One etcd member on loopback, its data in a temporary directory; killed by pid.
class Etcd {
 public:
  bool start(const std::string& binary) {
    if (dir_.empty()) {
      char tmpl[] = "/tmp/axfc-etcd-XXXXXX";
      if (mkdtemp(tmpl) == nullptr) return false;
      dir_ = tmpl;
      client_port_ = free_port();
      peer_port_ = free_port();
    }
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    pid_ = fork();
    if (pid_ == 0) {
      const std::string log = dir_ + "/etcd.log";
      freopen(log.c_str(), "a", stderr);
      freopen(log.c_str(), "a", stdout);
      execl(binary.c_str(), binary.c_str(), "--name", "axfc", "--data-dir", (dir_ + "/data").c_str(),
            "--listen-client-urls", client.c_str(), "--advertise-client-urls", client.c_str(), "--listen-peer-urls",
            peer.c_str(), "--initial-advertise-peer-urls", peer.c_str(), "--initial-cluster", ("axfc=" + peer).c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    // Ready when a range read answers.
    const auto give_up = axon::monotonic_ns() + 20'000'000'000ull;
    while (axon::monotonic_ns() < give_up) {
      if (put_raw("/axfc/ready", "1")) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  ~Etcd() {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(client_port_); }

  bool put_raw(const std::string& key, const std::string& value) {
    return call("/v3/kv/put", R"({"key":")" + b64(key) + R"(","value":")" + b64(value) + R"("})");
  }
  bool del(const std::string& key) { return call("/v3/kv/deleterange", R"({"key":")" + b64(key) + R"("})"); }

 private:
  bool call(const std::string& path, const std::string& body) {
    ac::RestOptions o;
    o.url = endpoint();
    o.timeout = 1s;
    auto rest = ac::RestClient::create(o);
    if (!rest) return false;
    auto r = rest->request("POST", path, body);
    return r && r->status == 200;
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::uint16_t client_port_ = 0, peer_port_ = 0;
};

std::string member_json(const std::string& id, int port, const std::string& health = "ok") {
  return R"({"id":")" + id + R"(","axp":[{"address":"127.0.0.1","port":)" + std::to_string(port) +
         R"(}],"api":"https://127.0.0.1:9443","capacity":{"workers":1},"health":")" + health +
         R"(","config_revision":1,"started_unix_ms":1})";
}

template <typename F>
bool eventually(F&& cond, std::chrono::milliseconds timeout = 10s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

TEST(FleetEtcd, TheClientsMemberListFollowsEtcd) {
  const std::string binary = find_etcd();
  if (binary.empty()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
  Etcd etcd;
  ASSERT_TRUE(etcd.start(binary)) << "etcd did not come up";
  ASSERT_TRUE(etcd.put_raw("/axon/members/a1", member_json("a1", 7401)));
  ASSERT_TRUE(etcd.put_raw("/axon/other/not-a-member", member_json("x", 7409)));

  ac::EtcdSourceOptions src;
  src.endpoints = {"http://127.0.0.1:1", etcd.endpoint()};  // the first refuses: the next is tried
  src.poll_interval = 100ms;
  auto fleet = ac::FleetClient::open_etcd(src);
  ASSERT_TRUE(fleet) << fleet.message();
  EXPECT_EQ(fleet->member_ids(), (std::vector<std::string>{"a1"}));

  // Reads happen in the poller; the list is applied on the client's next call or placement().
  auto ids = [&] {
    (void)fleet->placement(ac::RequestOptions{});
    auto v = fleet->member_ids();
    std::sort(v.begin(), v.end());
    return v;
  };
  ASSERT_TRUE(etcd.put_raw("/axon/members/a2", member_json("a2", 7402)));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a1", "a2"}; }));
  ASSERT_TRUE(etcd.put_raw("/axon/members/a1", member_json("a1", 7401, "draining")));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a2"}; })) << "draining takes no sessions";
  ASSERT_TRUE(etcd.put_raw("/axon/members/a1", member_json("a1", 7401)));
  ASSERT_TRUE(etcd.del("/axon/members/a2"));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a1"}; }));

  // etcd gone: the last list stays, the failed polls are counted; back: read again.
  etcd.stop();
  EXPECT_TRUE(eventually([&] {
    (void)ids();
    return fleet->counters().etcd_errors >= 2;
  }));
  EXPECT_EQ(ids(), std::vector<std::string>{"a1"});
  ASSERT_TRUE(etcd.start(binary));
  ASSERT_TRUE(etcd.put_raw("/axon/members/a3", member_json("a3", 7403)));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a1", "a3"}; }));

  // Without any endpoint that answers, opening fails with a message that says so.
  ac::EtcdSourceOptions none;
  none.endpoints = {"http://127.0.0.1:1"};
  none.request_timeout = 500ms;
  auto refused = ac::FleetClient::open_etcd(none);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.message().find("is etcd running"), std::string::npos) << refused.message();
}

TEST(FleetEtcd, TheWatchSeesADeletedMemberKeyWithoutWaitingForThePoll) {
  const std::string binary = find_etcd();
  if (binary.empty()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
  Etcd etcd;
  ASSERT_TRUE(etcd.start(binary)) << "etcd did not come up";
  auto kv = axon::fleet::EtcdClient::create(axon::fleet::EtcdOptions{{etcd.endpoint()}, 2000ms});
  ASSERT_TRUE(kv) << kv.message();
  ASSERT_TRUE(etcd.put_raw("/axon/members/a1", member_json("a1", 7401)));
  auto lease = kv->grant_lease(60);
  ASSERT_TRUE(lease) << lease.message();
  ASSERT_TRUE(kv->put("/axon/members/a2", member_json("a2", 7402), *lease));

  ac::EtcdSourceOptions src;
  src.endpoints = {etcd.endpoint()};
  src.poll_interval = 30s;  // longer than this test: only the watch can see the changes in time
  auto fleet = ac::FleetClient::open_etcd(src);
  ASSERT_TRUE(fleet) << fleet.message();
  auto ids = [&] {
    (void)fleet->placement(ac::RequestOptions{});
    auto v = fleet->member_ids();
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(ids(), (std::vector<std::string>{"a1", "a2"}));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(etcd.put_raw("/axon/members/a3", member_json("a3", 7403)));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a1", "a2", "a3"}; }, 5s)) << "a put";
  ASSERT_TRUE(etcd.del("/axon/members/a1"));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a2", "a3"}; }, 5s)) << "a delete";
  // A lease that ends (revoked here; expired is the same DELETE event) takes its key along.
  ASSERT_TRUE(kv->revoke_lease(*lease));
  EXPECT_TRUE(eventually([&] { return ids() == std::vector<std::string>{"a3"}; }, 5s)) << "a revoked lease";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, src.poll_interval) << "the poll cannot have run";
  EXPECT_EQ(fleet->counters().etcd_errors, 0u);
}

}  // namespace

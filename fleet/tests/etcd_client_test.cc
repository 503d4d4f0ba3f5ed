// EtcdClient against real etcd (Debian's etcd-server): one member for kv, compare-and-swap,
// leases, watch and compaction; three members for failover when the member in use stops.
// Root (the members run in namespaces of the test's own); skips otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>

#include "axon/fleet/etcd.h"

#include "etcd_cluster.h"

namespace axon::fleet {
namespace {

using testing::EtcdCluster;
using namespace std::chrono_literals;

TEST(EtcdCodec, Base64RoundTripsEveryLengthAndRejectsGarbage) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    std::string decoded;
    const std::string text = base64_encode(bytes);
    EXPECT_EQ(text.size() % 4, 0u);
    ASSERT_TRUE(base64_decode(text, decoded)) << text;
    EXPECT_EQ(decoded, bytes);
    bytes += static_cast<char>(i * 37);
  }
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  std::string out;
  EXPECT_FALSE(base64_decode("Zm9", out));
  EXPECT_FALSE(base64_decode("Zm!v", out));
  EXPECT_FALSE(base64_decode("Z=9v", out));
}

TEST(EtcdCodec, PrefixRangeEnd) {
  EXPECT_EQ(prefix_range_end("/axon/"), "/axon0");
  EXPECT_EQ(prefix_range_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefix_range_end(std::string("\xff", 1)), std::string(1, '\0'));
}

TEST(EtcdClientOptions, BadEndpointsAreRefusedWithAFix) {
  for (const std::string bad : {"127.0.0.1:2379", "https://127.0.0.1:2379", "http://127.0.0.1", "http://:2379",
                                "http://[::1:2379", "http://h:0"}) {
    auto c = EtcdClient::create(EtcdOptions{{bad}, 1000ms});
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.code(), EtcdError::invalid_argument);
  }
  auto none = EtcdClient::create(EtcdOptions{{}, 1000ms});
  ASSERT_FALSE(none);
  EXPECT_NE(none.message().find("http://127.0.0.1:2379"), std::string::npos);
}

TEST(EtcdClientOptions, NoEtcdListeningIsUnavailableAndSaysWhatToCheck) {
  // A port of ours that is bound but not listening: connect is refused at once.
  auto c = EtcdClient::create(EtcdOptions{{"http://127.0.0.1:1", "http://[::1]:1"}, 500ms});
  ASSERT_TRUE(c) << c.message();
  auto r = c->get("/k");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), EtcdError::unavailable);
  EXPECT_NE(r.message().find("127.0.0.1:1"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("[::1]:1"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("etcd_endpoints"), std::string::npos) << r.message();
}

class EtcdOne : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    std::string error;
    cluster_ = EtcdCluster::start(1, error).release();
    if (cluster_ == nullptr) setup_error_ = error;
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    ASSERT_NE(cluster_, nullptr) << setup_error_;
    auto c = EtcdClient::create(EtcdOptions{cluster_->endpoints(), 2000ms});
    ASSERT_TRUE(c) << c.message();
    client_.emplace(std::move(c).value());
  }
  EtcdClient& etcd() { return *client_; }

  static inline EtcdCluster* cluster_ = nullptr;
  static inline std::string setup_error_;
  std::optional<EtcdClient> client_;
};

TEST_F(EtcdOne, PutGetAndPrefixRange) {
  const std::string value("{\"x\":1}\n\0\xff", 10);
  auto r1 = etcd().put("/t1/a", value);
  ASSERT_TRUE(r1) << r1.message();
  auto r2 = etcd().put("/t1/b", "2");
  ASSERT_TRUE(r2) << r2.message();
  ASSERT_TRUE(etcd().put("/t10", "outside"));
  EXPECT_GT(*r2, *r1);
  auto got = etcd().get("/t1/a");
  ASSERT_TRUE(got) << got.message();
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, value);
  EXPECT_EQ(got->kvs[0].mod_revision, *r1);
  EXPECT_GE(got->revision, *r2);
  auto missing = etcd().get("/t1/none");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->kvs.empty());
  auto all = etcd().get_prefix("/t1/");
  ASSERT_TRUE(all) << all.message();
  ASSERT_EQ(all->kvs.size(), 2u);
  EXPECT_EQ(all->kvs[0].key, "/t1/a");
  EXPECT_EQ(all->kvs[1].key, "/t1/b");
  auto removed = etcd().remove_prefix("/t1/");
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 2);
  EXPECT_TRUE(etcd().get_prefix("/t1/")->kvs.empty());
  EXPECT_EQ(*etcd().remove("/t10"), 1);
}

TEST_F(EtcdOne, CompareAndSwapOnModRevision) {
  auto created = etcd().put_if("/cas/k", "v1", 0);
  ASSERT_TRUE(created) << created.message();
  ASSERT_TRUE(created->succeeded);
  // A second create loses and reports the key as it is.
  auto again = etcd().put_if("/cas/k", "v-other", 0);
  ASSERT_TRUE(again) << again.message();
  EXPECT_FALSE(again->succeeded);
  EXPECT_EQ(again->current.value, "v1");
  EXPECT_EQ(again->current.mod_revision, created->revision);
  // An update at the right revision wins; a second one at the same (now stale) one loses.
  auto updated = etcd().put_if("/cas/k", "v2", created->revision);
  ASSERT_TRUE(updated && updated->succeeded);
  auto stale = etcd().put_if("/cas/k", "v3", created->revision);
  ASSERT_TRUE(stale);
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(stale->current.value, "v2");
  EXPECT_EQ(etcd().get("/cas/k")->kvs.at(0).value, "v2");
  auto bad_delete = etcd().delete_if("/cas/k", created->revision);
  ASSERT_TRUE(bad_delete);
  EXPECT_FALSE(bad_delete->succeeded);
  auto deleted = etcd().delete_if("/cas/k", updated->revision);
  ASSERT_TRUE(deleted && deleted->succeeded);
  EXPECT_TRUE(etcd().get("/cas/k")->kvs.empty());
}

TEST_F(EtcdOne, LeasesKeepKeysAliveAndTheirEndRemovesThem) {
  auto lease = etcd().grant_lease(30);
  ASSERT_TRUE(lease) << lease.message();
  ASSERT_TRUE(etcd().put("/lease/a", "x", *lease));
  EXPECT_EQ(etcd().get("/lease/a")->kvs.at(0).lease, *lease);
  auto ttl = etcd().keep_alive(*lease);
  ASSERT_TRUE(ttl) << ttl.message();
  EXPECT_GT(*ttl, 0);
  ASSERT_TRUE(etcd().revoke_lease(*lease));
  EXPECT_TRUE(etcd().get("/lease/a")->kvs.empty());
  auto gone = etcd().keep_alive(*lease);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.code(), EtcdError::lease_not_found);
  // A put under an ended lease is refused.
  auto orphan = etcd().put("/lease/b", "x", *lease);
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.code(), EtcdError::lease_not_found) << orphan.message();

  // Expiry without keepalives.
  auto short_lease = etcd().grant_lease(1);
  ASSERT_TRUE(short_lease);
  ASSERT_TRUE(etcd().put("/lease/c", "x", *short_lease));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!etcd().get("/lease/c")->kvs.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(etcd().get("/lease/c")->kvs.empty()) << "the lease did not expire";
}

// Collects a watch's events on a thread until stopped.
struct Watcher {
  std::mutex mu;
  std::vector<WatchEvent> events;
  std::atomic<bool> stop{false};
  Result<Ok, EtcdError> result = Ok{};
  std::thread thread;

  void start(const EtcdClient& etcd, const std::string& prefix, std::int64_t from) {
    thread = std::thread([this, &etcd, prefix, from] {
      result = etcd.watch_prefix(
          prefix, from,
          [this](const WatchBatch& b) {
            std::lock_guard lock(mu);
            events.insert(events.end(), b.events.begin(), b.events.end());
            return true;
          },
          stop);
    });
  }
  std::size_t count() {
    std::lock_guard lock(mu);
    return events.size();
  }
  bool wait_for(std::size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (count() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    return count() >= n;
  }
  void finish() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  ~Watcher() { finish(); }
};

TEST_F(EtcdOne, WatchDeliversPutsAndDeletesInOrderAndStops) {
  auto base = etcd().put("/w/seed", "0");
  ASSERT_TRUE(base);
  Watcher w;
  w.start(etcd(), "/w/", *base + 1);
  ASSERT_TRUE(etcd().put("/w/a", "1"));
  ASSERT_TRUE(etcd().put("/outside", "x"));
  ASSERT_TRUE(etcd().put("/w/b", "2"));
  ASSERT_TRUE(etcd().remove("/w/a"));
  ASSERT_TRUE(w.wait_for(3)) << "got " << w.count() << " event(s)";
  const auto t0 = std::chrono::steady_clock::now();
  w.finish();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "the stop flag did not end the watch";
  ASSERT_TRUE(w.result) << w.result.message();
  ASSERT_EQ(w.events.size(), 3u);
  EXPECT_EQ(w.events[0].type, WatchEvent::Type::put);
  EXPECT_EQ(w.events[0].kv.key, "/w/a");
  EXPECT_EQ(w.events[0].kv.value, "1");
  EXPECT_EQ(w.events[1].kv.key, "/w/b");
  EXPECT_EQ(w.events[2].type, WatchEvent::Type::del);
  EXPECT_EQ(w.events[2].kv.key, "/w/a");
  EXPECT_LT(w.events[0].kv.mod_revision, w.events[1].kv.mod_revision);

  // From an old revision, the history is replayed.
  Watcher replay;
  replay.start(etcd(), "/w/", *base);
  ASSERT_TRUE(replay.wait_for(4));
  replay.finish();
  EXPECT_EQ(replay.events[0].kv.key, "/w/seed");
}

TEST_F(EtcdOne, WatchFromACompactedRevisionSaysSo) {
  auto first = etcd().put("/c/a", "1");
  ASSERT_TRUE(first);
  auto last = etcd().put("/c/a", "2");
  ASSERT_TRUE(last);
  ASSERT_TRUE(etcd().compact(*last));
  Watcher w;
  w.start(etcd(), "/c/", *first);
  w.thread.join();
  ASSERT_FALSE(w.result);
  EXPECT_EQ(w.result.code(), EtcdError::compacted) << w.result.message();
  EXPECT_NE(w.result.message().find("re-list"), std::string::npos);
}

TEST(EtcdThree, FailsOverWhenTheMemberInUseStopsAndTheWatchSaysItBroke) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
  std::string error;
  auto cluster = EtcdCluster::start(3, error);
  ASSERT_NE(cluster, nullptr) << error;
  auto c = EtcdClient::create(EtcdOptions{cluster->endpoints(), 1000ms});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->put("/f/k", "1"));
  EXPECT_EQ(c->current_endpoint(), cluster->endpoint(0));
  Watcher w;
  w.start(*c, "/f/", 0);
  std::this_thread::sleep_for(300ms);  // the watch is on member 0

  cluster->stop(0, true);
  // The remaining two keep a quorum: writes go on through the next endpoint.
  auto put = c->put("/f/k", "2");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!put && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);  // a new leader is being elected
    put = c->put("/f/k", "2");
  }
  ASSERT_TRUE(put) << put.message();
  EXPECT_NE(c->current_endpoint(), cluster->endpoint(0));
  EXPECT_EQ(c->get("/f/k")->kvs.at(0).value, "2");
  w.thread.join();
  ASSERT_FALSE(w.result) << "the watch on a killed member must end";
  EXPECT_EQ(w.result.code(), EtcdError::unavailable);

  ASSERT_TRUE(cluster->restart(0, error)) << error;
  auto only0 = EtcdClient::create(EtcdOptions{{cluster->endpoint(0)}, 1000ms});
  ASSERT_TRUE(only0);
  auto got = only0->get("/f/k");
  ASSERT_TRUE(got) << got.message();
  EXPECT_EQ(got->kvs.at(0).value, "2") << "the restarted member caught up";
}

}  // namespace
}  // namespace axon::fleet

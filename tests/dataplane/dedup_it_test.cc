// Retransmit dedup and the reply cache end to end (issue 14; docs/scheduling.md "Retransmit
// dedup", docs/protocol.md §1): the real daemon with real XDP on a veth pair in a namespace this
// test creates (prefix axdd), a real echo_worker run with --count, so every reply carries
// how many requests the worker's handler has run (the count of handler executions), and AXP
// clients in the namespace.
//
// - a retransmit while the request is in flight (the worker SIGSTOPped, the request in its
//   ring) is absorbed: one handler run, one reply; a retransmit after the reply is re-answered
//   from the cache, the handler still run once; after the window it runs again;
// - another tenant's request with the same source address, port and request id is dispatched,
//   never answered from tenant 1's cached reply;
// - a 64 KiB reply re-answered from the cache comes back whole, every segment.
//
// Nothing asserts on time: waits poll a reply or a counter against a deadline; the one "nothing
// comes back" check is a bounded receive whose counters are checked as well. The only wait is
// for the window to pass, which the test then asserts on (the request runs again).
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <thread>

#include "axon/testing/dataplane_it.h"

namespace axon::dataplane::it {
namespace {

using protocol::Header;
using protocol::MessageType;
using protocol::Reason;

constexpr std::uint32_t kMtu = 1500;  // the veth pair's

// Agents: 7 (tenant 1, a long window), 8 (tenant 2, the same), 9 (tenant 1, a one-second window).
constexpr std::chrono::milliseconds kShortWindow{1000};
const char* const kTables =
    "[[tenants]]\nid = 1\nname = \"t1\"\n\n[[tenants]]\nid = 2\nname = \"t2\"\n\n"
    "[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\ndedup_window_ms = 60000\n"
    "reply_cache_entries = 64\nreply_cache_eviction = \"fifo\"\n\n"
    "[[agents]]\nid = 8\ntenant = 2\nworkers = [\"w0\"]\ndedup_window_ms = 60000\n\n"
    "[[agents]]\nid = 9\ntenant = 1\nworkers = [\"w0\"]\ndedup_window_ms = 1000\n";

std::uint64_t stamp_of(const std::vector<std::uint8_t>& payload) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < 8 && i < payload.size(); ++i) n |= std::uint64_t(payload[i]) << (8 * i);
  return n;
}

// The §6 cut of `message` into datagrams of at most `most` payload bytes.
std::vector<std::vector<std::uint8_t>> segments_of(Header h, const std::vector<std::uint8_t>& message,
                                                   std::uint32_t most) {
  const auto len = std::uint32_t(message.size());
  const std::uint32_t count = (len + most - 1) / most;
  const std::uint32_t size = (len + count - 1) / count;
  std::vector<std::vector<std::uint8_t>> out;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint32_t offset = i * size;
    const std::uint32_t piece = std::min(size, len - offset);
    h.segment_index = std::uint16_t(i);
    h.segment_count = std::uint16_t(count);
    h.message_len = len;
    h.payload_len = std::uint16_t(piece);
    std::vector<std::uint8_t> d(protocol::kHeaderLen + piece);
    EXPECT_EQ(protocol::encode_header(h, d), protocol::kHeaderLen);
    std::copy_n(message.begin() + offset, piece, d.begin() + protocol::kHeaderLen);
    out.push_back(std::move(d));
  }
  return out;
}

struct Reply {
  Header header{};
  std::vector<std::uint8_t> message;
  std::uint32_t datagrams = 0;
};

// The reply to `request_id`, reassembled from its segments (each one exactly once).
std::optional<Reply> receive_reply(AxpClient& client, std::uint64_t request_id) {
  std::map<std::uint16_t, Received> got;
  std::uint32_t count = 0;
  const auto deadline = Clock::now() + kPatience;
  while (count == 0 || got.size() < count) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto rx = client.receive(left);
    if (!rx) return std::nullopt;
    if (rx->reason != Reason::ok || rx->header.request_id != request_id) continue;
    if (count == 0) count = rx->header.segment_count;
    EXPECT_TRUE(got.emplace(rx->header.segment_index, std::move(*rx)).second) << "a reply segment came twice";
  }
  Reply reply;
  reply.header = got.begin()->second.header;
  for (auto& [index, rx] : got) reply.message.insert(reply.message.end(), rx.payload.begin(), rx.payload.end());
  reply.datagrams = count;
  return reply;
}

class DedupIT : public DataplaneIT<DedupIT> {
 public:
  static void SetUpTestSuite() {
    axon::testing::NetworkSpec spec;
    spec.prefix = "axdd";
    create_network(spec);
  }

 protected:
  void SetUp() override {
    DataplaneIT::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ConfigSpec spec;
    spec.tables = kTables;
    // The test holds the worker stopped on purpose: no stall detection meanwhile.
    spec.dataplane_extra = "worker_stall_timeout_ms = 0\n";
    ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
    processes_.push_back(std::make_unique<ChildProcess>());
    worker_ = processes_.back().get();
    std::string error;
    ASSERT_TRUE(worker_->start({AXON_ECHO_WORKER_BIN, "--count"}, {"AXON_WORKER_SOCKET=" + daemon_->socket_path("w0")},
                               dir_->path() + "/worker.log", &error))
        << error;
    ASSERT_TRUE(eventually([&] { return slot_alive_with(0, worker_->pid()); })) << "the worker never attached";
  }

  std::uint64_t counter(Counter LcoreStats::*member) { return stats().lcores(member); }
  std::uint64_t executions() { return stats().worker(0).completed.load(); }

  // A one-datagram request and its reply's execution stamp.
  std::uint64_t call(AxpClient& client, const Header& h, const std::vector<std::uint8_t>& payload) {
    EXPECT_TRUE(client.send(h, payload));
    auto reply = receive_reply(client, h.request_id);
    if (!reply) {
      ADD_FAILURE() << "no reply to request " << h.request_id;
      return 0;
    }
    EXPECT_EQ(reply->header.type, MessageType::response) << protocol::to_string(reply->header.error_code);
    EXPECT_EQ(reply->header.tenant_id, h.tenant_id);
    EXPECT_EQ(reply->message.size(), payload.size());
    return stamp_of(reply->message);
  }

  ChildProcess* worker_ = nullptr;
};

TEST_F(DedupIT, ARetransmitInFlightIsAbsorbedThenReansweredFromTheCacheThenRunsAgainAfterTheWindow) {
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto payload = pattern_payload(64, 3);
  Header h = request_header(1, 7);
  ASSERT_TRUE(worker_->signal(SIGSTOP));
  ASSERT_TRUE(client.send(h, payload));
  ASSERT_TRUE(eventually([&] { return counter(&LcoreStats::requests) == 1; })) << "the request never reached the ring";
  ASSERT_TRUE(client.send(h, payload));  // the retransmit, while the first one waits in the ring
  ASSERT_TRUE(eventually([&] { return counter(&LcoreStats::dedup_absorbed) == 1; }));
  ASSERT_TRUE(worker_->signal(SIGCONT));
  auto first = receive_reply(client, h.request_id);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header.type, MessageType::response);
  EXPECT_EQ(stamp_of(first->message), 1u) << "the handler's first run";
  // One reply only: the absorbed retransmit gets none of its own.
  EXPECT_FALSE(client.receive(300ms)) << "a second reply to a request that ran once";
  EXPECT_EQ(counter(&LcoreStats::requests), 1u);
  EXPECT_EQ(executions(), 1u);

  // After the reply: re-answered from the cache, the same reply, the handler not run again.
  EXPECT_EQ(call(client, h, payload), 1u);
  EXPECT_EQ(counter(&LcoreStats::dedup_hits), 1u);
  EXPECT_EQ(executions(), 1u);
  EXPECT_EQ(counter(&LcoreStats::requests), 1u);

  // Agent 9's window is one second: re-answered within it, run again once it has passed.
  Header short_lived = request_header(1, 9);
  const std::uint64_t ran = call(client, short_lived, payload);
  const auto answered_at = Clock::now();
  EXPECT_EQ(ran, 2u);
  EXPECT_EQ(call(client, short_lived, payload), ran) << "a retransmit within the window ran the handler again";
  std::this_thread::sleep_until(answered_at + kShortWindow + 50ms);
  EXPECT_EQ(call(client, short_lived, payload), 3u) << "past the window the request is new and runs";
  EXPECT_EQ(executions(), 3u);
  EXPECT_EQ(counter(&LcoreStats::dedup_hits), 2u);
  EXPECT_EQ(counter(&LcoreStats::dedup_misses), 3u);
}

TEST_F(DedupIT, AnotherTenantWithTheSameSourceAndRequestIdIsDispatchedNotServedTheCachedReply) {
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto payload = pattern_payload(200, 9);
  Header tenant1 = request_header(1, 7);
  EXPECT_EQ(call(client, tenant1, payload), 1u);
  EXPECT_EQ(call(client, tenant1, payload), 1u);  // cached for tenant 1
  Header tenant2 = request_header(2, 8);
  tenant2.request_id = tenant1.request_id;  // same socket (address and port), same id
  EXPECT_EQ(call(client, tenant2, payload), 2u) << "tenant 2 got tenant 1's cached reply";
  EXPECT_EQ(call(client, tenant2, payload), 2u);  // and now its own, cached
  EXPECT_EQ(call(client, tenant1, payload), 1u);
  EXPECT_EQ(executions(), 2u);
  EXPECT_EQ(counter(&LcoreStats::dedup_hits), 3u);
}

TEST_F(DedupIT, A64KiBReplyIsReansweredWholeFromTheCache) {
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.widen_receive_buffer(4 << 20));
  const auto message = pattern_payload(65536, 11);
  Header h = request_header(1, 7);
  const std::uint32_t most = kMtu - 20u - 8u - std::uint32_t(protocol::kHeaderLen);
  const auto datagrams = segments_of(h, message, most);
  for (const auto& d : datagrams) ASSERT_TRUE(client.send_bytes(d));
  auto first = receive_reply(client, h.request_id);
  ASSERT_TRUE(first) << "no reply to the 64 KiB request";
  ASSERT_EQ(first->header.type, MessageType::response) << protocol::to_string(first->header.error_code);
  ASSERT_EQ(first->message.size(), message.size());
  EXPECT_EQ(stamp_of(first->message), 1u);
  EXPECT_TRUE(std::equal(message.begin() + 8, message.end(), first->message.begin() + 8));
  // The retransmit: every segment again, reassembled, then answered from the cache.
  for (const auto& d : datagrams) ASSERT_TRUE(client.send_bytes(d));
  auto again = receive_reply(client, h.request_id);
  ASSERT_TRUE(again) << "the cached 64 KiB reply did not come back whole";
  EXPECT_EQ(again->header.type, MessageType::response);
  EXPECT_EQ(again->datagrams, first->datagrams);
  EXPECT_EQ(again->message, first->message);
  EXPECT_EQ(counter(&LcoreStats::dedup_hits), 1u);
  EXPECT_EQ(executions(), 1u);
  EXPECT_EQ(counter(&LcoreStats::dedup_arena_bytes), 65536u);
}

// Two queues, one worker (owned by lcore 0): requests received by lcore 1 are looked up there and
// forwarded; their replies go back to lcore 1's reply cache, so their retransmits are re-answered
// like the others.
class DedupMultiQueueIT : public DataplaneIT<DedupMultiQueueIT> {
 public:
  static void SetUpTestSuite() {
    axon::testing::NetworkSpec spec;
    spec.prefix = "axdd";
    spec.queues = 2;
    create_network(spec);
  }
};

TEST_F(DedupMultiQueueIT, RepliesToForwardedRequestsAreCachedOnTheLcoreThatReceivedThem) {
  ConfigSpec spec;
  spec.tables = kTables;
  spec.queue_count = 2;
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  processes_.push_back(std::make_unique<ChildProcess>());
  ChildProcess* worker = processes_.back().get();
  std::string error;
  ASSERT_TRUE(worker->start({AXON_ECHO_WORKER_BIN, "--count"}, {"AXON_WORKER_SOCKET=" + daemon_->socket_path("w0")},
                            dir_->path() + "/worker.log", &error))
      << error;
  ASSERT_TRUE(eventually([&] { return slot_alive_with(0, worker->pid()); })) << "the worker never attached";
  // 16 sockets: the chance that all their flows hash to lcore 0's queue is 2^-16.
  constexpr int kClients = 16;
  const auto payload = pattern_payload(100, 5);
  for (int i = 0; i < kClients; ++i) {
    AxpClient client(*net_, AF_INET);
    ASSERT_TRUE(client.ok());
    Header h = request_header(1, 7);
    ASSERT_TRUE(client.send(h, payload));
    auto first = receive_reply(client, h.request_id);
    ASSERT_TRUE(first) << "client " << i;
    ASSERT_EQ(first->header.type, MessageType::response) << protocol::to_string(first->header.error_code);
    // The retransmit, once the first reply is here (and so settled in the cache that will see it).
    ASSERT_TRUE(eventually([&] {
      return stats().lcores(&LcoreStats::dedup_entries) == std::uint64_t(i + 1) &&
             stats().lcores(&LcoreStats::dedup_arena_bytes) == std::uint64_t(i + 1) * payload.size();
    })) << "the reply to client "
        << i << " never reached the cache of the lcore that received it";
    ASSERT_TRUE(client.send(h, payload));
    auto again = receive_reply(client, h.request_id);
    ASSERT_TRUE(again) << "client " << i;
    EXPECT_EQ(again->header.type, MessageType::response) << protocol::to_string(again->header.error_code);
    EXPECT_EQ(again->message, first->message) << "client " << i;
  }
  EXPECT_GT(stats().lcores(&LcoreStats::forwarded), 0u) << "no flow reached the other lcore";
  EXPECT_EQ(stats().lcores(&LcoreStats::dedup_hits), std::uint64_t(kClients));
  EXPECT_EQ(stats().lcores(&LcoreStats::dedup_tombstone_hits), 0u);
  EXPECT_EQ(stats().worker(0).completed.load(), std::uint64_t(kClients));
}

}  // namespace
}  // namespace axon::dataplane::it

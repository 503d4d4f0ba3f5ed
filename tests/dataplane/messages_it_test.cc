// Messages up to 64 KiB end to end (issue 14; docs/protocol.md §6): the real daemon on a veth
// pair in a namespace this test creates (prefix axmsg), a real echo_worker, and AXP clients in
// the namespace that segment their requests by the §6 rule and reassemble the replies by it.
//
// Per backend (xdp, uring, and dpdk when built): 64 KiB echo both ways over IPv4 and IPv6;
// segments out of order and duplicated; one missing (dropped after the reassembly timeout,
// counted, memory back to 0); disagreeing and impossible segments; a message larger than the
// worker's large buffer (one ERROR payload_too_large); a flood of first segments that never
// complete stays within the tenant's bound while another tenant is served. With two queues: a
// reassembled message crosses to the lcore that owns the worker.
//
// Nothing asserts on time: waits poll a reply or a counter against a deadline; the only
// "nothing comes back" checks are bounded receives whose counters are checked as well.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "axon/bpf/xdp_program.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {
namespace {

using protocol::ErrorCode;
using protocol::Header;
using protocol::MessageType;
using protocol::Reason;

constexpr std::uint32_t kMtu = 1500;  // the veth pair's

// The §6 cut: count = ceil(len / most) datagrams, S = ceil(len / count), the last one the rest.
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
    h.header_len = protocol::kHeaderLen;
    std::vector<std::uint8_t> d(protocol::kHeaderLen + piece);
    EXPECT_EQ(protocol::encode_header(h, d), protocol::kHeaderLen);
    std::copy_n(message.begin() + offset, piece, d.begin() + protocol::kHeaderLen);
    out.push_back(std::move(d));
  }
  return out;
}

// Largest segment payload within the MTU for a family.
std::uint32_t most_for(int family) {
  return kMtu - (family == AF_INET6 ? 40u : 20u) - 8u - std::uint32_t(protocol::kHeaderLen);
}

// The reply to `request_id`, reassembled by the §6 rule, every segment checked against it.
struct Reply {
  Header header{};  // segment 0's
  std::vector<std::uint8_t> message;
  std::uint32_t datagrams = 0;
};

std::optional<Reply> receive_reply(AxpClient& client, std::uint64_t request_id, int family) {
  std::map<std::uint16_t, Received> got;
  std::uint32_t count = 0;
  const auto deadline = Clock::now() + kPatience;
  while (count == 0 || got.size() < count) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto rx = client.receive(left);
    if (!rx) return std::nullopt;
    EXPECT_EQ(rx->reason, Reason::ok);
    if (rx->reason != Reason::ok || rx->header.request_id != request_id) continue;
    EXPECT_LE(rx->bytes.size(), std::size_t(most_for(family)) + protocol::kHeaderLen) << "a reply segment over MTU";
    if (count == 0) count = rx->header.segment_count;
    EXPECT_EQ(rx->header.segment_count, count);
    EXPECT_TRUE(got.emplace(rx->header.segment_index, std::move(*rx)).second) << "a reply segment came twice";
  }
  Reply reply;
  reply.header = got.begin()->second.header;
  const std::uint32_t len = reply.header.message_len;
  const std::uint32_t size = (len + count - 1) / count;
  for (auto& [index, rx] : got) {
    EXPECT_EQ(rx.header.message_len, len);
    EXPECT_EQ(rx.header.type, reply.header.type);
    const std::uint32_t expected = index + 1u < count ? size : len - (count - 1) * size;
    EXPECT_EQ(rx.payload.size(), expected) << "segment " << index << " of " << count << " breaks the §6 rule";
    reply.message.insert(reply.message.end(), rx.payload.begin(), rx.payload.end());
  }
  reply.datagrams = count;
  return reply;
}

class MessagesFixture : public ::testing::Test {
 protected:
  [[nodiscard]] virtual std::string backend() const = 0;
  [[nodiscard]] virtual unsigned queues() const { return 1; }

  static void make_network(unsigned queues) {
    if (geteuid() != 0) return;
    axon::testing::NetworkSpec spec;
    spec.prefix = "axmsg";
    spec.queues = queues;
    net_ = TestNetwork::create(spec, net_error_).release();
  }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: it creates a namespace, a veth pair and attaches XDP";
#ifndef AXON_IT_DPDK
    if (backend() == "dpdk") GTEST_SKIP() << "dpdk backend not built";
#endif
    ASSERT_NE(net_, nullptr) << "cannot create the test network: " << net_error_;
    dir_ = std::make_unique<TempDir>();
    if (backend() == "dpdk") {
      // DPDK owns the root end: the client needs static neighbour entries.
      char mac[18];
      std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", net_->root_mac[0], net_->root_mac[1],
                    net_->root_mac[2], net_->root_mac[3], net_->root_mac[4], net_->root_mac[5]);
      ASSERT_EQ(run_command({"ip", "-n", net_->ns, "neigh", "replace", net_->root_ip4, "lladdr", mac, "dev",
                             net_->ns_if, "nud", "permanent"}),
                0);
      if (net_->has_ipv6) {
        ASSERT_EQ(run_command({"ip", "-n", net_->ns, "-6", "neigh", "replace", net_->root_ip6, "lladdr", mac, "dev",
                               net_->ns_if, "nud", "permanent"}),
                  0);
      }
    }
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      EXPECT_EQ(daemon_->stop(), std::optional<int>(0)) << "SIGTERM must drain and exit 0";
    }
    if (net_ != nullptr) {
      auto q = bpf::query_attached(net_->root_ifindex);
      if (q && q->program_id != 0) {
        ADD_FAILURE() << "an XDP program was left attached";
        run_command({"ip", "link", "set", "dev", net_->root_if, "xdp", "off"});
      }
    }
    if (HasFailure()) {
      if (daemon_) std::cerr << "---- axon-dataplane log:\n" << daemon_->log() << "----\n";
      if (worker_) std::cerr << "---- echo_worker log:\n" << worker_->log() << "----\n";
      if (dir_) dir_->keep();
    }
    worker_.reset();
    daemon_.reset();
    dir_.reset();
  }

  // Tenants 1 (agent 7) and 2 (agent 8), both served by w0; `reassembly` is the
  // [reassembly] body.
  // `tenant2`: extra keys of tenant 2; `xdp`: extra [xdp] lines.
  void start(const std::string& reassembly = "", const std::string& shm = "", const std::string& tenant2 = "",
             const std::string& xdp = "") {
    ConfigSpec spec;
    spec.backend = backend();
    spec.queue_count = queues();
    spec.xdp_extra = xdp;
    spec.tables =
        "[[tenants]]\nid = 1\nname = \"t1\"\n\n[[tenants]]\nid = 2\nname = \"t2\"\n" + tenant2 +
        "\n"
        "[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n\n[[agents]]\nid = 8\ntenant = 2\nworkers = [\"w0\"]\n";
    if (!reassembly.empty()) spec.tables += "\n[reassembly]\n" + reassembly + "\n";
    if (!shm.empty()) spec.shm = shm;
    daemon_ = std::make_unique<Daemon>(dir_->path());
    std::string error;
    ASSERT_TRUE(daemon_->start(make_config(*net_, dir_->path(), spec), &error)) << error;
    ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
    worker_ = std::make_unique<Worker>();
    ASSERT_TRUE(worker_->start(*daemon_, "w0", 0, &error)) << error;
    ASSERT_TRUE(eventually([&] { return stats().worker_state(0) == WorkerSlotState::alive; }));
  }

  StatsReader& stats() {
    return daemon_->stats();
  }
  std::uint64_t drops(Reason r) {
    return stats().lcore_drops(r);
  }
  std::uint64_t held_bytes() {
    return stats().lcores(&LcoreStats::reassembly_bytes);
  }

  void send_all(AxpClient& client, const std::vector<std::vector<std::uint8_t>>& datagrams) {
    for (const auto& d : datagrams) ASSERT_TRUE(client.send_bytes(d));
  }

  // Echo of `size` bytes: the request cut by the §6 rule, sent in `order`, the reply checked.
  void echo(AxpClient& client, int family, std::uint32_t size, std::uint32_t tenant = 1, std::uint32_t agent = 7) {
    Header h = request_header(tenant, agent);
    auto message = pattern_payload(size, std::uint8_t(size));
    send_all(client, segments_of(h, message, most_for(family)));
    auto reply = receive_reply(client, h.request_id, family);
    ASSERT_TRUE(reply) << "no (whole) reply to a " << size << "-byte request";
    EXPECT_EQ(reply->header.type, MessageType::response) << protocol::to_string(reply->header.error_code);
    EXPECT_EQ(reply->header.tenant_id, tenant);
    EXPECT_EQ(reply->header.trace_id, h.trace_id);
    EXPECT_EQ(reply->message, message) << size << " bytes echoed";
    EXPECT_EQ(reply->datagrams, (size + most_for(family) - 1) / most_for(family));
  }

  static TestNetwork* net_;
  static std::string net_error_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<Worker> worker_;
};

TestNetwork* MessagesFixture::net_ = nullptr;
std::string MessagesFixture::net_error_;

class MessagesIT : public MessagesFixture, public ::testing::WithParamInterface<std::string> {
 protected:
  [[nodiscard]] std::string backend() const override { return GetParam(); }

 public:
  static void SetUpTestSuite() { make_network(1); }
};

TEST_P(MessagesIT, SegmentedRequestsAndRepliesUpTo64KiBEchoOverIPv4AndIPv6) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int family : {AF_INET, AF_INET6}) {
    if (family == AF_INET6 && !net_->has_ipv6) continue;
    AxpClient client(*net_, family);
    ASSERT_TRUE(client.ok());
    ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
    for (std::uint32_t size : {most_for(family) + 1, 3000u, 20000u, 65535u, 65536u}) {
      SCOPED_TRACE(std::to_string(size) + " bytes, family " + std::to_string(family));
      ASSERT_NO_FATAL_FAILURE(echo(client, family, size));
    }
  }
  EXPECT_EQ(drops(Reason::reassembly_timeout), 0u);
  EXPECT_GT(stats().lcores(&LcoreStats::reassembled), 0u);
  EXPECT_GT(stats().lcores(&LcoreStats::reply_segments), 0u);
  EXPECT_TRUE(eventually([&] { return held_bytes() == 0; })) << "reassembly memory must be returned";
}

TEST_P(MessagesIT, SegmentsOutOfOrderAndDuplicatedMakeOneRequest) {
  ASSERT_NO_FATAL_FAILURE(start());
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
  Header h = request_header(1, 7);
  auto message = pattern_payload(30000, 3);
  auto segs = segments_of(h, message, most_for(AF_INET));
  std::vector<std::size_t> order(segs.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::shuffle(order.begin(), order.end(), std::mt19937(11));
  // Every segment twice, the second copies before the last first copy.
  for (std::size_t i = 0; i + 1 < order.size(); ++i) ASSERT_TRUE(client.send_bytes(segs[order[i]]));
  for (std::size_t i = 0; i + 1 < order.size(); ++i) ASSERT_TRUE(client.send_bytes(segs[order[i]]));
  ASSERT_TRUE(client.send_bytes(segs[order.back()]));
  auto reply = receive_reply(client, h.request_id, AF_INET);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, MessageType::response);
  EXPECT_EQ(reply->message, message);
  EXPECT_TRUE(eventually([&] { return drops(Reason::segment_duplicate) == segs.size() - 1; }))
      << drops(Reason::segment_duplicate);
  // Exactly one reply: the duplicates ran nothing.
  EXPECT_FALSE(client.receive(300ms)) << "a duplicate segment produced a second reply";
  EXPECT_EQ(stats().lcores(&LcoreStats::requests), 1u);
}

TEST_P(MessagesIT, AMissingSegmentDropsTheMessageAfterTheTimeoutAndReturnsItsMemory) {
  ASSERT_NO_FATAL_FAILURE(start("timeout_ms = 200"));
  AxpClient client(*net_, AF_INET);
  Header h = request_header(1, 7);
  auto message = pattern_payload(10000, 5);
  auto segs = segments_of(h, message, most_for(AF_INET));
  for (std::size_t i = 0; i < segs.size(); ++i) {
    if (i != 3) {
      ASSERT_TRUE(client.send_bytes(segs[i]));
    }
  }
  EXPECT_TRUE(eventually([&] { return held_bytes() > 0; })) << "the partial message is held";
  EXPECT_TRUE(eventually([&] { return drops(Reason::reassembly_timeout) == 1; }));
  EXPECT_TRUE(eventually([&] { return held_bytes() == 0; })) << "its memory is returned";
  EXPECT_TRUE(eventually([&] { return stats().lcores(&LcoreStats::reassembly_messages) == 0; }));
  EXPECT_FALSE(client.receive(100ms)) << "an incomplete message is never answered";
  EXPECT_EQ(stats().lcores(&LcoreStats::requests), 0u);
  // The late segment alone starts a new message, which times out too; the whole message is served.
  ASSERT_TRUE(client.send_bytes(segs[3]));
  EXPECT_TRUE(eventually([&] { return drops(Reason::reassembly_timeout) == 2; }));
  ASSERT_NO_FATAL_FAILURE(echo(client, AF_INET, 10000));
}

TEST_P(MessagesIT, DisagreeingAndImpossibleSegmentsAreDroppedByReasonAndFreeThePartialMessage) {
  ASSERT_NO_FATAL_FAILURE(start());
  AxpClient client(*net_, AF_INET);
  Header h = request_header(1, 7);
  auto segs = segments_of(h, pattern_payload(5000, 1), most_for(AF_INET));
  ASSERT_TRUE(client.send_bytes(segs[0]));
  EXPECT_TRUE(eventually([&] { return held_bytes() > 0; }));
  // Same (tenant, source, request id), another message_len.
  auto other = segments_of(h, pattern_payload(5001, 1), most_for(AF_INET));
  ASSERT_TRUE(client.send_bytes(other[1]));
  EXPECT_TRUE(eventually([&] { return drops(Reason::segment_mismatch) == 1; }));
  EXPECT_TRUE(eventually([&] { return held_bytes() == 0; }));
  // A middle segment one byte short (it would overlap the next one's offset).
  ASSERT_TRUE(client.send_bytes(segs[0]));
  EXPECT_TRUE(eventually([&] { return held_bytes() > 0; }));
  Header cut = h;
  cut.segment_index = 1;
  cut.segment_count = std::uint16_t(segs.size());
  cut.message_len = 5000;
  auto shorter = encode(cut, pattern_payload(segs[1].size() - protocol::kHeaderLen - 1, 1));
  // encode() writes a single-segment header: put the segment fields back.
  ASSERT_EQ(protocol::encode_header(
                [&] {
                  Header x = cut;
                  x.payload_len = std::uint16_t(shorter.size() - protocol::kHeaderLen);
                  return x;
                }(),
                shorter),
            protocol::kHeaderLen);
  ASSERT_TRUE(client.send_bytes(shorter));
  EXPECT_TRUE(eventually([&] { return drops(Reason::segment_offset) == 1; }));
  EXPECT_TRUE(eventually([&] { return held_bytes() == 0; }));
  EXPECT_FALSE(client.receive(200ms)) << "no reply to a broken message";
  // The rest of the original segments now make an incomplete message: still no reply.
  EXPECT_EQ(stats().lcores(&LcoreStats::requests), 0u);
}

TEST_P(MessagesIT, AMessageLargerThanTheWorkerBufferGetsOnePayloadTooLarge) {
  ASSERT_NO_FATAL_FAILURE(start("",
                                "request_capacity = 128\nreply_capacity = 128\nloan_capacity = 16\n"
                                "small_buffer_size = 2048\nsmall_buffer_count = 256\nlarge_buffer_size = 16384\n"
                                "large_buffer_count = 4\n"));
  AxpClient client(*net_, AF_INET);
  Header h = request_header(1, 7);
  auto segs = segments_of(h, pattern_payload(20000, 1), most_for(AF_INET));
  send_all(client, segs);
  auto rx = client.receive(kPatience);
  ASSERT_TRUE(rx);
  EXPECT_EQ(rx->header.type, MessageType::error);
  EXPECT_EQ(rx->header.error_code, ErrorCode::payload_too_large);
  EXPECT_EQ(rx->header.request_id, h.request_id);
  EXPECT_TRUE(eventually([&] { return drops(Reason::reassembly_too_large) == segs.size(); }));
  EXPECT_FALSE(client.receive(200ms)) << "one ERROR per message, not one per segment";
  // What fits the buffer is served.
  ASSERT_NO_FATAL_FAILURE(echo(client, AF_INET, 16384));
}

TEST_P(MessagesIT, AFloodOfFirstSegmentsStaysWithinTheTenantBoundWhileAnotherTenantIsServed) {
  ASSERT_NO_FATAL_FAILURE(start("timeout_ms = 300\nmemory_per_lcore = 1048576\nmemory_per_tenant = 262144"));
  AxpClient flood(*net_, AF_INET);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
  constexpr int kFlood = 100;  // first segments of 64 KiB messages, never completed
  auto message = pattern_payload(65536, 9);
  for (int i = 0; i < kFlood; ++i) {
    Header h = request_header(2, 8);
    ASSERT_TRUE(flood.send_bytes(segments_of(h, message, most_for(AF_INET))[0]));
  }
  // 262144 bytes hold 4 such messages; the other 96 are refused under the tenant bound.
  EXPECT_TRUE(eventually([&] { return drops(Reason::reassembly_tenant_memory) == kFlood - 4; }))
      << drops(Reason::reassembly_tenant_memory);
  EXPECT_LE(held_bytes(), 262144u);
  EXPECT_EQ(drops(Reason::reassembly_memory), 0u);
  // Tenant 1 still gets a whole 64 KiB echo meanwhile.
  ASSERT_NO_FATAL_FAILURE(echo(client, AF_INET, 65536));
  // The flood's messages expire and give everything back.
  EXPECT_TRUE(eventually([&] { return drops(Reason::reassembly_timeout) == 4; }));
  EXPECT_TRUE(eventually([&] { return held_bytes() == 0; }));
  EXPECT_FALSE(flood.receive(100ms)) << "incomplete messages are never answered";
}

// The tenant's rate limit counts segments, not messages: on every backend (XDP in the kernel,
// the lcore on uring and dpdk) each segment passes the limit before it is reassembled.
TEST_P(MessagesIT, TheTenantRateLimitCountsEverySegment) {
  ASSERT_NO_FATAL_FAILURE(start("", "", "rate_pps = 1\nburst = 3\n", "enforce_rate = true\n"));
  AxpClient client(*net_, AF_INET);
  Header h = request_header(2, 8);
  auto segs = segments_of(h, pattern_payload(5 * most_for(AF_INET), 4), most_for(AF_INET));
  ASSERT_EQ(segs.size(), 5u);
  send_all(client, segs);
  // A burst of 3: segments 3 and 4 are over the limit, so the message never completes.
  EXPECT_TRUE(eventually([&] { return stats().xdp(Reason::rate_limited) + drops(Reason::rate_limited) == 2; }))
      << stats().xdp(Reason::rate_limited) + drops(Reason::rate_limited);
  EXPECT_TRUE(eventually([&] { return held_bytes() > 0; })) << "the 3 admitted segments are held";
  EXPECT_FALSE(client.receive(200ms)) << "a message missing segments is not answered";
  EXPECT_EQ(stats().lcores(&LcoreStats::requests), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, MessagesIT, ::testing::Values("xdp", "uring", "dpdk"),
                         [](const ::testing::TestParamInfo<std::string>& param) { return param.param; });

// Two queues: requests hashed to the queue whose lcore does not own the worker are reassembled
// there and lent to the owner, which copies them into the worker's buffer.
class MessagesMultiQueueIT : public MessagesFixture, public ::testing::WithParamInterface<std::string> {
 protected:
  [[nodiscard]] std::string backend() const override { return GetParam(); }
  [[nodiscard]] unsigned queues() const override { return 2; }

 public:
  static void SetUpTestSuite() { make_network(2); }
};

TEST_P(MessagesMultiQueueIT, AReassembledMessageCrossesToTheWorkersLcore) {
  ASSERT_NO_FATAL_FAILURE(start());
  // 16 sockets: the chance that all their flows hash to one queue is 2^-15.
  std::vector<std::unique_ptr<AxpClient>> clients;
  for (int c = 0; c < 16; ++c) {
    clients.push_back(std::make_unique<AxpClient>(*net_, AF_INET));
    ASSERT_TRUE(clients.back()->ok());
    ASSERT_TRUE(clients.back()->widen_receive_buffer(1 << 20));
  }
  for (auto& c : clients) ASSERT_NO_FATAL_FAILURE(echo(*c, AF_INET, 12000));
  const std::uint32_t owner = stats().worker(0).owner_lcore.load();
  ASSERT_LT(owner, 2u);
  EXPECT_GT(stats().lcore(1 - owner, &LcoreStats::forwarded), 0u) << "no message crossed lcores";
  EXPECT_GT(stats().lcore(1 - owner, &LcoreStats::reassembled), 0u);
  EXPECT_EQ(stats().lcore(owner, &LcoreStats::requests), clients.size());
  EXPECT_TRUE(eventually([&] { return held_bytes() == 0; })) << "lent messages are given back and freed";
}

INSTANTIATE_TEST_SUITE_P(Backends, MessagesMultiQueueIT, ::testing::Values("xdp", "uring"),
                         [](const ::testing::TestParamInfo<std::string>& param) { return param.param; });

}  // namespace
}  // namespace axon::dataplane::it

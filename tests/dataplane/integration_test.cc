// End-to-end tests of axon-dataplane: the real daemon binary on a veth pair whose other end
// lives in a network namespace this test creates, real echo_worker processes, and AXP clients
// whose sockets live inside the namespace.
//
// One suite, every backend: DataplaneIT is parameterised over {"xdp", "uring", "dpdk"} and runs
// the same protocol and worker cases on each (xdp: real XDP + AF_XDP copy mode on the veth;
// uring: io_uring UDP sockets bound to the veth's root end; dpdk: enabled by the DPDK backend's
// build with AXON_IT_DPDK). Cases that are inherently XDP-only (raw L2/L3 frames the XDP program
// sees, TCP passing the kernel with XDP attached) live in XdpIT; BackendAutoIT covers automatic
// backend selection and UringUnprivilegedIT the io_uring backend run as `nobody`.
//
// The namespace and veth pair are shared by the suite (they carry no state between tests);
// every test starts its own daemon with its own run_dir and config, and its own workers. The
// fixture's TearDown stops the daemon with SIGTERM and checks that it exits 0 and leaves no
// XDP program on the interface, so every test is also a shutdown test; whatever fails, the
// processes are killed by pid and the XDP program is removed.
//
// Timing: nothing here asserts on a sleep. Every wait polls a condition (a reply, a counter
// in the stats file, a log line) against a deadline; every load loop is bounded in count.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "axon/bpf/xdp_program.h"
#include "axon/protocol/packet.h"
#include "axon/shm/channel.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {
namespace {

using protocol::ErrorCode;
using protocol::Header;
using protocol::MessageType;
using protocol::Reason;

// Total and loaned buffers of a worker slot with the default ConfigSpec geometry.
constexpr std::uint32_t kTotalBuffers = 256 + 4;
const std::uint32_t kLoanedBuffers = shm::ChannelOptions{}.small_loans + shm::ChannelOptions{}.large_loans;

std::string describe(const Received& rx) {
  std::ostringstream s;
  if (rx.reason != Reason::ok) {
    s << "invalid AXP datagram (" << protocol::to_string(rx.reason) << ", " << rx.bytes.size() << " bytes)";
    return s.str();
  }
  s << protocol::to_string(rx.header.type) << " request_id=" << rx.header.request_id;
  if (rx.header.type == MessageType::error) s << " error=" << protocol::to_string(rx.header.error_code);
  if (rx.header.retry_after_us != 0) s << " retry_after_us=" << rx.header.retry_after_us;
  return s.str();
}

bool is_error(const Received& rx, ErrorCode code) {
  return rx.reason == Reason::ok && rx.header.type == MessageType::error && rx.header.error_code == code;
}

bool is_type(const Received& rx, MessageType type) {
  return rx.reason == Reason::ok && rx.header.type == type;
}

// The reply rules every reply must follow (docs/protocol.md "Replies").
void expect_reply_to(const Received& rx, const Header& request) {
  ASSERT_EQ(rx.reason, Reason::ok) << describe(rx);
  EXPECT_EQ(rx.header.request_id, request.request_id);
  EXPECT_EQ(rx.header.tenant_id, request.tenant_id);
  EXPECT_EQ(rx.header.agent_id, request.agent_id);
  EXPECT_EQ(rx.header.session_key, request.session_key);
  EXPECT_EQ(rx.header.priority, request.priority);
  EXPECT_EQ(rx.header.trace_flags, request.trace_flags);
  EXPECT_EQ(rx.header.trace_id, request.trace_id) << "the trace id must be echoed";
  if (protocol::has_trace_context(request)) {
    EXPECT_NE(rx.header.span_id, request.span_id) << "the responder must start a new child span";
    EXPECT_NE(rx.header.span_id, protocol::SpanId{}) << "an all-zero span id is invalid";
  } else {
    EXPECT_EQ(rx.header.span_id, protocol::SpanId{}) << "no trace context in, none out (§5)";
  }
  EXPECT_EQ(rx.header.deadline_us, 0u);
  EXPECT_EQ(rx.header.segment_count, 1u);
  EXPECT_EQ(rx.header.segment_index, 0u);
}

void expect_response(const Received& rx, const Header& request, const std::vector<std::uint8_t>& payload) {
  ASSERT_TRUE(is_type(rx, MessageType::response)) << describe(rx);
  expect_reply_to(rx, request);
  EXPECT_EQ(rx.header.error_code, ErrorCode::none);
  EXPECT_EQ(rx.header.message_len, payload.size());
  EXPECT_EQ(rx.payload, payload) << "the echo must return the request payload byte for byte";
}

void expect_error(const Received& rx, const Header& request, ErrorCode code) {
  ASSERT_TRUE(is_error(rx, code)) << "expected ERROR " << protocol::to_string(code) << ", got " << describe(rx);
  expect_reply_to(rx, request);
  EXPECT_TRUE(rx.payload.empty());
}

// The process state letter from /proc/<pid>/stat ('T' = stopped).
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= line.size() ? '?' : line[close_paren + 2];
}

int line_of(const std::string& text, const std::string& needle) {
  auto at = text.find(needle);
  if (at == std::string::npos) return -1;
  return 1 + int(std::count(text.begin(), text.begin() + std::ptrdiff_t(at), '\n'));
}

class DataplaneFixture : public ::testing::Test {
 protected:
  // The backend this fixture's daemons run: "xdp", "uring", "dpdk" or "auto".
  [[nodiscard]] virtual std::string backend() const = 0;
  [[nodiscard]] bool xdp() const { return backend() == "xdp"; }

  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    net_ = TestNetwork::create(net_error_).release();
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
    ASSERT_FALSE(dir_->path().empty()) << "mkdtemp failed";
    ASSERT_EQ(attached_program(), 0u) << "an XDP program is already attached to " << net_->root_if;
    if (backend() == "dpdk") {
      // DPDK owns the root end: its kernel side never sees ARP or neighbour solicitations, so
      // the client needs static neighbour entries, as any peer of a DPDK appliance does.
      char mac[18];
      std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", net_->root_mac[0], net_->root_mac[1],
                    net_->root_mac[2], net_->root_mac[3], net_->root_mac[4], net_->root_mac[5]);
      std::string out;
      ASSERT_EQ(run_command({"ip", "-n", net_->ns, "neigh", "replace", net_->root_ip4, "lladdr", mac, "dev",
                             net_->ns_if, "nud", "permanent"},
                            &out),
                0)
          << out;
      if (net_->has_ipv6) {
        ASSERT_EQ(run_command({"ip", "-n", net_->ns, "-6", "neigh", "replace", net_->root_ip6, "lladdr", mac, "dev",
                               net_->ns_if, "nud", "permanent"}),
                  0);
      }
    }
  }

  void TearDown() override {
    if (HasFailure() && net_ != nullptr && daemon_ && daemon_->running()) {
      // Kernel-side counters of the failed run, before the daemon goes: veth's per-queue XDP
      // verdicts.
      std::string out;
      run_command({"ethtool", "-S", net_->root_if}, &out);
      std::cerr << "---- ethtool -S " << net_->root_if << ":\n" << out;
      // And who had the CPUs: a starved lcore or worker explains most timeouts.
      run_command({"ps", "-eLo", "pid,tid,cls,rtprio,ni,psr,pcpu,stat,comm", "--sort=-pcpu"}, &out);
      std::cerr << "---- busiest threads:\n" << out.substr(0, std::min<std::size_t>(out.size(), 1500)) << "----\n";
    }
    // A stopped worker must not hold up the drain.
    for (auto& w : workers_) w->process().signal(SIGCONT);
    if (daemon_ && daemon_->running()) {
      auto code = daemon_->stop();
      EXPECT_EQ(code, std::optional<int>(0)) << "SIGTERM must drain, detach and exit 0";
    }
    if (net_ != nullptr) {
      const std::uint32_t left = attached_program();
      EXPECT_EQ(left, 0u) << "an XDP program was left attached to " << net_->root_if;
      if (left != 0) run_command({"ip", "link", "set", "dev", net_->root_if, "xdp", "off"});
    }
    if (HasFailure()) {
      if (daemon_) std::cerr << "---- axon-dataplane log:\n" << daemon_->log() << "----\n";
      for (auto& w : workers_) std::cerr << "---- echo_worker " << w->pid() << " log:\n" << w->log() << "----\n";
      if (dir_) {
        dir_->keep();
        std::cerr << "run_dir kept for inspection: " << dir_->path() << "\n";
      }
    }
    workers_.clear();
    daemon_.reset();
    dir_.reset();
  }

  std::uint32_t attached_program() const {
    auto q = bpf::query_attached(net_->root_ifindex);
    return q ? q->program_id : 0xffffffffu;
  }

  // A config for this fixture's backend.
  [[nodiscard]] std::string config(ConfigSpec spec = {}) const {
    spec.backend = backend();
    return make_config(*net_, dir_->path(), spec);
  }

  void start_daemon(const ConfigSpec& spec = {}) {
    daemon_ = std::make_unique<Daemon>(dir_->path());
    std::string error;
    ASSERT_TRUE(daemon_->start(config(spec), &error)) << error;
    ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
    if (xdp()) {
      ASSERT_NE(attached_program(), 0u) << "ready, but no XDP program on " << net_->root_if;
      ASSERT_EQ(stats().header().xdp_attached.load(), 1u);
    } else if (backend() == "dpdk") {
      // net_af_xdp brings its own XDP program (every frame of the queue to DPDK); axon's is
      // not loaded. TearDown checks the driver's program is gone once the daemon exits.
      EXPECT_EQ(stats().header().xdp_attached.load(), 0u);
    } else {
      // (DPDK's net_af_xdp vdev loads a program of its own; only axon's is ruled out there.)
      if (backend() == "uring") {
        EXPECT_EQ(attached_program(), 0u) << "backend uring must not attach XDP";
      }
      EXPECT_EQ(stats().header().xdp_attached.load(), 0u);
    }
    EXPECT_EQ(std::string(stats().header().backend), backend()) << "the stats file names the backend";
  }

  // Drops counted under a reason, wherever the backend counts them: the XDP program's verdict
  // counters (xdp) or the lcores' shared userspace validator and policy (every other backend).
  std::uint64_t dropped(Reason reason) {
    return stats().xdp(reason) + stats().lcore_drops(reason);
  }

  // Starts echo_worker on a slot and waits until the stats file shows it alive.
  Worker* start_worker(const std::string& slot, std::size_t index, std::uint64_t work_ns = 0) {
    workers_.push_back(std::make_unique<Worker>());
    Worker* w = workers_.back().get();
    std::string error;
    if (!w->start(*daemon_, slot, work_ns, &error)) {
      ADD_FAILURE() << "cannot start echo_worker: " << error;
      return nullptr;
    }
    bool alive = eventually(
        [&] {
          return stats().worker_state(index) == WorkerSlotState::alive && stats().worker(index).pid.load() == w->pid();
        },
        kPatience);
    if (!alive) {
      ADD_FAILURE() << "worker slot '" << slot << "' never showed pid " << w->pid() << " alive";
      return nullptr;
    }
    return w;
  }

  StatsReader& stats() {
    return daemon_->stats();
  }

  // Sends one request and returns the first reply (nullopt after kPatience).
  std::optional<Received> roundtrip(AxpClient& client, const Header& h, std::span<const std::uint8_t> payload = {}) {
    if (!client.send(h, payload)) return std::nullopt;
    return client.receive(kPatience);
  }

  // Valid requests of many sizes, one at a time and then pipelined, all echoed.
  void check_echo(int family, std::size_t max_payload) {
    AxpClient client(*net_, family);
    ASSERT_TRUE(client.ok()) << "cannot open a UDP socket in " << net_->ns;
    const std::uint64_t responses_before = stats().lcores(&LcoreStats::responses);
    const std::vector<std::size_t> sizes{0, 1, 7, 64, 255, 1000, max_payload};
    std::uint64_t n = 0;
    for (std::size_t size : sizes) {
      Header h = request_header(1, 7);
      h.priority = n % 2 != 0 ? protocol::Priority::background : protocol::Priority::interactive;
      h.session_key = n * 0x9e3779b97f4a7c15ull;
      h.deadline_us = n == 3 ? 2'000'000u : 0u;  // a generous deadline is served normally
      auto payload = pattern_payload(size, std::uint8_t(n));
      auto rx = roundtrip(client, h, payload);
      ASSERT_TRUE(rx) << "no reply to a valid " << size << "-byte request";
      expect_response(*rx, h, payload);
      // The reply comes from the address and port the request went to.
      if (family == AF_INET) {
        const auto* from = reinterpret_cast<const sockaddr_in*>(&rx->from);
        EXPECT_EQ(from->sin_addr.s_addr, net_->root_addr4.s_addr);
        EXPECT_EQ(ntohs(from->sin_port), protocol::kDefaultPort);
      } else {
        const auto* from = reinterpret_cast<const sockaddr_in6*>(&rx->from);
        EXPECT_EQ(std::memcmp(&from->sin6_addr, &net_->root_addr6, sizeof(in6_addr)), 0);
        EXPECT_EQ(ntohs(from->sin6_port), protocol::kDefaultPort);
      }
      ++n;
    }
    // Pipelined: 64 requests in flight at once, each answered exactly once.
    constexpr int kPipelined = 64;
    std::map<std::uint64_t, std::pair<Header, std::vector<std::uint8_t>>> sent;
    for (int i = 0; i < kPipelined; ++i) {
      Header h = request_header(1, 7);
      auto payload = pattern_payload(std::size_t(16 + i * 13), std::uint8_t(i));
      ASSERT_TRUE(client.send(h, payload));
      sent.emplace(h.request_id, std::make_pair(h, payload));
    }
    auto got = client.receive_n(kPipelined, kPatience);
    ASSERT_EQ(got.size(), std::size_t(kPipelined)) << "pipelined requests went unanswered";
    std::set<std::uint64_t> seen;
    for (const auto& rx : got) {
      ASSERT_EQ(rx.reason, Reason::ok);
      auto it = sent.find(rx.header.request_id);
      ASSERT_NE(it, sent.end()) << "reply for a request never sent: " << describe(rx);
      EXPECT_TRUE(seen.insert(rx.header.request_id).second) << "two replies for one request";
      expect_response(rx, it->second.first, it->second.second);
    }
    EXPECT_TRUE(eventually([&] {
      return stats().lcores(&LcoreStats::responses) - responses_before == sizes.size() + kPipelined;
    })) << "responses counter: "
        << stats().lcores(&LcoreStats::responses) - responses_before;
  }

  static TestNetwork* net_;
  static std::string net_error_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

TestNetwork* DataplaneFixture::net_ = nullptr;
std::string DataplaneFixture::net_error_;

// The cases every backend must pass.
class DataplaneIT : public DataplaneFixture, public ::testing::WithParamInterface<std::string> {
 protected:
  [[nodiscard]] std::string backend() const override { return GetParam(); }
};

// Cases only the XDP backend has: frames the XDP program sees below UDP, and the kernel stack
// running beside an attached program.
class XdpIT : public DataplaneFixture {
 protected:
  [[nodiscard]] std::string backend() const override { return "xdp"; }
};

// Cases only the io_uring backend has.
class UringIT : public DataplaneFixture {
 protected:
  [[nodiscard]] std::string backend() const override { return "uring"; }
};

// backend = "auto": what it picks where, and the one log line that says why.
class BackendAutoIT : public DataplaneFixture {
 protected:
  [[nodiscard]] std::string backend() const override { return "auto"; }
};

// ---- 1. valid requests ----------------------------------------------------------------

TEST_P(DataplaneIT, ValidRequestsGetEchoedResponsesOverIPv4) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  // 1392 = 1500 (MTU) - 20 (IPv4) - 8 (UDP) - 80 (AXP): the largest unfragmented request.
  check_echo(AF_INET, 1392);
  if (xdp()) {
    EXPECT_STREQ(stats().header().port_mode, "copy") << "veth has no zero copy: copy mode is the fallback";
  }
}

TEST_P(DataplaneIT, ValidRequestsGetEchoedResponsesOverIPv6) {
  if (!net_->has_ipv6) GTEST_SKIP() << "the kernel refused IPv6 addresses on the veth pair";
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  check_echo(AF_INET6, 1500 - 40 - 8 - 80);
}

TEST_F(XdpIT, VlanTaggedRequestIsAnsweredWithTagKeptAndValidChecksums) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  RawSocket raw(*net_);
  ASSERT_TRUE(raw.ok()) << "cannot open an AF_PACKET socket in " << net_->ns;

  Header h = request_header(1, 7);
  const auto payload = pattern_payload(101, 9);  // odd length: the checksum's odd-byte path
  FrameSpec spec;
  spec.dst_mac = net_->root_mac;
  spec.src_mac = net_->ns_mac;
  spec.vlan_tags = {0x2064};  // PCP 1, VLAN 100
  spec.src = net_->ns_addr4;
  spec.dst = net_->root_addr4;
  spec.src_port = 40123;
  const auto frame = build_ipv4_frame(spec, encode(h, payload));
  protocol::PacketParser parser{protocol::PacketConfig{}};
  ASSERT_EQ(parser.parse(frame).reason, Reason::ok) << "the crafted request itself must be valid";
  ASSERT_TRUE(raw.send(frame));

  protocol::PacketConfig any_type;
  any_type.requests_only = false;
  any_type.ports = {40123, 0, 0, 0};  // the reply's destination port is the client's
  protocol::PacketParser reply_parser{any_type};
  std::vector<std::uint8_t> reply;  // with the tag inline, however the kernel delivered it
  const auto deadline = Clock::now() + kPatience;
  while (reply.empty() && Clock::now() < deadline) {
    auto f = raw.receive(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!f) break;
    std::vector<std::uint8_t> bytes = f->bytes;
    if (f->vlan_valid && bytes.size() >= 14) {  // the kernel moved the tag to metadata: put it back
      const std::uint8_t tag[4] = {std::uint8_t(f->vlan_tpid >> 8), std::uint8_t(f->vlan_tpid),
                                   std::uint8_t(f->vlan_tci >> 8), std::uint8_t(f->vlan_tci)};
      bytes.insert(bytes.begin() + 12, tag, tag + 4);
    }
    auto parsed = reply_parser.parse(bytes);
    if (parsed.ok() && parsed.src_port() == protocol::kDefaultPort) reply = bytes;
  }
  ASSERT_FALSE(reply.empty()) << "no reply frame seen on " << net_->ns_if;

  auto parsed = reply_parser.parse(reply);
  EXPECT_EQ(parsed.info.vlan_count, 1u);
  EXPECT_EQ(reply[12], 0x81);
  EXPECT_EQ(reply[13], 0x00);
  EXPECT_EQ(std::uint16_t(reply[14] << 8 | reply[15]), 0x2064) << "the VLAN tag (with its priority) must be kept";
  EXPECT_TRUE(std::equal(net_->ns_mac.begin(), net_->ns_mac.end(), reply.begin())) << "destination MAC";
  EXPECT_TRUE(std::equal(net_->root_mac.begin(), net_->root_mac.end(), reply.begin() + 6)) << "source MAC";
  const std::uint8_t* ip = reply.data() + parsed.info.l3_offset;
  EXPECT_EQ(inet_checksum(std::span<const std::uint8_t>(ip, 20)), 0) << "IPv4 header checksum";
  EXPECT_EQ(std::memcmp(ip + 12, &net_->root_addr4, 4), 0) << "source address";
  EXPECT_EQ(std::memcmp(ip + 16, &net_->ns_addr4, 4), 0) << "destination address";
  const std::uint8_t* udp = reply.data() + parsed.info.l4_offset;
  const std::uint16_t udp_len = std::uint16_t(udp[4] << 8 | udp[5]);
  ASSERT_LE(parsed.info.l4_offset + udp_len, reply.size());
  EXPECT_NE(udp[6] | udp[7], 0) << "the UDP checksum is always filled in";
  const std::uint32_t pseudo = checksum_partial(std::span<const std::uint8_t>(ip + 12, 8)) + 17 + udp_len;
  EXPECT_EQ(inet_checksum(std::span<const std::uint8_t>(udp, udp_len), pseudo), 0) << "UDP checksum";
  auto datagram = protocol::PacketParser::datagram_of(reply, parsed);
  Received rx;
  rx.bytes.assign(datagram.begin(), datagram.end());
  rx.reason = protocol::validate(rx.bytes);
  ASSERT_EQ(rx.reason, Reason::ok);
  rx.header = protocol::decode_header(rx.bytes);
  auto body = protocol::payload_of(rx.bytes);
  rx.payload.assign(body.begin(), body.end());
  expect_response(rx, h, payload);
}

// ---- 2. malformed traffic ---------------------------------------------------------------

// Malformed AXP is rejected by the shared classifier (bpf/axon_xdp.shared.h): in the XDP program
// for xdp, in the lcore's parser for every other backend; the reasons are the same. Malformed
// L2/L3 frames cannot arrive through a UDP socket, so the raw-frame cases are XDP's only.
TEST_P(DataplaneIT, MalformedRequestsAreDroppedCountedByReasonAndNeverAnswered) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  RawSocket raw(*net_);
  ASSERT_TRUE(raw.ok());

  struct Case {
    std::string name;
    Reason reason;
    std::vector<std::uint8_t> bytes;  // a UDP payload, or a whole frame when raw
    bool raw = false;
  };
  const auto valid = encode(request_header(1, 7), pattern_payload(16, 3));
  auto mutate = [&](std::size_t offset, std::initializer_list<std::uint8_t> bytes) {
    auto d = valid;
    std::copy(bytes.begin(), bytes.end(), d.begin() + std::ptrdiff_t(offset));
    return d;
  };
  std::vector<Case> cases;
  cases.push_back({"bad magic", Reason::bad_magic, mutate(offsetof(axp_header, magic), {'X', 'X', 'X', 'X'})});
  // Of another major version and not a REQUEST: silent everywhere (a version 2 REQUEST gets
  // unsupported_version from userspace backends: OtherMajorVersionGetsUnsupportedVersion...).
  cases.push_back({"bad version", Reason::bad_version,
                   mutate(offsetof(axp_header, version), {2, std::uint8_t(MessageType::response)})});
  cases.push_back(
      {"header_len not a multiple of 8", Reason::bad_header_len, mutate(offsetof(axp_header, header_len), {0, 84})});
  cases.push_back({"header_len above 512", Reason::bad_header_len, mutate(offsetof(axp_header, header_len), {2, 8})});
  cases.push_back(
      {"payload_len lies (longer than sent)", Reason::bad_length, mutate(offsetof(axp_header, payload_len), {0, 200})});
  cases.push_back(
      {"payload_len lies (shorter than sent)", Reason::bad_length, mutate(offsetof(axp_header, payload_len), {0, 4})});
  cases.push_back(
      {"truncated AXP header", Reason::axp_truncated, std::vector<std::uint8_t>(valid.begin(), valid.begin() + 40)});
  cases.push_back({"unknown message type", Reason::bad_type, mutate(offsetof(axp_header, type), {9})});
  cases.push_back({"RESPONSE sent to the appliance", Reason::not_request,
                   mutate(offsetof(axp_header, type), {std::uint8_t(MessageType::response)})});
  cases.push_back({"segment_count 0", Reason::bad_segment, mutate(offsetof(axp_header, segment_count), {0, 0})});
  cases.push_back(
      {"message_len above 64 KiB", Reason::too_large, mutate(offsetof(axp_header, message_len), {0, 1, 0x11, 0x70})});
  for (const Case& c : cases) {
    ASSERT_EQ(protocol::validate_request(c.bytes), c.reason)
        << c.name << ": the crafted datagram is not what it claims";
  }

  const std::size_t datagram_cases = cases.size();
  FrameSpec spec;
  spec.dst_mac = net_->root_mac;
  spec.src_mac = net_->ns_mac;
  spec.src = net_->ns_addr4;
  spec.dst = net_->root_addr4;
  spec.src_port = client.local_port();
  FrameSpec fragment = spec;
  fragment.frag_off = 0x2000;  // MF, offset 0: the first fragment of an AXP datagram
  cases.push_back({"IPv4 first fragment", Reason::ip_fragment, build_ipv4_frame(fragment, valid), true});
  FrameSpec udp_lies = spec;
  udp_lies.udp_len = std::uint16_t(8 + valid.size() + 64);
  cases.push_back(
      {"UDP length beyond the IP payload", Reason::udp_bad_length, build_ipv4_frame(udp_lies, valid), true});
  FrameSpec ip_lies = spec;
  ip_lies.ip_len_extra = 64;
  ip_lies.udp_len = std::uint16_t(8 + valid.size());
  cases.push_back({"IPv4 total length beyond the frame", Reason::ip_truncated, build_ipv4_frame(ip_lies, valid), true});
  if (!xdp()) cases.resize(datagram_cases);
  protocol::PacketParser parser{protocol::PacketConfig{}};
  for (const Case& c : cases) {
    if (c.raw) {
      ASSERT_EQ(parser.parse(c.bytes).reason, c.reason) << c.name << ": the crafted frame is not what it claims";
    }
  }

  constexpr int kRepeats = 3;
  std::map<Reason, std::uint64_t> expected;
  for (const Case& c : cases) expected[c.reason] += kRepeats;
  std::array<std::uint64_t, protocol::kReasonCount> before{};
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) before[r] = dropped(Reason(r));
  const std::uint64_t rx_before = stats().lcores(&LcoreStats::rx_frames);

  for (int i = 0; i < kRepeats; ++i) {
    for (const Case& c : cases) {
      ASSERT_TRUE(c.raw ? raw.send(c.bytes) : client.send_bytes(c.bytes)) << c.name;
    }
  }
  auto delta = [&](Reason r) { return dropped(r) - before[std::size_t(r)]; };
  // XDP counters reach the stats file every 100 ms.
  bool counted = eventually([&] {
    for (const auto& [reason, n] : expected) {
      if (delta(reason) < n) return false;
    }
    return true;
  });
  for (const auto& [reason, n] : expected) {
    EXPECT_EQ(delta(reason), n) << "drops counted under " << protocol::to_string(reason);
  }
  ASSERT_TRUE(counted);
  // Nothing else was dropped, and no policy reason fired.
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
    Reason reason = Reason(r);
    if (reason == Reason::ok || reason == Reason::pass_not_axp || expected.contains(reason)) continue;
    EXPECT_EQ(delta(reason), 0u) << "unexpected drops under " << protocol::to_string(reason);
  }

  // The daemon is still up and serving; the barrier's reply is the only datagram that comes back.
  EXPECT_TRUE(daemon_->running());
  Header barrier = request_header(1, 7);
  const auto barrier_payload = pattern_payload(32, 77);
  ASSERT_TRUE(client.send(barrier, barrier_payload));
  auto got = client.receive_until(
      [&](const std::vector<Received>& all) {
        return !all.empty() && all.back().reason == Reason::ok && all.back().header.request_id == barrier.request_id;
      },
      kPatience);
  ASSERT_FALSE(got.empty()) << "a valid request after the malformed ones got no reply";
  ASSERT_EQ(got.size(), 1u) << "a malformed request was answered: " << describe(got.front());
  expect_response(got.front(), barrier, barrier_payload);
  if (xdp()) {
    // The malformed frames never reached the lcore: XDP dropped them before AF_XDP.
    EXPECT_EQ(stats().lcores(&LcoreStats::rx_frames) - rx_before, 1u);
    EXPECT_TRUE(eventually([&] { return stats().xdp(Reason::ok) - before[std::size_t(Reason::ok)] >= 1; }));
    EXPECT_EQ(stats().xdp(Reason::ok) - before[std::size_t(Reason::ok)], 1u) << "only the barrier passed XDP";
  } else {
    // Without XDP every datagram reaches the lcore, and only the barrier became a request.
    EXPECT_EQ(stats().lcores(&LcoreStats::rx_frames) - rx_before, 1u + cases.size() * kRepeats);
    for (std::size_t r = 0; r < protocol::kReasonCount; ++r) EXPECT_EQ(stats().xdp(Reason(r)), 0u);
  }
  // No reply frame went to the raw frames' source either.
  while (auto f = raw.receive(0ms)) {
    protocol::PacketConfig any;
    any.requests_only = false;
    any.ports = {client.local_port(), 0, 0, 0};
    auto parsed = protocol::PacketParser{any}.parse(f->bytes);
    if (parsed.ok()) {
      auto d = protocol::PacketParser::datagram_of(f->bytes, parsed);
      EXPECT_EQ(protocol::decode_header(d).request_id, barrier.request_id) << "a malformed frame was answered";
    }
  }
}

// Issue 11 item 4: a request sent as IP fragments was served on uring while §1 said the appliance
// drops fragments. §1 and §8 now say what each backend does, and this pins it: xdp and dpdk drop
// it (the first fragment counted as ip_fragment, no reply); uring's kernel socket reassembles it
// and it is served, since it fits [uring] buffer_size.
TEST_P(DataplaneIT, FragmentedRequestIsDroppedByXdpAndDpdkAndServedByUring) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.allow_fragmentation());
  const std::uint64_t fragments_before = dropped(Reason::ip_fragment);
  Header h = request_header(1, 7);
  const auto payload = pattern_payload(1700, 4);  // 80 + 1700 bytes: two fragments on a 1500 MTU
  ASSERT_TRUE(client.send(h, payload));
  if (backend() == "uring") {
    // The 1700-byte echo is longer than one datagram within the MTU: it comes back in 2
    // segments of 850 bytes (docs/protocol.md §6), never as IP fragments.
    auto got = client.receive_until(
        [&](const std::vector<Received>& all) {
          return std::count_if(all.begin(), all.end(),
                               [&](const Received& rx) { return rx.header.request_id == h.request_id; }) == 2;
        },
        kPatience);
    std::vector<std::uint8_t> echoed(payload.size());
    std::size_t segments = 0;
    for (const auto& rx : got) {
      if (rx.reason != Reason::ok || rx.header.request_id != h.request_id) continue;
      ++segments;
      ASSERT_TRUE(is_type(rx, MessageType::response)) << describe(rx);
      EXPECT_EQ(rx.header.segment_count, 2u);
      EXPECT_EQ(rx.header.message_len, payload.size());
      ASSERT_EQ(rx.payload.size(), 850u) << "S = ceil(1700 / 2)";
      std::copy(rx.payload.begin(), rx.payload.end(), echoed.begin() + rx.header.segment_index * 850);
    }
    ASSERT_EQ(segments, 2u) << "uring: the kernel reassembles fragments and the request is served (§8)";
    EXPECT_EQ(echoed, payload);
    EXPECT_EQ(dropped(Reason::ip_fragment), fragments_before);
    return;
  }
  EXPECT_TRUE(eventually([&] { return dropped(Reason::ip_fragment) == fragments_before + 1; }))
      << "ip_fragment: " << dropped(Reason::ip_fragment) - fragments_before;
  EXPECT_FALSE(client.receive(300ms).has_value()) << backend() << ": a fragmented request must not be answered";
  Header barrier = request_header(1, 7);
  auto rx = roundtrip(client, barrier, pattern_payload(16, 1));
  ASSERT_TRUE(rx) << "still serving after the fragments";
  expect_response(*rx, barrier, pattern_payload(16, 1));
}

// ---- 3. unknown agent, tenant mismatch, no live worker ----------------------------------

TEST_P(DataplaneIT, UnknownAgentTenantMismatchAndMissingWorkerGetExplicitErrors) {
  ConfigSpec spec;
  spec.tables += "\n[[tenants]]\nid = 2\nname = \"t2\"\n";
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto unknown_before = stats().errors_sent(ErrorCode::unknown_agent);
  const auto failed_before = stats().errors_sent(ErrorCode::worker_failed);

  // The agent is routed, but no worker has attached to its slot yet.
  Header early = request_header(1, 7);
  auto rx = roundtrip(client, early, pattern_payload(8, 1));
  ASSERT_TRUE(rx) << "a request with no live worker must still be answered";
  expect_error(*rx, early, ErrorCode::worker_failed);
  EXPECT_GT(rx->header.retry_after_us, 0u) << "worker_failed carries a retry hint";

  ASSERT_NE(start_worker("w0", 0), nullptr);
  Header unknown = request_header(1, 999);
  rx = roundtrip(client, unknown, pattern_payload(8, 2));
  ASSERT_TRUE(rx) << "an unknown agent must be answered, not dropped";
  expect_error(*rx, unknown, ErrorCode::unknown_agent);

  Header mismatch = request_header(2, 7);  // agent 7 belongs to tenant 1; tenant 2 exists
  rx = roundtrip(client, mismatch, pattern_payload(8, 3));
  ASSERT_TRUE(rx) << "a tenant mismatch must be answered, not dropped";
  expect_error(*rx, mismatch, ErrorCode::unknown_agent);

  // Issue 11 item 2: a tenant that is not configured is unknown_tenant (§4 code 10).
  Header stranger = request_header(3, 7);
  rx = roundtrip(client, stranger, pattern_payload(8, 5));
  ASSERT_TRUE(rx) << "an unknown tenant must be answered, not dropped";
  expect_error(*rx, stranger, ErrorCode::unknown_tenant);

  Header good = request_header(1, 7);
  const auto payload = pattern_payload(8, 4);
  rx = roundtrip(client, good, payload);
  ASSERT_TRUE(rx);
  expect_response(*rx, good, payload);

  EXPECT_EQ(stats().errors_sent(ErrorCode::unknown_agent) - unknown_before, 2u);
  EXPECT_EQ(stats().errors_sent(ErrorCode::unknown_tenant), 1u);
  EXPECT_EQ(stats().errors_sent(ErrorCode::worker_failed) - failed_before, 1u);
}

// Issue 11 item 1: a request without trace context (trace_id and span_id zero) got a reply
// with a random span_id on every backend. §5: no context in, none out; a trace_id without a
// span_id is no valid context either (the trace_id is echoed, the span_id stays zero).
TEST_P(DataplaneIT, RepliesCarryASpanOnlyForRequestsWithTraceContext) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  struct Case {
    const char* name;
    bool trace, span;
  };
  for (const Case& c : {Case{"no trace context", false, false}, Case{"trace_id without span_id", true, false},
                        Case{"full trace context", true, true}}) {
    for (std::uint32_t agent : {7u, 999u}) {  // a RESPONSE, and an ERROR unknown_agent
      Header h = request_header(1, agent);
      if (!c.trace) h.trace_id = protocol::TraceId{};
      if (!c.span) h.span_id = protocol::SpanId{};
      auto rx = roundtrip(client, h, pattern_payload(8, 1));
      ASSERT_TRUE(rx) << c.name;
      EXPECT_EQ(rx->header.trace_id, h.trace_id) << c.name;
      if (c.trace && c.span) {
        EXPECT_NE(rx->header.span_id, protocol::SpanId{}) << c.name;
        EXPECT_NE(rx->header.span_id, h.span_id) << c.name;
      } else {
        EXPECT_EQ(rx->header.span_id, protocol::SpanId{}) << c.name << ": " << describe(*rx);
      }
    }
  }
}

// Issue 11 item 3: a REQUEST of another major version reaching userspace (uring, dpdk: there is
// no XDP program in front) got no reply. §7: answer ERROR unsupported_version, as a version 1
// message echoing request_id, when the datagram is at least 80 bytes and its type is REQUEST;
// otherwise stay silent. XDP drops such datagrams in the kernel (bad_version) and cannot reply.
TEST_P(DataplaneIT, OtherMajorVersionGetsUnsupportedVersionFromUserspaceBackends) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  Header h = request_header(1, 7);
  auto v2 = encode(h, pattern_payload(16, 2));
  v2[offsetof(axp_header, version)] = 2;
  auto short_v2 = std::vector<std::uint8_t>(v2.begin(), v2.begin() + 60);  // below 80 bytes
  auto v2_response = v2;
  v2_response[offsetof(axp_header, type)] = std::uint8_t(MessageType::response);
  ASSERT_TRUE(client.send_bytes(short_v2));
  ASSERT_TRUE(client.send_bytes(v2_response));
  ASSERT_TRUE(client.send_bytes(v2));
  const std::uint64_t barrier_id = h.request_id + 1000000;
  Header barrier = request_header(1, 7);
  barrier.request_id = barrier_id;
  ASSERT_TRUE(client.send(barrier, {}));
  auto got = client.receive_until(
      [&](const std::vector<Received>& all) {
        return !all.empty() && all.back().reason == Reason::ok && all.back().header.request_id == barrier_id;
      },
      kPatience);
  ASSERT_FALSE(got.empty());
  std::vector<Received> version_errors;
  for (const Received& rx : got) {
    if (rx.header.request_id != barrier_id) version_errors.push_back(rx);
  }
  EXPECT_TRUE(eventually([&] { return dropped(Reason::bad_version) >= 3; })) << dropped(Reason::bad_version);
  if (xdp()) {
    EXPECT_TRUE(version_errors.empty()) << "XDP drops other versions in the kernel: " << describe(version_errors[0]);
    return;
  }
  ASSERT_EQ(version_errors.size(), 1u) << "only the full-size REQUEST is answered";
  const Received& rx = version_errors[0];
  ASSERT_TRUE(is_error(rx, ErrorCode::unsupported_version)) << describe(rx);
  EXPECT_EQ(rx.header.request_id, h.request_id);
  EXPECT_EQ(rx.bytes[offsetof(axp_header, version)], 1u) << "the reply is a version 1 message";
  EXPECT_LE(rx.bytes.size(), v2.size()) << "never larger than the request";
  EXPECT_EQ(stats().errors_sent(ErrorCode::unsupported_version), 1u);
}

// Issue 11 item 13: a hung worker (SIGSTOP) was never detected: its share of the traffic kept
// going to it, clients got BUSY once its ring filled, and its queued requests were answered only
// when it resumed. Now, after worker_stall_timeout_ms without taking a request, it is stalled:
// routed around, what it held answered worker_failed (retryable), its late replies discarded.
TEST_P(DataplaneIT, StalledWorkerIsRoutedAroundAndWhatItHeldIsAnsweredWorkerFailed) {
  ConfigSpec spec;
  spec.workers = {"w0", "w1"};
  spec.tables =
      "[[tenants]]\nid = 1\nname = \"t1\"\n\n[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\", \"w1\"]\n"
      "dispatch = \"round_robin\"\n";
  spec.dataplane_extra = "worker_stall_timeout_ms = 300\n";
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  Worker* w0 = start_worker("w0", 0);
  ASSERT_NE(w0, nullptr);
  ASSERT_NE(start_worker("w1", 1), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(w0->process().signal(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(w0->pid()) == 'T'; })) << "w0 did not stop";

  constexpr std::size_t kRequests = 16;  // rotated over both workers: half wait at w0
  for (std::size_t i = 0; i < kRequests; ++i) ASSERT_TRUE(client.send(request_header(1, 7)));
  auto got = client.receive_n(kRequests, kPatience);
  ASSERT_EQ(got.size(), kRequests) << "a request held by the stopped worker was not answered while it hung";
  std::size_t responses = 0, failed = 0;
  for (const Received& rx : got) {
    if (is_type(rx, MessageType::response)) {
      ++responses;
    } else {
      ASSERT_TRUE(is_error(rx, ErrorCode::worker_failed)) << describe(rx);
      EXPECT_EQ(rx.header.retry_after_us, 100000u);
      ++failed;
    }
  }
  EXPECT_GE(failed, 1u) << "the stopped worker's share";
  EXPECT_GE(responses, 1u) << "the live worker's share";
  EXPECT_EQ(stats().worker_state(0), WorkerSlotState::stalled);
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::stalls), 1u);
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::lost), failed);

  // Routed around: everything goes to w1 now.
  for (int i = 0; i < 8; ++i) {
    Header h = request_header(1, 7);
    auto rx = roundtrip(client, h);
    ASSERT_TRUE(rx);
    expect_response(*rx, h, {});
  }

  // It resumes: its replies to what was already answered are discarded, never sent twice, and
  // it is routed to again.
  const std::uint64_t late_before = stats().lcores(&LcoreStats::late_replies);
  ASSERT_TRUE(w0->process().signal(SIGCONT));
  EXPECT_TRUE(eventually([&] { return stats().lcores(&LcoreStats::late_replies) - late_before >= failed; }))
      << "late replies: " << stats().lcores(&LcoreStats::late_replies) - late_before << " of " << failed;
  EXPECT_TRUE(eventually([&] { return stats().worker_state(0) == WorkerSlotState::alive; }));
  EXPECT_FALSE(client.receive(200ms).has_value()) << "a late reply reached the client";
}

// ---- 4. full ring -> BUSY ---------------------------------------------------------------

TEST_P(DataplaneIT, FullRequestRingAnswersBusyAndQueuedRequestsCompleteAfterResume) {
  ConfigSpec spec;
  spec.shm =
      "request_capacity = 4\nreply_capacity = 64\nloan_capacity = 16\nsmall_buffer_size = 2048\n"
      "small_buffer_count = 64\nlarge_buffer_size = 65536\nlarge_buffer_count = 4\n";
  spec.busy_retry_after_us = 321;
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  Worker* worker = start_worker("w0", 0);
  ASSERT_NE(worker, nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  // One roundtrip first, so the path (ARP included) is warm.
  Header warm = request_header(1, 7);
  auto rx = roundtrip(client, warm);
  ASSERT_TRUE(rx);
  expect_response(*rx, warm, {});

  ASSERT_TRUE(worker->process().signal(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(worker->pid()) == 'T'; })) << "worker did not stop";
  const auto busy_before = stats().lcores(&LcoreStats::busy_sent);
  const auto submitted_before = stats().worker_counter(0, &WorkerStats::submitted);

  constexpr std::size_t kRing = 4, kSent = 12;
  std::map<std::uint64_t, std::pair<Header, std::vector<std::uint8_t>>> sent;
  for (std::size_t i = 0; i < kSent; ++i) {
    Header h = request_header(1, 7);
    auto payload = pattern_payload(24, std::uint8_t(i));
    ASSERT_TRUE(client.send(h, payload));
    sent.emplace(h.request_id, std::make_pair(h, payload));
  }
  auto busy = client.receive_n(kSent - kRing, kPatience);
  ASSERT_EQ(busy.size(), kSent - kRing) << "every request beyond the ring's capacity must get BUSY";
  std::set<std::uint64_t> answered;
  for (const auto& b : busy) {
    ASSERT_TRUE(is_type(b, MessageType::busy)) << describe(b) << " while the worker is stopped";
    ASSERT_TRUE(sent.contains(b.header.request_id));
    expect_reply_to(b, sent[b.header.request_id].first);
    EXPECT_EQ(b.header.retry_after_us, 321u) << "BUSY carries the configured retry hint";
    EXPECT_TRUE(answered.insert(b.header.request_id).second);
  }
  EXPECT_EQ(stats().lcores(&LcoreStats::busy_sent) - busy_before, kSent - kRing);
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::submitted) - submitted_before, kRing);
  // Nothing else is answered while the worker is stopped: the queued requests wait.
  EXPECT_FALSE(client.receive(100ms)) << "a reply arrived while the worker was stopped";

  ASSERT_TRUE(worker->process().signal(SIGCONT));
  auto done = client.receive_n(kRing, kPatience);
  ASSERT_EQ(done.size(), kRing) << "the queued requests must complete once the worker resumes";
  for (const auto& r : done) {
    ASSERT_TRUE(sent.contains(r.header.request_id)) << describe(r);
    expect_response(r, sent[r.header.request_id].first, sent[r.header.request_id].second);
    EXPECT_TRUE(answered.insert(r.header.request_id).second) << "a request got both BUSY and RESPONSE";
  }
  EXPECT_EQ(answered.size(), kSent);
}

// ---- 5. worker killed under load --------------------------------------------------------

TEST_P(DataplaneIT, WorkerKilledUnderLoadAnswersInFlightWithWorkerFailedAndLeaksNoBuffer) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Worker* worker = start_worker("w0", 0, 50'000'000);  // 50 ms of handler work per request
  ASSERT_NE(worker, nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  // Idle slot: every buffer is free or loaned to the worker.
  ASSERT_TRUE(eventually([&] {
    return stats().worker_counter(0, &WorkerStats::free_buffers) == kTotalBuffers - kLoanedBuffers;
  })) << "free_buffers "
      << stats().worker_counter(0, &WorkerStats::free_buffers);
  const auto failed_before = stats().errors_sent(ErrorCode::worker_failed);
  const auto completed_before = stats().worker_counter(0, &WorkerStats::completed);
  const auto submitted_before = stats().worker_counter(0, &WorkerStats::submitted);

  // 30 requests, 1 ms apart: the worker (50 ms each) falls behind and holds a backlog of
  // 1.5 s of work, far more than it can finish before the kill.
  constexpr std::size_t kSent = 30;
  std::map<std::uint64_t, std::pair<Header, std::vector<std::uint8_t>>> sent;
  for (std::size_t i = 0; i < kSent; ++i) {
    Header h = request_header(1, 7);
    auto payload = pattern_payload(40, std::uint8_t(i));
    ASSERT_TRUE(client.send(h, payload));
    sent.emplace(h.request_id, std::make_pair(h, payload));
    std::this_thread::sleep_for(1ms);  // pacing only
  }
  // Kill once every request is in the worker's hands (submitted) and some are done, so each
  // one is either completed or in flight: none can meet the dead slot on arrival instead.
  ASSERT_TRUE(eventually([&] {
    return stats().worker_counter(0, &WorkerStats::submitted) - submitted_before == kSent &&
           stats().worker_counter(0, &WorkerStats::completed) > completed_before;
  })) << "submitted "
      << stats().worker_counter(0, &WorkerStats::submitted) - submitted_before << ", completed "
      << stats().worker_counter(0, &WorkerStats::completed) - completed_before;
  const auto inflight_at_kill =
      stats().worker_counter(0, &WorkerStats::submitted) - stats().worker_counter(0, &WorkerStats::completed);
  ASSERT_TRUE(worker->process().signal(SIGKILL));
  worker->process().wait_exit(5s);

  std::map<std::uint64_t, int> replies;
  std::size_t responses = 0, failed = 0;
  auto got = client.receive_until([&](const std::vector<Received>& all) { return all.size() >= kSent; }, kPatience);
  for (const auto& rx : got) {
    ASSERT_EQ(rx.reason, Reason::ok);
    auto it = sent.find(rx.header.request_id);
    ASSERT_NE(it, sent.end()) << describe(rx);
    ++replies[rx.header.request_id];
    if (is_type(rx, MessageType::response)) {
      expect_response(rx, it->second.first, it->second.second);
      ++responses;
    } else {
      expect_error(rx, it->second.first, ErrorCode::worker_failed);
      EXPECT_GT(rx.header.retry_after_us, 0u);
      ++failed;
    }
  }
  EXPECT_EQ(got.size(), kSent) << "every request gets exactly one reply: " << responses << " RESPONSE, " << failed
                               << " ERROR";
  for (const auto& [id, n] : replies) EXPECT_EQ(n, 1) << "request " << id << " answered " << n << " times";
  EXPECT_GT(failed, 0u) << "the kill came too late to catch requests in flight (" << inflight_at_kill
                        << " were in flight a moment before)";
  RecordProperty("responses_before_kill", int(responses));
  RecordProperty("worker_failed", int(failed));

  // Reclaim: the slot is vacant again, the lost counter matches the ERRORs, no buffer leaked.
  ASSERT_TRUE(eventually([&] {
    return stats().worker_counter(0, &WorkerStats::deaths) == 1 && stats().worker_state(0) == WorkerSlotState::vacant;
  })) << "the death was never reclaimed";
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::lost), failed);
  EXPECT_EQ(stats().errors_sent(ErrorCode::worker_failed) - failed_before, failed);
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::free_buffers), kTotalBuffers - kLoanedBuffers)
      << "after reclaim every buffer is free or restocked as a loan";
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::inflight), 0u);
  EXPECT_EQ(stats().worker_counter(0, &WorkerStats::generation), 2u) << "the segment is reformatted for a successor";

  // A new worker attaches to the same slot and serves.
  Worker* successor = start_worker("w0", 0);
  ASSERT_NE(successor, nullptr);
  for (int i = 0; i < 5; ++i) {
    Header h = request_header(1, 7);
    auto payload = pattern_payload(40, std::uint8_t(100 + i));
    auto rx = roundtrip(client, h, payload);
    ASSERT_TRUE(rx) << "the successor worker does not serve";
    expect_response(*rx, h, payload);
  }
  EXPECT_TRUE(eventually([&] {
    return stats().worker_counter(0, &WorkerStats::free_buffers) == kTotalBuffers - kLoanedBuffers &&
           stats().worker_counter(0, &WorkerStats::inflight) == 0;
  })) << "buffers leaked across the successor's requests";
}

// ---- 6. rate limit ----------------------------------------------------------------------

TEST_P(DataplaneIT, RateLimitedTrafficIsDroppedAndCounted) {
  ConfigSpec spec;
  spec.xdp_extra = "enforce_rate = true\n";
  spec.tables =
      "[[tenants]]\nid = 1\nrate_pps = 10\nburst = 5\n\n"
      "[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n";
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto limited_before = dropped(Reason::rate_limited);
  const auto ok_before = stats().xdp(Reason::ok);

  constexpr std::uint64_t kSent = 50;
  const auto started = Clock::now();
  for (std::uint64_t i = 0; i < kSent; ++i) ASSERT_TRUE(client.send(request_header(1, 7), pattern_payload(8, 1)));
  const double send_seconds = std::chrono::duration<double>(Clock::now() - started).count();

  std::uint64_t answered = 0;
  auto limited = [&] { return dropped(Reason::rate_limited) - limited_before; };
  bool settled = eventually(
      [&] {
        while (auto rx = client.receive(0ms)) {
          EXPECT_TRUE(is_type(*rx, MessageType::response)) << describe(*rx);
          ++answered;
        }
        return answered + limited() >= kSent;
      },
      kPatience);
  EXPECT_TRUE(settled) << answered << " answered + " << limited() << " dropped != " << kSent;
  EXPECT_EQ(answered + limited(), kSent) << "every request is either served or dropped and counted";
  EXPECT_GT(limited(), 0u);
  EXPECT_GE(answered, 5u) << "the burst of 5 passes";
  // The burst plus what 10 pps refills while sending (generous: +2).
  EXPECT_LE(double(answered), 5 + 2 + send_seconds * 10) << "sent in " << send_seconds << " s";
  if (xdp()) {
    EXPECT_EQ(stats().xdp(Reason::ok) - ok_before, answered);
  }
  RecordProperty("answered", int(answered));
}

// ---- 6b. credits -> BUSY (issue 13) ---------------------------------------------------------

// A tenant over its credits is answered BUSY with the refresher's retry hint: by the XDP program
// itself (XDP_TX) on xdp, by the lcore on uring and dpdk. The client's kernel UDP stack delivers
// every reply, so the BUSY frames XDP built carry correct checksums.
TEST_P(DataplaneIT, TenantOverItsCreditsGetsBusyWithARetryHint) {
  // XDP_TX on the root veth hands frames to the namespace end's XDP receive ring, which exists
  // only while that end has an XDP program: attach one (axon's, which passes the BUSY replies,
  // addressed to the client's port, to the client's kernel stack). A NIC needs none of this.
  std::optional<bpf::XdpProgram> client_side;
  if (xdp()) {
    auto loaded = bpf::XdpProgram::load(bpf::XdpConfig{});
    ASSERT_TRUE(loaded.ok()) << loaded.message();
    client_side.emplace(std::move(loaded).value());
    std::string attach_error = "not run";
    ASSERT_TRUE(in_netns(net_->ns, [&] {
      auto attached = client_side->attach(net_->ns_if);
      attach_error = attached.ok() ? "" : attached.message();
    }));
    ASSERT_EQ(attach_error, "");
  }
  ConfigSpec spec;
  // A 10 s refresh: no new credits while the test sends, so exactly credits_max pass. One
  // tenant per address family, so each family starts with a full budget.
  spec.tables =
      "[credits]\nrefresh_us = 10000000\n\n"
      "[[tenants]]\nid = 1\ncredits_max = 4\n\n"
      "[[tenants]]\nid = 2\ncredits_max = 4\n\n"
      "[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n\n"
      "[[agents]]\nid = 8\ntenant = 2\nworkers = [\"w0\"]\n";
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0), nullptr);
  std::uint64_t busy = 0;
  for (const auto& [family, tenant, agent] : {std::tuple{AF_INET, 1u, 7u}, std::tuple{AF_INET6, 2u, 8u}}) {
    if (family == AF_INET6 && !net_->has_ipv6) continue;  // the kernel refused IPv6 on the pair
    SCOPED_TRACE(family == AF_INET ? "IPv4" : "IPv6");
    AxpClient client(*net_, family);
    ASSERT_TRUE(client.ok());
    const auto busy_before = dropped(Reason::busy_no_credits);
    constexpr std::uint64_t kSent = 12;
    for (std::uint64_t i = 0; i < kSent; ++i) {
      ASSERT_TRUE(client.send(request_header(tenant, agent), pattern_payload(64, 1)));
    }
    auto replies = client.receive_n(kSent, kPatience);
    ASSERT_EQ(replies.size(), kSent) << "every request is answered: served or BUSY";
    std::uint64_t served = 0, refused = 0;
    for (const auto& rx : replies) {
      if (is_type(rx, MessageType::response)) {
        ++served;
      } else {
        ASSERT_TRUE(is_type(rx, MessageType::busy)) << describe(rx);
        EXPECT_EQ(rx.header.retry_after_us, 10'000'000u) << "credits come back with the next refresh";
        EXPECT_EQ(rx.header.payload_len, 0);
        EXPECT_EQ(rx.header.tenant_id, tenant);
        ++refused;
      }
    }
    EXPECT_EQ(served, 4u) << "credits_max requests per refresh";
    EXPECT_EQ(refused, kSent - 4);
    EXPECT_TRUE(eventually([&] { return dropped(Reason::busy_no_credits) - busy_before == refused; }))
        << "counted busy_no_credits " << (xdp() ? "by XDP" : "by the lcore");
    busy += refused;
  }
  if (xdp()) {
    EXPECT_TRUE(eventually([&] {
      return stats().xdp(protocol::Priority::interactive, Reason::busy_no_credits) == busy;
    })) << "counted per class";
    EXPECT_EQ(stats().lcores(&LcoreStats::busy_sent), 0u) << "no BUSY came from userspace";
  } else {
    EXPECT_EQ(stats().totals().busy_reasons[std::size_t(BusyReason::credits)], busy) << "BUSY reason credits";
  }
}

// ---- 7. allowlist -----------------------------------------------------------------------

TEST_P(DataplaneIT, AllowlistDropsSourcesOutsideTheTenantPrefixes) {
  ConfigSpec spec;
  spec.xdp_extra = "enforce_allowlist = true\n";
  spec.tables = "[[tenants]]\nid = 1\nprefixes = [\"" + net_->prefix4 +
                "\"]\n\n"
                "[[tenants]]\nid = 2\nprefixes = [\"198.51.100.0/24\"]\n\n"
                "[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n\n"
                "[[agents]]\nid = 8\ntenant = 2\nworkers = [\"w0\"]\n";
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto denied_before = dropped(Reason::prefix_denied);

  constexpr std::uint64_t kDenied = 3;
  std::set<std::uint64_t> denied_ids;
  for (std::uint64_t i = 0; i < kDenied; ++i) {
    Header h = request_header(2, 8);
    denied_ids.insert(h.request_id);
    ASSERT_TRUE(client.send(h, pattern_payload(8, 1)));
  }
  EXPECT_TRUE(eventually([&] { return dropped(Reason::prefix_denied) - denied_before >= kDenied; }));
  EXPECT_EQ(dropped(Reason::prefix_denied) - denied_before, kDenied);

  // Tenant 1 allows the client's /30: served. Its reply is the only one that comes back.
  Header allowed = request_header(1, 7);
  const auto payload = pattern_payload(8, 2);
  ASSERT_TRUE(client.send(allowed, payload));
  auto got = client.receive_until(
      [&](const std::vector<Received>& all) {
        return !all.empty() && all.back().reason == Reason::ok && all.back().header.request_id == allowed.request_id;
      },
      kPatience);
  ASSERT_FALSE(got.empty()) << "the allowed tenant was not served";
  for (const auto& rx : got) EXPECT_FALSE(denied_ids.contains(rx.header.request_id)) << "a denied request was answered";
  EXPECT_EQ(got.size(), 1u);
  expect_response(got.back(), allowed, payload);
}

// ---- 8. non-AXP traffic passes ----------------------------------------------------------

TEST_F(XdpIT, TcpAndOtherUdpToTheRootNamespaceWorkWhileXdpIsAttached) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  ASSERT_NE(attached_program(), 0u);
  const auto pass_before = stats().xdp(Reason::pass_not_axp);

  // A TCP listener in the root namespace on the veth address.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr = net_->root_addr4;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);

  constexpr std::size_t kBytes = 256 * 1024;
  const auto data = pattern_payload(kBytes, 42);
  timeval tv{5, 0};
  std::thread server([&] {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return;
    int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return;
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::vector<std::uint8_t> buf(65536);
    std::size_t total = 0;
    while (total < kBytes) {  // echo everything back
      ssize_t n = recv(conn, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      if (send(conn, buf.data(), std::size_t(n), MSG_NOSIGNAL) != n) break;
      total += std::size_t(n);
    }
    close(conn);
  });
  int client = net_->socket_in_ns(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client, 0);
  setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const bool connected = connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  std::vector<std::uint8_t> echoed;
  if (connected) {
    // Send and receive interleaved so neither side's buffers fill up.
    std::size_t sent = 0;
    std::vector<std::uint8_t> buf(65536);
    while (echoed.size() < kBytes) {
      if (sent < kBytes) {
        ssize_t n = send(client, data.data() + sent, std::min<std::size_t>(16384, kBytes - sent), MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += std::size_t(n);
      }
      ssize_t n = recv(client, buf.data(), buf.size(), sent < kBytes ? MSG_DONTWAIT : 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) break;
      if (n > 0) echoed.insert(echoed.end(), buf.begin(), buf.begin() + n);
    }
  }
  close(client);
  server.join();
  close(listener);
  ASSERT_TRUE(connected) << "TCP connect from the namespace failed while XDP is attached";
  EXPECT_EQ(echoed.size(), kBytes);
  EXPECT_TRUE(echoed == data) << "TCP data corrupted";

  // Plain UDP to another port reaches a root-namespace socket too.
  int udp_server = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in udp_addr{};
  udp_addr.sin_family = AF_INET;
  udp_addr.sin_addr = net_->root_addr4;
  ASSERT_EQ(bind(udp_server, reinterpret_cast<sockaddr*>(&udp_addr), sizeof udp_addr), 0);
  len = sizeof udp_addr;
  getsockname(udp_server, reinterpret_cast<sockaddr*>(&udp_addr), &len);
  int udp_client = net_->socket_in_ns(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(udp_client, 0);
  const char hello[] = "not AXP";
  ASSERT_EQ(sendto(udp_client, hello, sizeof hello, 0, reinterpret_cast<sockaddr*>(&udp_addr), sizeof udp_addr),
            ssize_t(sizeof hello));
  pollfd p{udp_server, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 3000), 1) << "a non-AXP UDP datagram did not reach the kernel";
  char buf[64] = {};
  EXPECT_EQ(recv(udp_server, buf, sizeof buf, MSG_DONTWAIT), ssize_t(sizeof hello));
  EXPECT_STREQ(buf, hello);
  close(udp_client);
  close(udp_server);

  // And AXP is still served alongside.
  AxpClient axp(*net_, AF_INET);
  Header h = request_header(1, 7);
  auto rx = roundtrip(axp, h);
  ASSERT_TRUE(rx);
  expect_response(*rx, h, {});
  EXPECT_NE(attached_program(), 0u);
  EXPECT_TRUE(eventually([&] { return stats().xdp(Reason::pass_not_axp) > pass_before; }))
      << "non-AXP traffic should be counted as passed";
}

// ---- 9. shutdown and bad configurations -------------------------------------------------

TEST_P(DataplaneIT, SigtermDrainsInFlightRequestsDetachesXdpAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0, 50'000'000), nullptr);  // 50 ms per request
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  constexpr std::size_t kSent = 3;
  std::map<std::uint64_t, Header> sent;
  const auto submitted_before = stats().worker_counter(0, &WorkerStats::submitted);
  for (std::size_t i = 0; i < kSent; ++i) {
    Header h = request_header(1, 7);
    ASSERT_TRUE(client.send(h));
    sent.emplace(h.request_id, h);
  }
  ASSERT_TRUE(
      eventually([&] { return stats().worker_counter(0, &WorkerStats::submitted) - submitted_before == kSent; }));
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  // In-flight requests are finished (drain_timeout_ms = 10000 covers 150 ms of work).
  auto got = client.receive_n(kSent, kPatience);
  ASSERT_EQ(got.size(), kSent) << "in-flight requests were not drained";
  std::set<std::uint64_t> ids;
  for (const auto& rx : got) {
    ASSERT_TRUE(sent.contains(rx.header.request_id)) << describe(rx);
    expect_response(rx, sent[rx.header.request_id], {});
    ids.insert(rx.header.request_id);
  }
  EXPECT_EQ(ids.size(), kSent);
  auto code = daemon_->wait_exit(15s);
  ASSERT_TRUE(code.has_value()) << "axon-dataplane did not exit after SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(attached_program(), 0u);
  std::string link;
  run_command({"ip", "link", "show", "dev", net_->root_if}, &link);
  EXPECT_EQ(link.find("xdp"), std::string::npos) << link;
  EXPECT_NE(daemon_->log().find("stopped cleanly"), std::string::npos);
}

TEST_P(DataplaneIT, BadConfigurationsExitNonZeroNamingTheProblemAndAttachNothing) {
  struct Case {
    std::string name;
    std::string text;
    std::vector<std::string> expect_in_log;
    bool names_file = true;      // config errors name file:line; setup errors name the resource
    bool check_catches = false;  // --check must refuse it too (issue 11 item 14)
  };
  const std::string good = config();
  std::vector<Case> cases;
  {
    std::string text = good;
    text.insert(text.find("[dataplane]\n") + 12, "frobnicate = 1\n");
    const int line = line_of(text, "frobnicate");
    cases.push_back({"unknown key", text, {":" + std::to_string(line) + ":", "unknown key 'frobnicate'"}});
  }
  {
    std::string text = good;
    const auto at = text.find("interface = ");
    text.erase(at, text.find('\n', at) + 1 - at);
    cases.push_back({"missing interface", text, {"needs 'interface'"}});
  }
  {
    std::string text = good;
    text.replace(text.find("frame_size = 4096"), 17, "frame_size = 1000");
    const int line = line_of(text, "frame_size = 1000");
    cases.push_back({"invalid value", text, {":" + std::to_string(line) + ":", "frame_size"}});
  }
  {
    std::string text = good;
    text.insert(text.find("[xdp]\n") + 6, "zero_copy = \"maybe\n");
    const int line = line_of(text, "zero_copy");
    cases.push_back({"TOML syntax error", text, {":" + std::to_string(line) + ":"}});
  }
  {
    std::string text = good;
    text.replace(text.find("cores = [1]"), 11, "cores = [1, 0]");
    cases.push_back(
        {"cores do not match queues", text, {":" + std::to_string(line_of(text, "cores = ")) + ":", "cores"}});
  }
  {
    std::string text = good;
    text.replace(text.find("workers = [\"w0\"]"), 16, "workers = [\"nobody\"]");
    cases.push_back({"agent names an unknown worker", text, {"worker 'nobody'"}});
  }
  {
    const std::string missing_if = "axnone" + std::to_string(getpid() % 100000);
    std::string text = good;
    // Every mention: the dpdk backend names the interface again in its vdev.
    for (auto at = text.find(net_->root_if); at != std::string::npos; at = text.find(net_->root_if, at)) {
      text.replace(at, net_->root_if.size(), missing_if);
    }
    cases.push_back({"nonexistent interface", text, {missing_if, "does not exist"}, false, backend() != "dpdk"});
  }
  {
    // Issue 11 item 14: a core that does not exist only warned and the lcore ran unpinned.
    std::string text = good;
    const auto at = text.find("cores = [");
    text.replace(at, text.find('\n', at) - at, "cores = [999]");
    cases.push_back({"nonexistent core", text, {"core 999", "does not exist"}, false, true});
  }
  if (backend() == "dpdk") {
    auto with = [&](const std::string& line) {
      std::string text = good;
      text.insert(text.find("[dpdk]\n") + 7, line + "\n");
      return text;
    };
    cases.push_back({"dpdk: bad EAL argument",
                     with("eal_args = [\"--no-such-eal-flag\"]"),
                     {"DPDK rejected its EAL arguments", "--no-such-eal-flag"},
                     false});
    cases.push_back({"dpdk: more hugepage memory than is free",
                     with("socket_mem = \"1000000\""),
                     {"hugepage", "nr_hugepages"},
                     false});
    std::string no_device = good;
    const auto vdevs = no_device.find("vdevs = ");
    no_device.erase(vdevs, no_device.find('\n', vdevs) + 1 - vdevs);
    cases.push_back({"dpdk: no device", no_device, {"needs a device", "vfio-pci"}});
    std::string no_port = no_device;
    no_port.insert(no_port.find("[dpdk]\n") + 7, "allow = [\"0000:7f:1f.7\"]\n");
    cases.push_back(
        {"dpdk: allowlisted device that is not there", no_port, {"no DPDK port came up", "vfio-pci"}, false});
  }
  if (xdp()) {
    // Valid file, real interface, but a receive queue veth does not have: fails after the XDP
    // program is loaded, and must still leave nothing attached.
    std::string text = good;
    text.replace(text.find("queues = [0]"), 12, "queues = [7]");
    cases.push_back({"nonexistent queue", text, {"queue 7"}, false});
  }
  int holder = -1;
  if (backend() == "uring") {
    std::string text = good;
    text.replace(text.find("buffers = 1024"), 14, "buffers = 100");
    const int line = line_of(text, "buffers = 100");
    cases.push_back({"uring buffers not a power of two", text, {":" + std::to_string(line) + ":", "buffers"}});
    // Valid file, but another socket (not SO_REUSEPORT) holds the port on the veth address.
    holder = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr = net_->root_addr4;
    addr.sin_port = htons(protocol::kDefaultPort);
    ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    cases.push_back(
        {"port held by another socket", good, {"cannot bind UDP port 7400", "Address already in use"}, false});
  }

  int serial = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir_->path() + "/bad-" + std::to_string(serial++) + ".toml";
    {
      std::ofstream out(path);
      out << c.text;
    }
    ChildProcess p;
    std::string error;
    ASSERT_TRUE(p.start({AXON_DATAPLANE_BIN, "--config", path}, {}, path + ".log", &error)) << error;
    auto code = p.wait_exit(20s);
    ASSERT_TRUE(code.has_value()) << "axon-dataplane kept running with a bad config";
    EXPECT_NE(*code, 0);
    EXPECT_LT(*code, 128) << "it must exit, not crash";
    const std::string log = p.log();
    if (c.names_file) {
      EXPECT_NE(log.find(path + ":"), std::string::npos) << "the message must name the file: " << log;
    }
    for (const auto& needle : c.expect_in_log) {
      EXPECT_NE(log.find(needle), std::string::npos) << "missing '" << needle << "' in: " << log;
    }
    EXPECT_EQ(attached_program(), 0u) << "a failed start left XDP attached: " << log;
    if (c.check_catches) {
      std::string checked;
      EXPECT_NE(run_command({AXON_DATAPLANE_BIN, "--config", path, "--check"}, &checked), 0)
          << "--check accepted it: " << checked;
      for (const auto& needle : c.expect_in_log) {
        EXPECT_NE(checked.find(needle), std::string::npos) << "--check: missing '" << needle << "' in: " << checked;
      }
    }
    if (const auto at = c.text.find("file_prefix = \""); at != std::string::npos) {
      const std::string prefix = c.text.substr(at + 15, c.text.find('"', at + 15) - at - 15);
      struct stat st {};
      EXPECT_NE(stat(("/var/run/dpdk/" + prefix).c_str(), &st), 0) << "a failed start left /var/run/dpdk/" << prefix;
    }
  }
  if (holder >= 0) close(holder);

  // --check validates without starting anything.
  const std::string good_path = dir_->path() + "/good.toml";
  {
    std::ofstream out(good_path);
    out << good;
  }
  std::string out;
  EXPECT_EQ(run_command({AXON_DATAPLANE_BIN, "--config", good_path, "--check"}, &out), 0) << out;
  EXPECT_NE(out.find("ok"), std::string::npos) << out;
  EXPECT_EQ(attached_program(), 0u);
}

// ---- 10. SIGHUP reload ------------------------------------------------------------------

TEST_P(DataplaneIT, SighupAddsAnAgentWithoutRestartAndAnInvalidReloadKeepsTheOldRoutes) {
  ConfigSpec spec;
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const pid_t pid = daemon_->pid();

  Header h9 = request_header(1, 9);
  auto rx = roundtrip(client, h9);
  ASSERT_TRUE(rx);
  expect_error(*rx, h9, ErrorCode::unknown_agent);

  // Add agent 9 -> w0 and reload.
  ConfigSpec added = spec;
  added.tables += "\n[[agents]]\nid = 9\ntenant = 1\nworkers = [\"w0\"]\n";
  ASSERT_TRUE(daemon_->write_config(make_config(*net_, dir_->path(), added)));
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  int attempts = 0;
  bool served = eventually(
      [&] {
        ++attempts;
        Header h = request_header(1, 9);
        auto r = roundtrip(client, h);
        return r && is_type(*r, MessageType::response) && r->header.request_id == h.request_id;
      },
      kPatience);
  ASSERT_TRUE(served) << "agent 9 never served after SIGHUP (" << attempts << " attempts)";
  EXPECT_EQ(daemon_->pid(), pid);
  EXPECT_TRUE(daemon_->running());

  // An invalid file: the reload is rejected, both routes keep working.
  const std::size_t rejected_before = [&] {
    std::string log = daemon_->log();
    std::size_t n = 0;
    for (auto at = log.find("reload rejected"); at != std::string::npos; at = log.find("reload rejected", at + 1)) ++n;
    return n;
  }();
  ASSERT_TRUE(daemon_->write_config(make_config(*net_, dir_->path(), added) + "\n[bogus]\nkey = 1\n"));
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  ASSERT_TRUE(eventually([&] {
    std::string log = daemon_->log();
    std::size_t n = 0;
    for (auto at = log.find("reload rejected"); at != std::string::npos; at = log.find("reload rejected", at + 1)) ++n;
    return n > rejected_before;
  })) << "the invalid reload was not reported";
  for (std::uint32_t agent : {7u, 9u}) {
    Header h = request_header(1, agent);
    auto payload = pattern_payload(12, std::uint8_t(agent));
    auto r = roundtrip(client, h, payload);
    ASSERT_TRUE(r) << "agent " << agent << " lost after an invalid reload";
    expect_response(*r, h, payload);
  }

  // A valid reload that drops agent 9 takes effect too.
  ASSERT_TRUE(daemon_->write_config(make_config(*net_, dir_->path(), spec)));
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  bool removed = eventually(
      [&] {
        Header h = request_header(1, 9);
        auto r = roundtrip(client, h);
        return r && is_error(*r, ErrorCode::unknown_agent) && r->header.request_id == h.request_id;
      },
      kPatience);
  EXPECT_TRUE(removed) << "agent 9 still routed after it was removed";
  Header h7 = request_header(1, 7);
  rx = roundtrip(client, h7);
  ASSERT_TRUE(rx);
  expect_response(*rx, h7, {});
}

// ---- 11. deadlines ----------------------------------------------------------------------

TEST_P(DataplaneIT, PassedDeadlineGetsDeadlineExceededAndNeverAResponse) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0, 50'000'000), nullptr);  // 50 ms per request
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto exceeded_before = stats().errors_sent(ErrorCode::deadline_exceeded);
  const auto late_before = stats().lcores(&LcoreStats::late_replies);
  const auto completed_before = stats().worker_counter(0, &WorkerStats::completed);
  const auto refused_before = stats().lcores(&LcoreStats::deadline_expired);

  Header h = request_header(1, 7);
  h.deadline_us = 5000;
  const auto started = Clock::now();
  auto rx = roundtrip(client, h, pattern_payload(16, 1));
  const auto waited = Clock::now() - started;
  ASSERT_TRUE(rx) << "a request past its deadline must be answered";
  expect_error(*rx, h, ErrorCode::deadline_exceeded);
  // Informational: the sweep normally answers within a few ms of the 5 ms deadline, well before
  // the handler's 50 ms (DeadlineSweepStillCovers... proves the sweep without timing).
  RecordProperty("deadline_error_after_us", int(std::chrono::duration_cast<std::chrono::microseconds>(waited).count()));
  // The worker's reply comes back too and is not a second answer: the handler's, after 50 ms,
  // dropped as late; or, when the worker only got to the request after its deadline (a loaded
  // host), the SDK's own deadline_exceeded (docs/scheduling.md), which the data plane answers
  // as the one ERROR if its sweep had not yet, or drops as late if it had. Or the request never
  // reached the worker: when the lcore read it more than 5 ms after the XDP hook stamped it (a
  // loaded host again), admission found its deadline already past and answered it at once
  // (deadline_expired). The test waited for a worker reply that never came in that case.
  ASSERT_TRUE(eventually([&] {
    return (stats().worker_counter(0, &WorkerStats::completed) - completed_before) +
               (stats().lcores(&LcoreStats::deadline_expired) - refused_before) ==
           1;
  }));
  EXPECT_LE(stats().lcores(&LcoreStats::late_replies) - late_before, 1u);
  // Barrier: a request without deadline is served; nothing else comes for the expired one.
  Header barrier = request_header(1, 7);
  ASSERT_TRUE(client.send(barrier));
  auto got = client.receive_until(
      [&](const std::vector<Received>& all) {
        return !all.empty() && all.back().reason == Reason::ok && all.back().header.request_id == barrier.request_id;
      },
      kPatience);
  ASSERT_EQ(got.size(), 1u) << "unexpected datagram: " << (got.empty() ? "none" : describe(got.front()));
  expect_response(got.front(), barrier, {});
  EXPECT_EQ(stats().errors_sent(ErrorCode::deadline_exceeded) - exceeded_before, 1u);
}

// Regression: a late reply to an already-expired request must not make the deadline sweep
// forget other live requests with deadlines (the sweep's live-deadline count was decremented
// twice for such a request, and a later deadline then went unanswered until the worker replied).
TEST_P(DataplaneIT, DeadlineSweepStillCoversLiveRequestsAfterALateReply) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  constexpr auto kWork = 400ms;  // per request; also the window the SIGSTOP below has to land in
  Worker* worker = start_worker("w0", 0, std::uint64_t(std::chrono::nanoseconds(kWork).count()));
  ASSERT_NE(worker, nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const auto late_before = stats().lcores(&LcoreStats::late_replies);

  // A expires at 100 ms while the worker spins on it (until ~400 ms); the sweep answers it.
  // (100 ms, not less: the worker must take A before its deadline, or the SDK answers A itself
  // without running it (docs/scheduling.md) and there is no late reply; on a loaded host a
  // sleeping worker can take a few ms to wake.)
  Header a = request_header(1, 7);
  a.deadline_us = 100'000;
  auto rx = roundtrip(client, a);
  ASSERT_TRUE(rx);
  expect_error(*rx, a, ErrorCode::deadline_exceeded);
  // B queues behind A: the worker takes it at ~400 ms and would finish it at ~800 ms. Its
  // deadline (~600 ms) passes after A's late reply came back and before B is done.
  Header b = request_header(1, 7);
  b.deadline_us = 500'000;
  ASSERT_TRUE(client.send(b));
  auto late = [&] { return stats().lcores(&LcoreStats::late_replies) - late_before; };
  ASSERT_TRUE(eventually([&] { return late() >= 1; })) << "A's late reply never came back";
  // Freeze the worker while it holds B (anywhere in its 400 ms): only the sweep can answer B.
  ASSERT_TRUE(worker->process().signal(SIGSTOP));
  // If this test was itself starved for 400 ms, B is back already; B still gets its deadline
  // ERROR either way, but only a stop that landed in time makes the check sharp.
  RecordProperty("stopped_while_holding_b", late() == 1 ? "yes" : "no");
  rx = client.receive(kPatience);
  ASSERT_TRUE(rx) << "B's deadline passed with the worker stuck, and no ERROR was sent";
  expect_error(*rx, b, ErrorCode::deadline_exceeded);
  ASSERT_TRUE(worker->process().signal(SIGCONT));
  EXPECT_TRUE(eventually([&] { return late() == 2; }));
  EXPECT_FALSE(client.receive(50ms)) << "B was answered twice";
}

// ---- 12. automatic backend selection ----------------------------------------------------

// veth has no AF_XDP zero copy but runs native XDP: auto settles on XDP copy mode and says why.
TEST_F(BackendAutoIT, AutoOnVethChoosesXdpCopyModeAndLogsWhy) {
  daemon_ = std::make_unique<Daemon>(dir_->path());
  std::string error;
  ASSERT_TRUE(daemon_->start(config(), &error)) << error;
  ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  EXPECT_STREQ(stats().header().backend, "xdp");
  EXPECT_STREQ(stats().header().port_mode, "copy");
  EXPECT_NE(attached_program(), 0u);
  const std::string log = daemon_->log();
  const std::string line = "backend: xdp copy (auto; xdp zero-copy: not supported by " + net_->root_if;
  EXPECT_NE(log.find(line), std::string::npos) << "missing '" << line << "' in:\n" << log;
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  Header h = request_header(1, 7);
  auto rx = roundtrip(client, h);
  ASSERT_TRUE(rx);
  expect_response(*rx, h, {});
}

// Loopback has no native XDP: both XDP attempts fail, leave nothing behind, and auto falls back
// to io_uring sockets, which serve.
TEST_F(BackendAutoIT, AutoOnLoopbackFallsBackToUringAndLeavesNoXdpBehind) {
  const std::uint16_t port = std::uint16_t(20000 + getpid() % 20000);
  ConfigSpec spec;
  spec.interface = "lo";
  spec.port = port;
  daemon_ = std::make_unique<Daemon>(dir_->path());
  std::string error;
  std::string text = config(spec);
  ASSERT_TRUE(daemon_->start(text, &error)) << error;
  ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  EXPECT_STREQ(stats().header().backend, "uring");
  EXPECT_EQ(stats().header().xdp_attached.load(), 0u);
  auto lo = bpf::query_attached(1);
  ASSERT_TRUE(lo);
  EXPECT_EQ(lo->program_id, 0u) << "a failed XDP attempt left a program on lo";
  const std::string log = daemon_->log();
  const auto at = log.find("backend: uring (auto; xdp zero-copy: ");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(line.find("; xdp copy: "), std::string::npos) << line;
  EXPECT_NE(line.find("lo"), std::string::npos) << line;
  std::size_t lines = 0;
  for (auto p = log.find("backend: "); p != std::string::npos; p = log.find("backend: ", p + 1)) ++lines;
  EXPECT_EQ(lines, 1u) << "exactly one line names the chosen backend:\n" << log;
  ASSERT_NE(start_worker("w0", 0), nullptr);
  for (const char* server : {"127.0.0.1", "::1"}) {
    AxpClient client(server, port);
    ASSERT_TRUE(client.ok()) << server;
    Header h = request_header(1, 7);
    const auto payload = pattern_payload(100, 5);
    auto rx = roundtrip(client, h, payload);
    ASSERT_TRUE(rx) << "no reply over " << server;
    expect_response(*rx, h, payload);
  }
}

// ---- 13. io_uring needs no privilege ----------------------------------------------------

// The io_uring backend run as `nobody` on loopback: no BPF, no CAP_NET_ADMIN, no locked memory.
TEST_F(BackendAutoIT, UringBackendServesWhenRunAsNobody) {
  const std::uint16_t port = std::uint16_t(20000 + (getpid() + 1) % 20000);
  ConfigSpec spec;
  spec.backend = "uring";
  spec.interface = "lo";
  spec.port = port;
  // nobody must reach the run directory.
  ASSERT_EQ(chmod(dir_->path().c_str(), 0777), 0);
  daemon_ = std::make_unique<Daemon>(dir_->path());
  ASSERT_TRUE(daemon_->write_config(make_config(*net_, dir_->path(), spec)));
  ASSERT_EQ(chmod(daemon_->config_path().c_str(), 0644), 0);
  ChildProcess p;
  std::string error;
  ASSERT_TRUE(p.start({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                       "--bounding-set=-all", AXON_DATAPLANE_BIN, "--config", daemon_->config_path()},
                      {}, dir_->path() + "/nobody.log", &error))
      << error;
  std::optional<StatsReader> reader;
  ASSERT_TRUE(eventually([&] {
    if (!p.running()) return true;
    if (!reader) {
      if (auto opened = StatsReader::open(daemon_->stats_path())) reader.emplace(std::move(opened).value());
    }
    return reader && reader->ready() && reader->lcores(&LcoreStats::loops) > 0;
  })) << p.log();
  ASSERT_TRUE(p.running()) << "axon-dataplane as nobody exited:\n" << p.log();
  EXPECT_STREQ(reader->header().backend, "uring");
  // Its uid really is nobody's.
  std::ifstream status("/proc/" + std::to_string(p.pid()) + "/status");
  std::string line, uid;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) uid = line;
  }
  EXPECT_NE(uid.find("65534"), std::string::npos) << uid;
  Worker worker;
  ASSERT_TRUE(worker.start(*daemon_, "w0", 0, &error)) << error;
  ASSERT_TRUE(eventually([&] { return reader->worker_state(0) == WorkerSlotState::alive; })) << p.log();
  AxpClient client("127.0.0.1", port);
  ASSERT_TRUE(client.ok());
  Header h = request_header(1, 7);
  auto rx = roundtrip(client, h, pattern_payload(64, 1));
  ASSERT_TRUE(rx) << p.log();
  expect_response(*rx, h, pattern_payload(64, 1));
  ASSERT_TRUE(p.signal(SIGTERM));
  auto code = p.wait_exit(15s);
  EXPECT_EQ(code, std::optional<int>(0)) << p.log();
}

// ---- DPDK only ------------------------------------------------------------------------

// What only the DPDK backend has: an EAL runtime dir (telemetry socket) and net_af_xdp's own
// XDP program on the veth, both of which must be gone after a clean stop, and cleared by the
// next start after a SIGKILL left them behind.
class DpdkIT : public DataplaneFixture {
 protected:
  [[nodiscard]] std::string backend() const override { return "dpdk"; }
};

TEST_F(DpdkIT, AKilledDaemonsLeftoversAreClearedByTheNextStartAndACleanStopLeavesNothing) {
  const std::string text = config();
  const auto at = text.find("file_prefix = \"");
  ASSERT_NE(at, std::string::npos);
  const std::string prefix = text.substr(at + 15, text.find('"', at + 15) - at - 15);
  const std::string runtime_dir = "/var/run/dpdk/" + prefix;
  auto exists = [](const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0;
  };
  std::string error;
  daemon_ = std::make_unique<Daemon>(dir_->path());
  ASSERT_TRUE(daemon_->start(text, &error)) << error;
  ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  EXPECT_NE(attached_program(), 0u) << "net_af_xdp attaches an XDP program of its own";
  EXPECT_TRUE(exists(runtime_dir + "/dpdk_telemetry.v2")) << "telemetry socket missing:\n" << daemon_->log();
  ASSERT_TRUE(daemon_->signal(SIGKILL));
  ASSERT_TRUE(daemon_->wait_exit(15s).has_value());
  EXPECT_TRUE(exists(runtime_dir)) << "SIGKILL gives DPDK no chance to clean up (documented)";
  // The killed daemon's stats file still says ready: wait for the new one's instead.
  ::unlink(daemon_->stats_path().c_str());

  daemon_ = std::make_unique<Daemon>(dir_->path());
  ASSERT_TRUE(daemon_->start(text, &error)) << error;
  ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  EXPECT_NE(daemon_->log().find("did not exit cleanly"), std::string::npos) << daemon_->log();
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  Header h = request_header(1, 7);
  auto rx = roundtrip(client, h, pattern_payload(100, 3));
  ASSERT_TRUE(rx) << "the restarted data plane does not answer";
  expect_response(*rx, h, pattern_payload(100, 3));
  EXPECT_EQ(daemon_->stop(), std::optional<int>(0)) << daemon_->log();
  EXPECT_EQ(attached_program(), 0u) << "net_af_xdp's program outlived a clean stop";
  EXPECT_FALSE(exists(runtime_dir)) << "a clean stop left " << runtime_dir;
}

// Regression: when every provided buffer is taken the kernel ends the multishot receive with
// ENOBUFS, and the port must re-arm it once the engine hands buffers back, or the socket goes
// deaf for good. Freezing the daemon while datagrams queue up in the socket makes that happen
// deterministically: on resume the kernel fills all 64 buffers at once and ends the receive.
TEST_F(UringIT, ReceiveIsRearmedAfterTheBufferRingRanDry) {
  ConfigSpec spec;
  spec.uring_extra = "socket_buffer = 4194304\n";
  spec.shm =
      "request_capacity = 512\nreply_capacity = 512\nloan_capacity = 16\nsmall_buffer_size = 2048\n"
      "small_buffer_count = 1024\nlarge_buffer_size = 65536\nlarge_buffer_count = 4\n";
  daemon_ = std::make_unique<Daemon>(dir_->path());
  std::string error;
  std::string text = config(spec);
  text.replace(text.find("buffers = 1024"), 14, "buffers = 64");
  ASSERT_TRUE(daemon_->start(text, &error)) << error;
  ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  Header warm = request_header(1, 7);
  auto rx = roundtrip(client, warm);
  ASSERT_TRUE(rx);
  expect_response(*rx, warm, {});

  ASSERT_TRUE(daemon_->signal(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(daemon_->pid()) == 'T'; })) << "daemon did not stop";
  constexpr std::size_t kQueued = 200;  // > 64 buffers, < the socket buffer
  for (std::size_t i = 0; i < kQueued; ++i) ASSERT_TRUE(client.send(request_header(1, 7)));
  ASSERT_TRUE(daemon_->signal(SIGCONT));
  auto got = client.receive_n(kQueued, kPatience);
  EXPECT_EQ(got.size(), kQueued) << "queued requests lost";
  // And the socket still hears new requests afterwards.
  for (int i = 0; i < 3; ++i) {
    Header h = request_header(1, 7);
    rx = roundtrip(client, h);
    ASSERT_TRUE(rx) << "no reply after the buffer ring ran dry: the receive was not re-armed";
    expect_response(*rx, h, {});
  }
}

// A stalled data plane (SIGSTOP) while requests keep coming: the kernel runs out of posted
// buffers (fill ring) or RX ring room and has to drop the rest. Those losses happen below the
// port, where the engine cannot see them, so the kernel's own counts (XDP_STATISTICS) must
// reach the stats file, and with the engine's they must account for every request sent. Each
// request that got through is answered once the data plane runs again (RESPONSE, or BUSY where
// the worker's ring was full).
// Backends whose port is an AF_XDP socket: xdp, and dpdk through net_af_xdp (issue 11 item 5:
// there the RX-ring-full losses of a descheduled lcore appeared in no axon counter).
class KernelQueueIT : public DataplaneFixture, public ::testing::WithParamInterface<std::string> {
 protected:
  [[nodiscard]] std::string backend() const override { return GetParam(); }
  // Hides the base's: this suite counts every frame on the wire, so the client's end sends
  // only the test's frames. Its IPv6 is off (no neighbour discovery, MLD reports or router
  // solicitations: with dpdk they reached the engine or took a place in the kernel's queue;
  // the fixture disables it before the links come up),
  // and the IPv4 neighbour is static (the fixture sets it), so there is no ARP either.
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    axon::testing::NetworkSpec spec;
    spec.ipv6 = false;
    net_ = TestNetwork::create(spec, net_error_).release();
  }
};

TEST_P(KernelQueueIT, RequestsTheKernelCouldNotQueueWhileStalledAreCountedAndTheRestAnswered) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.widen_receive_buffer(8 << 20));
  const StatsHeader& header = stats().header();
  auto kernel_drops = [&] {
    return header.device_rx_missed.load() + header.device_rx_nombuf.load() + header.device_rx_errors.load();
  };
  EXPECT_EQ(kernel_drops(), 0u);
  ASSERT_TRUE(daemon_->signal(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(daemon_->pid()) == 'T'; })) << "daemon did not stop";
  // Twice what the 1024-frame UMEM can hold for receive, paced so that veth itself keeps up.
  constexpr int kSent = 1024;
  for (int i = 0; i < kSent; ++i) {
    ASSERT_TRUE(client.send(request_header(1, 7)));
    if (i % 64 == 63) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(daemon_->signal(SIGCONT));
  EXPECT_TRUE(eventually([&] { return kernel_drops() > 0; }))
      << "the kernel's drop counts never reached the stats file";
  // Exact: the suite's client end sends nothing but the test's frames (see SetUpTestSuite),
  // so every frame sent was either received by the engine or dropped by the kernel.
  EXPECT_TRUE(eventually([&] { return stats().lcores(&LcoreStats::rx_frames) + kernel_drops() == kSent; }))
      << "engine received " << stats().lcores(&LcoreStats::rx_frames) << " (not AXP "
      << stats().lcore_drops(Reason::pass_not_axp) << "), kernel dropped: rx_ring_full "
      << header.device_rx_missed.load() << ", fill ring empty " << header.device_rx_nombuf.load() << ", other "
      << header.device_rx_errors.load() << "; of " << kSent << " sent";
  EXPECT_EQ(stats().lcore_drops(Reason::pass_not_axp), 0u) << "a frame that is not the test's reached the engine";
  const std::uint64_t received = stats().lcores(&LcoreStats::rx_frames);
  auto got = client.receive_n(std::size_t(received), kPatience);
  EXPECT_EQ(got.size(), received) << "a request the engine received went unanswered";
  for (const auto& rx : got) {
    ASSERT_TRUE(is_type(rx, MessageType::response) || is_type(rx, MessageType::busy)) << describe(rx);
  }
  EXPECT_EQ(stats().lcores(&LcoreStats::responses) + stats().lcores(&LcoreStats::busy_sent), received);
  Header h = request_header(1, 7);
  auto rx = roundtrip(client, h);
  ASSERT_TRUE(rx) << "no reply after the stall";
  expect_response(*rx, h, {});
}

// A request far longer than the port's receive buffers (64 KiB, sent as IP fragments and
// reassembled by the kernel) reaches the engine cut to the buffer, its header still claiming
// the full length. The shared validator must reject it (bad_length: the header claims more
// than the datagram holds) and count it once; nothing may be answered from the partial copy,
// and the socket must go on serving.
TEST_F(UringIT, ADatagramLongerThanItsBufferIsDroppedByReasonAndTheSocketKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  ASSERT_NE(start_worker("w0", 0), nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  const std::uint64_t bad_length_before = dropped(Reason::bad_length);
  Header big = request_header(1, 7);
  ASSERT_TRUE(client.send_bytes(encode(big, pattern_payload(65000, 9))));
  EXPECT_TRUE(eventually([&] { return dropped(Reason::bad_length) == bad_length_before + 1; }))
      << "bad_length: " << dropped(Reason::bad_length) - bad_length_before;
  EXPECT_EQ(stats().lcores(&LcoreStats::requests), 0u) << "a cut request must not reach the worker";
  EXPECT_EQ(stats().lcores(&LcoreStats::port_rx_dropped), 0u) << "counted once, by the validator";
  EXPECT_FALSE(client.receive(200ms).has_value()) << "nothing may be answered from a partial copy";
  Header h = request_header(1, 7);
  auto rx = roundtrip(client, h, pattern_payload(64, 1));
  ASSERT_TRUE(rx) << "the socket stopped receiving after the oversized datagram";
  expect_response(*rx, h, pattern_payload(64, 1));
}

// Two receive queues, one lcore each, on a veth with two queues per end. Flows from many
// client sockets hash over both queues, so both lcores receive; the one worker belongs to one
// lcore, so the other must hand its requests over the forward ring, and every request is still
// answered exactly once with its own payload.
class MultiQueueIT : public DataplaneFixture, public ::testing::WithParamInterface<std::string> {
 protected:
  static constexpr std::uint32_t kQueues = 2;
  [[nodiscard]] std::string backend() const override { return GetParam(); }
  // Hides the base's: this suite's veth pair has kQueues queues per end.
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    net_ = TestNetwork::create(net_error_, kQueues).release();
  }
};

TEST_P(MultiQueueIT, EveryQueueHasItsLcoreAndRequestsCrossToTheWorkersLcore) {
  ConfigSpec spec;
  spec.queue_count = kQueues;
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_EQ(stats().header().lcore_count, kQueues);
  ASSERT_NE(start_worker("w0", 0), nullptr);

  // 32 sockets: the chance that all their flows hash to one queue is 2^-31. Waves of 64
  // requests stay below the worker's 128-entry ring, so a slow worker (sanitizer builds) is
  // never full and every request must get a RESPONSE, not BUSY.
  constexpr int kClients = 32;
  constexpr int kPerWave = 2;
  constexpr int kWaves = 4;
  std::vector<std::unique_ptr<AxpClient>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::make_unique<AxpClient>(*net_, AF_INET));
    ASSERT_TRUE(clients.back()->ok()) << "cannot open client socket " << c;
  }
  std::map<std::uint64_t, std::vector<std::uint8_t>> sent;
  std::set<std::uint64_t> answered;
  for (int wave = 0; wave < kWaves; ++wave) {
    for (int c = 0; c < kClients; ++c) {
      for (int i = 0; i < kPerWave; ++i) {
        Header h = request_header(1, 7);
        const int n = (wave * kClients + c) * kPerWave + i;
        auto payload = pattern_payload(std::size_t(32 + n), std::uint8_t(n));
        ASSERT_TRUE(clients[std::size_t(c)]->send(h, payload));
        sent.emplace(h.request_id, std::move(payload));
      }
    }
    for (int c = 0; c < kClients; ++c) {
      auto got = clients[std::size_t(c)]->receive_n(kPerWave, kPatience);
      ASSERT_EQ(got.size(), std::size_t(kPerWave)) << "wave " << wave << ": client " << c << " (port "
                                                   << clients[std::size_t(c)]->local_port() << ") lost replies";
      for (const auto& rx : got) {
        ASSERT_EQ(rx.reason, Reason::ok);
        ASSERT_EQ(rx.header.type, MessageType::response) << describe(rx);
        auto it = sent.find(rx.header.request_id);
        ASSERT_NE(it, sent.end()) << "reply for a request never sent: " << describe(rx);
        EXPECT_EQ(rx.payload, it->second) << "payload of request " << rx.header.request_id;
        EXPECT_TRUE(answered.insert(rx.header.request_id).second) << "two replies for one request";
      }
    }
  }
  EXPECT_EQ(answered.size(), sent.size());

  const std::uint32_t owner = stats().worker(0).owner_lcore.load();
  ASSERT_LT(owner, kQueues);
  for (std::uint32_t lcore = 0; lcore < kQueues; ++lcore) {
    EXPECT_GT(stats().lcore(lcore, &LcoreStats::rx_frames), 0u)
        << "lcore " << lcore << " (queue " << lcore << ") received nothing";
  }
  // The other lcore's requests crossed to the owner, which alone put all of them in the ring.
  const std::uint32_t other = 1 - owner;
  EXPECT_GT(stats().lcore(other, &LcoreStats::forwarded), 0u);
  EXPECT_EQ(stats().lcore(owner, &LcoreStats::requests), sent.size());
  EXPECT_EQ(stats().lcore(other, &LcoreStats::requests), 0u);
  EXPECT_EQ(stats().lcores(&LcoreStats::forward_full), 0u);
  EXPECT_EQ(stats().lcores(&LcoreStats::busy_sent), 0u);
}

// Not dpdk: its net_af_xdp PMD sizes queue_count by the interface's "combined" channels, which
// veth does not report (it has separate rx and tx counts), so it refuses queue_count=2 on veth.
// The DPDK runtime's per-queue rings are covered with net_ring in dataplane_dpdk_test.
INSTANTIATE_TEST_SUITE_P(Backends, MultiQueueIT, ::testing::Values("xdp", "uring"),
                         [](const ::testing::TestParamInfo<std::string>& param) { return param.param; });

INSTANTIATE_TEST_SUITE_P(Backends, KernelQueueIT, ::testing::Values("xdp", "dpdk"),
                         [](const ::testing::TestParamInfo<std::string>& param) { return param.param; });

INSTANTIATE_TEST_SUITE_P(Backends, DataplaneIT, ::testing::Values("xdp", "uring", "dpdk"),
                         [](const ::testing::TestParamInfo<std::string>& param) { return param.param; });

}  // namespace
}  // namespace axon::dataplane::it

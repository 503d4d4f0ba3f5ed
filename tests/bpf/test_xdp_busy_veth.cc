// BUSY from XDP on a real veth pair between two namespaces this test creates (axon::test_network,
// prefix axxds): a client
// UDP socket in the peer namespace sends more requests than its tenant has credits; the ones
// over the credits come back as BUSY through the client's kernel UDP stack (which drops a
// datagram whose checksum is wrong) and never reach the AF_XDP socket; the data plane's credit
// refresher (dataplane/src/credits.cc, the component the daemon runs on its control thread)
// then grants new credits and requests get through again. The peer end carries an XDP program
// too: veth delivers XDP_TX frames only to a peer with an XDP receive ring.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "axon/bpf/xdp_program.h"
#include "axon/dataplane/credits.h"
#include "axon/protocol/axp.h"
#include "axon/testing/test_network.h"

#include "packet_cases.h"
#include "veth_xdp_fixture.h"
#include "xsk_socket.h"

namespace axon::bpf {
namespace {

constexpr std::uint32_t kTenant = 9;

class XdpBusyVethTest : public VethXdpTest {
 protected:
  XdpBusyVethTest() : VethXdpTest("axxds") {}
};

// One request datagram for the tenant, with a distinct request id.
std::vector<std::uint8_t> request_datagram(std::uint64_t request_id) {
  protocol::Header h = test::FrameSpec::default_header();
  h.tenant_id = kTenant;
  h.request_id = request_id;
  h.priority = protocol::Priority::background;
  std::vector<std::uint8_t> payload(100, 0x42);
  std::vector<std::uint8_t> datagram(protocol::kHeaderLen + payload.size());
  EXPECT_EQ(protocol::encode_datagram(h, payload, datagram), datagram.size());
  return datagram;
}

TEST_F(XdpBusyVethTest, OverCreditsTheClientGetsBusyFromXdpAndARefreshLetsRequestsThrough) {
  XdpConfig config;
  config.enforce_credits = true;
  auto loaded = XdpProgram::load(config);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  XdpProgram program = std::move(loaded).value();
  test::XskSocket xsk(net_->root_if);
  ASSERT_TRUE(xsk.ok()) << xsk.error();
  ASSERT_TRUE(program.set_socket(0, xsk.fd()).ok());
  ASSERT_TRUE(program.attach(ifindex_).ok());
  // XDP_TX on root_if hands the frame to ns_if's XDP receive ring, which exists only while ns_if
  // has an XDP program: attach one there too (the same program; the BUSY replies go to the
  // client's port, not an AXP port, so it passes them to the client's kernel stack).
  std::optional<XdpProgram> peer_program;
  std::string peer_error = "not run";
  ASSERT_TRUE(axon::testing::in_netns(net_->ns, [&] {
    auto peer = XdpProgram::load(XdpConfig{});
    if (!peer) {
      peer_error = peer.message();
      return;
    }
    peer_program.emplace(std::move(peer).value());
    auto attached = peer_program->attach(net_->ns_if);
    peer_error = attached.ok() ? "" : attached.message();
  }));
  ASSERT_EQ(peer_error, "");

  // The data plane's refresher, writing into this program; no worker is loaded, so every refresh
  // sees no queueing delay and raises the budget (up to credits_max).
  dataplane::CreditSettings settings;
  settings.refresh_us = 100'000;
  dataplane::TenantConfig tenant;
  tenant.id = kTenant;
  tenant.credits_max = 3;
  tenant.credits_min = 1;
  dataplane::CreditRefresher refresher(
      settings, [](std::size_t) { return dataplane::WorkerLoad{}; },
      [&](std::uint32_t id, std::int64_t credits, std::uint32_t retry) {
        ASSERT_TRUE(program.set_credits(id, credits, retry).ok());
      },
      [&](std::uint32_t id) { ASSERT_TRUE(program.clear_credits(id).ok()); });
  refresher.configure({tenant}, {}, {}, 1'000'000'000);

  int client = net_->socket_in_ns(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(client, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(protocol::kDefaultPort);
  to.sin_addr = net_->root_addr4;

  auto send_request = [&](std::uint64_t id) {
    auto d = request_datagram(id);
    ASSERT_EQ(sendto(client, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to), ssize_t(d.size()));
  };
  // BUSY replies the client's kernel delivered (a bad checksum would have been dropped there).
  auto receive_busy = [&](int timeout_ms) -> std::optional<protocol::Header> {
    pollfd p{client, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    std::uint8_t buffer[2048];
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    ssize_t n = recvfrom(client, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    EXPECT_EQ(n, ssize_t(protocol::kHeaderLen)) << "BUSY carries no payload";
    EXPECT_EQ(from.sin_addr.s_addr, to.sin_addr.s_addr);
    EXPECT_EQ(from.sin_port, to.sin_port) << "from the port the request went to";
    if (n < ssize_t(protocol::kHeaderLen)) return std::nullopt;
    std::span<const std::uint8_t> datagram(buffer, std::size_t(n));
    EXPECT_EQ(protocol::validate(datagram), protocol::Reason::ok);
    return protocol::decode_header(datagram);
  };

  // 3 credits: requests 1..3 reach the AF_XDP socket, 4..6 are answered BUSY by XDP.
  for (std::uint64_t id = 1; id <= 6; ++id) send_request(id);
  std::vector<std::uint64_t> delivered;
  for (int i = 0; i < 3; ++i) {
    auto frame = xsk.receive(2000);
    ASSERT_TRUE(frame.has_value()) << "request " << i + 1 << " did not reach the AF_XDP socket";
    const protocol::Header h =
        protocol::decode_header({frame->data() + frame->size() - (protocol::kHeaderLen + 100), protocol::kHeaderLen});
    delivered.push_back(h.request_id);
  }
  EXPECT_EQ(delivered, (std::vector<std::uint64_t>{1, 2, 3}));
  std::vector<std::uint64_t> busy;
  for (int i = 0; i < 3; ++i) {
    auto reply = receive_busy(2000);
    ASSERT_TRUE(reply.has_value()) << "BUSY " << i + 1 << " did not arrive at the client";
    EXPECT_EQ(reply->type, protocol::MessageType::busy);
    EXPECT_EQ(reply->tenant_id, kTenant);
    EXPECT_EQ(reply->retry_after_us, settings.refresh_us) << "credits return with the next refresh";
    EXPECT_NE(reply->retry_after_us, 0u);
    EXPECT_EQ(reply->payload_len, 0);
    busy.push_back(reply->request_id);
  }
  EXPECT_EQ(busy, (std::vector<std::uint64_t>{4, 5, 6}));
  EXPECT_FALSE(xsk.receive(200).has_value()) << "the requests answered BUSY must never reach the AF_XDP socket";

  // The refresh: new credits, and the next requests go through.
  refresher.tick(1'000'000'000 + settings.refresh_us * 1000ull);
  for (std::uint64_t id = 7; id <= 8; ++id) send_request(id);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(xsk.receive(2000).has_value()) << "after the refresh, request " << 7 + i;
  EXPECT_FALSE(receive_busy(200).has_value());

  auto counters = program.read_counters();
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ(counters->packets_for(AXON_BUSY_NO_CREDITS), 3u);
  EXPECT_EQ(counters->packets_for(AXP_PRIO_BACKGROUND, AXON_BUSY_NO_CREDITS), 3u);
  EXPECT_EQ(counters->packets_for(AXP_PRIO_BACKGROUND, AXON_OK), 5u);
  close(client);
  ASSERT_TRUE(program.detach().ok());
}

}  // namespace
}  // namespace axon::bpf

// Attaching to a real interface: a veth pair between two namespaces this test creates and
// deletes (axon::test_network, two_namespaces), with the test's thread inside the first one:
// traffic from the second crosses the pair and meets the XDP hook of the first's end.
// Native attach, what the kernel reports while attached, clean detach (explicit and by
// destructor), refusal to displace another program, and redirection into a real AF_XDP socket,
// both under BPF_PROG_TEST_RUN and for a UDP datagram sent across the veth pair.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <optional>

// libxdp's ring helpers are inline C; their casts are not ours to change.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#include <xdp/xsk.h>
#pragma GCC diagnostic pop

#include "axon/bpf/xdp_program.h"
#include "axon/protocol/axp.h"
#include "axon/testing/test_network.h"

#include "packet_cases.h"
#include "veth_xdp_fixture.h"
#include "xsk_socket.h"

namespace axon::bpf {
namespace {

using protocol::Reason;

class XdpAttachTest : public VethXdpTest {
 protected:
  XdpAttachTest() : VethXdpTest("axbpf") {}
  void TearDown() override {
    if (inside_ && inside_->ok() && ifindex_ > 0) {
      // Whatever happened in the test, nothing may be left on the interface before the
      // namespace (and with it the veth) is deleted.
      auto left = query_attached(ifindex_);
      EXPECT_TRUE(left.ok() && left->program_id == 0) << "an XDP program was left attached";
    }
    VethXdpTest::TearDown();
  }
};

#define LOAD_OR_FAIL(var, config)                           \
  auto var##_loaded = XdpProgram::load(config);             \
  ASSERT_TRUE(var##_loaded.ok()) << var##_loaded.message(); \
  XdpProgram var = std::move(var##_loaded).value()

TEST_F(XdpAttachTest, NativeAttachThenDetachLeavesNothing) {
  LOAD_OR_FAIL(program, XdpConfig{});
  auto mode = program.attach(dev());
  ASSERT_TRUE(mode.ok()) << mode.message();
  EXPECT_TRUE(program.attached());
  EXPECT_EQ(program.attached_ifindex(), ifindex_);
  RecordProperty("attach_mode", to_string(*mode));

  auto state = query_attached(ifindex_);
  ASSERT_TRUE(state.ok()) << state.message();
  EXPECT_TRUE(state->native) << "must be driver mode, never a silent fallback to generic";
  if (*mode == AttachMode::single) {
    EXPECT_EQ(state->program_id, program.program_id());
  }

  ASSERT_TRUE(program.detach().ok());
  EXPECT_FALSE(program.attached());
  auto after = query_attached(ifindex_);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->program_id, 0u);
  EXPECT_TRUE(program.detach().ok()) << "detaching twice is a no-op";
}

TEST_F(XdpAttachTest, DestructorDetaches) {
  {
    LOAD_OR_FAIL(program, XdpConfig{});
    ASSERT_TRUE(program.attach(ifindex_).ok());
    ASSERT_NE(query_attached(ifindex_)->program_id, 0u);
  }
  EXPECT_EQ(query_attached(ifindex_)->program_id, 0u);
}

// The owner may die without running any destructor (SIGKILL, a crash). The single-program
// attach goes through a BPF link, which the kernel releases with the process, so the interface
// is left clean anyway: the classic "XDP program left attached after a crash" cannot happen.
TEST_F(XdpAttachTest, KilledOwnerLeavesNothingAttached) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    auto program = XdpProgram::load(XdpConfig{});
    if (!program.ok() || !program->attach(ifindex_).ok()) _exit(2);
    char byte = 1;
    if (write(ready[1], &byte, 1) != 1) _exit(3);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the child could not load and attach";
  close(ready[0]);
  EXPECT_NE(query_attached(ifindex_)->program_id, 0u);
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  // The link is released from the dying process's file table, possibly via a workqueue.
  std::uint32_t left = 1;
  for (int i = 0; i < 100 && left != 0; ++i) {
    left = query_attached(ifindex_)->program_id;
    if (left != 0) usleep(10'000);
  }
  EXPECT_EQ(left, 0u) << "a program outlived its killed owner";
}

TEST_F(XdpAttachTest, ReattachAfterDetach) {
  LOAD_OR_FAIL(program, XdpConfig{});
  ASSERT_TRUE(program.attach(ifindex_).ok());
  EXPECT_EQ(program.attach(ifindex_).code(), XdpError::already_attached);
  ASSERT_TRUE(program.detach().ok());
  ASSERT_TRUE(program.attach(ifindex_).ok());
  ASSERT_TRUE(program.detach().ok());
}

TEST_F(XdpAttachTest, DoesNotDisplaceAnotherProgram) {
  LOAD_OR_FAIL(first, XdpConfig{});
  LOAD_OR_FAIL(second, XdpConfig{});
  ASSERT_TRUE(first.attach(ifindex_).ok());
  auto refused = second.attach(ifindex_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), XdpError::attach_failed);
  EXPECT_NE(refused.message().find("xdp off"), std::string::npos) << refused.message();
  EXPECT_EQ(query_attached(ifindex_)->program_id, first.program_id());
  EXPECT_TRUE(second.detach().ok()) << "detaching a program that never attached touches nothing";
  EXPECT_EQ(query_attached(ifindex_)->program_id, first.program_id());
}

TEST_F(XdpAttachTest, MissingInterfaceSaysSo) {
  LOAD_OR_FAIL(program, XdpConfig{});
  auto result = program.attach("axon-no-such0");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.code(), XdpError::interface_not_found);
  EXPECT_NE(result.message().find("ip link"), std::string::npos) << result.message();
}

TEST_F(XdpAttachTest, TestRunRedirectsIntoARegisteredSocket) {
  LOAD_OR_FAIL(program, XdpConfig{});
  test::XskSocket xsk(dev());
  ASSERT_TRUE(xsk.ok()) << xsk.error();
  ASSERT_TRUE(program.set_socket(0, xsk.fd()).ok());

  auto frame = test::build_frame(test::FrameSpec{});
  TestRunOptions on_queue0;
  on_queue0.ingress_ifindex = static_cast<std::uint32_t>(ifindex_);
  on_queue0.rx_queue = 0;
  auto before = program.read_counters();
  auto run = program.test_run(frame, on_queue0);
  ASSERT_TRUE(run.ok()) << run.message();
  // Without BPF_F_TEST_XDP_LIVE_FRAMES the kernel reports the verdict but performs no redirect.
  EXPECT_EQ(run->action, test::kXdpRedirect);
  auto after = program.read_counters();
  EXPECT_EQ(after->packets_for(AXON_OK) - before->packets_for(AXON_OK), 1u);

  ASSERT_TRUE(program.clear_socket(0).ok());
  auto orphan = program.test_run(frame, on_queue0);
  ASSERT_TRUE(orphan.ok());
  EXPECT_EQ(orphan->action, test::kXdpDrop);
  EXPECT_EQ(program.read_counters()->packets_for(AXON_DROP_NO_SOCKET) - after->packets_for(AXON_DROP_NO_SOCKET), 1u);
}

// [xdp] rx_stamp: a frame redirected to AF_XDP carries the hook's CLOCK_MONOTONIC stamp in the
// metadata in front of it (axon_rx_meta, which the data plane reads as the request's first hop);
// without the flag, and on frames not redirected, nothing is put in front.
TEST_F(XdpAttachTest, RxStampPutsTheHooksTimeInFrontOfRedirectedFramesOnly) {
  XdpConfig stamping;
  stamping.rx_stamp = true;
  LOAD_OR_FAIL(program, stamping);
  LOAD_OR_FAIL(plain, XdpConfig{});
  test::XskSocket xsk(dev());
  ASSERT_TRUE(xsk.ok()) << xsk.error();
  ASSERT_TRUE(program.set_socket(0, xsk.fd()).ok());
  ASSERT_TRUE(plain.set_socket(0, xsk.fd()).ok());

  auto frame = test::build_frame(test::FrameSpec{});
  TestRunOptions on_queue0;
  on_queue0.ingress_ifindex = static_cast<std::uint32_t>(ifindex_);
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const std::uint64_t before_ns = std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
  auto run = program.test_run(frame, on_queue0);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const std::uint64_t after_ns = std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
  ASSERT_TRUE(run.ok()) << run.message();
  EXPECT_EQ(run->action, test::kXdpRedirect);
  ASSERT_EQ(run->frame.size(), frame.size() + sizeof(axon_rx_meta)) << "the stamp precedes the frame";
  axon_rx_meta meta{};
  std::memcpy(&meta, run->frame.data(), sizeof meta);
  EXPECT_EQ(meta.magic, AXON_RX_META_MAGIC);
  EXPECT_GE(meta.rx_ns, before_ns);
  EXPECT_LE(meta.rx_ns, after_ns);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), run->frame.begin() + sizeof(axon_rx_meta)))
      << "the frame itself is unchanged";

  auto unstamped = plain.test_run(frame, on_queue0);
  ASSERT_TRUE(unstamped.ok()) << unstamped.message();
  EXPECT_EQ(unstamped->action, test::kXdpRedirect);
  EXPECT_EQ(unstamped->frame.size(), frame.size()) << "rx_stamp off: nothing in front";

  test::FrameSpec not_axp;
  not_axp.dst_port = 53;
  auto passed = program.test_run(test::build_frame(not_axp), on_queue0);
  ASSERT_TRUE(passed.ok()) << passed.message();
  EXPECT_EQ(passed->action, test::kXdpPass);
  EXPECT_EQ(passed->frame.size(), test::build_frame(not_axp).size()) << "traffic passed to the kernel is not stamped";
}

TEST_F(XdpAttachTest, DatagramAcrossVethReachesTheSocketAndOthersReachTheKernel) {
  LOAD_OR_FAIL(program, XdpConfig{});
  test::XskSocket xsk(dev());
  ASSERT_TRUE(xsk.ok()) << xsk.error();
  ASSERT_TRUE(program.set_socket(0, xsk.fd()).ok());
  ASSERT_TRUE(program.attach(ifindex_).ok());

  // A kernel UDP listener on a non-AXP port behind the XDP program: it must still get traffic.
  int listener = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in bind_addr{};
  bind_addr.sin_family = AF_INET;
  bind_addr.sin_port = htons(7999);
  bind_addr.sin_addr = net_->root_addr4;  // the fixture's address on our end
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&bind_addr), sizeof bind_addr), 0);

  // The sender lives in the other namespace, so its datagrams cross the pair into our end's hook.
  int sender = net_->socket_in_ns(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(sender, 0);

  protocol::Header request = test::FrameSpec::default_header();
  std::vector<std::uint8_t> payload = {'p', 'i', 'n', 'g'};
  std::vector<std::uint8_t> datagram(protocol::kHeaderLen + payload.size());
  ASSERT_EQ(protocol::encode_datagram(request, payload, datagram), datagram.size());
  sockaddr_in to = bind_addr;
  to.sin_port = htons(protocol::kDefaultPort);
  ASSERT_EQ(sendto(sender, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            static_cast<ssize_t>(datagram.size()));

  auto frame = xsk.receive(2000);
  ASSERT_TRUE(frame.has_value()) << "the AXP datagram did not arrive on the AF_XDP socket";
  ASSERT_GE(frame->size(), datagram.size());
  EXPECT_TRUE(std::equal(datagram.begin(), datagram.end(), frame->end() - static_cast<long>(datagram.size())))
      << "the socket must see the datagram byte for byte";

  const char note[] = "not axp";
  to.sin_port = htons(7999);
  ASSERT_EQ(sendto(sender, note, sizeof note, 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            static_cast<ssize_t>(sizeof note));
  pollfd p{listener, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1) << "non-AXP UDP must still reach the kernel stack";
  char got[64] = {};
  EXPECT_EQ(recv(listener, got, sizeof got, 0), static_cast<ssize_t>(sizeof note));
  EXPECT_STREQ(got, note);

  auto counters = program.read_counters();
  ASSERT_TRUE(counters.ok());
  EXPECT_GE(counters->packets_for(AXON_OK), 1u);
  EXPECT_GE(counters->packets_for(AXON_PASS_NOT_AXP), 2u) << "at least ARP and the non-AXP datagram";
  close(sender);
  close(listener);
  ASSERT_TRUE(program.detach().ok());
}

}  // namespace
}  // namespace axon::bpf

// The network fixture itself (axon::test_network): both topologies carry a datagram between
// the ends, names are unique per network, IPv6 can be switched off, destruction removes the
// namespaces, and a killed creator's namespaces are removed by the next create() of its
// prefix. Needs root; skips otherwise.
#include "axon/testing/test_network.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

namespace axon::testing {
namespace {

constexpr char kPrefix[] = "axtn";

bool namespace_exists(const std::string& name) {
  std::string out;
  run_command({"ip", "netns", "list"}, &out);
  return out.find(name + " ") != std::string::npos || out.find(name + "\n") != std::string::npos;
}

std::unique_ptr<TestNetwork> make(Topology topology, bool ipv6 = true) {
  NetworkSpec spec;
  spec.topology = topology;
  spec.prefix = kPrefix;
  spec.ipv6 = ipv6;
  std::string error;
  auto net = TestNetwork::create(spec, error);
  EXPECT_TRUE(net) << error;
  return net;
}

// Sends one datagram from a socket inside `ns` to root_ip4 and receives it on a socket
// bound there (created in the calling thread's namespace).
void expect_datagram_crosses(const TestNetwork& net) {
  int listener = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr = net.root_addr4;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int sender = net.socket_in_ns(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(sender, 0);
  const char text[] = "across";
  ASSERT_EQ(sendto(sender, text, sizeof text, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
            static_cast<ssize_t>(sizeof text));
  pollfd p{listener, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1) << "the datagram did not cross the veth pair";
  sockaddr_in from{};
  socklen_t from_len = sizeof from;
  char got[16] = {};
  EXPECT_EQ(recvfrom(listener, got, sizeof got, 0, reinterpret_cast<sockaddr*>(&from), &from_len),
            static_cast<ssize_t>(sizeof text));
  EXPECT_STREQ(got, text);
  EXPECT_EQ(from.sin_addr.s_addr, net.ns_addr4.s_addr) << "it must come from the namespace end";
  close(sender);
  close(listener);
}

class TestNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "creating namespaces needs root";
  }
};

TEST_F(TestNetworkTest, RootAndNamespaceCarriesADatagramAndIsRemovedOnDestruction) {
  auto net = make(Topology::root_and_ns);
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->root_ns.empty());
  EXPECT_EQ(int(if_nametoindex(net->root_if.c_str())), net->root_ifindex) << "root end in our namespace";
  EXPECT_EQ(if_nametoindex(net->ns_if.c_str()), 0u) << "the other end is not in our namespace";
  EXPECT_TRUE(net->has_ipv6);
  expect_datagram_crosses(*net);
  const std::string ns = net->ns;
  const std::string root_if = net->root_if;
  EXPECT_TRUE(namespace_exists(ns));
  net.reset();
  EXPECT_FALSE(namespace_exists(ns));
  EXPECT_EQ(if_nametoindex(root_if.c_str()), 0u) << "the root end must go with the network";
}

TEST_F(TestNetworkTest, TwoNamespacesShowNothingInOursUntilEntered) {
  auto net = make(Topology::two_namespaces);
  ASSERT_TRUE(net);
  ASSERT_FALSE(net->root_ns.empty());
  EXPECT_EQ(if_nametoindex(net->root_if.c_str()), 0u);
  EXPECT_EQ(if_nametoindex(net->ns_if.c_str()), 0u);
  {
    auto inside = net->enter_root_ns();
    ASSERT_TRUE(inside->ok()) << inside->error();
    EXPECT_EQ(int(if_nametoindex(net->root_if.c_str())), net->root_ifindex);
    expect_datagram_crosses(*net);
  }
  EXPECT_EQ(if_nametoindex(net->root_if.c_str()), 0u) << "leaving must restore our namespace";
  const std::string root_ns = net->root_ns;
  const std::string ns = net->ns;
  net.reset();
  EXPECT_FALSE(namespace_exists(root_ns));
  EXPECT_FALSE(namespace_exists(ns));
}

TEST_F(TestNetworkTest, NetworksOfOneProcessHaveTheirOwnNamesAndSubnets) {
  auto a = make(Topology::root_and_ns);
  auto b = make(Topology::root_and_ns);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->ns, b->ns);
  EXPECT_NE(a->root_if, b->root_if);
  EXPECT_NE(a->prefix4, b->prefix4);
  EXPECT_NE(a->root_mac, b->root_mac);
  EXPECT_LT(a->root_if.size(), std::size_t(IFNAMSIZ));
}

TEST_F(TestNetworkTest, Ipv6OffDisablesItOnBothEnds) {
  auto net = make(Topology::root_and_ns, /*ipv6=*/false);
  ASSERT_TRUE(net);
  EXPECT_FALSE(net->has_ipv6);
  std::ifstream root_flag("/proc/sys/net/ipv6/conf/" + net->root_if + "/disable_ipv6");
  int value = -1;
  root_flag >> value;
  EXPECT_EQ(value, 1);
  std::string out;
  ASSERT_EQ(
      run_command({"ip", "netns", "exec", net->ns, "sysctl", "-n", "net.ipv6.conf." + net->ns_if + ".disable_ipv6"},
                  &out),
      0)
      << out;
  EXPECT_EQ(out, "1\n");
  ASSERT_EQ(run_command({"ip", "-n", net->ns, "-6", "addr", "show", "dev", net->ns_if}, &out), 0);
  EXPECT_EQ(out.find("inet6"), std::string::npos) << out;
}

TEST_F(TestNetworkTest, PrefixLongerThanLinkNamesAllowIsRefused) {
  NetworkSpec spec;
  spec.prefix = "toolong";
  std::string error;
  EXPECT_FALSE(TestNetwork::create(spec, error));
  EXPECT_NE(error.find("1 to 5 characters"), std::string::npos) << error;
}

// A creator killed before its destructor ran leaves namespaces behind; the next create() of the
// same prefix removes them, and leaves a live process's alone.
TEST_F(TestNetworkTest, KilledCreatorsLeftoversAreRemovedByTheNextCreate) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    NetworkSpec spec;
    spec.topology = Topology::two_namespaces;
    spec.prefix = kPrefix;
    std::string error;
    auto net = TestNetwork::create(spec, error);
    const std::string name = net ? net->ns : "";
    if (write(ready[1], name.data(), name.size()) != ssize_t(name.size())) _exit(3);
    close(ready[1]);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char name[64] = {};
  const ssize_t got = read(ready[0], name, sizeof name - 1);
  close(ready[0]);
  const std::string leftover(name, got > 0 ? std::size_t(got) : 0);
  ASSERT_EQ(leftover.rfind(std::string(kPrefix) + "-" + std::to_string(child) + "-", 0), 0u)
      << "the child could not create its network: \"" << leftover << "\"";
  EXPECT_TRUE(namespace_exists(leftover));

  // While the child lives its namespaces are its own.
  auto mine = make(Topology::root_and_ns);
  EXPECT_TRUE(namespace_exists(leftover));

  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(namespace_exists(leftover)) << "no destructor ran: the namespaces stay";
  auto next = make(Topology::root_and_ns);
  ASSERT_TRUE(next);
  EXPECT_FALSE(namespace_exists(leftover));
  EXPECT_FALSE(namespace_exists(leftover + "-root"));
}

}  // namespace
}  // namespace axon::testing

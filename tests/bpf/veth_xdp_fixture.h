// The XDP-on-veth tests' common fixture: two test namespaces joined by a veth pair (one
// axon::testing::TestNetwork), this thread moved into the "root" side for the test, and that
// side's ifindex, where the program under test attaches. Each test suite names its prefix.
#pragma once

#include <gtest/gtest.h>
#include <net/if.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "axon/testing/test_network.h"

namespace axon::bpf {

class VethXdpTest : public ::testing::Test {
 protected:
  explicit VethXdpTest(std::string prefix) : prefix_(std::move(prefix)) {}

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "attaching XDP needs root";
    axon::testing::NetworkSpec spec;
    spec.topology = axon::testing::Topology::two_namespaces;
    spec.prefix = prefix_;
    std::string error;
    net_ = axon::testing::TestNetwork::create(spec, error);
    ASSERT_TRUE(net_) << error;
    inside_ = net_->enter_root_ns();
    ASSERT_TRUE(inside_->ok()) << inside_->error();
    ifindex_ = static_cast<int>(if_nametoindex(net_->root_if.c_str()));
    ASSERT_GT(ifindex_, 0);
    ASSERT_EQ(ifindex_, net_->root_ifindex);
  }

  void TearDown() override {
    inside_.reset();  // back to our own namespace before the network goes
    net_.reset();
  }

  [[nodiscard]] const std::string& dev() const { return net_->root_if; }

  std::string prefix_;
  std::unique_ptr<axon::testing::TestNetwork> net_;
  std::unique_ptr<axon::testing::TestNetwork::Entered> inside_;
  int ifindex_ = 0;
};

}  // namespace axon::bpf

// Priority classes end to end (issue 13): the real axon-dataplane with XDP on a veth pair of
// this test's own (axon::it_support), a real echo_worker, and an AXP client in the namespace.
// Interactive requests sent after a background backlog are answered before any of it: the
// engine puts them in the worker's interactive ring and the worker SDK serves that ring first.
//
// With the agent's class_scheduling = false (FIFO, the baseline bench/mixed compares against)
// the same traffic is answered in arrival order.
//
// The worker is SIGSTOPped while the backlog and the interactive requests are queued, so what
// the test checks is the order the worker chose, not how fast anything ran.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "axon/bpf/xdp_program.h"
#include "axon/protocol/packet.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {
namespace {

using protocol::Header;
using protocol::MessageType;
using protocol::Priority;

char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= line.size() ? '?' : line[close_paren + 2];
}

// Parameter: the agent's class_scheduling.
class ClassesIT : public ::testing::TestWithParam<bool> {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    axon::testing::NetworkSpec spec;
    spec.prefix = "axcls";  // this test's own namespaces and links
    net_ = TestNetwork::create(spec, net_error_).release();
  }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: it creates a namespace, a veth pair and attaches XDP";
    ASSERT_NE(net_, nullptr) << "cannot create the test network: " << net_error_;
    dir_ = std::make_unique<TempDir>();
    ASSERT_FALSE(dir_->path().empty());
    daemon_ = std::make_unique<Daemon>(dir_->path());
    std::string error;
    ConfigSpec spec;
    spec.backend = "xdp";
    spec.tables =
        std::string("[[tenants]]\nid = 1\nname = \"t1\"\n\n[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n") +
        "class_scheduling = " + (GetParam() ? "true" : "false") + "\n";
    ASSERT_TRUE(daemon_->start(make_config(*net_, dir_->path(), spec), &error)) << error;
    ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  }

  void TearDown() override {
    if (worker_) worker_->process().signal(SIGCONT);
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

  bool start_worker() {
    worker_ = std::make_unique<Worker>();
    std::string error;
    if (!worker_->start(*daemon_, "w0", 0, &error)) {
      ADD_FAILURE() << "cannot start echo_worker: " << error;
      return false;
    }
    return eventually([&] {
      return daemon_->stats().worker_state(0) == WorkerSlotState::alive &&
             daemon_->stats().worker(0).pid.load() == worker_->pid();
    });
  }

  static TestNetwork* net_;
  static std::string net_error_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<Worker> worker_;
};

TestNetwork* ClassesIT::net_ = nullptr;
std::string ClassesIT::net_error_;

TEST_P(ClassesIT, InteractiveRequestsOvertakeABackgroundBacklogUnlessFifo) {
  ASSERT_TRUE(start_worker());
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
  Header warm = request_header(1, 7);
  ASSERT_TRUE(client.send(warm));
  auto rx = client.receive(kPatience);
  ASSERT_TRUE(rx && rx->header.type == MessageType::response) << "warm-up request not answered";

  ASSERT_TRUE(worker_->process().signal(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(worker_->pid()) == 'T'; })) << "worker did not stop";
  const std::uint64_t submitted_before = daemon_->stats().worker_counter(0, &WorkerStats::submitted);

  // 100 background requests (the ring holds 128), then 4 interactive ones, all queued while
  // the worker is stopped.
  constexpr std::size_t kBackground = 100, kInteractive = 4;
  std::map<std::uint64_t, Priority> sent;
  for (std::size_t i = 0; i < kBackground + kInteractive; ++i) {
    Header h = request_header(1, 7);
    h.priority = i < kBackground ? Priority::background : Priority::interactive;
    auto payload = pattern_payload(32, std::uint8_t(i));
    ASSERT_TRUE(client.send(h, payload));
    sent.emplace(h.request_id, h.priority);
  }
  ASSERT_TRUE(eventually([&] {
    return daemon_->stats().worker_counter(0, &WorkerStats::submitted) - submitted_before == kBackground + kInteractive;
  })) << "not every request reached the worker's rings (BUSY?)";
  EXPECT_FALSE(client.receive(50ms)) << "a reply arrived while the worker was stopped";

  ASSERT_TRUE(worker_->process().signal(SIGCONT));
  auto replies = client.receive_n(kBackground + kInteractive, kPatience);
  ASSERT_EQ(replies.size(), kBackground + kInteractive);
  std::string order;
  for (const Received& r : replies) {
    ASSERT_EQ(r.header.type, MessageType::response) << "request " << r.header.request_id;
    ASSERT_TRUE(sent.contains(r.header.request_id));
    EXPECT_EQ(r.header.priority, sent[r.header.request_id]) << "the reply echoes the priority";
    order += sent[r.header.request_id] == Priority::interactive ? 'I' : 'B';
  }
  if (GetParam()) {
    // The worker found both rings full on resume: the interactive ring first.
    EXPECT_EQ(order, std::string(kInteractive, 'I') + std::string(kBackground, 'B'));
  } else {
    // FIFO: one ring, arrival order.
    EXPECT_EQ(order, std::string(kBackground, 'B') + std::string(kInteractive, 'I'));
  }
}

INSTANTIATE_TEST_SUITE_P(ClassScheduling, ClassesIT, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return std::string(param.param ? "Classes" : "Fifo");
                         });

}  // namespace
}  // namespace axon::dataplane::it

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
#include "axon/testing/dataplane_it.h"

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
class ClassesIT : public DataplaneIT<ClassesIT, ::testing::TestWithParam<bool>> {
 protected:
  static void SetUpTestSuite() {
    axon::testing::NetworkSpec spec;
    spec.prefix = "axcls";  // this test's own namespaces and links
    create_network(spec);
  }

  void SetUp() override {
    DataplaneIT::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ConfigSpec spec;
    spec.backend = "xdp";
    spec.tables =
        std::string("[[tenants]]\nid = 1\nname = \"t1\"\n\n[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n") +
        "class_scheduling = " + (GetParam() ? "true" : "false") + "\n";
    start_daemon(spec);
  }
};

TEST_P(ClassesIT, InteractiveRequestsOvertakeABackgroundBacklogUnlessFifo) {
  Worker* worker = start_worker("w0", 0);
  ASSERT_NE(worker, nullptr);
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
  Header warm = request_header(1, 7);
  ASSERT_TRUE(client.send(warm));
  auto rx = client.receive(kPatience);
  ASSERT_TRUE(rx && rx->header.type == MessageType::response) << "warm-up request not answered";

  ASSERT_TRUE(worker->process().signal(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(worker->pid()) == 'T'; })) << "worker did not stop";
  const std::uint64_t submitted_before = stats().worker_counter(0, &WorkerStats::submitted);

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
    return stats().worker_counter(0, &WorkerStats::submitted) - submitted_before == kBackground + kInteractive;
  })) << "not every request reached the worker's rings (BUSY?)";
  EXPECT_FALSE(client.receive(50ms)) << "a reply arrived while the worker was stopped";

  ASSERT_TRUE(worker->process().signal(SIGCONT));
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

// The engine's interactive-first handling of one rx burst (docs/scheduling.md): an Lcore over
// a scripted Port (a fake beside real parts: real worker segments, the real stats file, the
// real parser, route table and dispatch), so that two requests arrive in the same burst every
// time, which no wire can promise.
//
// Two workers, the agent's reservation holds one of them for interactive requests. A burst of
// [background, interactive]: handled in arrival order, the background request takes an idle
// worker (two are idle, one may go) and the interactive one the other; interactive first, the
// interactive request takes a worker and the background one may then only queue behind it
// (the last idle worker is reserved). So where the requests land tells the order apart.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "axon/dataplane/engine.h"
#include "axon/dataplane/stats.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane {
namespace {

// Hands out one scripted burst, then nothing; has no TX frames (replies are not under test).
class ScriptedPort final : public Port {
 public:
  explicit ScriptedPort(std::vector<std::vector<std::uint8_t>> burst) : burst_(std::move(burst)) {}
  std::uint32_t rx_burst(Frame* frames, std::uint32_t max) noexcept override {
    if (delivered_) return 0;
    delivered_ = true;
    std::uint32_t n = 0;
    for (auto& bytes : burst_) {
      if (n == max) break;
      frames[n] = Frame{bytes.data(), std::uint32_t(bytes.size()), 0};
      ++n;
    }
    return n;
  }
  void rx_release(const Frame*, std::uint32_t) noexcept override {}
  std::uint32_t tx_alloc_burst(Frame*, std::uint32_t) noexcept override { return 0; }
  std::uint32_t tx_burst(const Frame*, std::uint32_t) noexcept override { return 0; }
  void tx_free(const Frame*, std::uint32_t) noexcept override {}
  void poll_completions() noexcept override {}
  PortInfo info() const override { return PortInfo{"scripted", "test", "none", 0, 2048}; }
  PortCounters counters() const noexcept override { return {}; }

 private:
  std::vector<std::vector<std::uint8_t>> burst_;
  bool delivered_ = false;
};

std::vector<std::uint8_t> request_frame(protocol::Priority priority) {
  protocol::Header h = it::request_header(1, 7);
  h.priority = priority;
  it::FrameSpec spec;
  spec.dst_mac = {0x02, 0, 0, 0, 0, 1};
  spec.src_mac = {0x02, 0, 0, 0, 0, 2};
  inet_pton(AF_INET, "10.199.0.2", &spec.src);
  inet_pton(AF_INET, "10.199.0.1", &spec.dst);
  return it::build_ipv4_frame(spec, it::encode(h));
}

class EngineOrder : public ::testing::Test {
 protected:
  // Runs one poll of an lcore over two alive workers and returns each one's queued requests.
  std::vector<std::uint64_t> run(bool class_scheduling, std::vector<std::vector<std::uint8_t>> burst) {
    DataplaneConfig config;
    config.interface = "none";
    config.geometry = shm::SegmentGeometry{128, 128, 16, 2048, 256, 65536, 4};
    config.workers = {{"w0"}, {"w1"}};
    config.tenants = {model::Tenant{1, "t", 0, 0, {}}};
    model::Route agent{7, 1, "a", {"w0", "w1"}, {}};
    agent.scheduling.dispatch = model::Dispatch::p2c;
    agent.scheduling.reserved_interactive = 1;
    agent.scheduling.class_scheduling = class_scheduling;
    config.agents = {agent};

    it::TempDir dir;
    auto stats = StatsFile::create(dir.path() + "/dataplane.stats", 1, 2);
    EXPECT_TRUE(stats.ok()) << stats.message();
    if (!stats.ok()) return {};
    EngineShared shared(config, 1);
    shared.stats = stats->view();
    auto slots = create_worker_slots(shared, 1, -1);
    EXPECT_TRUE(slots.ok()) << slots.message();
    if (!slots.ok()) return {};
    for (auto& w : shared.workers) w->state.store(std::uint32_t(WorkerSlotState::alive));
    auto table = RouteTable::build(shared.config);
    EXPECT_TRUE(table.ok()) << table.message();
    if (!table.ok()) return {};
    shared.routes.publish(std::move(table).value());

    ScriptedPort port(std::move(burst));
    Lcore lcore(0, port, shared);
    std::vector<Lcore*> lcores{&lcore};
    Lcore::connect(lcores);
    (void)lcore.poll_once();
    std::vector<std::uint64_t> depth;
    for (auto& w : shared.workers) depth.push_back(w->channel->request_depth());
    return depth;
  }
};

TEST_F(EngineOrder, InteractiveIsDispatchedBeforeTheBurstsBackgroundRequests) {
  // Background first on the wire, interactive second, in one burst; repeated, since p2c draws
  // its first worker at random.
  for (int round = 0; round < 8; ++round) {
    auto depth =
        run(true, {request_frame(protocol::Priority::background), request_frame(protocol::Priority::interactive)});
    ASSERT_EQ(depth.size(), 2u);
    EXPECT_EQ(depth[0] + depth[1], 2u) << "both requests queued";
    // Interactive took a worker first; background could then only queue behind it.
    EXPECT_TRUE((depth[0] == 2 && depth[1] == 0) || (depth[0] == 0 && depth[1] == 2))
        << "w0 " << depth[0] << ", w1 " << depth[1] << ": the background request was dispatched first";
  }
}

// Without class scheduling (the FIFO baseline) arrival order stands and nothing is reserved.
TEST_F(EngineOrder, WithoutClassSchedulingArrivalOrderStands) {
  for (int round = 0; round < 8; ++round) {
    auto depth =
        run(false, {request_frame(protocol::Priority::background), request_frame(protocol::Priority::interactive)});
    ASSERT_EQ(depth.size(), 2u);
    // Background took one idle worker (no reservation), interactive the other (p2c: shallower).
    EXPECT_EQ(depth[0], 1u);
    EXPECT_EQ(depth[1], 1u);
  }
}

}  // namespace
}  // namespace axon::dataplane

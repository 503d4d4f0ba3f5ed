// Per-stage latency histograms end to end (issue 15): the real axon-dataplane with XDP on a
// veth pair of this test's own (prefix axhis), a real echo_worker and an AXP client in the
// namespace. After N requests of each class every stage histogram of that class holds N
// samples, the stages of each request add up to its total, and the handler stage holds at
// least the handler's known busy time. With [telemetry] stage_latency = false nothing is
// recorded while requests are still answered.
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "axon/bpf/xdp_program.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {
namespace {

using protocol::Header;
using protocol::MessageType;
using protocol::Priority;

constexpr std::uint64_t kWorkNs = 200'000;  // echo_worker's busy spin per request
constexpr std::size_t kPerClass = 30;

// Parameter: [telemetry] stage_latency.
class StageLatencyIT : public ::testing::TestWithParam<bool> {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    axon::testing::NetworkSpec spec;
    spec.prefix = "axhis";  // axhist, in the fixture's 5 characters
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
    daemon_ = std::make_unique<Daemon>(dir_->path());
    ConfigSpec spec;
    spec.backend = "xdp";
    std::string config = make_config(*net_, dir_->path(), spec);
    config += std::string("\n[telemetry]\nstage_latency = ") + (GetParam() ? "true" : "false") + "\n";
    std::string error;
    ASSERT_TRUE(daemon_->start(config, &error)) << error;
    ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
    worker_ = std::make_unique<Worker>();
    ASSERT_TRUE(worker_->start(*daemon_, "w0", kWorkNs, &error)) << error;
    ASSERT_TRUE(eventually([&] { return daemon_->stats().worker_state(0) == WorkerSlotState::alive; }));
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      EXPECT_EQ(daemon_->stop(), std::optional<int>(0));
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
      if (dir_) dir_->keep();
    }
    worker_.reset();
    daemon_.reset();
    dir_.reset();
  }

  // kPerClass requests of each class, in small bursts, every one answered RESPONSE.
  void send_requests() {
    AxpClient client(*net_, AF_INET);
    ASSERT_TRUE(client.ok());
    ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
    for (std::size_t i = 0; i < 2 * kPerClass; i += 4) {
      for (std::size_t k = i; k < i + 4 && k < 2 * kPerClass; ++k) {
        Header h = request_header(1, 7);
        h.priority = k % 2 == 0 ? Priority::interactive : Priority::background;
        ASSERT_TRUE(client.send(h, pattern_payload(64, std::uint8_t(k))));
      }
      auto replies = client.receive_n(std::min<std::size_t>(4, 2 * kPerClass - i), kPatience);
      for (const Received& r : replies) ASSERT_EQ(r.header.type, MessageType::response);
    }
  }

  static TestNetwork* net_;
  static std::string net_error_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<Worker> worker_;
};

TestNetwork* StageLatencyIT::net_ = nullptr;
std::string StageLatencyIT::net_error_;

TEST_P(StageLatencyIT, EveryStageHasOneSamplePerRequestAndTheStagesAddUpToTheTotal) {
  ASSERT_NO_FATAL_FAILURE(send_requests());
  StatsReader& stats = daemon_->stats();
  ASSERT_TRUE(eventually([&] { return stats.lcores(&LcoreStats::responses) == 2 * kPerClass; }));
  if (!GetParam()) {
    EXPECT_FALSE(stats.stage_latency_enabled());
    for (std::size_t s = 0; s < kStageCount; ++s) {
      EXPECT_EQ(stats.stage_latency(Stage(s)).count, 0u) << to_string(Stage(s)) << " recorded while disabled";
    }
    return;
  }
  EXPECT_TRUE(stats.stage_latency_enabled());
  // [xdp] rx_stamp (on by default): every request's first hop is the XDP hook's stamp, carried in
  // the frame's metadata through AF_XDP; none was stale.
  EXPECT_EQ(stats.lcores(&LcoreStats::rx_hook_stamped), 2 * kPerClass);
  EXPECT_EQ(stats.lcores(&LcoreStats::rx_hook_stamp_rejected), 0u);
  // Egress and total are recorded once the reply frame left; the client may see it first.
  ASSERT_TRUE(eventually([&] { return stats.stage_latency(Stage::total).count == 2 * kPerClass; }))
      << stats.stage_latency(Stage::total).count;
  for (std::size_t klass = 0; klass < kClassCount; ++klass) {
    std::uint64_t parts = 0;
    std::string breakdown;
    const StageTotals total = stats.stage_latency(Stage::total, klass);
    for (std::size_t s = 0; s < kStageCount; ++s) {
      const StageTotals t = stats.stage_latency(Stage(s), klass);
      EXPECT_EQ(t.count, kPerClass) << to_string(Stage(s)) << " class " << klass;
      EXPECT_LE(t.sum_ns, total.sum_ns) << to_string(Stage(s)) << " longer than the total";
      EXPECT_LE(t.quantile_ns(0.5), total.quantile_ns(1.0) * (1 + 1.0 / 32)) << to_string(Stage(s));
      if (Stage(s) != Stage::total) parts += t.sum_ns;
      breakdown +=
          std::string(" ") + to_string(Stage(s)) + "=" + std::to_string(t.sum_ns) + "/" + std::to_string(t.buckets[0]);
    }
    // Every hop is stamped from CLOCK_MONOTONIC, so the stages telescope exactly to the total.
    EXPECT_EQ(parts, total.sum_ns) << "class " << klass << ", sum/zero samples:" << breakdown;
    // The handler spun kWorkNs per request: no handler sample is shorter (within the bound).
    EXPECT_GE(stats.stage_latency(Stage::handler, klass).quantile_ns(0.0), double(kWorkNs) * (1 - 1.0 / 64));
  }
  // axon-dataplane-stats --json (what the quickstart's summary prints) shows the same figures.
  std::string out;
  ASSERT_EQ(run_command({AXON_DATAPLANE_STATS_BIN, "--run-dir", daemon_->run_dir(), "--json"}, &out), 0) << out;
  const auto json = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << out;
  EXPECT_EQ(json["stage_latency"]["enabled"], true) << out;
  const auto& handler = json["stage_latency"]["stages"]["handler"];
  EXPECT_EQ(handler["interactive"]["count"], kPerClass) << out;
  EXPECT_EQ(handler["all"]["count"], 2 * kPerClass) << out;
  EXPECT_NEAR(handler["all"]["p50_us"].get<double>(), stats.stage_latency(Stage::handler).quantile_ns(0.5) / 1000.0,
              0.001)
      << out;
}

INSTANTIATE_TEST_SUITE_P(Telemetry, StageLatencyIT, ::testing::Bool(), [](const ::testing::TestParamInfo<bool>& param) {
  return std::string(param.param ? "On" : "Off");
});

}  // namespace
}  // namespace axon::dataplane::it

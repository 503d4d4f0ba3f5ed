// axonctl top's frame (top_view.h) on hand-made GET /v1/top samples: rates from two samples,
// interval quantiles from bucket deltas, the 80x24 fit with "+N more", a restarted data plane.
#include <gtest/gtest.h>

#include "top_view.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

json sample(std::uint64_t at_ms, std::uint64_t requests, std::size_t lcores, std::size_t workers,
            std::uint64_t bucket_count) {
  json j{{"sampled_at_ms", at_ms},
         {"dataplane",
          {{"ready", true},
           {"backend", "xdp"},
           {"mode", "copy"},
           {"interface", "eth0"},
           {"rx_frames", requests},
           {"requests", requests},
           {"responses", requests},
           {"busy_sent", 0},
           {"errors_sent", 0},
           {"drops", 0}}},
         {"drops", {{"bad_magic", requests / 10}, {"ip_truncated", 0}}},
         {"busy", {{"ring_full", 0}}}};
  j["lcores"] = json::array();
  for (std::size_t i = 0; i < lcores; ++i) {
    j["lcores"].push_back({{"lcore", i},
                           {"rx_frames", requests},
                           {"requests", requests},
                           {"responses", requests},
                           {"busy_sent", 0},
                           {"errors_sent", 0},
                           {"drops", 0},
                           {"loops", requests * 4},
                           {"idle_loops", requests * 3}});
  }
  j["workers"] = json::array();
  for (std::size_t i = 0; i < workers; ++i) {
    j["workers"].push_back({{"id", "echo-" + std::to_string(i)},
                            {"agent", "echo"},
                            {"slot", "s"},
                            {"class", "standard"},
                            {"state", "busy"},
                            {"ring_depth", 3},
                            {"ring_depth_interactive", 2},
                            {"ring_depth_background", 1},
                            {"inflight", 1},
                            {"completed", requests}});
  }
  // 98 samples in [1024, 2048) ns and 2 in [65536, 131072) per 100 counted.
  j["stages"] = json::array({{{"stage", "in_plane"},
                              {"class", "all"},
                              {"source", "pow2"},
                              {"count", bucket_count},
                              {"sum_ns", 0},
                              {"buckets", json::array({json::array({1024, 1024, bucket_count / 100 * 98}),
                                                       json::array({65536, 65536, bucket_count / 100 * 2})})}}});
  return j;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(TopView, RatesAreDeltasOverTheSampleInterval) {
  const auto lines = render_top(sample(1000, 1000, 1, 1, 0), sample(3000, 5000, 1, 1, 0), TopLayout{});
  const std::string text = joined(lines);
  EXPECT_NE(text.find("req/s 2000 "), std::string::npos) << text;  // 4000 over 2 s
  EXPECT_NE(text.find("bad_magic 200"), std::string::npos) << text;
  EXPECT_NE(text.find(" 25%"), std::string::npos) << "busy % = 1 - idle/loops\n" << text;
  EXPECT_NE(text.find("BUSY/s   none"), std::string::npos) << text;
  // The worker's ring depth in total and per class (interactive/background).
  EXPECT_NE(text.find("INT/BG"), std::string::npos) << text;
  EXPECT_NE(text.find("     3      2/1     1"), std::string::npos) << text;
}

TEST(TopView, QuantilesDescribeTheIntervalNotTheLifetime) {
  // Before: 10000 samples all slow ([65536, 131072) ns); in between: 100 fast ones.
  json before = sample(0, 0, 1, 0, 0);
  before["stages"][0]["buckets"] = json::array({json::array({65536, 65536, 10000})});
  json after = before;
  after["stages"][0]["buckets"] = json::array({json::array({1024, 1024, 100}), json::array({65536, 65536, 10000})});
  EXPECT_EQ(interval_quantile_ns(before["stages"][0], after["stages"][0], 0.99), 2048.0);  // pow2: upper edge
  EXPECT_LT(interval_quantile_ns(json(), after["stages"][0], 0.99), 0.0 + 131073);
  EXPECT_EQ(interval_quantile_ns(after["stages"][0], after["stages"][0], 0.5), -1) << "nothing recorded in between";
  // Finer buckets answer their midpoint.
  after["stages"][0]["source"] = "log_linear";
  EXPECT_EQ(interval_quantile_ns(before["stages"][0], after["stages"][0], 0.5), 1024 + 1023 / 2.0);
}

TEST(TopView, FitsEightyByTwentyFourWithMoreLines) {
  const auto lines = render_top(sample(0, 0, 9, 40, 100), sample(1000, 100, 9, 40, 300), TopLayout{80, 24});
  const std::string text = joined(lines);
  EXPECT_LE(lines.size(), 24u) << text;
  for (const auto& l : lines) EXPECT_LE(l.size(), 80u) << l;
  EXPECT_NE(text.find("+6 more lcores"), std::string::npos) << text;
  EXPECT_NE(text.find("more workers"), std::string::npos) << text;
  for (const auto& l : lines) {
    if (l.rfind("echo-", 0) == 0) {
      EXPECT_NE(l.back(), '-') << "every worker has a rate: " << l;
    }
  }
  EXPECT_NE(text.find("<2.05us"), std::string::npos) << "p50 of the interval\n" << text;
  EXPECT_NE(text.find("<131us"), std::string::npos) << "p99 of the interval\n" << text;
}

TEST(TopView, WithoutAScreenEveryRowIsShown) {
  const auto lines = render_top(sample(0, 0, 9, 40, 0), sample(1000, 100, 9, 40, 0), TopLayout{80, 0});
  const std::string text = joined(lines);
  EXPECT_EQ(text.find("more"), std::string::npos) << text;
  EXPECT_NE(text.find("echo-39"), std::string::npos) << text;
}

TEST(TopView, ARestartedDataPlaneShowsNoRateRatherThanANegativeOne) {
  const std::string text = joined(render_top(sample(0, 5000, 1, 1, 0), sample(1000, 10, 1, 1, 0), TopLayout{}));
  EXPECT_NE(text.find("req/s - "), std::string::npos) << text;
  EXPECT_EQ(text.find("e+"), std::string::npos) << text;
}

}  // namespace
}  // namespace axon::ctl

namespace axon::ctl {
namespace {

TEST(TopView, ALightlyLoadedLcoreShowsATenthOfAPercent) {
  nlohmann::json before = sample(0, 0, 1, 0, 0), after = sample(1000, 1000, 1, 0, 0);
  after["lcores"][0]["loops"] = 100000;
  after["lcores"][0]["idle_loops"] = 99500;
  const std::string text = joined(render_top(before, after, TopLayout{}));
  EXPECT_NE(text.find(" 0.5%"), std::string::npos) << text;
}

}  // namespace
}  // namespace axon::ctl

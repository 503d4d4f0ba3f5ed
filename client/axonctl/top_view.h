// axonctl top's screen: one frame rendered from two GET /v1/top samples. Rates are counter
// deltas over the samples' sampled_at_ms difference; latency quantiles come from the histogram
// bucket deltas, so they describe the interval, not the process's life. Pure (no I/O), so the
// layout rules (width, height, "+N more") are tested on their own.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace axon::ctl {

struct TopLayout {
  std::size_t width = 80;   // no line is longer
  std::size_t height = 24;  // at most this many lines; 0 = no limit (not a terminal)
};

// The frame's lines (no newlines, no escape codes). `previous` may be null: rates then show "-".
std::vector<std::string> render_top(const nlohmann::json& previous, const nlohmann::json& current,
                                    const TopLayout& layout);

// Quantile q of the histogram growth between two stage entries ({"buckets": [[lower, width,
// count], ...]}), in ns; negative when nothing was recorded in between. pow2 buckets give
// their upper edge (an upper bound), finer buckets their midpoint.
double interval_quantile_ns(const nlohmann::json& previous_stage, const nlohmann::json& stage, double q);

// 850 -> "850ns", 12345 -> "12.3us", 4194304 -> "4.19ms", 2.5e9 -> "2.50s".
std::string format_ns(double ns);

}  // namespace axon::ctl

// GET /v1/top (ControlPlane::top) and the stats-segment reader behind it (top_snapshot.h).
#include <time.h>

#include "axon/dataplane/latency_histogram.h"

#include "api/json.h"
#include "control_plane.h"
#include "top_snapshot.h"

namespace axon::controlplane {
namespace {

std::int64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The data plane's per-stage log-linear histograms (latency_histogram.h): one entry per stage
// with both classes merged ("all"), then one per stage and class. Buckets are at most 1/32 of
// their lower edge wide, so a quantile read as a bucket midpoint is within 1.6%.
TopStage stage_entry(const dataplane::StageTotals& t, dataplane::Stage stage, const char* klass) {
  TopStage s;
  s.stage = dataplane::to_string(stage);
  s.klass = klass;
  s.source = "log_linear";
  s.count = t.count;
  s.sum_ns = t.sum_ns;
  for (std::uint32_t b = 0; b < dataplane::kHistogramBuckets; ++b) {
    if (t.buckets[b] == 0) continue;
    s.buckets.push_back(TopBucket{dataplane::histogram_lower(b), dataplane::histogram_width(b), t.buckets[b]});
  }
  return s;
}

void add_stages(TopSnapshot& top, const dataplane::StatsReader& stats) {
  for (std::size_t i = 0; i < dataplane::kStageCount; ++i) {
    top.stages.push_back(stage_entry(stats.stage_latency(dataplane::Stage(i)), dataplane::Stage(i), "all"));
  }
  for (std::size_t i = 0; i < dataplane::kStageCount; ++i) {
    for (std::size_t c = 0; c < dataplane::kClassCount; ++c) {
      top.stages.push_back(stage_entry(stats.stage_latency(dataplane::Stage(i), c), dataplane::Stage(i),
                                       c == 0 ? "interactive" : "background"));
    }
  }
}

}  // namespace

void fill_top_from_stats(TopSnapshot& top, const dataplane::StatsReader& stats) {
  using dataplane::LcoreStats;
  for (std::uint32_t i = 0; i < stats.lcore_count(); ++i) {
    TopLcore l;
    l.lcore = i;
    l.rx_frames = stats.lcore(i, &LcoreStats::rx_frames);
    l.requests = stats.lcore(i, &LcoreStats::requests);
    l.responses = stats.lcore(i, &LcoreStats::responses);
    l.busy_sent = stats.lcore(i, &LcoreStats::busy_sent);
    l.loops = stats.lcore(i, &LcoreStats::loops);
    l.idle_loops = stats.lcore(i, &LcoreStats::idle_loops);
    const LcoreStats& block = stats.lcore(i);
    for (const auto& c : block.errors_sent) l.errors_sent += c.load(std::memory_order_relaxed);
    for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
      if (protocol::is_drop(protocol::Reason(r))) l.drops += block.drops[r].load(std::memory_order_relaxed);
    }
    top.lcores.push_back(l);
  }
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
    const auto reason = protocol::Reason(r);
    if (!protocol::is_drop(reason)) continue;
    top.drops[protocol::to_string(reason)] = stats.xdp(reason) + stats.lcore_drops(reason);
  }
  const auto totals = stats.totals();
  for (std::size_t b = 0; b < dataplane::kBusyReasonCount; ++b) {
    top.busy[dataplane::to_string(dataplane::BusyReason(b))] = totals.busy_reasons[b];
  }
  add_stages(top, stats);
}

ApiResult<TopSnapshot> ControlPlane::top() {
  std::lock_guard lock(mutex_);
  const dataplane::StatsReader* stats = link_.stats();
  if (stats == nullptr) {
    return api_error(ApiErrorCode::unavailable,
                     "no data plane stats mapped yet: start axon-dataplane (see GET /v1/status, dataplane.connected)");
  }
  TopSnapshot top;
  top.sampled_at_ms = monotonic_ms();
  link_.fill(top.dataplane);
  fill_top_from_stats(top, *stats);
  for (const auto& [id, w] : workers_) {
    const WorkerInfo info = worker_info(w);
    TopWorker t{info.id,
                info.agent,
                info.slot,
                "",
                info.state,
                info.ring_depth,
                info.inflight,
                info.completed,
                info.ring_depth_interactive,
                info.ring_depth_background};
    if (const auto a = registry_.agents().find(w.agent); a != registry_.agents().end()) {
      t.klass = json_io::to_string(a->second.priority);
    }
    top.workers.push_back(std::move(t));
  }
  return top;
}

}  // namespace axon::controlplane

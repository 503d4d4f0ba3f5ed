// axon-dataplane-stats: reads a running data plane's stats file and prints totals, a live
// line per interval, or JSON. Read-only: it never disturbs the data plane.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "axon/dataplane/stats_reader.h"

namespace {

using axon::dataplane::LcoreTotals;
using axon::dataplane::StatsReader;
namespace protocol = axon::protocol;

std::uint64_t load(const axon::dataplane::Counter& c) {
  return c.load(std::memory_order_relaxed);
}

using axon::dataplane::Stage;
using axon::dataplane::StageTotals;

// The change of a histogram between two reads (a --watch window).
StageTotals minus(const StageTotals& now, const StageTotals& before) {
  StageTotals d;
  for (std::uint32_t b = 0; b < axon::dataplane::kHistogramBuckets; ++b)
    d.buckets[b] = now.buckets[b] - before.buckets[b];
  d.sum_ns = now.sum_ns - before.sum_ns;
  d.count = now.count - before.count;
  return d;
}

void print_stage_json(const StageTotals& t) {
  std::printf("{\"count\":%llu,\"p50_us\":%.3f,\"p99_us\":%.3f,\"mean_us\":%.3f}",
              static_cast<unsigned long long>(t.count), t.quantile_ns(0.5) / 1000.0, t.quantile_ns(0.99) / 1000.0,
              t.count == 0 ? 0.0 : double(t.sum_ns) / double(t.count) / 1000.0);
}

// "stage_latency":{"enabled":..,"stages":{"<stage>":{"interactive":..,"background":..,"all":..}}}
void print_stages_json(const StatsReader& stats) {
  std::printf(",\"stage_latency\":{\"enabled\":%s,\"stages\":{", stats.stage_latency_enabled() ? "true" : "false");
  for (std::size_t s = 0; s < axon::dataplane::kStageCount; ++s) {
    const StageTotals interactive = stats.stage_latency(Stage(s), 0);
    const StageTotals background = stats.stage_latency(Stage(s), 1);
    StageTotals all = interactive;
    all.merge(background);
    std::printf("%s\"%s\":{\"interactive\":", s == 0 ? "" : ",", axon::dataplane::to_string(Stage(s)));
    print_stage_json(interactive);
    std::printf(",\"background\":");
    print_stage_json(background);
    std::printf(",\"all\":");
    print_stage_json(all);
    std::printf("}");
  }
  std::printf("}}");
}

// One line of p50/p99 per stage, both classes merged; nothing when no stage has samples.
void print_stages_text(const StatsReader& stats) {
  std::string line;
  for (std::size_t s = 0; s < axon::dataplane::kStageCount; ++s) {
    const StageTotals t = stats.stage_latency(Stage(s));
    if (t.count == 0) continue;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s %.1f/%.1f", line.empty() ? "" : "  ", axon::dataplane::to_string(Stage(s)),
                  t.quantile_ns(0.5) / 1000.0, t.quantile_ns(0.99) / 1000.0);
    line += buf;
  }
  if (!line.empty()) std::printf("stage latency p50/p99 us: %s\n", line.c_str());
}

std::string drops_text(const StatsReader& stats, const LcoreTotals& t) {
  std::string out;
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
    auto reason = static_cast<protocol::Reason>(r);
    if (!protocol::is_drop(reason)) continue;
    std::uint64_t n = stats.xdp(reason) + t.drops[r];
    if (n == 0) continue;
    if (!out.empty()) out += ' ';
    out += std::string(protocol::to_string(reason)) + "=" + std::to_string(n);
  }
  return out.empty() ? "none" : out;
}

void print_json(const StatsReader& stats, const LcoreTotals& t) {
  const auto& h = stats.header();
  std::printf("{\"interface\":\"%s\",\"backend\":\"%s\",\"mode\":\"%s\",\"alive\":%u,\"ready\":%u,\"xdp_attached\":%u,",
              h.interface, h.backend, h.port_mode, stats.alive() ? 1u : 0u, stats.ready() ? 1u : 0u,
              h.xdp_attached.load());
  std::printf(
      "\"rx_frames\":%llu,\"requests\":%llu,\"responses\":%llu,\"busy\":%llu,\"tx_dropped\":%llu,"
      "\"late_replies\":%llu,\"trace_context_invalid\":%llu,\"rx_hook_stamped\":%llu,"
      "\"rx_hook_stamp_rejected\":%llu,",
      static_cast<unsigned long long>(t.rx_frames), static_cast<unsigned long long>(t.requests),
      static_cast<unsigned long long>(t.responses), static_cast<unsigned long long>(t.busy_sent),
      static_cast<unsigned long long>(t.tx_dropped), static_cast<unsigned long long>(t.late_replies),
      static_cast<unsigned long long>(t.trace_context_invalid), static_cast<unsigned long long>(t.rx_hook_stamped),
      static_cast<unsigned long long>(t.rx_hook_stamp_rejected));
  std::printf("\"errors\":{");
  bool first = true;
  for (std::size_t e = 1; e < protocol::kErrorCodeCount; ++e) {
    std::printf("%s\"%s\":%llu", first ? "" : ",", protocol::to_string(static_cast<protocol::ErrorCode>(e)),
                static_cast<unsigned long long>(t.errors_sent[e]));
    first = false;
  }
  std::printf("},\"xdp\":{");
  first = true;
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
    std::printf("%s\"%s\":%llu", first ? "" : ",", protocol::to_string(static_cast<protocol::Reason>(r)),
                static_cast<unsigned long long>(stats.xdp(static_cast<protocol::Reason>(r))));
    first = false;
  }
  std::printf("},\"xdp_class\":{");
  for (auto klass : {protocol::Priority::interactive, protocol::Priority::background}) {
    std::printf("%s\"%s\":{", klass == protocol::Priority::interactive ? "" : ",",
                klass == protocol::Priority::interactive ? "interactive" : "background");
    for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
      std::printf("%s\"%s\":%llu", r == 0 ? "" : ",", protocol::to_string(static_cast<protocol::Reason>(r)),
                  static_cast<unsigned long long>(stats.xdp(klass, static_cast<protocol::Reason>(r))));
    }
    std::printf("}");
  }
  std::printf("},\"userspace_drops\":{");
  first = true;
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
    std::printf("%s\"%s\":%llu", first ? "" : ",", protocol::to_string(static_cast<protocol::Reason>(r)),
                static_cast<unsigned long long>(t.drops[r]));
    first = false;
  }
  std::printf(
      "},\"tx_backpressure\":%llu,\"port\":{\"rx_dropped\":%llu,\"tx_errors\":%llu},\"device\":{\"rx_missed\":%llu,"
      "\"rx_nombuf\":%llu,"
      "\"rx_errors\":%llu,\"tx_errors\":%llu}",
      static_cast<unsigned long long>(t.tx_backpressure), static_cast<unsigned long long>(t.port_rx_dropped),
      static_cast<unsigned long long>(t.port_tx_errors), static_cast<unsigned long long>(load(h.device_rx_missed)),
      static_cast<unsigned long long>(load(h.device_rx_nombuf)),
      static_cast<unsigned long long>(load(h.device_rx_errors)),
      static_cast<unsigned long long>(load(h.device_tx_errors)));
  std::printf(",\"busy_reasons\":{");
  for (std::size_t b = 0; b < axon::dataplane::kBusyReasonCount; ++b) {
    std::printf("%s\"%s\":%llu", b == 0 ? "" : ",", axon::dataplane::to_string(axon::dataplane::BusyReason(b)),
                static_cast<unsigned long long>(t.busy_reasons[b]));
  }
  std::printf("},\"deadline_refused\":{\"expired\":%llu,\"unmeetable\":%llu}",
              static_cast<unsigned long long>(t.deadline_expired),
              static_cast<unsigned long long>(t.deadline_unmeetable));
  std::printf(
      ",\"reassembly\":{\"reassembled\":%llu,\"reply_segments\":%llu,\"bytes\":%llu,\"messages\":%llu,"
      "\"lcore_bytes\":[",
      static_cast<unsigned long long>(t.reassembled), static_cast<unsigned long long>(t.reply_segments),
      static_cast<unsigned long long>(t.reassembly_bytes), static_cast<unsigned long long>(t.reassembly_messages));
  for (std::uint32_t l = 0; l < stats.lcore_count(); ++l) {
    std::printf("%s%llu", l == 0 ? "" : ",",
                static_cast<unsigned long long>(stats.lcore(l, &axon::dataplane::LcoreStats::reassembly_bytes)));
  }
  std::printf("]}");
  std::printf(
      ",\"dedup\":{\"misses\":%llu,\"absorbed\":%llu,\"hits\":%llu,\"tombstone_hits\":%llu,\"untracked\":%llu,"
      "\"evictions\":%llu,\"arena_bytes\":%llu,\"entries\":%llu}",
      static_cast<unsigned long long>(t.dedup_misses), static_cast<unsigned long long>(t.dedup_absorbed),
      static_cast<unsigned long long>(t.dedup_hits), static_cast<unsigned long long>(t.dedup_tombstone_hits),
      static_cast<unsigned long long>(t.dedup_untracked), static_cast<unsigned long long>(t.dedup_evictions),
      static_cast<unsigned long long>(t.dedup_arena_bytes), static_cast<unsigned long long>(t.dedup_entries));
  const StageTotals hit = stats.cache_hit_latency();
  std::printf(
      ",\"response_cache\":{\"hits\":%llu,\"misses\":%llu,\"insertions\":%llu,\"evictions\":%llu,"
      "\"expirations\":%llu,\"invalidations\":%llu,\"bytes\":%llu,\"entries\":%llu,"
      "\"hit_latency_us\":{\"count\":%llu,\"p50\":%.1f,\"p99\":%.1f}}",
      static_cast<unsigned long long>(t.cache_hits), static_cast<unsigned long long>(t.cache_misses),
      static_cast<unsigned long long>(t.cache_insertions), static_cast<unsigned long long>(t.cache_evictions),
      static_cast<unsigned long long>(t.cache_expirations), static_cast<unsigned long long>(t.cache_invalidations),
      static_cast<unsigned long long>(t.cache_bytes), static_cast<unsigned long long>(t.cache_entries),
      static_cast<unsigned long long>(hit.count), hit.quantile_ns(0.5) / 1000.0, hit.quantile_ns(0.99) / 1000.0);
  const StageTotals total = stats.stage_latency(Stage::total);
  std::printf(",\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f}", total.quantile_ns(0.5) / 1000.0,
              total.quantile_ns(0.99) / 1000.0);
  print_stages_json(stats);
  std::printf(",\"workers\":[");
  for (std::uint32_t w = 0; w < stats.worker_count(); ++w) {
    const auto& ws = stats.worker(w);
    const auto state = axon::dataplane::WorkerSlotState(ws.state.load());
    std::printf(
        "%s{\"name\":\"%s\",\"state\":\"%s\",\"pid\":%d,\"generation\":%llu,\"submitted\":%llu,"
        "\"completed\":%llu,\"lost\":%llu,\"deaths\":%llu,\"depth\":%llu,\"inflight\":%llu,"
        "\"free_buffers\":%llu,\"stalls\":%llu,\"drain_rate\":%llu,\"queue_delay_us\":%.1f}",
        w == 0 ? "" : ",", ws.name, axon::dataplane::to_string(state), ws.pid.load(),
        static_cast<unsigned long long>(load(ws.generation)), static_cast<unsigned long long>(load(ws.submitted)),
        static_cast<unsigned long long>(load(ws.completed)), static_cast<unsigned long long>(load(ws.lost)),
        static_cast<unsigned long long>(load(ws.deaths)), static_cast<unsigned long long>(load(ws.depth)),
        static_cast<unsigned long long>(load(ws.inflight)), static_cast<unsigned long long>(load(ws.free_buffers)),
        static_cast<unsigned long long>(load(ws.stalls)), static_cast<unsigned long long>(load(ws.drain_rate)),
        double(load(ws.queue_delay_ns)) / 1000.0);
  }
  std::printf("]}\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string run_dir = "/run/axon";
  bool json = false;
  double watch = 0;
  int count = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--run-dir" && i + 1 < argc) {
      run_dir = argv[++i];
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--watch" && i + 1 < argc) {
      watch = std::atof(argv[++i]);
    } else if (arg == "--count" && i + 1 < argc) {
      count = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--run-dir DIR] [--json] [--watch SECONDS [--count N]]\n"
                   "  reads DIR/dataplane.stats of a running axon-dataplane (default /run/axon)\n",
                   argv[0]);
      return arg == "-h" || arg == "--help" ? 0 : 2;
    }
  }
  auto opened = StatsReader::open(run_dir + "/dataplane.stats");
  if (!opened) {
    std::fprintf(stderr, "axon-dataplane-stats: %s\n", opened.message().c_str());
    return 1;
  }
  const StatsReader& stats = opened.value();
  if (json) {
    print_json(stats, stats.totals());
    return 0;
  }
  LcoreTotals last = stats.totals();
  StageTotals last_total = stats.stage_latency(Stage::total);
  const auto& h = stats.header();
  if (watch <= 0) {
    std::printf("backend %s (%s) on %s%s\n", h.backend, h.port_mode, h.interface,
                stats.alive() ? (stats.ready() ? "" : ", not ready")
                              : ", NOT RUNNING (the data plane that wrote these counters has exited)");
    std::printf("rx %llu  requests %llu  responses %llu  busy %llu  errors %llu  drops: %s\n",
                static_cast<unsigned long long>(last.rx_frames), static_cast<unsigned long long>(last.requests),
                static_cast<unsigned long long>(last.responses), static_cast<unsigned long long>(last.busy_sent),
                static_cast<unsigned long long>(last.errors()), drops_text(stats, last).c_str());
    if (last.busy_sent + last.deadline_expired + last.deadline_unmeetable != 0) {
      std::string reasons;
      for (std::size_t b = 0; b < axon::dataplane::kBusyReasonCount; ++b) {
        if (last.busy_reasons[b] == 0) continue;
        reasons += std::string(reasons.empty() ? "" : " ") +
                   axon::dataplane::to_string(axon::dataplane::BusyReason(b)) + "=" +
                   std::to_string(last.busy_reasons[b]);
      }
      std::printf("busy by reason: %s  deadline refused before dispatch: expired %llu unmeetable %llu\n",
                  reasons.empty() ? "none" : reasons.c_str(), static_cast<unsigned long long>(last.deadline_expired),
                  static_cast<unsigned long long>(last.deadline_unmeetable));
    }
    // Losses below the engine, printed only when there are any.
    const std::uint64_t device[] = {load(h.device_rx_missed), load(h.device_rx_nombuf), load(h.device_rx_errors),
                                    load(h.device_tx_errors)};
    if (last.tx_dropped + last.port_rx_dropped + last.port_tx_errors + device[0] + device[1] + device[2] + device[3] !=
        0) {
      std::printf(
          "lost below the engine: tx_dropped %llu  port rx_dropped %llu tx_errors %llu  device rx_missed %llu "
          "rx_nombuf %llu rx_errors %llu tx_errors %llu\n",
          static_cast<unsigned long long>(last.tx_dropped), static_cast<unsigned long long>(last.port_rx_dropped),
          static_cast<unsigned long long>(last.port_tx_errors), static_cast<unsigned long long>(device[0]),
          static_cast<unsigned long long>(device[1]), static_cast<unsigned long long>(device[2]),
          static_cast<unsigned long long>(device[3]));
    }
    print_stages_text(stats);
    return 0;
  }
  for (int n = 0; count == 0 || n < count; ++n) {
    usleep(useconds_t(watch * 1e6));
    if (!stats.alive()) {
      std::fprintf(stderr, "axon-dataplane-stats: the data plane has exited\n");
      return 1;
    }
    LcoreTotals now = stats.totals();
    const StageTotals now_total = stats.stage_latency(Stage::total);
    const StageTotals window = minus(now_total, last_total);
    std::printf("dataplane: %8.0f req/s  in-plane p50 %6.1f us p99 %6.1f us  busy %llu  errors %llu  drops: %s\n",
                double(now.responses - last.responses) / watch, window.quantile_ns(0.5) / 1000.0,
                window.quantile_ns(0.99) / 1000.0, static_cast<unsigned long long>(now.busy_sent - last.busy_sent),
                static_cast<unsigned long long>(now.errors() - last.errors()), drops_text(stats, now).c_str());
    std::fflush(stdout);
    last = now;
    last_total = now_total;
  }
  return 0;
}

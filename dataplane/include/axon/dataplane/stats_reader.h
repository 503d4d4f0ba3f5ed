// Read-only access to a data plane's stats file (<run_dir>/dataplane.stats) for every other
// process: the control plane, axon-dataplane-stats and the tests. Library axon::dataplane_stats:
// no engine, no libxdp/libbpf/DPDK.
//
// The reader maps the file read-only (it can never disturb the data plane), checks its layout
// version, sums the per-lcore blocks, and tells a live writer from a file left behind by a data
// plane that stopped or was killed (alive(): the writer's flock, see StatsFile).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "axon/common/result.h"
#include "axon/dataplane/stats.h"
#include "axon/protocol/axp.h"

namespace axon::dataplane {

// Every LcoreStats counter summed over the lcores: what the engine as a whole did.
struct LcoreTotals {
  std::uint64_t rx_frames = 0, rx_bytes = 0, tx_frames = 0, requests = 0, responses = 0, busy_sent = 0;
  std::uint64_t forwarded = 0, forward_full = 0, tx_dropped = 0, tx_backpressure = 0, late_replies = 0;
  std::uint64_t invalid_replies = 0, loops = 0, idle_loops = 0;
  std::uint64_t errors_sent[protocol::kErrorCodeCount] = {};
  std::uint64_t drops[protocol::kReasonCount] = {};
  std::uint64_t port_rx_dropped = 0, port_tx_errors = 0;
  std::uint64_t busy_reasons[kBusyReasonCount] = {};
  std::uint64_t deadline_expired = 0, deadline_unmeetable = 0;
  // Segmented requests: messages reassembled, reply datagrams of segmented replies, and the
  // reassembly tables' gauges summed (bytes of arena in use, partial messages held).
  std::uint64_t reassembled = 0, reply_segments = 0, reassembly_bytes = 0, reassembly_messages = 0;
  // Retransmit dedup: the lookups' outcomes, evictions, and the gauges summed.
  std::uint64_t dedup_misses = 0, dedup_absorbed = 0, dedup_hits = 0, dedup_tombstone_hits = 0;
  std::uint64_t dedup_untracked = 0, dedup_evictions = 0, dedup_arena_bytes = 0, dedup_entries = 0;
  // The response caches: hits, misses, insertions, evictions, expirations, invalidations, and
  // the gauges summed (bytes of live entries, entries).
  std::uint64_t cache_hits = 0, cache_misses = 0, cache_insertions = 0, cache_evictions = 0;
  std::uint64_t cache_expirations = 0, cache_invalidations = 0, cache_bytes = 0, cache_entries = 0;
  std::uint64_t trace_context_invalid = 0;  // malformed trace context replaced (docs/protocol.md §5)
  std::uint64_t rx_hook_stamped = 0;         // first hop from the XDP hook's stamp ([xdp] rx_stamp)
  std::uint64_t rx_hook_stamp_rejected = 0;  // stamps not usable (more than a second old)

  // ERROR replies of every code.
  [[nodiscard]] std::uint64_t errors() const noexcept;
};

// One stage's latency histogram merged over the lcores (and classes, when asked for both).
struct StageTotals {
  std::uint64_t buckets[kHistogramBuckets] = {};
  std::uint64_t sum_ns = 0;
  std::uint64_t count = 0;

  void merge(const StageTotals& other) noexcept;
  // Samples below edge_ns (an exact bucket boundary, e.g. prometheus_edge_ns()).
  [[nodiscard]] std::uint64_t below(std::uint64_t edge_ns) const noexcept;
  [[nodiscard]] double quantile_ns(double q) const noexcept { return histogram_quantile_ns(buckets, q); }
};

class StatsReader {
 public:
  // Maps `path` read-only; bad_file when it is not a stats file of this layout version.
  static Result<StatsReader, StatsError> open(const std::string& path);

  StatsReader(StatsReader&& other) noexcept = default;
  StatsReader& operator=(StatsReader&& other) noexcept = default;
  StatsReader(const StatsReader&) = delete;
  StatsReader& operator=(const StatsReader&) = delete;
  ~StatsReader() = default;

  // The process that wrote this file is still running (it holds the file's lock). False once
  // it exited, crashed or was killed; a restarted data plane writes a new file (reopen).
  [[nodiscard]] bool alive() const noexcept;
  // Serving: the writer is alive and has set its ready flag (cleared again when it stops).
  [[nodiscard]] bool ready() const noexcept;
  // Milliseconds since the data plane's control thread last ticked (-1: never).
  [[nodiscard]] std::int64_t heartbeat_age_ms() const noexcept;

  [[nodiscard]] const StatsHeader& header() const noexcept { return *view().header; }
  [[nodiscard]] std::uint32_t lcore_count() const noexcept { return view().header->lcore_count; }
  [[nodiscard]] std::uint32_t worker_count() const noexcept { return view().header->worker_count; }
  [[nodiscard]] const LcoreStats& lcore(std::uint32_t index) const noexcept { return view().lcores[index]; }
  [[nodiscard]] const WorkerStats& worker(std::size_t index) const noexcept { return view().workers[index]; }

  [[nodiscard]] LcoreTotals totals() const noexcept;
  // Sum over lcores of one counter, e.g. lcores(&LcoreStats::responses).
  [[nodiscard]] std::uint64_t lcores(Counter LcoreStats::*member) const noexcept;
  [[nodiscard]] std::uint64_t lcore(std::uint32_t index, Counter LcoreStats::*member) const noexcept {
    return (view().lcores[index].*member).load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t errors_sent(protocol::ErrorCode code) const noexcept;
  // A stage's latencies of one class (shm::PriorityClass: 0 interactive, 1 background), or of
  // both, merged over the lcores.
  [[nodiscard]] StageTotals stage_latency(Stage stage, std::size_t klass) const noexcept;
  [[nodiscard]] StageTotals stage_latency(Stage stage) const noexcept;
  // rx -> transmit of the replies served from the response cache, merged over the lcores.
  [[nodiscard]] StageTotals cache_hit_latency() const noexcept;
  // Whether the data plane records stage latencies ([telemetry] stage_latency).
  [[nodiscard]] bool stage_latency_enabled() const noexcept {
    return view().header->stage_latency.load(std::memory_order_relaxed) != 0;
  }
  // Frames the lcores' userspace validator dropped for `reason`.
  [[nodiscard]] std::uint64_t lcore_drops(protocol::Reason reason) const noexcept;
  // Frames XDP gave `reason` as its verdict (copied from the BPF counters).
  [[nodiscard]] std::uint64_t xdp(protocol::Reason reason) const noexcept {
    return view().header->xdp_packets[std::size_t(reason)].load(std::memory_order_relaxed);
  }
  // The same for requests of one priority class.
  [[nodiscard]] std::uint64_t xdp(protocol::Priority klass, protocol::Reason reason) const noexcept {
    return view().header->xdp_class_packets[std::size_t(klass) & 1][std::size_t(reason)].load(
        std::memory_order_relaxed);
  }
  [[nodiscard]] WorkerSlotState worker_state(std::size_t index) const noexcept {
    return WorkerSlotState(view().workers[index].state.load(std::memory_order_acquire));
  }
  [[nodiscard]] std::uint64_t worker_counter(std::size_t index, Counter WorkerStats::*member) const noexcept {
    return (view().workers[index].*member).load(std::memory_order_relaxed);
  }

 private:
  explicit StatsReader(StatsMapping mapping) noexcept : mapping_(std::move(mapping)) {}
  [[nodiscard]] const StatsView& view() const noexcept { return mapping_.view(); }

  StatsMapping mapping_;  // its descriptor stays open to probe the writer's lock
};

}  // namespace axon::dataplane

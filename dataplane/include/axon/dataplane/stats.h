// The data plane's live counters, in a shared-memory file the control plane and tools map
// read-only (<run_dir>/dataplane.stats).
//
// Each lcore writes only its own 128-byte-aligned block with relaxed single-writer stores,
// so counting costs no atomic read-modify-write and no shared line. Readers sum the
// blocks; a value may be a few nanoseconds stale, never torn (64-bit aligned stores).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "axon/common/result.h"
#include "axon/dataplane/latency_histogram.h"
#include "axon/protocol/axp.h"

namespace axon::dataplane {

inline constexpr std::uint64_t kStatsMagic = 0x5354414e4f5841ull;  // "AXONSTA"
// 2: added backend[]. 3: added the port and device drop counters and tx_backpressure.
// 4: WorkerSlotState::stalled and WorkerStats::stalls.
// 5: LcoreStats busy_reasons, deadline_expired and deadline_unmeetable; WorkerStats drain_rate
//    and queue_delay_ns (issue 13 admission control).
// 6: reason busy_no_credits (every reason array grew by one), BusyReason::credits,
//    xdp_class_packets/_bytes (issue 13 credits and per-class XDP counters).
// 7: reasons reassembly_timeout .. reassembly_too_large (every reason array grew by seven);
//    LcoreStats reassembled, reassembly_bytes, reassembly_messages, reply_segments (issue 14).
// 8: LcoreStats stage_latency (log-linear per stage and class) replaces the power-of-two
//    latency_ns; StatsHeader stage_latency (issue 15).
// 9: LcoreStats cache_* (the response cache's counters, gauges and hit latency; issue 14).
// 10: LcoreStats trace_context_invalid (issue 15 trace context).
// 11: error code duplicate_reply_evicted (errors_sent grew by one); LcoreStats dedup_* (issue 14
//    retransmit dedup and the reply cache).
// 12: WorkerStats depth_interactive and depth_background (issue 15: per-class ring depths).
// 13: LcoreStats rx_hook_stamped and rx_hook_stamp_rejected (issue 15: the XDP hook's stamp).
inline constexpr std::uint32_t kStatsVersion = 13;
inline constexpr std::size_t kClassCount = AXON_CLASS_COUNT;  // AXP priorities: interactive, background
inline constexpr std::size_t kMaxLcores = 64;
inline constexpr std::size_t kMaxWorkers = 4096;

using Counter = std::atomic<std::uint64_t>;

// Why the data plane answered BUSY (docs/protocol.md, "Where BUSY comes from"). The
// LcoreStats::busy_reasons index; busy_sent is their sum.
enum class BusyReason : std::uint32_t {
  ring_full = 0,     // the worker's request ring or its buffer pool is full
  forward_full = 1,  // the ring to the lcore that owns the worker is full
  high_water = 2,    // the worker's ring is filled to the agent's high_water
  queue_delay = 3,   // the worker's estimated queueing delay passed queue_delay_target_us
  reservation = 4,   // background request, and every worker it may take is reserved for interactive
  credits = 5,       // the tenant is over its credits (uring, dpdk; with xdp the program answers)
};
inline constexpr std::size_t kBusyReasonCount = 6;
[[nodiscard]] constexpr const char* to_string(BusyReason reason) noexcept {
  switch (reason) {
    case BusyReason::ring_full: return "ring_full";
    case BusyReason::forward_full: return "forward_full";
    case BusyReason::high_water: return "high_water";
    case BusyReason::queue_delay: return "queue_delay";
    case BusyReason::reservation: return "reservation";
    case BusyReason::credits: return "credits";
  }
  return "?";
}

inline void count(Counter& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// One log-linear histogram: single-writer relaxed counters like the rest of the block.
struct StageHistogram {
  Counter buckets[kHistogramBuckets];
  Counter sum_ns;
};

inline void record(StageHistogram& h, std::uint64_t ns) noexcept {
  count(h.buckets[histogram_bucket(ns)]);
  count(h.sum_ns, ns);
}

struct alignas(128) LcoreStats {
  Counter rx_frames;
  Counter rx_bytes;
  Counter tx_frames;
  Counter requests;         // valid requests accepted into a worker's ring
  Counter responses;        // RESPONSE datagrams sent
  Counter busy_sent;        // BUSY replies, every reason (busy_reasons breaks them down)
  Counter forwarded;        // requests handed to the lcore that owns the worker
  Counter forward_full;     // forward ring full (answered BUSY)
  Counter tx_dropped;       // reply frames that found no TX room
  Counter tx_backpressure;  // loops that left worker replies queued: no TX frame free
  Counter late_replies;     // worker replies after the deadline ERROR already went out
  Counter invalid_replies;
  Counter loops;
  Counter idle_loops;
  Counter errors_sent[protocol::kErrorCodeCount];  // ERROR replies by AXP error code
  Counter drops[protocol::kReasonCount];           // frames rejected by the userspace validator
  // The lcore's port, copied from its PortCounters each housekeeping tick.
  Counter port_rx_dropped;                 // datagrams the port lost before the engine saw them (e.g. truncated)
  Counter port_tx_errors;                  // reply frames the kernel refused after the port took them
  Counter busy_reasons[kBusyReasonCount];  // BUSY replies by BusyReason
  // ERROR deadline_exceeded before dispatch (the request never reached a worker): its budget
  // had run out, or was below its worker's estimated queueing delay.
  Counter deadline_expired;
  Counter deadline_unmeetable;
  // Segmented requests (docs/protocol.md §6): messages reassembled whole, and the gauges of what
  // the lcore's reassembly table holds now (bytes of its arena in use, partial messages).
  Counter reassembled;
  Counter reassembly_bytes;
  Counter reassembly_messages;
  Counter reply_segments;  // reply datagrams of segmented replies (segment_count > 1)
  // Retransmit dedup (docs/scheduling.md, "Retransmit dedup"), requests of agents with
  // dedup_window_ms > 0 only: misses (new, entered in flight), absorbed (in flight already, no
  // reply), hits (re-answered from the reply cache), tombstone hits (answered within the window,
  // payload given up: ERROR duplicate_reply_evicted), untracked (the table was full: dispatched
  // without dedup), evictions (cached replies given up for room); the gauges of the lcore's
  // cached payload bytes and of its entries in use.
  Counter dedup_misses;
  Counter dedup_absorbed;
  Counter dedup_hits;
  Counter dedup_tombstone_hits;
  Counter dedup_untracked;
  Counter dedup_evictions;
  Counter dedup_arena_bytes;
  Counter dedup_entries;
  // Per stage and AXP priority class (interactive, background), every RESPONSE's latency
  // (latency_histogram.h); empty while [telemetry] stage_latency is off.
  StageHistogram stage_latency[kStageCount][kClassCount];
  // The response cache (docs/observability.md, "Response cache"), copied from the lcore's cache
  // each housekeeping tick: cacheable requests answered from it (hits) or sent to a worker
  // (misses); entries stored, pushed out for room before their TTL (evictions), dropped past it
  // (expirations) or for a stale generation (invalidations); the gauges of what it holds.
  Counter cache_hits;
  Counter cache_misses;
  Counter cache_insertions;
  Counter cache_evictions;
  Counter cache_expirations;
  Counter cache_invalidations;
  Counter cache_bytes;
  Counter cache_entries;
  // rx -> transmit of every reply served from the cache (recorded whatever [telemetry] says).
  StageHistogram cache_hit_latency;
  // Requests whose trace context was malformed (docs/protocol.md §5: exactly one of trace_id
  // and span_id zero); the handler got a fresh one instead.
  Counter trace_context_invalid;
  // Frames whose first hop is the XDP hook's stamp ([xdp] rx_stamp), and stamped frames whose
  // stamp was not usable (more than a second old), stamped by the lcore instead.
  Counter rx_hook_stamped;
  Counter rx_hook_stamp_rejected;
};

// stalled: a live worker that stopped taking requests (worker_stall_timeout_ms); not routed to,
// what it held answered worker_failed; alive again if it resumes, vacant once it dies.
enum class WorkerSlotState : std::uint32_t { vacant = 0, alive = 1, dying = 2, stalled = 3 };
[[nodiscard]] constexpr const char* to_string(WorkerSlotState state) noexcept {
  switch (state) {
    case WorkerSlotState::vacant: return "vacant";
    case WorkerSlotState::alive: return "alive";
    case WorkerSlotState::dying: return "dying";
    case WorkerSlotState::stalled: return "stalled";
  }
  return "?";
}

struct alignas(128) WorkerStats {
  char name[64];
  std::atomic<std::uint32_t> state;  // WorkerSlotState
  std::atomic<std::int32_t> pid;
  Counter generation;
  Counter submitted;
  Counter completed;
  Counter lost;    // in-flight requests answered worker_failed when it died or stalled
  Counter stalls;  // times it was found stalled (worker_stall_timeout_ms)
  Counter deaths;
  Counter depth;  // request ring depth, sampled each housekeeping tick
  Counter inflight;
  Counter free_buffers;
  std::atomic<std::uint32_t> owner_lcore;
  std::atomic<std::uint32_t> backing;  // shm::SegmentBacking
  // Admission control (docs/scheduling.md), sampled each housekeeping tick: completions per
  // second while the worker had work (EWMA; 0 = not measured yet), and the queueing delay a new
  // request would see (queued + in flight, over drain_rate; 0 when unknown or empty).
  Counter drain_rate;
  Counter queue_delay_ns;
  // `depth` per request ring (shm::PriorityClass), sampled with it.
  Counter depth_interactive;
  Counter depth_background;
};

struct StatsHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t lcore_count;
  std::uint32_t worker_count;
  std::uint32_t reason_count;
  std::uint32_t error_count;
  std::uint32_t latency_buckets;            // kHistogramBuckets
  std::atomic<std::uint64_t> heartbeat_ns;  // CLOCK_MONOTONIC of the last control-thread tick
  std::atomic<std::uint32_t> ready;
  std::atomic<std::uint32_t> xdp_attached;
  std::atomic<std::uint32_t> stage_latency;  // 1: the lcores record stage latencies ([telemetry])
  std::uint32_t reserved0;
  char interface[16];
  char port_mode[16];                           // "copy", "zero-copy" (xdp); the ring mode (uring)
  char backend[16];                             // the backend chosen at start: "xdp", "uring", "dpdk"
  Counter xdp_packets[protocol::kReasonCount];  // XDP verdicts, copied from the BPF counters
  Counter xdp_bytes[protocol::kReasonCount];
  // The same per AXP priority class, for frames whose AXP header validated.
  Counter xdp_class_packets[kClassCount][protocol::kReasonCount];
  Counter xdp_class_bytes[kClassCount][protocol::kReasonCount];
  // Losses the layer below the port counts, copied by the control thread every 100 ms: the
  // DPDK device's rte_eth_stats, or the kernel's XDP_STATISTICS of the AF_XDP sockets (xdp);
  // 0 for uring, whose socket losses are in port_rx_dropped.
  Counter device_rx_missed;  // dpdk imissed; xdp rx_ring_full: no room in the RX ring
  Counter device_rx_nombuf;  // dpdk rx_nombuf; xdp rx_fill_ring_empty_descs: no free buffer
  Counter device_rx_errors;  // dpdk ierrors; xdp rx_dropped (less the fill ring's) + rx_invalid_descs
  Counter device_tx_errors;  // dpdk oerrors; xdp tx_invalid_descs
};

// The file is read by other processes, built separately: its blocks must stay plain,
// lock-free, 128-byte multiples (one writer per block, no false sharing between lcores).
static_assert(Counter::is_always_lock_free);
static_assert(std::is_standard_layout_v<LcoreStats> && std::is_standard_layout_v<WorkerStats> &&
              std::is_standard_layout_v<StatsHeader>);
static_assert(alignof(LcoreStats) == 128 && sizeof(LcoreStats) % 128 == 0);
static_assert(alignof(WorkerStats) == 128 && sizeof(WorkerStats) % 128 == 0);
static_assert(offsetof(StatsHeader, magic) == 0 && offsetof(StatsHeader, version) == 8,
              "magic and version are what a reader checks first: they never move");

// File layout: StatsHeader (padded to 128 bytes), then lcore_count LcoreStats, then
// worker_count WorkerStats. The one place the size is computed; readers and writers use it.
inline constexpr std::size_t kStatsHeaderBytes = (sizeof(StatsHeader) + 127) / 128 * 128;
constexpr std::size_t stats_file_size(std::uint32_t lcores, std::uint32_t workers) noexcept {
  return kStatsHeaderBytes + std::size_t(lcores) * sizeof(LcoreStats) + std::size_t(workers) * sizeof(WorkerStats);
}

struct StatsView {
  StatsHeader* header = nullptr;
  LcoreStats* lcores = nullptr;
  WorkerStats* workers = nullptr;
};

enum class StatsError { io_error, bad_file };

// A mapping of the stats file and the descriptor it came from, released together: the RAII
// part both the writer (StatsFile) and the readers (StatsReader) hold.
class StatsMapping {
 public:
  StatsMapping() = default;
  StatsMapping(StatsView view, std::size_t size, int fd) noexcept : view_(view), size_(size), fd_(fd) {}
  StatsMapping(StatsMapping&& other) noexcept;
  StatsMapping& operator=(StatsMapping&& other) noexcept;
  StatsMapping(const StatsMapping&) = delete;
  StatsMapping& operator=(const StatsMapping&) = delete;
  ~StatsMapping();  // unmaps and closes (a writer's lock goes with the descriptor)

  [[nodiscard]] const StatsView& view() const noexcept { return view_; }
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  void release() noexcept;

  StatsView view_{};
  std::size_t size_ = 0;
  int fd_ = -1;
};

// The data plane's (writer's) side of the file, for the daemon's lifetime.
//
// Liveness: the writer holds an exclusive flock on the file for as long as it lives, so a
// reader can tell a live data plane from a file left behind by one that was killed
// (StatsReader::alive()): the kernel drops the lock with the last descriptor, even on kill -9.
class StatsFile {
 public:
  // Creates the file under a temporary name, locks and fills it, then renames it into place:
  // a reader never sees a half-initialised or unlocked file under `path`.
  static Result<StatsFile, StatsError> create(const std::string& path, std::uint32_t lcores, std::uint32_t workers);

  StatsFile(StatsFile&& other) noexcept = default;
  StatsFile& operator=(StatsFile&& other) = delete;  // would release the old file without clearing ready
  StatsFile(const StatsFile&) = delete;
  StatsFile& operator=(const StatsFile&) = delete;
  // Clears `ready`, unmaps and drops the lock: readers see the data plane gone.
  ~StatsFile();

  [[nodiscard]] const StatsView& view() const noexcept { return mapping_.view(); }

 private:
  explicit StatsFile(StatsMapping mapping) noexcept : mapping_(std::move(mapping)) {}

  StatsMapping mapping_;
};

// Readers: StatsReader (stats_reader.h) maps the file read-only, checks its layout and knows
// whether the writer is alive.

}  // namespace axon::dataplane

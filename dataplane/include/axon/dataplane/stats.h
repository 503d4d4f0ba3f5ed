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

#include "axon/common/result.h"
#include "axon/protocol/axp.h"

namespace axon::dataplane {

inline constexpr std::uint64_t kStatsMagic = 0x5354414e4f5841ull;  // "AXONSTA"
// 2: added backend[].
inline constexpr std::uint32_t kStatsVersion = 2;
inline constexpr std::size_t kMaxLcores = 64;
inline constexpr std::size_t kMaxWorkers = 4096;
inline constexpr std::size_t kLatencyBuckets = 48;  // power-of-two ns buckets: [2^i, 2^(i+1))

using Counter = std::atomic<std::uint64_t>;

inline void count(Counter& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct alignas(128) LcoreStats {
  Counter rx_frames;
  Counter rx_bytes;
  Counter tx_frames;
  Counter requests;      // valid requests accepted into a worker's ring
  Counter responses;     // RESPONSE datagrams sent
  Counter busy_sent;     // BUSY replies: worker ring full or no buffer
  Counter forwarded;     // requests handed to the lcore that owns the worker
  Counter forward_full;  // forward ring full (answered BUSY)
  Counter tx_dropped;    // reply frames that found no TX room
  Counter late_replies;  // worker replies after the deadline ERROR already went out
  Counter invalid_replies;
  Counter loops;
  Counter idle_loops;
  Counter errors_sent[protocol::kErrorCodeCount];  // ERROR replies by AXP error code
  Counter drops[protocol::kReasonCount];           // frames rejected by the userspace validator
  Counter latency_ns[kLatencyBuckets];             // enqueue -> reply built, per request
  Counter latency_sum_ns;
};

enum class WorkerSlotState : std::uint32_t { vacant = 0, alive = 1, dying = 2 };

struct alignas(128) WorkerStats {
  char name[64];
  std::atomic<std::uint32_t> state;  // WorkerSlotState
  std::atomic<std::int32_t> pid;
  Counter generation;
  Counter submitted;
  Counter completed;
  Counter lost;  // in-flight requests answered worker_failed when it died
  Counter deaths;
  Counter depth;  // request ring depth, sampled each housekeeping tick
  Counter inflight;
  Counter free_buffers;
  std::atomic<std::uint32_t> owner_lcore;
  std::atomic<std::uint32_t> backing;  // shm::SegmentBacking
};

struct StatsHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t lcore_count;
  std::uint32_t worker_count;
  std::uint32_t reason_count;
  std::uint32_t error_count;
  std::uint32_t latency_buckets;
  std::atomic<std::uint64_t> heartbeat_ns;  // CLOCK_MONOTONIC of the last control-thread tick
  std::atomic<std::uint32_t> ready;
  std::atomic<std::uint32_t> xdp_attached;
  char interface[16];
  char port_mode[16];                           // "copy", "zero-copy" (xdp); the ring mode (uring)
  char backend[16];                             // the backend chosen at start: "xdp", "uring", "dpdk"
  Counter xdp_packets[protocol::kReasonCount];  // XDP verdicts, copied from the BPF counters
  Counter xdp_bytes[protocol::kReasonCount];
};

// File layout: StatsHeader, then lcore_count LcoreStats, then worker_count WorkerStats.
struct StatsView {
  StatsHeader* header = nullptr;
  LcoreStats* lcores = nullptr;
  WorkerStats* workers = nullptr;
};

enum class StatsError { io_error, bad_file };

// Creates (truncating) the stats file, sized for the given counts.
Result<StatsView, StatsError> create_stats_file(const std::string& path, std::uint32_t lcores, std::uint32_t workers);
// Maps an existing stats file read-only and checks its header.
Result<StatsView, StatsError> open_stats_file(const std::string& path);

}  // namespace axon::dataplane

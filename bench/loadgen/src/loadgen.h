// The open-loop load generator's engine: options, the report it produces, and run_loadgen().
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "axon/common/result.h"
#include "axon/loadgen/histogram.h"
#include "axon/loadgen/malformed.h"
#include "axon/protocol/axp.h"

#include "xsk_io.h"

namespace axon::loadgen {

struct LoadgenOptions {
  std::string target = "127.0.0.1:7400";
  std::string bind;        // source address; empty lets the kernel choose
  double rate = 10'000;    // offered requests/s (Poisson arrivals)
  double duration_s = 10;  // measured window
  double warmup_s = 1;     // sent but not measured, before the window
  std::size_t payload_bytes = 64;
  std::vector<std::uint32_t> tenants{1};
  std::vector<std::uint32_t> agents{1};
  std::uint64_t sessions = 0;  // distinct session keys (0 = no stickiness)
  protocol::Priority priority = protocol::Priority::interactive;
  std::uint32_t deadline_us = 0;
  // Mixed classes: a second, independent Poisson stream of background-class requests beside the
  // one above (bg_rate 0 = none). Its tenants/agents default to the first stream's.
  double bg_rate = 0;
  std::vector<std::uint32_t> bg_tenants;
  std::vector<std::uint32_t> bg_agents;
  std::uint32_t bg_deadline_us = 0;
  // Flood: no schedule; send as fast as this process can, each request's intended time being
  // its actual send time (rate then only sizes the id ring). Measures a rate, not a latency.
  bool flood = false;
  // Never sleep between sends: on a load cpu shared with other work, waking up from a sleep can
  // take milliseconds (the scheduler runs someone else first), which a spinning loop never pays.
  bool spin = false;
  unsigned timeout_ms = 1000;  // a request unanswered this long is lost
  int cpu_send = -1;
  int cpu_recv = -1;
  unsigned threads = 2;  // 1: one thread sends and receives (for a one-core budget)
  bool live = false;
  double malformed_ratio = 0;  // fraction of scheduled sends replaced by malformed datagrams
  std::uint64_t seed = 1;
  // Largest datagram (UDP payload) sent: a request whose header and payload do not fit is sent
  // as a segmented message (docs/protocol.md §6) of segments of at most max_datagram - 80
  // payload bytes; payload_bytes may then be up to 65536.
  std::size_t max_datagram = 1472;
  // Cache benchmarks: the first 8 payload bytes of request i carry i % payload_variants, so the
  // load repeats that many distinct payloads (0: every payload identical).
  std::uint32_t payload_variants = 0;
  // Retransmits: this fraction of the requests is sent again, with the same request id and the
  // same header, retransmit_after_us after its intended send time. Latency stays charged from the
  // first intended send; replies beyond the first are counted as duplicate_replies.
  double retransmit_fraction = 0;
  std::uint32_t retransmit_after_us = 500;
  // AF_XDP transport (empty xdp_dev = kernel UDP socket): see xsk_io.h.
  std::string xdp_dev;
  unsigned xdp_queue = 0;
  std::string dst_mac;
  std::uint32_t xdp_frames = 8192;
  // A run whose send lag p99 exceeds this (µs) fell behind its schedule: its figures describe
  // the load generator, and the report says so instead of presenting them as the peer's.
  double max_lag_us = 100;
};

inline constexpr double kMaxDurationS = 600;
inline constexpr std::uint64_t kStallLagNs = 1'000'000;
inline constexpr double kStalledShare = 0.005;

// What one priority class got, counted by the class of each request sent (measured window).
struct ClassReport {
  std::uint64_t sent = 0;
  std::uint64_t responses = 0;
  std::uint64_t busy = 0;
  std::uint64_t errors = 0;
  std::array<std::uint64_t, 16> errors_by_code{};
  std::uint64_t lost = 0;
  std::uint64_t late = 0;
  std::uint64_t send_dropped = 0;
  LatencyHistogram latency;   // RESPONSE round trips, from the intended send time
  LatencyHistogram send_lag;  // how late the sender was against this class's schedule
};
inline constexpr std::size_t kClasses = 2;  // by protocol::Priority: interactive, background

struct LoadgenReport {
  double offered_rps = 0;
  double measured_s = 0;        // the measured window actually run (shorter if interrupted)
  std::uint64_t sent = 0;       // valid requests with an intended time in the window
  std::uint64_t responses = 0;  // RESPONSE within the timeout
  std::uint64_t busy = 0;
  std::uint64_t errors = 0;
  std::array<std::uint64_t, 16> errors_by_code{};  // by protocol::ErrorCode; 15 = unknown codes
  std::uint64_t lost = 0;                          // no reply within the timeout (includes late replies)
  std::uint64_t late = 0;                          // replies that came after the timeout (already counted as lost)
  std::uint64_t invalid = 0;                       // datagrams that failed validate() or were REQUESTs
  std::uint64_t unmatched = 0;                     // valid replies with an id we never sent (or long reused)
  std::uint64_t duplicate_replies = 0;             // replies to a request already answered (retransmits)
  std::uint64_t malformed_replies = 0;             // answers to injected malformed datagrams
  std::uint64_t trace_mismatch = 0;
  std::uint64_t payload_mismatch = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t send_dropped = 0;  // AF_XDP: requests dropped at the sender because the link
                                   // pushed back (the peer's receive queue was full); lost
  std::uint64_t malformed_sent = 0;
  std::uint64_t retransmits = 0;         // second sends of requests of the window
  std::uint64_t retransmit_skipped = 0;  // chosen for a retransmit, but the retransmit queue was full
  // Segmented messages (docs/protocol.md §6).
  std::uint32_t request_segments = 1;          // datagrams per request
  std::uint32_t request_segment_payload = 0;   // S of the requests
  std::uint64_t reply_segments = 0;            // datagrams of segmented replies received
  std::uint64_t incomplete_replies = 0;        // lost requests of which some reply segments came
  std::uint64_t reply_segment_duplicates = 0;  // a reply segment already held
  std::uint64_t reply_segment_mismatch = 0;    // segments of two different replies met
  std::uint64_t reply_segment_offset = 0;      // a reply segment that broke the length rule
  std::uint64_t reply_segments_untracked = 0;  // segmented replies this run could not track
  std::array<std::uint64_t, kMalformedKinds> malformed_by_kind{};
  LatencyHistogram latency;                   // RESPONSE round trips, from the intended send time
  LatencyHistogram send_lag;                  // how late the sender was against the schedule
  std::array<ClassReport, kClasses> classes;  // the same, split by the requests' priority class
  unsigned threads = 0;
  std::string transport;         // "udp socket" or the AF_XDP socket's description
  XskStats xsk;                  // AF_XDP counters (zero for the socket transport)
  double cpu_s = 0;              // this process's user + system CPU time over the whole run
  double wall_s = 0;             // wall time of the whole run (warmup, window, drain)
  std::uint64_t packets = 0;     // datagrams sent + received over the whole run (for CPU per packet)
  std::uint64_t tx_packets = 0;  // datagrams sent over the whole run (warmup and window)
  std::uint64_t rx_packets = 0;  // datagrams received over the whole run
  bool load_behind = false;      // the load side could not keep its schedule (see max_lag_us)
  std::string load_behind_reason;
  // Share of requests sent 1 ms or more late. This VM's vCPUs are descheduled by the host for
  // tens of ms now and then (steal); such a stall delays the load and the peer alike and shows
  // as a few percent of late sends, not as a sender that cannot keep up.
  double stall_share = 0;
  bool stalled = false;  // stall_share >= kStalledShare: the run's p99 reflects those stalls

  [[nodiscard]] double achieved_rps() const noexcept {
    return measured_s > 0 ? static_cast<double>(responses) / measured_s : 0;
  }
  [[nodiscard]] double sent_rps() const noexcept { return measured_s > 0 ? static_cast<double>(sent) / measured_s : 0; }
};

enum class LoadgenError { invalid_options, socket_failed, interrupted };

// Runs one load test; returns after warmup + duration + timeout at the latest.
[[nodiscard]] Result<LoadgenReport, LoadgenError> run_loadgen(const LoadgenOptions& options,
                                                              const std::atomic<bool>& stop_requested);

}  // namespace axon::loadgen

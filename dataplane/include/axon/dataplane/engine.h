// The poll-mode engine: one Lcore per receive queue, each running the loop
//
//   rx burst -> parse -> route -> copy into the worker's slab -> enqueue bursts
//   -> poll reply rings -> build reply frames -> tx burst -> reap completions
//
// to completion on its own pinned core. An Lcore owns a fixed subset of the worker
// channels (it is their only producer, which keeps the rings single-producer); requests
// for a worker owned by another lcore cross over through an in-process SPSC forward ring.
//
// Every request that cannot be served is answered: BUSY when a ring or the buffer pool is
// full or admission control refuses it (docs/scheduling.md), ERROR for an unknown agent, a
// dead worker, a passed or unmeetable deadline or a handler failure.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "axon/dataplane/config.h"
#include "axon/dataplane/port.h"
#include "axon/dataplane/routing.h"
#include "axon/dataplane/stats.h"
#include "axon/protocol/packet.h"
#include "axon/shm/channel.h"

namespace axon::dataplane {

struct ReplyContext;
class Lcore;
class DedupTable;
class ReassemblyTable;
class StageRecorder;
class TraceRecorder;
class TraceMapping;
class ResponseCache;
class CacheGenerations;
struct CacheHits;
struct CachedRequest;

// One configured worker: its segment, its reply contexts and its liveness state.
struct WorkerSlot {
  std::uint32_t index = 0;
  std::string name;
  std::uint32_t owner_lcore = 0;
  std::uint32_t local_index = 0;  // position in the owner lcore's list
  std::unique_ptr<shm::WorkerChannel> channel;
  std::unique_ptr<ReplyContext[]> contexts;  // by buffer id; owner lcore only
  std::atomic<std::uint32_t> state{std::uint32_t(WorkerSlotState::vacant)};
  WorkerStats* stats = nullptr;
  // Requests queued for or in flight on the worker, as dispatch sees it: the owner lcore stores
  // the exact count every loop, and any lcore that picks the worker adds one at once, so picks
  // within one burst see each other. A hint for p2c, jsq and the reservation, never exact.
  std::atomic<std::uint32_t> outstanding{0};
};

// Everything the lcores share. Built by the daemon (or a test) before lcores start.
struct EngineShared {
  EngineShared(const DataplaneConfig& cfg, std::uint32_t lcore_count);
  ~EngineShared();

  DataplaneConfig config;
  std::vector<std::unique_ptr<WorkerSlot>> workers;
  RouteHolder routes;
  std::vector<Lcore*> lcores;
  StatsView stats;
  const TraceMapping* traces = nullptr;  // the trace file (trace_ring.h); null: no traces
  std::atomic<bool> stop{false};
  // Per-agent response-cache generations: the control thread bumps, lcores compare (response_cache.h).
  std::unique_ptr<CacheGenerations> cache_generations;
};

// Creates every worker's channel (segment) and reply-context table; owner = index % lcores.
Result<Ok, ConfigError> create_worker_slots(EngineShared& shared, std::uint32_t lcore_count, int numa_node);

class Lcore {
 public:
  static constexpr std::uint32_t kBurst = 32;

  Lcore(std::uint32_t id, Port& port, EngineShared& shared);
  ~Lcore();
  Lcore(const Lcore&) = delete;
  Lcore& operator=(const Lcore&) = delete;

  // Creates the forward rings between all lcores; call once, after every Lcore exists.
  static void connect(std::vector<Lcore*>& lcores);

  // Runs until shared.stop; then drains in-flight requests for up to drain_timeout_ms and
  // answers whatever is left with ERROR.
  void run() noexcept;
  // One loop iteration; returns the work done (frames + replies), 0 when idle.
  std::uint32_t poll_once() noexcept;
  // Answers every in-flight request of this lcore's workers with ERROR (shutdown path).
  void abandon_inflight(protocol::ErrorCode code) noexcept;
  [[nodiscard]] std::uint64_t inflight() const noexcept;
  [[nodiscard]] std::uint32_t id() const noexcept { return id_; }

 private:
  struct Forward;
  struct Staging;
  struct Sched;
  // One received frame between parse and dispatch (interactive-first needs the whole burst
  // parsed before any of it is dispatched; each frame is parsed once).
  struct Pending {
    const Frame* frame = nullptr;
    protocol::ParsedFrame parsed;
    protocol::Header request;
    const AgentRoute* route = nullptr;  // null: unknown agent (answered in dispatch_request)
    // A reassembled segmented request (docs/protocol.md §6): `request` is the whole message's
    // header, its payload is entry `reasm_entry` of `reasm` (this lcore's table, or the table of
    // the lcore that forwarded it), and `rx_ns` is when its first segment arrived. The frame is
    // the last segment's, used only for the addresses to answer.
    const ReassemblyTable* reasm = nullptr;
    std::uint32_t reasm_entry = 0;
    std::uint64_t rx_ns = 0;
    // Its in-flight entry in the dedup table of the lcore that received it (dedup.h), to settle
    // when it is answered; null: not tracked (dedup off for the agent, or the table full).
    DedupTable* dedup = nullptr;
    std::uint32_t dedup_entry = 0;
    std::uint32_t dedup_generation = 0;
  };
  static constexpr std::uint32_t kNoSlot = ~0u;

  // The frame's first hop: its backend's receive stamp when usable, else `now` (counted).
  [[nodiscard]] std::uint64_t first_hop(const Frame& frame, std::uint64_t now, std::int64_t& offset) noexcept;
  // Parses and validates a frame into `p`; false when it was dropped or answered already.
  // `admitted`: a forwarded frame, whose tenant policy its first lcore applied.
  // A segment of a segmented request is held in the reassembly table: then it returns false,
  // except for the segment that completes its message, which comes back as the whole message.
  [[nodiscard]] bool prepare(const Frame& frame, std::uint64_t now, bool admitted, Pending& p,
                             bool reassembled = false) noexcept;
  [[nodiscard]] bool reassemble(std::uint64_t now, Pending& p) noexcept;
  // Retransmit dedup (engine_dedup.cc): false when the request was absorbed or re-answered from
  // the reply cache; true when it goes on (entered in flight in p.dedup when tracked).
  [[nodiscard]] bool deduplicate(Pending& p, std::uint64_t now) noexcept;
  // Settles the reply's dedup entry (called by send_payload for every reply of a tracked request):
  // cached when the request reached a worker, forgotten when it was refused before.
  void settle_dedup(const ReplyContext& ctx, const protocol::Header& reply, const std::uint8_t* data,
                    std::uint32_t length) noexcept;
  // A tracked request dropped without any reply (its frame could not be answered): forgotten.
  void forget_dedup(const Pending& p) noexcept;
  [[nodiscard]] bool forward_settlement(const ReplyContext& ctx, const protocol::Header& reply,
                                        const std::uint8_t* data, std::uint32_t length) noexcept;
  void attach_dedup(const Pending& p, ReplyContext& ctx) noexcept;
  // dispatch_request, then frees a reassembled message's memory unless it went to another lcore.
  void dispatch_pending(const Pending& p, std::uint64_t now) noexcept;
  // A background request of an agent with class scheduling: dispatched after the burst's others.
  [[nodiscard]] static bool deferred(const Pending& p) noexcept;
  // Routes, picks a worker (or takes `slot`, chosen by the lcore that forwarded it), forwards it
  // to the worker's owner, or admits and enqueues it here. `rx_ns`: when it was received.
  void dispatch_request(const Pending& p, std::uint64_t rx_ns, std::uint32_t slot = kNoSlot) noexcept;
  // Deadline and admission checks on the worker's owner lcore; false when it was answered.
  [[nodiscard]] bool admit(WorkerSlot& slot, const AgentRoute& route, const Pending& p, std::uint64_t rx_ns) noexcept;
  void refuse_busy(const Pending& p, std::uint64_t rx_ns, BusyReason reason, std::uint32_t retry_after_us) noexcept;
  void refuse_error(const Pending& p, std::uint64_t rx_ns, protocol::ErrorCode code,
                    std::uint32_t retry_after_us = 0) noexcept;
  void publish_outstanding() noexcept;
  void answer_unsupported_version(std::span<const std::uint8_t> bytes, const protocol::ParsedFrame& parsed,
                                  std::uint64_t now) noexcept;
  // Stages the request for one of its worker's two request rings: the ring of its AXP priority's
  // class (shm::priority_class_of), or the interactive ring for every request when class_rings
  // is false (the agent's class_scheduling off: one FIFO).
  void enqueue_local(WorkerSlot& slot, const Pending& p, std::uint64_t now, bool class_rings = true,
                     const CachedRequest* cached = nullptr) noexcept;
  // Response cache (response_cache.cc): keys a request of a cacheable agent and answers it when
  // a fresh entry matches (true: answered); stores a worker's successful reply; copies the
  // counters into the stats; records the hit latencies of a transmitted burst.
  [[nodiscard]] bool answer_from_cache(const Pending& p, std::uint64_t rx_ns, CachedRequest& cached) noexcept;
  void store_in_cache(const ReplyContext& ctx, const std::uint8_t* data, std::uint32_t length,
                      std::uint64_t now) noexcept;
  void publish_cache() noexcept;
  void open_cache();
  void note_cacheable(ReplyContext& ctx, const CachedRequest* cached) noexcept;
  void cache_transmitted() noexcept;
  void forward(std::uint32_t to, const Pending& p, std::uint64_t rx_ns, std::uint32_t slot) noexcept;
  void flush_staged() noexcept;
  std::uint32_t drain_forwarded() noexcept;
  std::uint32_t poll_replies(std::uint64_t now) noexcept;
  void housekeeping(std::uint64_t now) noexcept;
  void publish_depths(WorkerSlot& slot) noexcept;
  void reclaim_dead(WorkerSlot& slot) noexcept;
  void watch_progress(WorkerSlot& slot, Staging& st, std::uint32_t state, std::uint64_t now) noexcept;
  void answer_error(const ReplyContext& ctx, protocol::ErrorCode code, std::uint32_t retry_after_us = 0) noexcept;
  // BUSY with retry_after_us (0: the config's busy_retry_after_us), counted by reason.
  void answer_busy(const ReplyContext& ctx, BusyReason reason = BusyReason::ring_full,
                   std::uint32_t retry_after_us = 0) noexcept;
  void send_payload(const ReplyContext& ctx, const protocol::Header& reply, const std::uint8_t* data,
                    std::uint32_t length) noexcept;
  void flush_tx() noexcept;
  // The agent's dispatch policy over its live workers (background: minus the reserved idle
  // ones). nullptr with `reserved` false: no live worker; with `reserved` true: only reserved
  // workers could take this background request.
  WorkerSlot* pick_worker(const AgentRoute& route, const protocol::Header& request, bool& reserved) noexcept;
  // Free TX frames in the cache after topping it up from the port (0: none to be had).
  std::uint32_t tx_room() noexcept;

  std::uint32_t id_;
  Port& port_;
  EngineShared& shared_;
  LcoreStats& stats_;
  protocol::PacketParser parser_;
  std::vector<WorkerSlot*> owned_;
  std::vector<std::unique_ptr<Staging>> staging_;      // parallel to owned_
  std::vector<std::uint32_t> touched_;                 // staging_ indices used this burst
  std::vector<std::unique_ptr<Forward>> forward_out_;  // to lcore i (null for self)
  std::vector<Forward*> forward_in_;                   // from lcore i (owned by the sender)
  Frame tx_[64];
  std::uint32_t tx_count_ = 0;
  std::uint32_t frame_capacity_ = 0;
  std::unique_ptr<Sched> sched_;           // dispatch state, drain meters (engine.cc)
  std::unique_ptr<StageRecorder> stages_;  // per-stage latencies (stage_recorder.h)
  std::unique_ptr<TraceRecorder> traces_;  // sampled traces (trace_recorder.h)
  std::uint64_t next_housekeeping_ns_ = 0;
  // Every stamp of the loop: the process's TSC clock, the one written into the worker segments.
  TscClock clock_ = process_clock();
  std::uint64_t next_deadline_sweep_ns_ = 0;
  Frame tx_cache_[kBurst];  // free TX frames taken from the port in bursts
  std::uint32_t tx_cache_count_ = 0;
  std::vector<shm::LostRequest> lost_;      // reserved at start; reclaim never allocates after
  std::unique_ptr<ReassemblyTable> reasm_;  // null: it could not be set up (segmented requests refused)
  std::unique_ptr<DedupTable> dedup_;       // null: it could not be set up (no request deduplicated)
  std::uint32_t mtu_ = 1500;                // the interface's MTU: bounds each reply segment
  std::unique_ptr<ResponseCache> cache_;    // null: [response_cache] bytes = 0, or it could not be set up
  std::unique_ptr<CacheHits> cache_hits_;   // replies served from the cache, waiting for their transmit
};

}  // namespace axon::dataplane

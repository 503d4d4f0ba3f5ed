// The data plane's end of one worker: the segment, its buffer pool and the in-flight
// table.
//
// Only this side allocates buffers, and all bookkeeping about who owns which buffer is
// kept here in process-private memory, never in the segment, so a worker can corrupt at
// most its own replies and can never make the data plane lose or double-free a buffer.
// When the worker dies, reclaim() returns every one of its buffers to the pool and
// reports each request it still held, so the caller can answer them explicitly.
//
// Threading: one data-plane thread owns a channel. Hot-path calls are noexcept, do not
// allocate and do not lock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "axon/shm/error.h"
#include "axon/shm/layout.h"
#include "axon/shm/region.h"
#include "axon/shm/segment.h"
#include "axon/shm/spsc_ring.h"

namespace axon::shm {

struct ChannelOptions {
  std::uint32_t worker_id = 0;
  SegmentGeometry geometry{};
  int numa_node = -1;
  bool allow_fallback = true;  // 4 KiB pages when no hugepage is free
  // Buffers kept loaned to the worker for replies bigger than their request's buffer.
  std::uint32_t small_loans = 16;
  std::uint32_t large_loans = 2;
};

// A buffer the data plane has taken from the pool and is filling.
struct BufferLease {
  std::uint32_t buffer_id = 0;
  std::byte* data = nullptr;
  std::uint32_t capacity = 0;
};

// A request ready to submit: `meta` carries everything but the buffer fields, which
// try_submit_burst fills from the lease.
struct OutgoingRequest {
  Descriptor meta{};
  BufferLease lease{};
  std::uint32_t length = 0;
};

// A validated reply. `data` points into the segment and stays valid until finish().
//
// What the request was (its id, tenant, agent, addresses, deadline) is the caller's to keep,
// once, under its own key (the data plane's ReplyContext, by buffer id): the channel hands back
// only that key and what it measured itself, never copies the caller would have to keep true.
struct Completion {
  std::uint64_t user_cookie = 0;  // the caller's key, from the in-flight table, not from the worker
  std::uint64_t enqueue_ns = 0;   // when try_submit_burst queued it
  ReplyStatus status = ReplyStatus::ok;
  const std::byte* data = nullptr;
  std::uint32_t length = 0;
  std::uint32_t request_buffer = 0;
  std::uint32_t reply_buffer = 0;  // equals request_buffer for in-place replies
  Descriptor reply{};              // the worker's descriptor (trace, hop stamps)
};

// A request the worker held when it died; the caller answers it with an explicit error,
// from its own record of the request under this key.
struct LostRequest {
  std::uint64_t user_cookie = 0;
};

struct ChannelStats {
  std::uint64_t submitted = 0;  // both classes
  std::uint64_t completed = 0;
  std::uint64_t request_ring_full = 0;  // bursts cut short by a full request ring (either class)
  // Per PriorityClass (index 0 interactive, 1 background): requests submitted, and bursts
  // cut short because that class's ring was full.
  std::uint64_t class_submitted[kPriorityClasses] = {};
  std::uint64_t class_ring_full[kPriorityClasses] = {};
  // Reported by the worker SDK through the segment header (advisory: the worker writes them):
  // requests handed to its handler per class, and requests it answered deadline_exceeded
  // without running them.
  std::uint64_t worker_served[kPriorityClasses] = {};
  std::uint64_t worker_deadline_expired = 0;
  std::uint64_t alloc_failed = 0;     // try_alloc found the pool empty
  std::uint64_t invalid_replies = 0;  // replies naming a buffer the worker does not own
  std::uint64_t torn_replies = 0;     // reply slots with a wrong commit stamp
  std::uint64_t lost_on_reclaim = 0;  // requests reported lost when a worker died
  std::uint64_t reclaims = 0;
  std::uint64_t wakes_issued = 0;  // futex wakes: the producer's only system call
};

class WorkerChannel {
 public:
  static ShmResult<WorkerChannel> create(const ChannelOptions& options);

  WorkerChannel(WorkerChannel&&) noexcept = default;
  WorkerChannel& operator=(WorkerChannel&&) noexcept = default;
  WorkerChannel(const WorkerChannel&) = delete;
  WorkerChannel& operator=(const WorkerChannel&) = delete;
  ~WorkerChannel() = default;

  // --- hot path
  // Takes a buffer that holds `bytes`, small class first.
  [[nodiscard]] bool try_alloc(std::uint32_t bytes, BufferLease& out) noexcept;
  // Returns a leased buffer that will not be submitted (e.g. the request was refused).
  void release(const BufferLease& lease) noexcept;
  // Free slots in one class's request ring; lets the caller answer BUSY before copying anything.
  [[nodiscard]] std::uint32_t request_room(PriorityClass cls = PriorityClass::interactive) noexcept;
  // Publishes up to n requests into the ring of class `cls` with one release store and, when
  // `wake`, at most one wake. Returns how many were taken; the caller still owns the leases
  // of the rest. Both rings share the worker's one eventcount, so a caller submitting both
  // classes back to back passes wake = false to the first and true to the last (or calls
  // wake_worker()) and pays at most one futex wake.
  [[nodiscard]] std::uint32_t try_submit_burst(OutgoingRequest* requests, std::uint32_t n,
                                               PriorityClass cls = PriorityClass::interactive,
                                               bool wake = true) noexcept;
  // Wakes the worker if it sleeps (no system call when it does not).
  void wake_worker() noexcept;
  // Validates and returns up to max replies.
  [[nodiscard]] std::uint32_t poll_replies(Completion* out, std::uint32_t max) noexcept;
  // Frees the buffers of a completion once its reply has been sent.
  void finish(const Completion& completion) noexcept;
  // Keeps the worker's loan rings stocked. Cheap when nothing changed.
  void refill_loans() noexcept;

  // --- recovery and attach
  // The worker is gone: returns all its buffers to the pool, appends every request it
  // held to `lost` (queued in either request ring, taken off a ring and being handled, or
  // waiting in the worker's own reorder window), and reformats the segment (generation + 1) for a successor.
  // Call only from the owning thread with no Completion outstanding.
  std::uint32_t reclaim(std::vector<LostRequest>& lost);
  // True once the ring indices written by the worker were found impossible; the caller
  // should kill the worker and reclaim.
  [[nodiscard]] bool worker_misbehaved() const noexcept;

  // --- introspection
  [[nodiscard]] int segment_fd() const noexcept { return region_.fd(); }
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  [[nodiscard]] std::uint32_t worker_id() const noexcept { return options_.worker_id; }
  [[nodiscard]] const SegmentView& view() const noexcept { return view_; }
  [[nodiscard]] SegmentBacking backing() const noexcept { return region_.backing(); }
  [[nodiscard]] std::uint32_t total_buffers() const noexcept { return std::uint32_t(state_.size()); }
  [[nodiscard]] std::uint32_t free_buffers() const noexcept {
    return std::uint32_t(free_small_.size() + free_large_.size());
  }
  [[nodiscard]] std::uint32_t inflight() const noexcept { return inflight_count_; }
  // Requests queued in both rings, or in one class's ring (not counting what the worker has
  // already taken off a ring but not yet answered: that is inflight() - request_depth()).
  [[nodiscard]] std::uint64_t request_depth() const noexcept { return requests_[0].depth() + requests_[1].depth(); }
  [[nodiscard]] std::uint64_t request_depth(PriorityClass cls) const noexcept {
    return requests_[std::size_t(cls)].depth();
  }
  [[nodiscard]] ChannelStats stats() const noexcept;

 private:
  enum class BufferState : std::uint8_t { free, leased, inflight, loaned, replied };

  // The channel's own record of a request in flight: the caller's key and the enqueue time.
  struct InflightEntry {
    std::uint64_t user_cookie;
    std::uint64_t enqueue_ns;
  };

  WorkerChannel() = default;
  ShmResult<Ok> bind(std::uint64_t generation);
  [[nodiscard]] bool buffer_of_offset(std::uint64_t offset, std::uint32_t& id) const noexcept;
  [[nodiscard]] std::uint32_t capacity_of(std::uint32_t id) const noexcept;
  [[nodiscard]] std::uint64_t offset_of(std::uint32_t id) const noexcept;
  void free_buffer(std::uint32_t id) noexcept;
  void add_segment_counters(ChannelStats& s) const noexcept;
  void stock(RingProducer<LoanSlot>& ring, std::vector<std::uint32_t>& pool, std::uint32_t& outstanding,
             std::uint32_t target) noexcept;

  ChannelOptions options_{};
  Region region_;
  SegmentView view_{};
  RingProducer<Descriptor> requests_[kPriorityClasses];  // indexed by PriorityClass
  RingConsumer<Descriptor> replies_;
  RingProducer<LoanSlot> small_loans_;
  RingProducer<LoanSlot> large_loans_;
  std::uint32_t small_count_ = 0;
  // Private copies of what bind() wrote into the header: the worker can rewrite the
  // shared header, so buffer addresses, sizes and the generation never come from it.
  SlabClass small_slab_{};
  SlabClass large_slab_{};
  std::uint64_t generation_ = 0;
  TscClock clock_{};  // the hop clock written into the header (the process's)
  std::vector<BufferState> state_;
  std::vector<InflightEntry> inflight_;
  std::vector<std::uint32_t> free_small_;  // stacks: LIFO keeps recently used buffers warm
  std::vector<std::uint32_t> free_large_;
  std::uint32_t inflight_count_ = 0;
  std::uint32_t small_loans_out_ = 0;
  std::uint32_t large_loans_out_ = 0;
  ChannelStats stats_{};
};

}  // namespace axon::shm

// The shared-memory ABI between the data plane and one worker process.
//
// Everything in this file lives in a memfd segment mapped by two processes at different
// addresses, so it holds offsets (from the segment base), never pointers, and only
// lock-free, address-free atomics. Every struct's size and every field's offset is locked
// by static_assert: changing any of them is a layout change and must bump
// kLayoutVersion, which attach() checks.
//
// Segment map (offsets grow downwards, each block 128-byte aligned):
//
//   SegmentHeader          identity, geometry, worker state, request eventcount
//   RingHeader x5          interactive request, reply, small-loan, large-loan and
//                          background request rings
//   slots of each ring     Descriptor (128 B) or LoanSlot (16 B)
//   small buffer slab      count x small_size  (payloads <= 2 KiB by default)
//   large buffer slab      count x large_size  (payloads <= 64 KiB)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace axon::shm {

inline constexpr std::uint64_t kSegmentMagic = 0x314745534e4f5841ull;  // "AXONSEG1" little-endian
// 2: a second request ring for background requests (PriorityClass), the deadline_exceeded
// reply status and the worker's per-class counters in the header.
// 3: Descriptor::span_id (was reserved1): the handler's span, made by the worker SDK.
// 4: the hop-stamp clock (SegmentHeader::clock), so the worker stamps on the data plane's TSC
// calibration.
inline constexpr std::uint32_t kLayoutVersion = 4;

// Two cache lines: the adjacent-line prefetcher pulls lines in pairs, so anything
// written by different processes is kept 128 bytes apart (as LMAX Disruptor does).
inline constexpr std::size_t kFalseSharingRange = 128;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared rings need lock-free 64-bit atomics");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "futex words need lock-free 32-bit atomics");

// Descriptor flags.
enum DescriptorFlag : std::uint16_t {
  kFlagLargeBuffer = 1u << 0,   // the buffer comes from the large slab
  kFlagReplyInPlace = 1u << 1,  // the reply was written over the request's buffer
  kFlagLoanedBuffer = 1u << 2,  // the reply sits in a buffer loaned to the worker
};

// Status carried by a reply descriptor; mirrors AXP's error table for worker errors.
enum class ReplyStatus : std::uint16_t {
  ok = 0,
  handler_error = 1,      // the agent's handler failed; the data plane answers ERROR
  reply_too_large = 2,    // the handler needed more room than any loanable buffer
  deadline_exceeded = 3,  // the deadline had passed before the handler would have run it
};

// Which request ring a request travels in. AXP priority 0 is interactive; every other
// value is background (docs/protocol.md §5). The worker drains interactive first.
enum class PriorityClass : std::uint8_t { interactive = 0, background = 1 };
inline constexpr std::uint32_t kPriorityClasses = 2;

[[nodiscard]] constexpr PriorityClass priority_class_of(std::uint8_t axp_priority) noexcept {
  return axp_priority == 0 ? PriorityClass::interactive : PriorityClass::background;
}

// One request or reply. Exactly two cache lines; written by the producer, stamped last.
struct alignas(64) Descriptor {
  // Ring sequence number + 1 of the write that filled this slot. The consumer checks it
  // against the index it expects, so a slot that a crashed or buggy producer published
  // without finishing is detected instead of being read as garbage.
  std::uint64_t commit;
  std::uint64_t request_id;     // AXP request id, echoed in the reply
  std::uint32_t buffer_offset;  // payload position, from the segment base
  std::uint32_t length;         // payload bytes
  std::uint32_t inflight_slot;  // data plane's handle for the request; echoed by the worker
  std::uint16_t flags;          // DescriptorFlag bits
  std::uint16_t status;         // ReplyStatus on replies, 0 on requests
  std::uint32_t tenant_id;
  std::uint32_t agent_id;
  std::uint64_t session_key;
  std::uint32_t deadline_us;  // budget from the data plane's rx stamp (hop_ns[kHopRx]); 0 = none
  std::uint8_t priority;      // AXP priority class
  std::uint8_t trace_flags;   // W3C trace flags
  std::uint16_t reserved0;
  std::uint8_t parent_span_id[8];
  // --- second cache line
  std::uint8_t trace_id[16];
  // Per-hop ns on the segment's clock (SegmentHeader::clock: CLOCK_MONOTONIC read through the
  // TSC): data plane rx, data plane enqueue, worker dequeue, worker complete. Any hop may leave
  // its stamp 0.
  std::uint64_t hop_ns[4];
  std::uint64_t user_cookie;  // opaque to the worker, returned untouched
  // The handler's own span (W3C span id, child of parent_span_id): 0 in requests; the worker
  // SDK makes a random non-zero one for each request with trace context, and the reply
  // carries it back for the data plane to put in the AXP reply's span_id (docs/protocol.md §5).
  std::uint8_t span_id[8];
};
static_assert(sizeof(Descriptor) == 128);
static_assert(offsetof(Descriptor, commit) == 0);
static_assert(offsetof(Descriptor, request_id) == 8);
static_assert(offsetof(Descriptor, buffer_offset) == 16);
static_assert(offsetof(Descriptor, length) == 20);
static_assert(offsetof(Descriptor, inflight_slot) == 24);
static_assert(offsetof(Descriptor, flags) == 28);
static_assert(offsetof(Descriptor, status) == 30);
static_assert(offsetof(Descriptor, tenant_id) == 32);
static_assert(offsetof(Descriptor, agent_id) == 36);
static_assert(offsetof(Descriptor, session_key) == 40);
static_assert(offsetof(Descriptor, deadline_us) == 48);
static_assert(offsetof(Descriptor, priority) == 52);
static_assert(offsetof(Descriptor, trace_flags) == 53);
static_assert(offsetof(Descriptor, parent_span_id) == 56);
static_assert(offsetof(Descriptor, trace_id) == 64);
static_assert(offsetof(Descriptor, hop_ns) == 80);
static_assert(offsetof(Descriptor, user_cookie) == 112);
static_assert(offsetof(Descriptor, span_id) == 120);

enum Hop : unsigned { kHopRx = 0, kHopEnqueue = 1, kHopWorkerDequeue = 2, kHopWorkerComplete = 3 };

// A free buffer handed to the worker ahead of time, so it can build a reply larger than
// its request without asking the data plane (which is the only allocator).
struct LoanSlot {
  std::uint64_t commit;
  std::uint32_t buffer_offset;
  std::uint32_t capacity;
};
static_assert(sizeof(LoanSlot) == 16);
static_assert(offsetof(LoanSlot, buffer_offset) == 8);

// Control block of one single-producer single-consumer ring.
//
// Indices are 64-bit and only ever increase (slot = index & mask), so they never wrap in
// practice and full/empty need no extra bit. Each side's index sits on its own 128-byte
// line with that side's cached copy of the peer's index: the producer re-reads the
// consumer's index only when its cached copy says the ring is full, and vice versa, which
// removes the cross-core miss from the common case (rigtorp's SPSCQueue design).
struct RingHeader {
  struct alignas(kFalseSharingRange) ProducerLine {
    std::atomic<std::uint64_t> head;         // next index to write; release-published
    std::uint64_t cached_tail;               // producer's last view of tail
    std::atomic<std::uint64_t> full_events;  // try_push* calls refused for lack of room
    std::atomic<std::uint64_t> pushed_total;
  } producer;
  struct alignas(kFalseSharingRange) ConsumerLine {
    std::atomic<std::uint64_t> tail;        // next index to read; release-published
    std::uint64_t cached_head;              // consumer's last view of head
    std::atomic<std::uint64_t> torn_slots;  // slots whose commit stamp did not match
  } consumer;
  struct alignas(kFalseSharingRange) Geometry {  // written once at creation
    std::uint64_t slots_offset;                  // from the segment base
    std::uint32_t capacity;                      // power of two
    std::uint32_t slot_size;                     // sizeof the slot type, checked on attach
  } geometry;
};
static_assert(sizeof(RingHeader) == 3 * kFalseSharingRange);
static_assert(offsetof(RingHeader, producer) == 0);
static_assert(offsetof(RingHeader, consumer) == kFalseSharingRange);
static_assert(offsetof(RingHeader, geometry) == 2 * kFalseSharingRange);
static_assert(offsetof(RingHeader::ProducerLine, cached_tail) == 8);
static_assert(offsetof(RingHeader::ConsumerLine, cached_head) == 8);

// An eventcount on a shared (not process-private) futex, folly-style: the sleeper
// announces itself in `waiters` before its final check, and the waker bumps `epoch` and
// calls futex_wake only when `waiters` is non-zero, so a busy consumer costs the
// producer no system call at all.
struct alignas(kFalseSharingRange) EventCount {
  std::atomic<std::uint32_t> epoch;         // futex word
  std::atomic<std::uint32_t> waiters;       // sleepers between prepare_wait and the wake
  std::atomic<std::uint64_t> wakes_issued;  // futex_wake calls made by the producer
  std::atomic<std::uint64_t> sleeps;        // futex_wait calls made by the consumer
};
static_assert(sizeof(EventCount) == kFalseSharingRange);
static_assert(offsetof(EventCount, waiters) == 4);

struct SlabClass {
  std::uint64_t offset;       // first buffer, from the segment base
  std::uint32_t buffer_size;  // bytes per buffer, multiple of 64
  std::uint32_t count;
};
static_assert(sizeof(SlabClass) == 16);

enum class WorkerState : std::uint32_t { vacant = 0, attached = 1, detached = 2 };

// The data plane's hop-stamp clock (axon::TscClock), written once when the segment is formatted:
// ns = ns_base + (tsc - tsc_base) * mult >> shift, CLOCK_MONOTONIC when mult is 0. The worker
// stamps its hops with it, so the stages that cross the process boundary are differences of one
// clock.
struct HopClock {
  std::uint64_t tsc_base;
  std::uint64_t ns_base;
  std::uint32_t mult;
  std::uint32_t shift;
};
static_assert(sizeof(HopClock) == 24);
static_assert(offsetof(HopClock, mult) == 16);

// The first bytes of every segment.
struct alignas(kFalseSharingRange) SegmentHeader {
  // --- identity: checked on attach before anything else is trusted
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_size;   // sizeof(SegmentHeader)
  std::uint64_t segment_size;  // bytes mapped; equals the memfd size
  std::uint64_t generation;    // bumped each time the data plane recycles the segment
  std::uint32_t worker_id;
  std::int32_t numa_node;  // -1 when not bound
  std::uint32_t backing;   // SegmentBacking
  std::uint32_t reserved0;
  // --- geometry (offsets from the segment base)
  std::uint64_t request_ring_offset;     // RingHeader, data plane -> worker (Descriptor), interactive
  std::uint64_t reply_ring_offset;       // RingHeader, worker -> data plane (Descriptor)
  std::uint64_t small_loan_ring_offset;  // RingHeader, data plane -> worker (LoanSlot)
  std::uint64_t large_loan_ring_offset;  // RingHeader, data plane -> worker (LoanSlot)
  SlabClass small;
  SlabClass large;
  std::uint64_t background_ring_offset;  // RingHeader, data plane -> worker (Descriptor), background
  // --- worker liveness, written by the worker
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> worker_state;  // WorkerState
  std::atomic<std::uint32_t> worker_pid;
  std::atomic<std::uint64_t> worker_generation;  // generation the worker attached to
  std::atomic<std::uint64_t> requests_handled;
  std::atomic<std::uint64_t> reply_ring_full;  // times the worker waited for reply room
  // Per class, what the worker handed to its handler; and the requests it answered
  // deadline_exceeded instead, because their deadline had passed before it got to them.
  std::atomic<std::uint64_t> interactive_served;
  std::atomic<std::uint64_t> background_served;
  std::atomic<std::uint64_t> deadline_expired;
  // --- the worker sleeps here when both request rings are empty (one eventcount for both)
  EventCount request_event;
  // --- written once at format time, read by the worker at attach
  alignas(kFalseSharingRange) HopClock clock;
};
static_assert(sizeof(SegmentHeader) == 4 * kFalseSharingRange);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, layout_version) == 8);
static_assert(offsetof(SegmentHeader, segment_size) == 16);
static_assert(offsetof(SegmentHeader, generation) == 24);
static_assert(offsetof(SegmentHeader, request_ring_offset) == 48);
static_assert(offsetof(SegmentHeader, small) == 80);
static_assert(offsetof(SegmentHeader, large) == 96);
static_assert(offsetof(SegmentHeader, background_ring_offset) == 112);
static_assert(offsetof(SegmentHeader, worker_state) == kFalseSharingRange);
static_assert(offsetof(SegmentHeader, reply_ring_full) == kFalseSharingRange + 24);
static_assert(offsetof(SegmentHeader, interactive_served) == kFalseSharingRange + 32);
static_assert(offsetof(SegmentHeader, background_served) == kFalseSharingRange + 40);
static_assert(offsetof(SegmentHeader, deadline_expired) == kFalseSharingRange + 48);
static_assert(offsetof(SegmentHeader, request_event) == 2 * kFalseSharingRange);
static_assert(offsetof(SegmentHeader, clock) == 3 * kFalseSharingRange);

enum class SegmentBacking : std::uint32_t { hugetlb_2m = 1, shmem_4k = 2 };

}  // namespace axon::shm

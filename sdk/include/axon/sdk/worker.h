// The worker SDK: what an agent worker process links to receive requests from the data
// plane and send replies, all through its own shared-memory segment.
//
//   auto worker = axon::sdk::Worker::from_environment();   // fd handed over by the data plane
//   worker->run([](const Request& req, ReplyWriter& out) {
//     auto buf = out.loan(req.length);                   // or out.in_place()
//     std::memcpy(buf.data(), req.data, req.length);
//     out.commit(req.length);
//   }, stop_flag);
//
// Requests are read in place in the segment; replies are written straight into a buffer
// the data plane loaned out (or over the request's own buffer), so no byte is copied
// between the two processes. Nothing on this path allocates, locks or throws.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "axon/sdk/trace.h"
#include "axon/shm/error.h"
#include "axon/shm/layout.h"
#include "axon/shm/region.h"
#include "axon/shm/segment.h"
#include "axon/shm/spsc_ring.h"

namespace axon::sdk {

using shm::ReplyStatus;

// A request, readable in place until it is completed.
struct Request {
  const std::byte* data = nullptr;
  std::uint32_t length = 0;
  std::uint32_t capacity = 0;  // size of its buffer: the most an in-place reply can hold
  shm::Descriptor meta{};      // ids, tenant, agent, session, trace context, deadline

  // W3C trace context (docs/protocol.md §5). With it, the SDK made the handler's own span
  // (trace().span_id, random and non-zero) and the reply carries it back to the client.
  [[nodiscard]] bool has_trace() const noexcept { return has_trace_context(meta); }
  [[nodiscard]] TraceContext trace() const noexcept { return trace_context(meta); }
  // "00-<trace id>-<caller's span>-<flags>"; empty without trace context.
  [[nodiscard]] Traceparent traceparent() const noexcept { return request_traceparent(meta); }
  // "00-<trace id>-<handler's span>-<flags>": the parent for the handler's own child spans.
  [[nodiscard]] Traceparent handler_traceparent() const noexcept { return span_traceparent(meta); }
};

// Where a reply is being written.
struct ReplyBuffer {
  std::byte* data = nullptr;
  std::uint32_t capacity = 0;
  std::uint32_t offset = 0;
  bool in_place = false;

  [[nodiscard]] bool valid() const noexcept { return data != nullptr; }
  [[nodiscard]] std::span<std::byte> span() const noexcept { return {data, capacity}; }
};

struct WorkerStats {
  std::uint64_t received = 0;  // handed out by receive_burst (both classes)
  std::uint64_t completed = 0;
  std::uint64_t interactive = 0;        // of `received`: from the interactive ring
  std::uint64_t background = 0;         // of `received`: from the background ring
  std::uint64_t deadline_expired = 0;   // answered deadline_exceeded, never handed out
  std::uint64_t background_forced = 0;  // background requests served by starvation protection
  std::uint64_t loan_failures = 0;      // no loaned buffer of the needed size was available
  std::uint64_t reply_ring_full = 0;    // flushes that had to wait for the data plane
  std::uint64_t sleeps = 0;
};

struct WaitPolicy {
  std::uint32_t spin_min = 64;                   // pause iterations before sleeping, lower bound
  std::uint32_t spin_max = 1u << 16;             // upper bound of the adaptive budget
  std::uint64_t sleep_timeout_ns = 100'000'000;  // re-check stop flags at least this often
};

// How receive_burst orders the two request rings (docs/scheduling.md, "In the worker").
struct SchedulingPolicy {
  // Interactive requests are served first. After this many interactive requests in a row
  // while background work waits, one background request is served anyway, so background
  // gets at least 1/(background_every + 1) of the worker under interactive saturation.
  // 0 = strict priority: background only when no interactive request waits.
  // Default kDefaultBackgroundEvery, or AXON_BACKGROUND_EVERY when set at attach.
  std::uint32_t background_every = 8;
};
inline constexpr std::uint32_t kDefaultBackgroundEvery = 8;
inline constexpr std::uint32_t kMaxBackgroundEvery = 1u << 20;

class ReplyWriter;

class Worker {
 public:
  static constexpr std::uint32_t kMaxBurst = 32;
  // Background requests taken off their ring and ordered earliest-deadline-first.
  static constexpr std::uint32_t kEdfWindow = 32;

  // Maps the segment behind fd (takes ownership) and checks its header. With a
  // dataplane_pid, the worker watches that process and stops waiting once it exits.
  static shm::ShmResult<Worker> attach(int fd, std::uint64_t expected_generation = 0, int dataplane_pid = 0);
  // Connects to the data plane's handoff socket and attaches to the segment it sends.
  // A refused handoff (the slot is still being reclaimed after its previous worker died,
  // or the socket is not there yet) is retried with a short backoff for up to timeout_ms;
  // a negative timeout_ms means AXON_WORKER_CONNECT_TIMEOUT_MS, or 5000 when unset.
  static shm::ShmResult<Worker> connect(const std::string& socket_path, int timeout_ms = -1);
  // Uses AXON_WORKER_FD (an inherited connected handoff socket) or AXON_WORKER_SOCKET (a
  // path to connect to), whichever is set.
  static shm::ShmResult<Worker> from_environment(int timeout_ms = -1);

  // Moves transfer the attachment: only the live object marks the segment detached.
  Worker(Worker&& other) noexcept;
  Worker& operator=(Worker&& other) noexcept;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  // --- hot path
  // Takes up to max requests (at most kMaxBurst at a time are outstanding in a burst), in
  // the order they should be served: interactive first, one background request after every
  // background_every interactive ones while background waits (SchedulingPolicy), background
  // earliest deadline first among the up to kEdfWindow it has taken off its ring (no
  // deadline last, arrival order among equals). A request whose deadline (rx stamp +
  // deadline_us) has passed is not returned: it is answered ReplyStatus::deadline_exceeded
  // here (queued and flushed like any reply) and counted in stats().deadline_expired.
  [[nodiscard]] std::uint32_t receive_burst(Request* out, std::uint32_t max) noexcept;
  // Spins adaptively, then sleeps on the segment's futex until requests arrive, timeout_ns
  // passes or stop becomes true. Returns true when requests are ready. After a sleep that
  // found no work it checks (one poll() on a pidfd) whether the data plane exited.
  bool wait_for_requests(const std::atomic<bool>* stop = nullptr) noexcept;
  // True once the data plane that handed over the segment has exited: no request will
  // ever arrive again. run() returns when this becomes true.
  [[nodiscard]] bool dataplane_exited() const noexcept { return dataplane_exited_; }
  // A buffer loaned by the data plane, for a reply of up to `size` bytes.
  [[nodiscard]] bool try_loan(std::uint32_t size, ReplyBuffer& out) noexcept;
  // The request's own buffer, reused for its reply. Reading the request after writing
  // here reads the reply.
  [[nodiscard]] ReplyBuffer in_place(const Request& request) noexcept;
  // Queues the reply; flush() publishes queued replies in one store.
  [[nodiscard]] bool try_complete(const Request& request, const ReplyBuffer& buffer, std::uint32_t length,
                                  ReplyStatus status = ReplyStatus::ok) noexcept;
  // Publishes queued replies. Returns false if some are still queued (reply ring full).
  [[nodiscard]] bool try_flush() noexcept;
  // Publishes queued replies, waiting for room if the data plane is behind.
  void flush(const std::atomic<bool>* stop = nullptr) noexcept;

  // Receives, dispatches to handler(const Request&, ReplyWriter&), and replies until
  // stop is set. A handler that does not commit gets an explicit handler_error reply.
  template <typename Handler>
  void run(Handler&& handler, const std::atomic<bool>& stop);

  // Marks the segment detached (clean shutdown).
  void detach() noexcept;

  [[nodiscard]] std::uint32_t worker_id() const noexcept { return view_.header->worker_id; }
  [[nodiscard]] std::uint64_t generation() const noexcept { return view_.header->generation; }
  [[nodiscard]] const WorkerStats& stats() const noexcept { return stats_; }
  [[nodiscard]] shm::SegmentBacking backing() const noexcept { return region_.backing(); }
  void set_wait_policy(const WaitPolicy& policy) noexcept {
    policy_ = policy;
    spin_budget_ = policy.spin_min;
  }
  // background_every above kMaxBackgroundEvery is clamped to it.
  void set_scheduling_policy(const SchedulingPolicy& policy) noexcept;
  [[nodiscard]] const SchedulingPolicy& scheduling_policy() const noexcept { return scheduling_; }
  // Background requests taken off their ring, waiting in the EDF window.
  [[nodiscard]] std::uint32_t background_window() const noexcept { return window_count_; }

 private:
  // A background request in the EDF window: the earliest deadline, then the lowest seq, goes first.
  struct WindowEntry {
    std::uint64_t deadline_ns;  // absolute CLOCK_MONOTONIC; UINT64_MAX = none
    std::uint64_t seq;          // arrival order
    shm::Descriptor meta;
  };
  // Replies receive_burst may queue (for expired requests) besides the handler's.
  static constexpr std::uint32_t kPendingCapacity = 2 * kMaxBurst;

  Worker() = default;
  [[nodiscard]] bool requests_ready() noexcept {
    return window_count_ > 0 || !requests_.empty() || !background_.empty();
  }
  void check_dataplane() noexcept;
  // receive_burst's steps: validate and hand out (or expire) one request; refill the EDF
  // window and serve its earliest entry.
  bool admit(const shm::Descriptor& d, shm::PriorityClass cls, std::uint64_t now, Request* out,
             std::uint32_t& produced) noexcept;
  [[nodiscard]] bool valid_buffer(const shm::Descriptor& d) const noexcept;
  bool serve_background(std::uint64_t now, Request* out, std::uint32_t& produced, std::uint32_t& taken,
                        std::uint32_t max) noexcept;

  shm::Region region_;
  shm::SegmentView view_{};
  shm::RingConsumer<shm::Descriptor> requests_;    // interactive
  shm::RingConsumer<shm::Descriptor> background_;  // background
  shm::RingProducer<shm::Descriptor> replies_;
  shm::RingConsumer<shm::LoanSlot> small_loans_;
  shm::RingConsumer<shm::LoanSlot> large_loans_;
  int dataplane_pidfd_ = -1;  // watched only after an idle sleep, never on the busy path
  bool dataplane_exited_ = false;
  // Replies waiting for flush; bounded so a burst never needs more.
  shm::Descriptor pending_[kPendingCapacity];
  std::uint32_t pending_count_ = 0;
  WindowEntry window_[kEdfWindow];
  std::uint32_t window_count_ = 0;
  std::uint64_t window_seq_ = 0;
  std::uint32_t streak_ = 0;  // interactive served in a row while background waited
  SchedulingPolicy scheduling_{};
  WaitPolicy policy_{};
  std::uint32_t spin_budget_ = 64;
  // The data plane's hop clock, from the segment header: the dequeue and done stamps must be on
  // the time base of the data plane's rx and enqueue stamps (and its deadlines).
  TscClock clock_{};
  std::uint64_t span_state_ = 0;  // splitmix64 state of the handlers' span ids, seeded at attach
  WorkerStats stats_{};
};

// Given to a run() handler for one request.
class ReplyWriter {
 public:
  ReplyWriter(Worker& worker, const Request& request) noexcept : worker_(worker), request_(request) {}
  // A loaned buffer of at least size bytes; empty span when none is available.
  [[nodiscard]] std::span<std::byte> loan(std::uint32_t size) noexcept {
    if (!worker_.try_loan(size, buffer_)) return {};
    return buffer_.span();
  }
  // The request's own buffer.
  [[nodiscard]] std::span<std::byte> in_place() noexcept {
    buffer_ = worker_.in_place(request_);
    return buffer_.span();
  }
  // Sends the first length bytes of the buffer taken with loan() or in_place().
  void commit(std::uint32_t length, ReplyStatus status = ReplyStatus::ok) noexcept {
    committed_ = true;
    length_ = length;
    status_ = status;
  }
  [[nodiscard]] bool committed() const noexcept { return committed_; }
  [[nodiscard]] const ReplyBuffer& buffer() const noexcept { return buffer_; }
  [[nodiscard]] std::uint32_t length() const noexcept { return length_; }
  [[nodiscard]] ReplyStatus status() const noexcept { return status_; }

 private:
  Worker& worker_;
  const Request& request_;
  ReplyBuffer buffer_{};
  std::uint32_t length_ = 0;
  ReplyStatus status_ = ReplyStatus::ok;
  bool committed_ = false;
};

template <typename Handler>
void Worker::run(Handler&& handler, const std::atomic<bool>& stop) {
  Request burst[kMaxBurst];
  while (!stop.load(std::memory_order_relaxed) && !dataplane_exited_) {
    std::uint32_t n = receive_burst(burst, kMaxBurst);
    if (n == 0) {
      wait_for_requests(&stop);
      continue;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      ReplyWriter writer(*this, burst[i]);
      handler(burst[i], writer);
      ReplyBuffer buffer = writer.buffer();
      std::uint32_t length = writer.length();
      ReplyStatus status = writer.status();
      if (!writer.committed() || !buffer.valid() || length > buffer.capacity) {
        // Never leave a request unanswered: an empty error reply, in the handler's loaned
        // buffer if it took one (so that loan goes back to the data plane), else in place.
        status = writer.committed() ? ReplyStatus::reply_too_large : ReplyStatus::handler_error;
        if (!buffer.valid()) buffer = in_place(burst[i]);
        length = 0;
      }
      if (!try_complete(burst[i], buffer, length, status)) {
        flush(&stop);
        // Still no room only when stopping; the data plane then reports the request lost.
        if (!try_complete(burst[i], buffer, length, status)) return;
      }
    }
    flush(&stop);
  }
  flush(&stop);
}

}  // namespace axon::sdk

// Worker side of the segment: attach, receive, loan, complete, wait.
#include "axon/sdk/worker.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "axon/common/clock.h"
#include "axon/shm/eventcount.h"
#include "axon/shm/handoff.h"

namespace axon::sdk {

using shm::ShmError;
using shm::ShmResult;

namespace {

constexpr int kDefaultConnectTimeoutMs = 5000;

int connect_timeout_ms(int given) {
  if (given >= 0) return given;
  if (const char* text = std::getenv("AXON_WORKER_CONNECT_TIMEOUT_MS"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && value >= 0 && value <= 3'600'000) return int(value);
  }
  return kDefaultConnectTimeoutMs;
}

// AXON_BACKGROUND_EVERY: the starvation-protection share (SchedulingPolicy). A malformed
// value is ignored (the default applies) rather than failing the attach of a live worker.
std::uint32_t background_every_from_env() {
  if (const char* text = std::getenv("AXON_BACKGROUND_EVERY"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    unsigned long value = std::strtoul(text, &end, 10);
    if (end != text && *end == '\0' && *text != '-' && value <= kMaxBackgroundEvery) return std::uint32_t(value);
  }
  return kDefaultBackgroundEvery;
}

// When a request's deadline passes: deadline_us counts from the data plane's rx stamp (as
// the data plane's own deadline check does), or from the enqueue stamp when rx is not set.
std::uint64_t absolute_deadline(const shm::Descriptor& d) noexcept {
  if (d.deadline_us == 0) return ~std::uint64_t{0};
  const std::uint64_t base = d.hop_ns[shm::kHopRx] != 0 ? d.hop_ns[shm::kHopRx] : d.hop_ns[shm::kHopEnqueue];
  return base + std::uint64_t(d.deadline_us) * 1000u;
}

// The handler's span id: splitmix64 over a per-worker state seeded from getrandom, so ids
// are unique within a worker and unpredictable across workers; never zero (W3C).
void next_span_id(std::uint64_t& state, std::uint8_t (&out)[8]) noexcept {
  std::uint64_t z = 0;
  while (z == 0) {
    z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
  }
  std::memcpy(out, &z, sizeof z);
}

std::uint64_t span_seed() noexcept {
  std::uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != ssize_t(sizeof seed)) {
    seed = monotonic_ns() ^ (std::uint64_t(getpid()) << 32);
  }
  return seed;
}

int remaining_ms(std::uint64_t deadline_ns) {
  const std::uint64_t now = monotonic_ns();
  return now >= deadline_ns ? 0 : int((deadline_ns - now + 999'999) / 1'000'000);
}

// Waits for the handoff reply; true when a message is there, false when the data plane
// closed the connection without one (it refused us: the slot is occupied or dying).
ShmResult<bool> wait_handoff(int sock, int timeout_ms) {
  pollfd pfd{sock, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) {
    return make_error(ShmError::handoff_failed, "no segment arrived within " + std::to_string(timeout_ms) +
                                                    " ms; is the data plane running and did it accept this worker?");
  }
  char probe;
  ssize_t got = recv(sock, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  return got > 0;
}

// The data plane's pid as this process sees it, for the exit watch. SO_PEERCRED is
// translated into our pid namespace; the handoff's sender_pid is in the data plane's. Watch
// only when both agree the peer is the data plane (a containerised worker, or a socket
// brokered by another process, gets no watch rather than a watch on the wrong process).
int dataplane_pid_of(int sock, const shm::HandoffMessage& message) {
  if (message.sender_pid <= 0) return 0;
  auto peer = shm::peer_credentials(sock);
  return peer && peer->pid == message.sender_pid ? int(peer->pid) : 0;
}

// Before the segment fd arrives: a dumpable process's /proc/<pid>/fd (and its memory)
// is open to every other process of its uid, so another process of the worker's user
// could open the segment read-write through it. execve resets the flag, so whoever
// spawned us cannot set it for us. Root (CAP_SYS_PTRACE) can still debug the worker.
void become_undumpable() noexcept {
  (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

}  // namespace

ShmResult<Worker> Worker::attach(int fd, std::uint64_t expected_generation, int dataplane_pid) {
  auto region = shm::Region::map_fd(fd);
  if (!region) return region.error();
  auto view = shm::validate_segment(region->base(), region->size());
  if (!view) return view.error();
  if (expected_generation != 0 && view->header->generation != expected_generation) {
    return make_error(ShmError::generation_mismatch,
                      "segment generation " + std::to_string(view->header->generation) + " but the handoff said " +
                          std::to_string(expected_generation) + "; the data plane recycled it, reconnect");
  }
  Worker worker;
  worker.region_ = std::move(region).value();
  worker.view_ = view.value();
  const auto& v = worker.view_;
  worker.requests_ = shm::RingConsumer<shm::Descriptor>(v.request_ring, v.slots<shm::Descriptor>(v.request_ring));
  worker.background_ =
      shm::RingConsumer<shm::Descriptor>(v.background_ring, v.slots<shm::Descriptor>(v.background_ring));
  worker.scheduling_.background_every = background_every_from_env();
  worker.replies_ = shm::RingProducer<shm::Descriptor>(v.reply_ring, v.slots<shm::Descriptor>(v.reply_ring));
  worker.small_loans_ = shm::RingConsumer<shm::LoanSlot>(v.small_loan_ring, v.slots<shm::LoanSlot>(v.small_loan_ring));
  worker.large_loans_ = shm::RingConsumer<shm::LoanSlot>(v.large_loan_ring, v.slots<shm::LoanSlot>(v.large_loan_ring));
  worker.spin_budget_ = worker.policy_.spin_min;
  worker.clock_ = shm::hop_clock_of(*v.header);
  worker.span_state_ = span_seed();
  v.header->worker_pid.store(std::uint32_t(getpid()), std::memory_order_relaxed);
  v.header->worker_generation.store(v.header->generation, std::memory_order_relaxed);
  v.header->worker_state.store(std::uint32_t(shm::WorkerState::attached), std::memory_order_release);
  if (dataplane_pid > 0) {
    worker.dataplane_pidfd_ = int(syscall(SYS_pidfd_open, pid_t(dataplane_pid), 0));
    // ESRCH: it is already gone. Any other failure only costs the early exit notice.
    if (worker.dataplane_pidfd_ < 0 && errno == ESRCH) worker.dataplane_exited_ = true;
  }
  return worker;
}

void Worker::check_dataplane() noexcept {
  if (dataplane_pidfd_ < 0 || dataplane_exited_) return;
  pollfd pfd{dataplane_pidfd_, POLLIN, 0};
  if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN) != 0) dataplane_exited_ = true;
}

ShmResult<Worker> Worker::connect(const std::string& socket_path, int timeout_ms) {
  become_undumpable();
  timeout_ms = connect_timeout_ms(timeout_ms);
  const std::uint64_t deadline = monotonic_ns() + std::uint64_t(timeout_ms) * 1'000'000u;
  int backoff_ms = 5;
  for (int attempt = 1;; ++attempt) {
    // connect_handoff itself waits out ENOENT / ECONNREFUSED (socket not there yet).
    auto sock = shm::connect_handoff(socket_path, remaining_ms(deadline));
    if (!sock) return sock.error();
    // A live data plane answers at once (segment or refusal); the floor keeps the last
    // attempt of a spent budget from reading as "no answer".
    auto ready = wait_handoff(sock.value(), std::max(remaining_ms(deadline), 200));
    if (!ready) {
      close(sock.value());
      return ready.error();
    }
    if (ready.value()) {
      auto received = shm::receive_segment(sock.value(), 0);
      const int dataplane_pid = received ? dataplane_pid_of(sock.value(), received->message) : 0;
      close(sock.value());
      if (!received) return received.error();
      return attach(received->fd, received->message.generation, dataplane_pid);
    }
    close(sock.value());
    if (remaining_ms(deadline) <= backoff_ms) {
      return make_error(ShmError::handoff_failed,
                        "the data plane refused the handoff on " + socket_path + " " + std::to_string(attempt) +
                            " time(s) within " + std::to_string(timeout_ms) +
                            " ms: the slot already has a live worker or is still reclaiming a dead one (its log "
                            "says which); use a vacant slot or raise AXON_WORKER_CONNECT_TIMEOUT_MS");
    }
    usleep(useconds_t(backoff_ms) * 1000u);
    backoff_ms = std::min(backoff_ms * 2, 100);
  }
}

ShmResult<Worker> Worker::from_environment(int timeout_ms) {
  become_undumpable();
  if (const char* inherited = std::getenv("AXON_WORKER_FD"); inherited != nullptr && *inherited != '\0') {
    char* end = nullptr;
    long fd = std::strtol(inherited, &end, 10);
    if (end == inherited || *end != '\0' || fd < 0) {
      return make_error(ShmError::bad_fd, std::string("AXON_WORKER_FD='") + inherited + "' is not a descriptor number");
    }
    auto received = shm::receive_segment(int(fd), connect_timeout_ms(timeout_ms));
    const int dataplane_pid = received ? dataplane_pid_of(int(fd), received->message) : 0;
    close(int(fd));
    if (!received) return received.error();
    return attach(received->fd, received->message.generation, dataplane_pid);
  }
  if (const char* path = std::getenv("AXON_WORKER_SOCKET"); path != nullptr && *path != '\0') {
    return connect(path, timeout_ms);
  }
  return make_error(ShmError::handoff_failed,
                    "neither AXON_WORKER_FD nor AXON_WORKER_SOCKET is set; start workers from axon, or set "
                    "AXON_WORKER_SOCKET to the data plane's worker socket");
}

Worker::Worker(Worker&& other) noexcept {
  *this = std::move(other);
}

Worker& Worker::operator=(Worker&& other) noexcept {
  if (this != &other) {
    if (view_.header != nullptr) detach();
    region_ = std::move(other.region_);
    view_ = other.view_;
    requests_ = other.requests_;
    background_ = other.background_;
    replies_ = other.replies_;
    small_loans_ = other.small_loans_;
    large_loans_ = other.large_loans_;
    std::memcpy(pending_, other.pending_, sizeof pending_);
    pending_count_ = other.pending_count_;
    std::memcpy(static_cast<void*>(window_), other.window_, sizeof window_);
    window_count_ = other.window_count_;
    window_seq_ = other.window_seq_;
    streak_ = other.streak_;
    scheduling_ = other.scheduling_;
    policy_ = other.policy_;
    spin_budget_ = other.spin_budget_;
    clock_ = other.clock_;
    span_state_ = other.span_state_;
    stats_ = other.stats_;
    if (dataplane_pidfd_ >= 0) close(dataplane_pidfd_);
    dataplane_pidfd_ = other.dataplane_pidfd_;
    dataplane_exited_ = other.dataplane_exited_;
    other.dataplane_pidfd_ = -1;
    other.view_ = shm::SegmentView{};
    other.pending_count_ = 0;
    other.window_count_ = 0;
  }
  return *this;
}

Worker::~Worker() {
  if (view_.header != nullptr) detach();
  if (dataplane_pidfd_ >= 0) close(dataplane_pidfd_);
}

void Worker::detach() noexcept {
  if (view_.header == nullptr) return;
  (void)try_flush();
  view_.header->worker_state.store(std::uint32_t(shm::WorkerState::detached), std::memory_order_release);
}

void Worker::set_scheduling_policy(const SchedulingPolicy& policy) noexcept {
  scheduling_ = policy;
  if (scheduling_.background_every > kMaxBackgroundEvery) scheduling_.background_every = kMaxBackgroundEvery;
  streak_ = 0;
}

bool Worker::valid_buffer(const shm::Descriptor& d) const noexcept {
  // The data plane is trusted, but a bounds check is cheap insurance against a corrupted
  // slot taking the worker down.
  const shm::SlabClass& slab = (d.flags & shm::kFlagLargeBuffer) != 0 ? view_.header->large : view_.header->small;
  return d.buffer_offset >= slab.offset && d.length <= slab.buffer_size &&
         std::uint64_t(d.buffer_offset) + slab.buffer_size <=
             slab.offset + std::uint64_t(slab.count) * slab.buffer_size;
}

// Hands one request out, or answers it deadline_exceeded when its deadline has passed.
// receive_burst keeps one pending-reply slot free per request it takes, so the expired
// reply always fits. Returns true when the request went to `out`.
bool Worker::admit(const shm::Descriptor& d, shm::PriorityClass cls, std::uint64_t now, Request* out,
                   std::uint32_t& produced) noexcept {
  const shm::SlabClass& slab = (d.flags & shm::kFlagLargeBuffer) != 0 ? view_.header->large : view_.header->small;
  Request r;
  r.meta = d;
  r.meta.hop_ns[shm::kHopWorkerDequeue] = now;
  // The handler's span, carried back in the reply (try_complete copies meta).
  if (has_trace_context(d)) {
    next_span_id(span_state_, r.meta.span_id);
  } else {
    std::memset(r.meta.span_id, 0, sizeof r.meta.span_id);
  }
  r.data = view_.at(d.buffer_offset);
  r.length = d.length;
  r.capacity = slab.buffer_size;
  if (now > absolute_deadline(d)) {
    (void)try_complete(r, in_place(r), 0, ReplyStatus::deadline_exceeded);
    ++stats_.deadline_expired;
    return false;
  }
  out[produced++] = r;
  ++(cls == shm::PriorityClass::background ? stats_.background : stats_.interactive);
  return true;
}

// Tops the EDF window up from the background ring and serves its earliest entry; an expired
// entry is answered and the next one tried, so a turn is never spent on a request that will
// not run. Returns true when a background request went to `out`; `taken` counts expired ones
// too (each holds a pending reply slot).
bool Worker::serve_background(std::uint64_t now, Request* out, std::uint32_t& produced, std::uint32_t& taken,
                              std::uint32_t max) noexcept {
  while (taken < max) {
    if (window_count_ < kEdfWindow) {
      (void)background_.try_pop_burst(kEdfWindow - window_count_, [&](const shm::Descriptor& d) noexcept {
        if (!valid_buffer(d)) return;
        WindowEntry& e = window_[window_count_++];
        e.deadline_ns = absolute_deadline(d);
        e.seq = window_seq_++;
        e.meta = d;
      });
    }
    if (window_count_ == 0) return false;
    std::uint32_t best = 0;
    for (std::uint32_t i = 1; i < window_count_; ++i) {
      const WindowEntry& a = window_[i];
      const WindowEntry& b = window_[best];
      if (a.deadline_ns < b.deadline_ns || (a.deadline_ns == b.deadline_ns && a.seq < b.seq)) best = i;
    }
    const shm::Descriptor d = window_[best].meta;
    // The window is a set ordered by (deadline, seq), so the last entry may fill the hole.
    window_[best] = window_[--window_count_];
    ++taken;
    if (admit(d, shm::PriorityClass::background, now, out, produced)) return true;
  }
  return false;
}

std::uint32_t Worker::receive_burst(Request* out, std::uint32_t max) noexcept {
  if (max > kMaxBurst) max = kMaxBurst;
  // Expired requests are answered from here: keep one pending reply slot per request taken.
  if (pending_count_ + max > kPendingCapacity) {
    (void)try_flush();
    const std::uint32_t room = kPendingCapacity - pending_count_;
    if (max > room) max = room;
  }
  const std::uint64_t now = clock_.now_ns();
  const std::uint32_t every = scheduling_.background_every;
  const std::uint64_t expired_before = stats_.deadline_expired;
  const std::uint64_t interactive_before = stats_.interactive;
  const std::uint64_t background_before = stats_.background;
  std::uint32_t produced = 0;
  std::uint32_t taken = 0;  // handed out or expired
  while (taken < max) {
    const bool background_waits = window_count_ > 0 || background_.available() > 0;
    if (background_waits && every > 0 && streak_ >= every) {
      // Starvation protection: this turn goes to background even if interactive waits.
      streak_ = 0;
      if (serve_background(now, out, produced, taken, max)) ++stats_.background_forced;
      continue;
    }
    std::uint32_t want = max - taken;
    if (background_waits && every > 0 && every - streak_ < want) want = every - streak_;
    const std::uint32_t got = requests_.try_pop_burst(want, [&](const shm::Descriptor& d) noexcept {
      if (valid_buffer(d)) {
        (void)admit(d, shm::PriorityClass::interactive, now, out, produced);
        ++taken;
      }
    });
    if (got == 0) {
      // No interactive request: background gets the worker.
      streak_ = 0;
      const std::uint32_t before = taken;
      if (background_waits) (void)serve_background(now, out, produced, taken, max);
      if (taken == before) break;
      continue;
    }
    streak_ = background_waits ? streak_ + got : 0;
  }
  stats_.received += produced;
  shm::SegmentHeader& h = *view_.header;
  auto bump = [](std::atomic<std::uint64_t>& counter, std::uint64_t by) noexcept {
    if (by != 0) counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  };
  bump(h.interactive_served, stats_.interactive - interactive_before);
  bump(h.background_served, stats_.background - background_before);
  if (stats_.deadline_expired != expired_before) {
    bump(h.deadline_expired, stats_.deadline_expired - expired_before);
    // Nobody else may flush soon (a caller that got 0 requests goes to sleep).
    (void)try_flush();
  }
  return produced;
}

bool Worker::wait_for_requests(const std::atomic<bool>* stop) noexcept {
  // Spin first: a futex wake costs tens of µs on a VM, a spin iteration tens of ns.
  for (std::uint32_t i = 0; i < spin_budget_; ++i) {
    if (requests_ready()) {
      // Work arrived while spinning: spinning pays off, allow longer next time.
      spin_budget_ = spin_budget_ > policy_.spin_max / 2 ? policy_.spin_max : spin_budget_ * 2;
      return true;
    }
    cpu_relax();
  }
  spin_budget_ = spin_budget_ / 2 < policy_.spin_min ? policy_.spin_min : spin_budget_ / 2;
  // Replies queued by receive_burst (expired requests) must not wait out a sleep.
  if (pending_count_ > 0) (void)try_flush();
  if (stop != nullptr && stop->load(std::memory_order_relaxed)) return false;
  shm::EventCount& event = view_.header->request_event;
  std::uint32_t key = shm::eventcount_prepare_wait(event);
  if (requests_ready() || (stop != nullptr && stop->load(std::memory_order_relaxed))) {
    shm::eventcount_cancel_wait(event);
    return requests_ready();
  }
  ++stats_.sleeps;
  shm::eventcount_wait(event, key, policy_.sleep_timeout_ns);
  if (requests_ready()) return true;
  // Only an idle worker pays this syscall, at most once per sleep_timeout_ns.
  check_dataplane();
  return false;
}

bool Worker::try_loan(std::uint32_t size, ReplyBuffer& out) noexcept {
  auto& ring = size <= view_.header->small.buffer_size ? small_loans_ : large_loans_;
  if (size > view_.header->large.buffer_size) {
    ++stats_.loan_failures;
    return false;
  }
  shm::LoanSlot slot{};
  if (!ring.try_pop(slot) || slot.capacity < size) {
    // A small reply may borrow a large buffer rather than fail.
    if (&ring == &small_loans_ && large_loans_.try_pop(slot) && slot.capacity >= size) {
      // fall through with the large buffer
    } else {
      ++stats_.loan_failures;
      return false;
    }
  }
  out.data = view_.at(slot.buffer_offset);
  out.capacity = slot.capacity;
  out.offset = slot.buffer_offset;
  out.in_place = false;
  return true;
}

ReplyBuffer Worker::in_place(const Request& request) noexcept {
  ReplyBuffer buffer;
  buffer.data = const_cast<std::byte*>(request.data);
  buffer.capacity = request.capacity;
  buffer.offset = request.meta.buffer_offset;
  buffer.in_place = true;
  return buffer;
}

bool Worker::try_complete(const Request& request, const ReplyBuffer& buffer, std::uint32_t length,
                          ReplyStatus status) noexcept {
  if (pending_count_ == sizeof(pending_) / sizeof(pending_[0])) {
    if (!try_flush()) return false;
  }
  shm::Descriptor& reply = pending_[pending_count_++];
  reply = request.meta;
  reply.buffer_offset = buffer.offset;
  reply.length = length;
  reply.status = std::uint16_t(status);
  reply.flags = std::uint16_t((request.meta.flags & shm::kFlagLargeBuffer) |
                              (buffer.in_place ? shm::kFlagReplyInPlace : shm::kFlagLoanedBuffer));
  reply.hop_ns[shm::kHopWorkerComplete] = clock_.now_ns();
  ++stats_.completed;
  return true;
}

bool Worker::try_flush() noexcept {
  if (pending_count_ == 0) return true;
  std::uint32_t pushed = replies_.try_push_burst(pending_, pending_count_);
  if (pushed > 0) {
    view_.header->requests_handled.fetch_add(pushed, std::memory_order_relaxed);
    std::memmove(pending_, pending_ + pushed, (pending_count_ - pushed) * sizeof(shm::Descriptor));
    pending_count_ -= pushed;
  }
  return pending_count_ == 0;
}

void Worker::flush(const std::atomic<bool>* stop) noexcept {
  std::uint32_t spins = 0;
  while (!try_flush()) {
    if (spins++ == 0) {
      ++stats_.reply_ring_full;
      view_.header->reply_ring_full.fetch_add(1, std::memory_order_relaxed);
    }
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) return;
    // The data plane polls the reply ring; it will make room without being woken.
    if (spins < 1024) {
      cpu_relax();
    } else {
      usleep(50);
    }
  }
}

}  // namespace axon::sdk

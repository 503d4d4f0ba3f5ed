// The open-loop engine. The schedule (Poisson send times) is fixed before anything is sent, each
// request's slot records its intended send time, and a reply's latency is charged from that
// intended time; a sender that falls behind sends at once and the delay shows up as latency
// instead of silently lowering the offered load (no coordinated omission).
//
// Request ids are run_tag << 40 | sequence, so a reply finds its slot in a power-of-two ring in
// O(1). A reaper walks the ring in sequence order behind the timeout and counts every request
// without a reply as lost; the sender never reuses a slot the reaper has not passed.
//
// With --bg-rate a second Poisson stream of background-class requests runs beside the first, on
// its own schedule; every slot records its request's class, so each class gets its own counts and
// latency histogram (ClassReport) while both share one sender, one socket and one id space.
//
// A request larger than one datagram goes out as a segmented message (docs/protocol.md §6): the
// batch's datagram slots are laid out so that slot j always carries segment j % segments, its
// payload bytes written once at start-up; per request only the headers are written. Segmented
// replies are tracked per request slot by a bitmap (segments.h): a request is answered when its
// last reply segment arrives, and its latency is taken then.
//
// With --retransmit-fraction a share of the requests is sent a second time, same request id and
// header, a fixed time after the first intended send, from a preallocated queue; replies beyond
// the first are counted as duplicates.
//
// Two transports carry the same datagrams: a connected kernel UDP socket (sendmmsg/recvmmsg), or
// with --xdp-dev an AF_XDP socket on the load generator's own veth end (xsk_io.h), which costs
// far less per request and so keeps the load side ahead of the appliance.
#include "loadgen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "axon/common/clock.h"
#include "axon/common/cpu.h"
#include "axon/common/log.h"
#include "axon/loadgen/net.h"
#include "axon/loadgen/schedule.h"
#include "axon/loadgen/segments.h"

namespace axon::loadgen {
namespace {

namespace p = axon::protocol;
constexpr const char* kLog = "loadgen";
constexpr unsigned kBatch = 32;
constexpr unsigned kSeqBits = 40;
constexpr std::uint64_t kSeqMask = (1ull << kSeqBits) - 1;
constexpr std::size_t kMaxRingSlots = 1u << 22;
constexpr std::uint64_t kSecond = 1'000'000'000ull;
constexpr std::size_t kRetransmitQueue = 1u << 14;   // requests waiting for their second send
constexpr std::uint32_t kMaxRequestSegments = 1024;  // the appliance reassembles no more (§6)

struct Slot {
  std::atomic<std::uint64_t> seq1{0};  // sequence + 1 of the request in this slot; 0 = never used
  // Written before seq1 is released. Atomic (relaxed) because a late reply may read it while the
  // sender reuses the slot; the reader re-checks seq1 afterwards and discards a torn pair.
  std::atomic<std::uint64_t> intended_ns{0};
  std::atomic<std::uint8_t> cls{0};  // the request's priority class (index into classes)
};

// One open-loop stream of requests of one class: its schedule and what it addresses.
struct Stream {
  std::unique_ptr<PoissonSchedule> schedule;
  p::Priority priority = p::Priority::interactive;
  const std::vector<std::uint32_t>* tenants = nullptr;
  const std::vector<std::uint32_t>* agents = nullptr;
  std::uint32_t deadline_us = 0;
  std::uint64_t next = 0;   // its next intended send time
  std::uint64_t count = 0;  // requests built so far (spreads them over agents and tenants)
};

// A request waiting for its second send: its first intended send time and its header.
struct Retransmit {
  std::uint64_t intended = 0;
  p::Header header;
};

std::size_t ring_slots_for(double rate, unsigned timeout_ms) {
  // Twice the requests that can be outstanding within one timeout, plus slack for bursts.
  double need = 2.0 * rate * (static_cast<double>(timeout_ms) / 1000.0 + 0.25) + 4096;
  std::size_t slots = 4096;
  while (static_cast<double>(slots) < need && slots < kMaxRingSlots) slots <<= 1;
  return slots;
}

class Engine {
 public:
  Engine(const LoadgenOptions& o, const std::atomic<bool>& stop) : o_(o), stop_(stop) {}
  ~Engine() {
    if (fd_ >= 0) ::close(fd_);
  }

  Result<Ok, LoadgenError> open();
  LoadgenReport run();

 private:
  // Sender side (the sender thread, or the single loop).
  bool send_due(std::uint64_t now, bool nonblocking);
  p::Header build_request(unsigned k, std::uint64_t seq, Stream& stream);
  void write_request(unsigned k, p::Header h) noexcept;
  unsigned send_retransmits(std::uint64_t now, unsigned n) noexcept;
  void advance_schedule();
  // Receiver side (the receiver thread, or the single loop).
  unsigned receive_batch(int flags);
  void on_datagram(std::span<const std::uint8_t> dgram, std::uint64_t now);
  void reap(std::uint64_t now, bool everything);
  void maybe_live(std::uint64_t now);
  bool measured(std::uint64_t intended) const noexcept { return intended >= measure_start_ && intended < measure_end_; }

  void sender_thread();
  void receiver_thread();
  void single_thread();

  LoadgenOptions o_;
  const std::atomic<bool>& stop_;
  int fd_ = -1;
  std::unique_ptr<XskIo> xsk_;  // the AF_XDP transport, when --xdp-dev is set
  int poll_fd_ = -1;            // what an idle loop waits on: the UDP socket or the AF_XDP socket
  std::uint64_t run_tag_ = 0;
  p::TraceId trace_id_{};
  std::uint64_t timeout_ns_ = 0;
  std::uint64_t start_ns_ = 0, measure_start_ = 0, measure_end_ = 0, hard_end_ = 0;

  std::size_t ring_size_ = 0;
  std::unique_ptr<Slot[]> ring_;
  std::unique_ptr<std::uint64_t[]> done_;      // receiver-owned: seq + 1 of the answered request
  std::unique_ptr<ReplyProgress[]> progress_;  // receiver-owned: segmented replies being collected

  std::atomic<std::uint64_t> published_{0};  // requests sent (slots valid below this sequence)
  std::atomic<std::uint64_t> reaped_{0};     // the reaper's cursor, read by the sender
  std::atomic<bool> sender_finished_{false};
  std::atomic<std::uint64_t> live_sent_{0};  // measured + warmup sends, for the live line
  std::atomic<std::uint64_t> schedule_stop_ns_{0};

  // Sender state.
  std::array<Stream, kClasses> streams_;
  unsigned stream_count_ = 1;
  unsigned next_stream_ = 0;  // the stream whose request is due next
  // Per datagram slot of the batch: the class of the request that starts there (kClasses: not
  // counted: a later segment, a retransmit, a malformed datagram or a request outside the window).
  std::vector<std::uint8_t> tx_cls_;
  SegmentPlan plan_;          // how every request is cut (one segment when it fits a datagram)
  unsigned tx_cap_ = kBatch;  // datagram slots per batch: at least one whole request
  std::size_t slot_len_ = 0;  // bytes per datagram slot: header + S
  std::unique_ptr<Retransmit[]> rtx_;
  std::uint64_t rtx_head_ = 0, rtx_tail_ = 0;
  std::uint64_t retransmit_after_ns_ = 0;
  std::unique_ptr<Rng> spread_;
  std::uint64_t next_intended_ = 0;
  std::uint64_t seq_ = 0;
  bool schedule_done_ = false;
  unsigned malformed_next_ = 0;
  std::vector<std::uint8_t> tx_buf_;
  std::vector<std::uint8_t> malformed_buf_;
  std::array<std::size_t, kMalformedKinds> malformed_len_{};
  std::size_t datagram_len_ = 0;  // one unsegmented request (malformed datagrams are this long)
  std::vector<mmsghdr> tx_;
  std::vector<iovec> tx_iov_;
  LoadgenReport sender_report_;
  std::uint64_t ring_stalls_ = 0;

  // Receiver state.
  std::vector<std::uint8_t> rx_buf_;
  std::array<mmsghdr, kBatch> rx_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::uint64_t reap_cursor_ = 0;
  LoadgenReport recv_report_;
  std::uint64_t packets_rx_ = 0;
  std::uint64_t packets_tx_ = 0;  // sender side
  LatencyHistogram interval_;
  std::uint64_t next_live_ns_ = 0;
  std::uint64_t live_prev_sent_ = 0, live_prev_busy_ = 0, live_prev_errors_ = 0, live_prev_lost_ = 0;
};

Result<Ok, LoadgenError> Engine::open() {
  if (!(o_.rate > 0) || o_.rate > 50e6)
    return make_error(LoadgenError::invalid_options, "--rate must be between 0 and 50,000,000 requests/s");
  if (!(o_.duration_s > 0) || o_.duration_s > kMaxDurationS)
    return make_error(LoadgenError::invalid_options, "--duration must be between 0 and 600 s");
  if (o_.warmup_s < 0 || o_.warmup_s > 60)
    return make_error(LoadgenError::invalid_options, "--warmup must be between 0 and 60 s");
  if (o_.timeout_ms == 0 || o_.timeout_ms > 10'000)
    return make_error(LoadgenError::invalid_options, "--timeout-ms must be between 1 and 10000");
  if (o_.tenants.empty() || o_.agents.empty())
    return make_error(LoadgenError::invalid_options, "at least one tenant and one agent are needed");
  if (o_.payload_bytes > p::kMaxMessageLen)
    return make_error(LoadgenError::invalid_options, "--payload must be at most 65536 bytes (docs/protocol.md §6)");
  if (o_.max_datagram <= p::kHeaderLen || o_.max_datagram > p::kMaxDatagramLen)
    return make_error(LoadgenError::invalid_options, "--max-datagram must be between 81 and 65507 bytes");
  plan_ = plan_segments(static_cast<std::uint32_t>(o_.payload_bytes),
                        static_cast<std::uint32_t>(o_.max_datagram - p::kHeaderLen));
  if (plan_.count > kMaxRequestSegments)
    return make_error(LoadgenError::invalid_options,
                      "--payload needs more than 1024 segments of --max-datagram; "
                      "raise --max-datagram");
  if (o_.malformed_ratio < 0 || o_.malformed_ratio >= 1)
    return make_error(LoadgenError::invalid_options, "--malformed-ratio must be in [0, 1)");
  if (o_.malformed_ratio > 0 && plan_.count > 1)
    return make_error(LoadgenError::invalid_options, "--malformed-ratio needs a --payload that fits one datagram");
  if (o_.retransmit_fraction < 0 || o_.retransmit_fraction > 1)
    return make_error(LoadgenError::invalid_options, "--retransmit-fraction must be in [0, 1]");
  if (o_.retransmit_fraction > 0 && (o_.retransmit_after_us == 0 || o_.retransmit_after_us > 1'000'000))
    return make_error(LoadgenError::invalid_options, "--retransmit-after-us must be between 1 and 1000000");
  if (o_.threads != 1 && o_.threads != 2) return make_error(LoadgenError::invalid_options, "--threads must be 1 or 2");
  if (o_.bg_rate < 0 || o_.bg_rate > 50e6)
    return make_error(LoadgenError::invalid_options, "--bg-rate must be between 0 and 50,000,000 requests/s");

  auto target = resolve_udp(o_.target, p::kDefaultPort);
  if (!target) return make_error(LoadgenError::invalid_options, "--target: " + target.message());
  fd_ = ::socket(target->family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return make_error(LoadgenError::socket_failed, std::string("socket: ") + std::strerror(errno));
  int buf = 8 << 20;
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0)
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0)
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  // The receiver thread wakes at least every millisecond to reap and print, even when idle.
  timeval tv{0, 1000};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!o_.bind.empty()) {
    auto src = numeric_address(o_.bind, 0);
    if (!src) return make_error(LoadgenError::invalid_options, "--bind: " + src.message());
    if (::bind(fd_, src->get(), src->len) != 0)
      return make_error(LoadgenError::socket_failed, "bind " + o_.bind + ": " + std::strerror(errno));
  }
  if (!o_.xdp_dev.empty()) {
    // The AF_XDP path sends IPv4 frames it builds itself. The UDP socket stays open, bound to the
    // source port, so that no other socket on this host can take the port the replies come to.
    if (target->family() != AF_INET)
      return make_error(LoadgenError::invalid_options, "--xdp-dev needs an IPv4 --target");
    if (o_.bind.empty()) {
      auto any = numeric_address("0.0.0.0", 0);
      if (!any || ::bind(fd_, any->get(), any->len) != 0)
        return make_error(LoadgenError::socket_failed, std::string("bind: ") + std::strerror(errno));
    }
    SockAddr local;
    local.len = sizeof local.storage;
    if (getsockname(fd_, local.get(), &local.len) != 0)
      return make_error(LoadgenError::socket_failed, std::string("getsockname: ") + std::strerror(errno));
    const auto* dst = reinterpret_cast<const sockaddr_in*>(target->get());
    XskOptions xo;
    xo.dev = o_.xdp_dev;
    xo.queue = o_.xdp_queue;
    xo.dst_mac = o_.dst_mac;
    xo.frames = o_.xdp_frames;
    auto xsk = XskIo::open(xo, dst->sin_addr.s_addr, dst->sin_port, local.port());
    if (!xsk) return make_error(LoadgenError::socket_failed, "--xdp-dev: " + xsk.message());
    xsk_ = std::move(xsk).value();
    poll_fd_ = xsk_->fd();
  } else {
    // Connected: the kernel skips the route lookup per datagram and filters other peers.
    if (::connect(fd_, target->get(), target->len) != 0)
      return make_error(LoadgenError::socket_failed, "connect " + target->to_string() + ": " + std::strerror(errno));
    poll_fd_ = fd_;
  }

  std::uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) r = monotonic_ns();
  run_tag_ = (r & 0xFFFFFF) | 1;  // 24 bits above the 40-bit sequence; never 0
  Rng id_rng(o_.seed ^ r);
  std::uint64_t t0 = id_rng.next() | 1, t1 = id_rng.next();
  std::memcpy(trace_id_.data(), &t0, 8);
  std::memcpy(trace_id_.data() + 8, &t1, 8);

  timeout_ns_ = std::uint64_t{o_.timeout_ms} * 1'000'000ull;
  ring_size_ = ring_slots_for(o_.rate + o_.bg_rate, o_.timeout_ms);
  ring_ = std::make_unique<Slot[]>(ring_size_);
  done_ = std::make_unique<std::uint64_t[]>(ring_size_);
  // Replies are segmented when they are longer than one datagram: the echo of a segmented request.
  if (plan_.count > 1) progress_ = std::make_unique<ReplyProgress[]>(ring_size_);
  if (o_.retransmit_fraction > 0) rtx_ = std::make_unique<Retransmit[]>(kRetransmitQueue);
  retransmit_after_ns_ = std::uint64_t{o_.retransmit_after_us} * 1000;

  // Datagram slots: a batch holds at least one whole request; slot j carries segment j % count,
  // whose payload bytes (a fixed, recognisable pattern) are written here once.
  datagram_len_ = p::kHeaderLen + (plan_.count > 1 ? plan_.size : o_.payload_bytes);
  slot_len_ = datagram_len_;
  tx_cap_ = std::max<unsigned>(kBatch / plan_.count, 1) * plan_.count;
  tx_buf_.assign(std::size_t{tx_cap_} * slot_len_, 0);
  tx_.assign(tx_cap_, mmsghdr{});
  tx_iov_.assign(tx_cap_, iovec{});
  tx_cls_.assign(tx_cap_, static_cast<std::uint8_t>(kClasses));
  for (unsigned k = 0; k < tx_cap_; ++k) {
    const std::uint32_t seg = k % plan_.count;
    const std::uint32_t len = plan_.payload_of(seg);
    for (std::uint32_t i = 0; i < len; ++i)
      tx_buf_[k * slot_len_ + p::kHeaderLen + i] = static_cast<std::uint8_t>('a' + (plan_.offset_of(seg) + i) % 26);
    tx_iov_[k] = {tx_buf_.data() + k * slot_len_, p::kHeaderLen + len};
    tx_[k].msg_hdr.msg_iov = &tx_iov_[k];
    tx_[k].msg_hdr.msg_iovlen = 1;
  }
  malformed_buf_.assign(kMalformedKinds * datagram_len_, 0);
  for (std::size_t k = 0; k < kMalformedKinds; ++k)
    malformed_len_[k] = build_malformed(static_cast<MalformedKind>(k),
                                        {malformed_buf_.data() + k * datagram_len_, datagram_len_}, o_.payload_bytes);

  rx_buf_.assign(kBatch * (p::kMaxDatagramLen + 1), 0);
  for (unsigned k = 0; k < kBatch; ++k) {
    rx_iov_[k] = {rx_buf_.data() + k * (p::kMaxDatagramLen + 1), p::kMaxDatagramLen + 1};
    rx_[k].msg_hdr.msg_iov = &rx_iov_[k];
    rx_[k].msg_hdr.msg_iovlen = 1;
  }
  return Ok{};
}

p::Header Engine::build_request(unsigned k, std::uint64_t seq, Stream& stream) {
  p::Header h;
  h.type = p::MessageType::request;
  h.priority = stream.priority;
  h.trace_flags = p::kTraceSampled;
  h.message_len = static_cast<std::uint32_t>(o_.payload_bytes);
  h.segment_count = static_cast<std::uint16_t>(plan_.count);
  // Spread over agents first, then tenants, so every (tenant, agent) pair sees traffic.
  const auto& agents = *stream.agents;
  const auto& tenants = *stream.tenants;
  h.agent_id = agents[stream.count % agents.size()];
  h.tenant_id = tenants[(stream.count / agents.size()) % tenants.size()];
  ++stream.count;
  h.session_key = o_.sessions == 0 ? 0 : 1 + spread_->next() % o_.sessions;
  h.request_id = (run_tag_ << kSeqBits) | (seq & kSeqMask);
  h.trace_id = trace_id_;
  std::uint64_t span = seq + 1;  // one span per request, never zero
  std::memcpy(h.span_id.data(), &span, sizeof span);
  h.deadline_us = stream.deadline_us;
  if (o_.payload_variants > 0) {
    // The variant in the first payload bytes (slot k holds segment 0): a cacheable agent then
    // sees payload_variants distinct payloads over and over.
    const std::uint64_t variant = seq % o_.payload_variants;
    std::memcpy(tx_buf_.data() + k * slot_len_ + p::kHeaderLen, &variant,
                std::min<std::size_t>(sizeof variant, plan_.payload_of(0)));
  }
  write_request(k, h);
  return h;
}

// Writes the headers of request h's segments into slots k .. k + count - 1 (their payloads are
// already there) and points the batch's iovecs at them.
void Engine::write_request(unsigned k, p::Header h) noexcept {
  for (std::uint32_t seg = 0; seg < plan_.count; ++seg) {
    h.segment_index = static_cast<std::uint16_t>(seg);
    h.payload_len = static_cast<std::uint16_t>(plan_.payload_of(seg));
    std::uint8_t* slot = tx_buf_.data() + (k + seg) * slot_len_;
    (void)p::encode_header(h, {slot, p::kHeaderLen});
    tx_iov_[k + seg] = {slot, p::kHeaderLen + h.payload_len};
    if (seg > 0) tx_cls_[k + seg] = static_cast<std::uint8_t>(kClasses);
  }
}

// Adds the retransmits that are due to the batch from slot n on; returns the new slot count.
unsigned Engine::send_retransmits(std::uint64_t now, unsigned n) noexcept {
  while (rtx_head_ != rtx_tail_ && n + plan_.count <= tx_cap_) {
    Retransmit& r = rtx_[rtx_head_ & (kRetransmitQueue - 1)];
    if (r.intended + retransmit_after_ns_ > now) break;
    if (o_.payload_variants > 0) {
      const std::uint64_t variant = (r.header.request_id & kSeqMask) % o_.payload_variants;
      std::memcpy(tx_buf_.data() + n * slot_len_ + p::kHeaderLen, &variant,
                  std::min<std::size_t>(sizeof variant, plan_.payload_of(0)));
    }
    write_request(n, r.header);
    tx_cls_[n] = static_cast<std::uint8_t>(kClasses);
    if (measured(r.intended)) ++sender_report_.retransmits;
    ++rtx_head_;
    n += plan_.count;
  }
  return n;
}

// Moves the stream that was due to its next send time and picks the stream due next.
void Engine::advance_schedule() {
  Stream& sent = streams_[next_stream_];
  sent.next = sent.schedule->next();
  next_stream_ = 0;
  for (unsigned s = 1; s < stream_count_; ++s)
    if (streams_[s].next < streams_[next_stream_].next) next_stream_ = s;
  next_intended_ = streams_[next_stream_].next;
}

// Sends every request that is due (up to one batch). Returns whether it sent anything.
bool Engine::send_due(std::uint64_t now, bool nonblocking) {
  unsigned n = 0;
  std::uint64_t first_seq = seq_;
  if (rtx_) n = send_retransmits(now, n);
  while (n + plan_.count <= tx_cap_ && !schedule_done_) {
    if (o_.flood) next_intended_ = now;  // always due, and charged from now
    if (next_intended_ >= measure_end_ || stop_.load(std::memory_order_relaxed)) {
      schedule_done_ = true;
      schedule_stop_ns_.store(std::min(next_intended_, measure_end_), std::memory_order_relaxed);
      break;
    }
    if (next_intended_ > now) break;
    if (seq_ - reaped_.load(std::memory_order_acquire) >= ring_size_) {
      ++ring_stalls_;  // the reaper must pass first; the delay is charged as latency
      break;
    }
    std::uint64_t intended = next_intended_;
    bool in_window = measured(intended);
    if (o_.malformed_ratio > 0 && spread_->uniform() < o_.malformed_ratio) {
      unsigned kind = malformed_next_++ % kMalformedKinds;
      tx_iov_[n] = {malformed_buf_.data() + kind * datagram_len_, malformed_len_[kind]};
      tx_cls_[n] = kClasses;
      if (in_window) {
        ++sender_report_.malformed_sent;
        ++sender_report_.malformed_by_kind[kind];
      }
    } else {
      Slot& slot = ring_[seq_ & (ring_size_ - 1)];
      // Seqlock-style reuse: invalidate, then write, then publish, so that a reader racing with
      // the reuse sees a changed seq1 and never pairs the old sequence with the new time.
      slot.seq1.store(0, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
      Stream& stream = streams_[next_stream_];
      const auto cls = static_cast<std::uint8_t>(stream.priority);
      slot.intended_ns.store(intended, std::memory_order_relaxed);
      slot.cls.store(cls, std::memory_order_relaxed);
      slot.seq1.store(seq_ + 1, std::memory_order_release);
      const p::Header h = build_request(n, seq_, stream);
      tx_cls_[n] = in_window ? cls : static_cast<std::uint8_t>(kClasses);
      if (rtx_ && spread_->uniform() < o_.retransmit_fraction) {
        if (rtx_tail_ - rtx_head_ < kRetransmitQueue) {
          rtx_[rtx_tail_++ & (kRetransmitQueue - 1)] = Retransmit{intended, h};
        } else if (in_window) {
          ++sender_report_.retransmit_skipped;
        }
      }
      ++seq_;
      if (in_window) {
        const std::uint64_t lag = now > intended ? now - intended : 0;
        ++sender_report_.sent;
        sender_report_.send_lag.record(lag);
        ++sender_report_.classes[cls].sent;
        sender_report_.classes[cls].send_lag.record(lag);
      }
    }
    n += plan_.count;  // a malformed datagram only with one-segment requests
    if (!o_.flood) advance_schedule();
  }
  if (n == 0) return false;

  unsigned off = 0;
  unsigned attempts = 0;
  if (xsk_) {
    // No free TX slot means the kernel is not taking frames: the link pushes back because the
    // peer's receive queue is full. Take completions (and, with one thread, the replies waiting)
    // and try once more; then drop the rest at the sender, as a full link would, rather than
    // falling behind the schedule. Those requests get no reply and count as lost.
    for (int round = 0; round < 2 && off < n; ++round) {
      off += xsk_->send(tx_iov_.data() + off, n - off);
      if (off < n) {
        xsk_->reap();
        if (o_.threads == 1) receive_batch(MSG_DONTWAIT);
      }
    }
    // Whole requests: one that lost any segment gets no reply. Per class only for requests of
    // the window; the batch's last ones are the dropped ones.
    for (unsigned k = off - off % plan_.count; k < n; k += plan_.count) {
      ++sender_report_.send_dropped;
      if (tx_cls_[k] < kClasses) ++sender_report_.classes[tx_cls_[k]].send_dropped;
    }
    packets_tx_ += off;
    off = n;
  }
  while (off < n && attempts++ < 100'000) {
    int r = sendmmsg(fd_, tx_.data() + off, n - off, nonblocking ? MSG_DONTWAIT : 0);
    if (r > 0) {
      off += static_cast<unsigned>(r);
      continue;
    }
    if (errno == EINTR || errno == ECONNREFUSED) continue;  // an ICMP error from an earlier datagram
    if (errno == EAGAIN || errno == ENOBUFS) {
      // The socket buffer is full. Make room by taking replies if this thread also receives.
      if (o_.threads == 1) receive_batch(MSG_DONTWAIT);
      continue;
    }
    ++sender_report_.send_errors;
    ++off;  // skip the datagram the kernel refused; its request will count as lost
  }
  sender_report_.send_errors += n - off;
  if (!xsk_) packets_tx_ += off;
  live_sent_.fetch_add(seq_ - first_seq, std::memory_order_relaxed);
  published_.store(seq_, std::memory_order_release);
  return true;
}

unsigned Engine::receive_batch(int flags) {
  if (xsk_) {
    if (o_.threads == 1) xsk_->reap();  // with two threads the completion ring is the sender's
    std::uint64_t now = monotonic_ns();
    unsigned n = xsk_->receive(kBatch, [&](std::span<const std::uint8_t> dgram) { on_datagram(dgram, now); });
    packets_rx_ += n;
    if (n == 0 && flags == MSG_WAITFORONE) {
      // The receiver thread blocks up to 1 ms, like SO_RCVTIMEO on the socket.
      pollfd pfd{poll_fd_, POLLIN, 0};
      poll(&pfd, 1, 1);
    }
    return n;
  }
  for (unsigned k = 0; k < kBatch; ++k) rx_[k].msg_hdr.msg_flags = 0;
  int n = recvmmsg(fd_, rx_.data(), kBatch, flags, nullptr);
  if (n <= 0) return 0;  // EAGAIN, the 1 ms receive timeout, or a reported ICMP error
  packets_rx_ += static_cast<unsigned>(n);
  std::uint64_t now = monotonic_ns();
  for (int k = 0; k < n; ++k) {
    if (rx_[k].msg_hdr.msg_flags & MSG_TRUNC) {
      ++recv_report_.invalid;
      continue;
    }
    on_datagram({rx_buf_.data() + k * (p::kMaxDatagramLen + 1), rx_[k].msg_len}, now);
  }
  return static_cast<unsigned>(n);
}

void Engine::on_datagram(std::span<const std::uint8_t> dgram, std::uint64_t now) {
  if (p::validate(dgram) != p::Reason::ok || dgram[5] == AXP_MSG_REQUEST) {
    ++recv_report_.invalid;
    return;
  }
  p::Header h = p::decode_header(dgram);
  if ((h.request_id >> kSeqBits) != run_tag_) {
    // A receiver that answers a malformed datagram (e.g. unsupported_version, §7) echoes its id.
    if ((h.request_id & kMalformedIdMask) == kMalformedIdTag)
      ++recv_report_.malformed_replies;
    else
      ++recv_report_.unmatched;
    return;
  }
  std::uint64_t seq = h.request_id & kSeqMask;
  std::size_t idx = seq & (ring_size_ - 1);
  Slot& slot = ring_[idx];
  if (slot.seq1.load(std::memory_order_acquire) != seq + 1) {
    ++recv_report_.unmatched;  // never sent, or its slot was reused long ago
    return;
  }
  std::uint64_t intended = slot.intended_ns.load(std::memory_order_relaxed);
  const std::size_t cls = std::min<std::size_t>(slot.cls.load(std::memory_order_relaxed), kClasses - 1);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (slot.seq1.load(std::memory_order_relaxed) != seq + 1) {
    ++recv_report_.unmatched;  // the sender reused the slot while we read it
    return;
  }
  if (done_[idx] == seq + 1) {
    // Answered already: a reply to a retransmit (each reply has one segment 0).
    if (h.segment_index == 0 && measured(intended)) ++recv_report_.duplicate_replies;
    return;
  }
  std::uint64_t latency = now > intended ? now - intended : 0;
  if (seq < reap_cursor_ || latency > timeout_ns_) {
    // After the timeout: the reaper counts (or counted) it as lost; note it as late too.
    if (measured(intended) && h.segment_index == 0) {
      ++recv_report_.late;
      ++recv_report_.classes[cls].late;
    }
    return;
  }
  if (h.segment_count > 1) {
    // A segmented reply: answered when its last segment arrives, and timed then.
    ++recv_report_.reply_segments;
    if (!progress_) {
      ++recv_report_.reply_segments_untracked;
      return;
    }
    switch (absorb_reply_segment(progress_[idx], seq, h)) {
      case SegmentVerdict::complete: break;
      case SegmentVerdict::partial: return;
      case SegmentVerdict::duplicate: ++recv_report_.reply_segment_duplicates; return;
      case SegmentVerdict::mismatch: ++recv_report_.reply_segment_mismatch; return;
      case SegmentVerdict::offset: ++recv_report_.reply_segment_offset; return;
      case SegmentVerdict::too_many: ++recv_report_.reply_segments_untracked; return;
    }
  }
  done_[idx] = seq + 1;
  if (!measured(intended)) return;
  ClassReport& by_class = recv_report_.classes[cls];
  switch (h.type) {
    case p::MessageType::response:
      ++recv_report_.responses;
      recv_report_.latency.record(latency);
      ++by_class.responses;
      by_class.latency.record(latency);
      interval_.record(latency);
      if (h.message_len != o_.payload_bytes) ++recv_report_.payload_mismatch;
      break;
    case p::MessageType::busy:
      ++recv_report_.busy;
      ++by_class.busy;
      break;
    case p::MessageType::error: {
      ++recv_report_.errors;
      ++by_class.errors;
      auto code = std::min<std::size_t>(static_cast<std::size_t>(h.error_code), recv_report_.errors_by_code.size() - 1);
      ++recv_report_.errors_by_code[code];
      ++by_class.errors_by_code[code];
      break;
    }
    case p::MessageType::request: break;  // filtered above
  }
  if (h.trace_id != trace_id_) ++recv_report_.trace_mismatch;
}

void Engine::reap(std::uint64_t now, bool everything) {
  std::uint64_t published = published_.load(std::memory_order_acquire);
  while (reap_cursor_ < published) {
    std::size_t idx = reap_cursor_ & (ring_size_ - 1);
    std::uint64_t intended = ring_[idx].intended_ns.load(std::memory_order_relaxed);
    bool answered = done_[idx] == reap_cursor_ + 1;
    // Answered requests are passed at once (freeing their slots); the others wait for the timeout.
    if (!everything && !answered && intended + timeout_ns_ > now) break;
    if (!answered && measured(intended)) {
      ++recv_report_.lost;
      // Some of its reply's segments came, not all.
      if (progress_ && progress_[idx].seq1 == reap_cursor_ + 1 && progress_[idx].seen != 0)
        ++recv_report_.incomplete_replies;
      ++recv_report_.classes[std::min<std::size_t>(ring_[idx].cls.load(std::memory_order_relaxed), kClasses - 1)].lost;
    }
    ++reap_cursor_;
  }
  reaped_.store(reap_cursor_, std::memory_order_release);
}

void Engine::maybe_live(std::uint64_t now) {
  if (!o_.live || now < next_live_ns_) return;
  double t = static_cast<double>(now - start_ns_) / 1e9;
  std::uint64_t sent = live_sent_.load(std::memory_order_relaxed);
  const LoadgenReport& r = recv_report_;
  std::string errs;
  for (std::size_t c = 0; c < r.errors_by_code.size(); ++c) {
    if (r.errors_by_code[c] == 0) continue;
    errs += errs.empty() ? "" : ",";
    errs += c < p::kErrorCodeCount ? p::to_string(static_cast<p::ErrorCode>(c)) : "other";
    errs += "=" + std::to_string(r.errors_by_code[c]);
  }
  std::printf(
      "[%6.1fs]%s sent/s=%-8llu ok/s=%-8llu p50=%.1fus p99=%.1fus busy=%llu errors=%llu%s%s%s lost=%llu\n", t,
      now < measure_start_ ? " warmup" : "", static_cast<unsigned long long>(sent - live_prev_sent_),
      static_cast<unsigned long long>(interval_.count()), static_cast<double>(interval_.percentile_ns(50)) / 1e3,
      static_cast<double>(interval_.percentile_ns(99)) / 1e3, static_cast<unsigned long long>(r.busy - live_prev_busy_),
      static_cast<unsigned long long>(r.errors - live_prev_errors_), errs.empty() ? "" : " (", errs.c_str(),
      errs.empty() ? "" : " total)", static_cast<unsigned long long>(r.lost - live_prev_lost_));
  std::fflush(stdout);
  live_prev_sent_ = sent;
  live_prev_busy_ = r.busy;
  live_prev_errors_ = r.errors;
  live_prev_lost_ = r.lost;
  interval_.reset();
  next_live_ns_ += kSecond;
  if (next_live_ns_ < now) next_live_ns_ = now + kSecond;
}

void Engine::sender_thread() {
  prctl(PR_SET_TIMERSLACK, 1UL);  // sleeps end on time; the default 50 µs slack would skew arrivals
  if (o_.cpu_send >= 0) {
    if (auto pinned = pin_this_thread(o_.cpu_send); !pinned) AXON_LOG_WARN(kLog, "%s", pinned.message().c_str());
  }
  while (!schedule_done_) {
    std::uint64_t now = monotonic_ns();
    if (now > hard_end_) break;
    if (send_due(now, false)) continue;
    if (schedule_done_) break;
    if (xsk_) xsk_->reap();
    // Sleep through long gaps, spin through short ones: a wakeup costs tens of µs on this VM.
    if (!o_.spin && next_intended_ > now + 100'000) {
      std::uint64_t wake = next_intended_ - 50'000;
      timespec ts{static_cast<time_t>(wake / kSecond), static_cast<long>(wake % kSecond)};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
    } else {
      cpu_relax();
    }
  }
  sender_finished_.store(true, std::memory_order_release);
}

void Engine::receiver_thread() {
  prctl(PR_SET_TIMERSLACK, 1UL);
  if (o_.cpu_recv >= 0) {
    if (auto pinned = pin_this_thread(o_.cpu_recv); !pinned) AXON_LOG_WARN(kLog, "%s", pinned.message().c_str());
  }
  for (;;) {
    // Blocks for the first datagram up to SO_RCVTIMEO (1 ms), then takes what is queued.
    receive_batch(MSG_WAITFORONE);
    std::uint64_t now = monotonic_ns();
    reap(now, false);
    maybe_live(now);
    if (sender_finished_.load(std::memory_order_acquire) && reap_cursor_ == published_.load(std::memory_order_acquire))
      break;
    if (now > hard_end_) {
      reap(now, true);
      break;
    }
  }
}

void Engine::single_thread() {
  prctl(PR_SET_TIMERSLACK, 1UL);
  int cpu = o_.cpu_send >= 0 ? o_.cpu_send : o_.cpu_recv;
  if (cpu >= 0) {
    if (auto pinned = pin_this_thread(cpu); !pinned) AXON_LOG_WARN(kLog, "%s", pinned.message().c_str());
  }
  for (;;) {
    std::uint64_t now = monotonic_ns();
    bool sent = send_due(now, true);
    unsigned got = 0;
    for (int round = 0; round < 4; ++round) {
      unsigned k = receive_batch(MSG_DONTWAIT);
      got += k;
      if (k < kBatch) break;
    }
    now = monotonic_ns();
    reap(now, false);
    maybe_live(now);
    if (schedule_done_ && reap_cursor_ == published_.load(std::memory_order_relaxed)) break;
    if (now > hard_end_) {
      reap(now, true);
      break;
    }
    if (sent || got) continue;
    // Idle: wait for a reply or the next send time, whichever is first.
    std::uint64_t until = schedule_done_ ? now + 1'000'000 : next_intended_;
    if (!o_.spin && until > now + 60'000) {
      std::uint64_t wait = until - now - 40'000;
      timespec ts{static_cast<time_t>(wait / kSecond), static_cast<long>(wait % kSecond)};
      pollfd pfd{poll_fd_, POLLIN, 0};
      ppoll(&pfd, 1, &ts, nullptr);
    } else {
      cpu_relax();
    }
  }
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

LoadgenReport Engine::run() {
  const double cpu0 = cpu_seconds();
  const std::uint64_t wall0 = monotonic_ns();
  start_ns_ = monotonic_ns() + 10'000'000;  // a short lead time to start the threads
  measure_start_ = start_ns_ + static_cast<std::uint64_t>(o_.warmup_s * 1e9);
  measure_end_ = measure_start_ + static_cast<std::uint64_t>(o_.duration_s * 1e9);
  hard_end_ = measure_end_ + timeout_ns_ + 200'000'000;
  next_live_ns_ = start_ns_ + kSecond;
  Stream& first = streams_[0];
  first.schedule = std::make_unique<PoissonSchedule>(o_.rate, o_.seed, start_ns_);
  first.priority = o_.priority;
  first.tenants = &o_.tenants;
  first.agents = &o_.agents;
  first.deadline_us = o_.deadline_us;
  first.next = first.schedule->next();
  stream_count_ = 1;
  if (o_.bg_rate > 0) {
    // Its own seed, so adding background never changes the first stream's send times.
    Stream& bg = streams_[1];
    bg.schedule = std::make_unique<PoissonSchedule>(o_.bg_rate, o_.seed * 0x9E3779B97F4A7C15ull + 11, start_ns_);
    bg.priority = p::Priority::background;
    bg.tenants = o_.bg_tenants.empty() ? &o_.tenants : &o_.bg_tenants;
    bg.agents = o_.bg_agents.empty() ? &o_.agents : &o_.bg_agents;
    bg.deadline_us = o_.bg_deadline_us;
    bg.next = bg.schedule->next();
    stream_count_ = 2;
  }
  next_stream_ = stream_count_ == 2 && streams_[1].next < streams_[0].next ? 1 : 0;
  next_intended_ = streams_[next_stream_].next;
  spread_ = std::make_unique<Rng>(o_.seed * 0x2545F4914F6CDD1Dull + 7);
  schedule_stop_ns_.store(measure_end_);

  if (o_.threads == 1) {
    single_thread();
  } else {
    std::thread sender([this] { sender_thread(); });
    receiver_thread();
    sender.join();
  }

  LoadgenReport out = recv_report_;
  out.threads = o_.threads;
  out.offered_rps = o_.rate + o_.bg_rate;
  out.sent = sender_report_.sent;
  out.send_errors = sender_report_.send_errors;
  out.send_dropped = sender_report_.send_dropped;
  out.malformed_sent = sender_report_.malformed_sent;
  out.malformed_by_kind = sender_report_.malformed_by_kind;
  out.retransmits = sender_report_.retransmits;
  out.retransmit_skipped = sender_report_.retransmit_skipped;
  out.request_segments = plan_.count;
  out.request_segment_payload = plan_.count > 1 ? plan_.size : static_cast<std::uint32_t>(o_.payload_bytes);
  out.send_lag = sender_report_.send_lag;
  for (std::size_t c = 0; c < kClasses; ++c) {
    out.classes[c].sent = sender_report_.classes[c].sent;
    out.classes[c].send_dropped = sender_report_.classes[c].send_dropped;
    out.classes[c].send_lag = sender_report_.classes[c].send_lag;
  }
  std::uint64_t stop = schedule_stop_ns_.load();
  out.measured_s = stop > measure_start_ ? static_cast<double>(stop - measure_start_) / 1e9 : 0.0;
  if (ring_stalls_ != 0)
    AXON_LOG_WARN(kLog, "the sender waited %llu times for ring slots (rate x timeout is too large)",
                  static_cast<unsigned long long>(ring_stalls_));
  out.cpu_s = cpu_seconds() - cpu0;
  out.wall_s = static_cast<double>(monotonic_ns() - wall0) / 1e9;
  out.packets = packets_rx_ + packets_tx_;
  out.tx_packets = packets_tx_;
  out.rx_packets = packets_rx_;
  if (xsk_) {
    out.transport = xsk_->describe();
    out.xsk = xsk_->stats();
  } else {
    out.transport = "udp socket (sendmmsg/recvmmsg)";
  }
  // Did the load side keep its schedule? Late sends are charged to latency, so a run whose
  // sender lagged measures the load generator as much as the peer. A sender that cannot keep up
  // is late for most requests (p90); a host stall of the whole VM makes a few percent of them
  // very late, which is reported as stall_share instead.
  const double lag_p90_us = static_cast<double>(out.send_lag.percentile_ns(90)) / 1e3;
  out.stall_share = out.send_lag.fraction_at_or_above(kStallLagNs);
  out.stalled = out.stall_share >= kStalledShare;
  char why[256];
  if (out.send_lag.count() > 0 && lag_p90_us > o_.max_lag_us) {
    std::snprintf(why, sizeof why, "send lag p90 %.0f us > %.0f us", lag_p90_us, o_.max_lag_us);
    out.load_behind = true;
    out.load_behind_reason = why;
  } else if (out.send_errors > out.sent / 1000) {
    std::snprintf(why, sizeof why, "%llu sends failed", static_cast<unsigned long long>(out.send_errors));
    out.load_behind = true;
    out.load_behind_reason = why;
  } else if (out.xsk.rx_ring_full + out.xsk.rx_fill_ring_empty > out.sent / 1000) {
    std::snprintf(why, sizeof why, "the load generator's own receive rings overflowed (%llu frames)",
                  static_cast<unsigned long long>(out.xsk.rx_ring_full + out.xsk.rx_fill_ring_empty));
    out.load_behind = true;
    out.load_behind_reason = why;
  }
  return out;
}

}  // namespace

Result<LoadgenReport, LoadgenError> run_loadgen(const LoadgenOptions& options, const std::atomic<bool>& stop) {
  Engine engine(options, stop);
  if (auto opened = engine.open(); !opened) return opened.error();
  return engine.run();
}

}  // namespace axon::loadgen

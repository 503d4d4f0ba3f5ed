// The lcore loop. Hot-path functions are noexcept and allocation-free: every vector here
// is sized before run() starts.
#include "axon/dataplane/engine.h"

#include <signal.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <fstream>

#include "axon/common/clock.h"
#include "axon/common/log.h"

#include "dedup.h"
#include "dispatch.h"
#include "reassembly.h"
#include "reply_builder.h"
#include "response_cache.h"
#include "stage_recorder.h"
#include "trace_context.h"
#include "trace_recorder.h"

namespace axon::dataplane {

namespace {

constexpr std::uint32_t kForwardCells = 256;
constexpr std::uint32_t kMaxFrame = 4096;
constexpr std::uint64_t kDeadlineSweepNs = 1'000'000;
// Dedup entries examined per housekeeping tick: expired ones are also freed when looked up, so
// the sweep only has to keep ahead of the table filling up.
constexpr std::uint32_t kDedupSweep = 256;

// A frame copied from one lcore to the owner of its worker.
struct ForwardCell {
  std::uint64_t commit;
  std::uint64_t rx_ns;
  std::uint32_t len;
  std::uint32_t slot;  // the worker slot the sending lcore picked
  // A reassembled message stays in the sender's table; the receiver copies it into the worker's
  // buffer and gives it back (ReassemblyTable::give_back). `frame` is then its last segment.
  const ReassemblyTable* reasm;
  std::uint32_t reasm_entry;
  // The request's in-flight dedup entry on the sending lcore (settled remotely by the receiver).
  DedupTable* dedup;
  std::uint32_t dedup_entry;
  std::uint32_t dedup_generation;
  // A settlement instead of a request: the reply (`reply`, its payload in `frame`, `len` bytes)
  // to a request the receiving lcore looked up for dedup, for its reply cache.
  bool settle;
  protocol::Header reply;
  std::uint8_t frame[kMaxFrame];
};

// The ERROR a worker's non-ok reply status becomes (docs/protocol.md §4).
protocol::ErrorCode error_of(shm::ReplyStatus status) noexcept {
  switch (status) {
    case shm::ReplyStatus::reply_too_large: return protocol::ErrorCode::payload_too_large;
    case shm::ReplyStatus::deadline_exceeded: return protocol::ErrorCode::deadline_exceeded;
    default: return protocol::ErrorCode::handler_error;
  }
}

}  // namespace

// Dispatch and admission state of one lcore (dispatch.h does the arithmetic).
struct Lcore::Sched {
  dispatch::State policy;
  std::vector<dispatch::DrainMeter> drain;  // parallel to owned_: each worker's drain rate
  // Parallel to owned_: requests admitted this loop iteration and not yet in the channel's
  // inflight() (staged until flush_staged), so admission sees what the burst already added.
  std::vector<std::uint32_t> admitted;
};

struct Lcore::Staging {
  // Requests staged for one of the worker's two request rings (index: shm::PriorityClass).
  struct Queue {
    shm::OutgoingRequest requests[kBurst];
    std::uint32_t count = 0;
    std::uint32_t room = 0;
  };
  Queue queues[shm::kPriorityClasses];
  bool touched = false;
  std::uint32_t deadlines_live = 0;  // in-flight requests that carry a deadline
  // Progress of the worker, for stall detection (housekeeping): requests it has taken off its
  // ring and replies it has sent, as last seen, and since when it has shown none.
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;
  std::uint64_t taken_seen = 0;
  std::uint64_t completed_seen = 0;
  std::uint64_t quiet_since_ns = 0;
};

struct Lcore::Forward {
  Forward() : header(new shm::RingHeader{}), cells(new ForwardCell[kForwardCells]) {
    header->geometry.capacity = kForwardCells;
    header->geometry.slot_size = sizeof(ForwardCell);
    std::memset(static_cast<void*>(cells.get()), 0, sizeof(ForwardCell) * kForwardCells);
    producer = shm::RingProducer<ForwardCell>(header.get(), cells.get());
    consumer = shm::RingConsumer<ForwardCell>(header.get(), cells.get());
  }
  std::unique_ptr<shm::RingHeader> header;
  std::unique_ptr<ForwardCell[]> cells;
  shm::RingProducer<ForwardCell> producer;
  shm::RingConsumer<ForwardCell> consumer;
};

EngineShared::EngineShared(const DataplaneConfig& cfg, std::uint32_t lcore_count)
    : config(cfg), routes(lcore_count), cache_generations(std::make_unique<CacheGenerations>()) {}

EngineShared::~EngineShared() = default;

Result<Ok, ConfigError> create_worker_slots(EngineShared& shared, std::uint32_t lcore_count, int numa_node) {
  std::vector<std::uint32_t> per_lcore(lcore_count, 0);
  for (std::size_t i = 0; i < shared.config.workers.size(); ++i) {
    auto slot = std::make_unique<WorkerSlot>();
    slot->index = std::uint32_t(i);
    slot->name = shared.config.workers[i].name;
    slot->owner_lcore = std::uint32_t(i % lcore_count);
    slot->local_index = per_lcore[slot->owner_lcore]++;
    shm::ChannelOptions options;
    options.worker_id = std::uint32_t(i);
    options.geometry = shared.config.geometry;
    options.numa_node = numa_node;
    auto channel = shm::WorkerChannel::create(options);
    if (!channel) {
      return make_error(ConfigError::invalid_value,
                        "cannot create the segment for worker '" + slot->name + "': " + channel.message());
    }
    slot->channel = std::make_unique<shm::WorkerChannel>(std::move(channel).value());
    slot->contexts.reset(new ReplyContext[slot->channel->total_buffers()]);
    if (shared.stats.workers != nullptr) {
      slot->stats = &shared.stats.workers[i];
      std::snprintf(slot->stats->name, sizeof slot->stats->name, "%s", slot->name.c_str());
      slot->stats->owner_lcore.store(slot->owner_lcore, std::memory_order_relaxed);
      slot->stats->backing.store(std::uint32_t(slot->channel->backing()), std::memory_order_relaxed);
      slot->stats->free_buffers.store(slot->channel->free_buffers(), std::memory_order_relaxed);
      slot->stats->generation.store(slot->channel->generation(), std::memory_order_relaxed);
    }
    shared.workers.push_back(std::move(slot));
  }
  return Ok{};
}

Lcore::Lcore(std::uint32_t id, Port& port, EngineShared& shared)
    : id_(id), port_(port), shared_(shared), stats_(shared.stats.lcores[id]), parser_([&] {
        protocol::PacketConfig pc;
        pc.ports.fill(0);
        for (std::size_t i = 0; i < shared.config.ports.size() && i < pc.ports.size(); ++i) {
          pc.ports[i] = shared.config.ports[i];
        }
        pc.requests_only = true;
        return pc;
      }()) {
  std::size_t max_buffers = 0;
  for (auto& slot : shared.workers) {
    if (slot->owner_lcore != id) continue;
    owned_.push_back(slot.get());
    staging_.push_back(std::make_unique<Staging>());
    max_buffers += slot->channel->total_buffers();
  }
  sched_ = std::make_unique<Sched>();
  stages_ = std::make_unique<StageRecorder>(stats_, shared.config.telemetry.stage_latency, clock_);
  const std::uint32_t sample_ppm = std::uint32_t(shared.config.telemetry.trace_sample_rate * 1e6 + 0.5);
  traces_ = std::make_unique<TraceRecorder>(shared.traces != nullptr ? shared.traces->ring(id) : nullptr,
                                            shared.traces != nullptr ? shared.traces->records(id) : nullptr,
                                            std::uint16_t(id), sample_ppm, monotonic_ns() ^ (std::uint64_t(id) << 48));
  sched_->drain.resize(owned_.size());
  sched_->admitted.assign(owned_.size(), 0);
  touched_.reserve(owned_.size());
  lost_.reserve(max_buffers);
  frame_capacity_ = port.info().frame_capacity;
  if (frame_capacity_ > kMaxFrame) frame_capacity_ = kMaxFrame;
  ReassemblyLimits limits;
  const ReassemblySettings& r = shared.config.reassembly;
  limits.timeout_ms = r.timeout_ms;
  limits.memory_per_lcore = r.memory_per_lcore;
  limits.memory_per_tenant = r.memory_per_tenant;
  limits.messages = r.messages;
  limits.max_message = std::min<std::uint32_t>(shared.config.geometry.large_buffer_size, protocol::kMaxMessageLen);
  if (auto table = ReassemblyTable::create(limits)) {
    reasm_ = std::move(table).value();
  } else {
    AXON_LOG_WARN("engine", "lcore %u: %s; segmented requests will be answered ERROR payload_too_large", id,
                  table.message().c_str());
  }
  DedupLimits dedup_limits;
  dedup_limits.entries = shared.config.dedup.entries;
  dedup_limits.arena_bytes = shared.config.dedup.arena_bytes;
  if (auto table = DedupTable::create(dedup_limits)) {
    dedup_ = std::move(table).value();
  } else {
    AXON_LOG_WARN("engine", "lcore %u: %s; retransmits will not be deduplicated", id, table.message().c_str());
  }
  open_cache();
  // Reply segments stay within the interface's MTU (docs/protocol.md §1, §6).
  if (!shared.config.interface.empty()) {
    std::ifstream in("/sys/class/net/" + shared.config.interface + "/mtu");
    std::uint32_t mtu = 0;
    if (in >> mtu && mtu >= 1280) mtu_ = mtu;
  }
}

Lcore::~Lcore() {
  if (tx_cache_count_ > 0) port_.tx_free(tx_cache_, tx_cache_count_);
}

void Lcore::connect(std::vector<Lcore*>& lcores) {
  const std::size_t n = lcores.size();
  for (Lcore* from : lcores) {
    from->forward_out_.resize(n);
    for (std::size_t to = 0; to < n; ++to) {
      if (to != from->id_ && n > 1) from->forward_out_[to] = std::make_unique<Forward>();
    }
  }
  for (Lcore* to : lcores) {
    to->forward_in_.assign(n, nullptr);
    for (Lcore* from : lcores) {
      if (from != to && n > 1) to->forward_in_[from->id_] = from->forward_out_[to->id_].get();
    }
  }
}

WorkerSlot* Lcore::pick_worker(const AgentRoute& route, const protocol::Header& request, bool& reserved) noexcept {
  // Only live workers are candidates, so one dead or stalled worker moves only its own sessions.
  dispatch::Candidate live[kMaxWorkersPerAgent];
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < route.worker_count; ++i) {
    WorkerSlot* slot = shared_.workers[route.workers[i]].get();
    if (slot->state.load(std::memory_order_acquire) != std::uint32_t(WorkerSlotState::alive)) continue;
    live[n++] = dispatch::Candidate{slot->index, slot->outstanding.load(std::memory_order_relaxed)};
  }
  reserved = false;
  std::span<const dispatch::Candidate> pool(live, n);
  dispatch::Candidate allowed[kMaxWorkersPerAgent];
  if (n > 0 && route.scheduling.class_scheduling && request.priority == protocol::Priority::background) {
    const std::uint32_t keep = model::reserved_workers(route.scheduling, n);
    if (keep > 0) {
      const std::uint32_t m = dispatch::background_candidates(pool, keep, allowed);
      if (m == 0) {
        reserved = true;
        return nullptr;
      }
      pool = std::span<const dispatch::Candidate>(allowed, m);
    }
  }
  const std::uint32_t at = dispatch::pick(route.scheduling.dispatch, pool, request.session_key, sched_->policy);
  if (at == dispatch::kNone) return nullptr;
  WorkerSlot* slot = shared_.workers[pool[at].slot].get();
  slot->outstanding.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

// docs/protocol.md §7: a REQUEST of another major version, at least 80 bytes long, is answered
// with a version 1 ERROR unsupported_version that echoes only request_id (the one field every
// major version keeps in place besides magic, version and type). Shorter datagrams and other
// types stay silent drops, so the reply is never larger than what provoked it.
void Lcore::answer_unsupported_version(std::span<const std::uint8_t> bytes, const protocol::ParsedFrame& parsed,
                                       std::uint64_t now) noexcept {
  const std::uint32_t at = parsed.info.axp_offset;
  if (parsed.info.datagram_len < protocol::kHeaderLen || std::size_t(at) + protocol::kHeaderLen > bytes.size()) return;
  const std::uint8_t* axp = bytes.data() + at;
  if (axp[offsetof(axp_header, type)] != AXP_MSG_REQUEST) return;
  protocol::Header request;
  std::uint64_t id = 0;
  for (std::size_t i = 0; i < 8; ++i) id = id << 8 | axp[offsetof(axp_header, request_id) + i];
  request.request_id = id;
  ReplyContext ctx;
  if (capture_context(bytes, parsed, request, now, ctx)) answer_error(ctx, protocol::ErrorCode::unsupported_version);
}

bool Lcore::prepare(const Frame& frame, std::uint64_t now, bool admitted, Pending& p, bool reassembled) noexcept {
  std::span<const std::uint8_t> bytes(frame.data, frame.len);
  p.frame = &frame;
  p.parsed = parser_.parse(bytes);
  if (!p.parsed.ok()) {
    count(stats_.drops[std::size_t(p.parsed.reason)]);
    if (p.parsed.reason == protocol::Reason::bad_version) answer_unsupported_version(bytes, p.parsed, now);
    return false;
  }
  p.request = protocol::decode_header(protocol::PacketParser::datagram_of(bytes, p.parsed));
  const RouteTable* routes = shared_.routes.current();
  if (!admitted && routes != nullptr && routes->enforces_policy()) {
    // Backends without the XDP program enforce the tenant allowlist, rate limits and credits
    // here, with the reasons XDP would count. Forwarded frames were admitted by their first lcore.
    std::uint32_t retry_after_us = 0;
    const protocol::Reason verdict = routes->admit(p.request.tenant_id, p.parsed.info, now, &retry_after_us);
    if (verdict != protocol::Reason::ok) {
      count(stats_.drops[std::size_t(verdict)]);
      // Over its credits: BUSY, as the XDP program answers (a rate limit stays a silent drop).
      ReplyContext ctx;
      if (verdict == protocol::Reason::busy_no_credits && capture_context(bytes, p.parsed, p.request, now, ctx)) {
        answer_busy(ctx, BusyReason::credits, retry_after_us);
      }
      return false;
    }
  }
  // Every segment passed the policy above (a tenant's rate limit counts segments); only the
  // one that completes its message goes on, as the whole message.
  if (p.request.segment_count > 1 && !reassembled && !reassemble(now, p)) return false;
  p.route = routes == nullptr ? nullptr : routes->find(p.request.agent_id);
  // Forwarded requests were looked up by the lcore that received them.
  if (!admitted && !deduplicate(p, now)) {
    if (p.reasm != nullptr) reasm_->release(p.reasm_entry);
    return false;
  }
  return true;
}

bool Lcore::reassemble(std::uint64_t now, Pending& p) noexcept {
  using Verdict = ReassemblyTable::Verdict;
  const std::span<const std::uint8_t> bytes(p.frame->data, p.frame->len);
  Verdict verdict = Verdict::too_large;
  ReassemblyTable::Outcome outcome;
  if (reasm_ != nullptr) {
    SegmentKey key;
    key.tenant_id = p.request.tenant_id;
    key.src_port = p.parsed.info.src_port;
    std::memcpy(key.src_addr, p.parsed.info.src_addr, sizeof key.src_addr);
    key.request_id = p.request.request_id;
    outcome =
        reasm_->add(key, p.request, protocol::payload_of(protocol::PacketParser::datagram_of(bytes, p.parsed)), now);
    verdict = outcome.verdict;
  }
  switch (verdict) {
    case Verdict::held: return false;
    case Verdict::complete:
      p.request = reasm_->header(outcome.entry);
      p.reasm = reasm_.get();
      p.reasm_entry = outcome.entry;
      p.rx_ns = reasm_->first_ns(outcome.entry);
      count(stats_.reassembled);
      return true;
    case Verdict::duplicate: count(stats_.drops[std::size_t(protocol::Reason::segment_duplicate)]); return false;
    case Verdict::mismatch: count(stats_.drops[std::size_t(protocol::Reason::segment_mismatch)]); return false;
    case Verdict::offset: count(stats_.drops[std::size_t(protocol::Reason::segment_offset)]); return false;
    case Verdict::no_memory: count(stats_.drops[std::size_t(protocol::Reason::reassembly_memory)]); return false;
    case Verdict::no_tenant_memory:
      count(stats_.drops[std::size_t(protocol::Reason::reassembly_tenant_memory)]);
      return false;
    case Verdict::too_large:
      // Larger than a worker buffer (or of more segments than the table tracks): one ERROR per
      // message, on its segment 0; every segment is counted.
      count(stats_.drops[std::size_t(protocol::Reason::reassembly_too_large)]);
      if (p.request.segment_index == 0) refuse_error(p, now, protocol::ErrorCode::payload_too_large);
      return false;
  }
  return false;
}

void Lcore::dispatch_pending(const Pending& p, std::uint64_t now) noexcept {
  dispatch_request(p, p.reasm != nullptr ? p.rx_ns : now);
  // Copied into the worker's buffer, or refused: either way done (a no-op once handed off).
  if (p.reasm != nullptr && p.reasm == reasm_.get()) reasm_->release(p.reasm_entry);
}

bool Lcore::deferred(const Pending& p) noexcept {
  return p.route != nullptr && p.route->scheduling.class_scheduling &&
         p.request.priority == protocol::Priority::background;
}

void Lcore::refuse_error(const Pending& p, std::uint64_t rx_ns, protocol::ErrorCode code,
                         std::uint32_t retry_after_us) noexcept {
  ReplyContext ctx;
  if (capture_context(std::span<const std::uint8_t>(p.frame->data, p.frame->len), p.parsed, p.request, rx_ns, ctx)) {
    attach_dedup(p, ctx);
    answer_error(ctx, code, retry_after_us);
  } else {
    forget_dedup(p);
    count(stats_.drops[std::size_t(protocol::Reason::eth_truncated)]);
  }
}

void Lcore::refuse_busy(const Pending& p, std::uint64_t rx_ns, BusyReason reason,
                        std::uint32_t retry_after_us) noexcept {
  ReplyContext ctx;
  if (capture_context(std::span<const std::uint8_t>(p.frame->data, p.frame->len), p.parsed, p.request, rx_ns, ctx)) {
    attach_dedup(p, ctx);
    answer_busy(ctx, reason, retry_after_us);
  } else {
    forget_dedup(p);
    count(stats_.drops[std::size_t(protocol::Reason::eth_truncated)]);
  }
}

void Lcore::dispatch_request(const Pending& p, std::uint64_t rx_ns, std::uint32_t chosen) noexcept {
  const RouteTable* routes = shared_.routes.current();
  const AgentRoute* route = p.route;
  const protocol::Header& request = p.request;
  protocol::ErrorCode error = protocol::ErrorCode::none;
  if (routes == nullptr || (routes->provisional() && route == nullptr)) {
    error = protocol::ErrorCode::worker_failed;  // no tables from the control plane yet: retryable
  } else if (!routes->has_tenant(request.tenant_id)) {
    error = protocol::ErrorCode::unknown_tenant;
  } else if (route == nullptr || route->tenant_id != request.tenant_id) {
    error = protocol::ErrorCode::unknown_agent;
  }
  if (error != protocol::ErrorCode::none) {
    refuse_error(p, rx_ns, error, error == protocol::ErrorCode::worker_failed ? 100'000u : 0u);
    return;
  }
  CachedRequest cached;
  if (answer_from_cache(p, rx_ns, cached)) {
    forget_dedup(p);  // answered without a worker: a retry meets the response cache again
    return;
  }
  WorkerSlot* slot = nullptr;
  if (chosen < shared_.workers.size() &&
      shared_.workers[chosen]->state.load(std::memory_order_acquire) == std::uint32_t(WorkerSlotState::alive)) {
    slot = shared_.workers[chosen].get();  // picked by the lcore that forwarded it
  } else {
    bool reserved = false;
    slot = pick_worker(*route, request, reserved);
    if (slot == nullptr) {
      if (reserved) {
        refuse_busy(p, rx_ns, BusyReason::reservation, 0);
      } else {
        refuse_error(p, rx_ns, protocol::ErrorCode::worker_failed, 100'000u);
      }
      return;
    }
  }
  if (slot->owner_lcore != id_) {
    forward(slot->owner_lcore, p, rx_ns, slot->index);
    return;
  }
  if (!admit(*slot, *route, p, rx_ns)) return;
  enqueue_local(*slot, p, rx_ns, route->scheduling.class_scheduling, &cached);
}

// On the worker's owner lcore, where its ring and drain rate are exact (docs/scheduling.md,
// "Admission control" and "Deadlines"). A deadline is refused when it has run out, or when the
// worker's estimated queueing delay is already longer than what is left of it: the request
// could only come back as deadline_exceeded later, after taking a worker's time.
bool Lcore::admit(WorkerSlot& slot, const AgentRoute& route, const Pending& p, std::uint64_t rx_ns) noexcept {
  const std::uint32_t local = slot.local_index;
  const std::uint64_t rate = sched_->drain[local].rate_per_s;
  std::uint32_t& admitted = sched_->admitted[local];
  const model::Scheduling& s = route.scheduling;
  const shm::PriorityClass cls =
      s.class_scheduling ? shm::priority_class_of(std::uint8_t(p.request.priority)) : shm::PriorityClass::interactive;
  // What the request would wait behind: everything the worker holds, except that an interactive
  // request in its own ring overtakes the background requests still queued in theirs. (What the
  // worker has already taken, a batch or its background EDF window, still counts: it may serve
  // those first.)
  std::uint64_t outstanding = std::uint64_t(slot.channel->inflight()) + admitted;
  if (s.class_scheduling && cls == shm::PriorityClass::interactive) {
    outstanding -=
        std::min<std::uint64_t>(slot.channel->request_depth(shm::PriorityClass::background), slot.channel->inflight());
  }
  const std::uint64_t delay = dispatch::queue_delay_ns(outstanding, rate);
  if (p.request.deadline_us != 0) {
    const std::uint64_t deadline = rx_ns + std::uint64_t(p.request.deadline_us) * 1000u;
    const std::uint64_t now = clock_.now_ns();
    if (now >= deadline || delay > deadline - now) {
      count(now >= deadline ? stats_.deadline_expired : stats_.deadline_unmeetable);
      refuse_error(p, rx_ns, protocol::ErrorCode::deadline_exceeded);
      return false;
    }
  }
  if (s.high_water < 1.0) {
    // The ring this request would join (each class has request_capacity slots).
    const std::uint64_t depth = slot.channel->request_depth(cls) + admitted;
    if (depth >= dispatch::high_water_depth(s.high_water, shared_.config.geometry.request_capacity)) {
      refuse_busy(p, rx_ns, BusyReason::high_water,
                  dispatch::retry_after_us(outstanding, rate, shared_.config.busy_retry_after_us));
      return false;
    }
  }
  if (s.queue_delay_target_us != 0 && delay > std::uint64_t(s.queue_delay_target_us) * 1000u) {
    refuse_busy(p, rx_ns, BusyReason::queue_delay,
                dispatch::retry_after_us(outstanding, rate, shared_.config.busy_retry_after_us));
    return false;
  }
  ++admitted;
  return true;
}

void Lcore::enqueue_local(WorkerSlot& slot, const Pending& p, std::uint64_t now, bool class_rings,
                          const CachedRequest* cached) noexcept {
  const protocol::ParsedFrame& parsed = p.parsed;
  const protocol::Header& request = p.request;
  std::span<const std::uint8_t> bytes(p.frame->data, p.frame->len);
  const shm::PriorityClass cls =
      class_rings ? shm::priority_class_of(std::uint8_t(request.priority)) : shm::PriorityClass::interactive;
  Staging& st = *staging_[slot.local_index];
  Staging::Queue& q = st.queues[std::size_t(cls) & 1u];
  auto touch = [&] {
    st.touched = true;
    for (std::uint32_t c = 0; c < shm::kPriorityClasses; ++c) {
      st.queues[c].room = slot.channel->request_room(shm::PriorityClass(c));
    }
    touched_.push_back(slot.local_index);
  };
  if (!st.touched) touch();
  if (q.count == kBurst) {
    flush_staged();
    touch();
  }
  auto payload = protocol::payload_of(protocol::PacketParser::datagram_of(bytes, parsed));
  // A reassembled message goes into one buffer (a large one), contiguous for the handler.
  const std::uint32_t length = p.reasm != nullptr ? request.message_len : std::uint32_t(payload.size());
  shm::BufferLease lease;
  if (q.count >= q.room || !slot.channel->try_alloc(length, lease)) {
    refuse_busy(p, now, BusyReason::ring_full, 0);
    return;
  }
  ReplyContext& ctx = slot.contexts[lease.buffer_id];
  if (!capture_context(bytes, parsed, request, now, ctx)) {
    slot.channel->release(lease);
    forget_dedup(p);
    count(stats_.drops[std::size_t(protocol::Reason::eth_truncated)]);
    return;
  }
  attach_dedup(p, ctx);
  note_cacheable(ctx, cached);
  if (p.reasm != nullptr) {
    p.reasm->copy_out(p.reasm_entry, reinterpret_cast<std::uint8_t*>(lease.data));
  } else {
    std::memcpy(lease.data, payload.data(), payload.size());
  }
  shm::OutgoingRequest& out = q.requests[q.count++];
  shm::Descriptor& meta = out.meta;
  meta = shm::Descriptor{};
  meta.request_id = request.request_id;
  meta.tenant_id = request.tenant_id;
  meta.agent_id = request.agent_id;
  meta.session_key = request.session_key;
  meta.deadline_us = request.deadline_us;
  meta.priority = std::uint8_t(request.priority);
  fill_trace_context(meta, request, stats_, (request.trace_flags & protocol::kTraceSampled) == 0 && traces_->pick());
  meta.hop_ns[shm::kHopRx] = now;
  meta.user_cookie = lease.buffer_id;
  out.lease = lease;
  out.length = length;
}

// Interactive first: its ring is filled (and the worker, which drains interactive first,
// sees it) before any background request of the same burst. One wake covers both rings.
void Lcore::flush_staged() noexcept {
  for (std::uint32_t local : touched_) {
    Staging& st = *staging_[local];
    WorkerSlot& slot = *owned_[local];
    st.touched = false;
    std::uint32_t accepted_total = 0;
    for (std::uint32_t c = 0; c < shm::kPriorityClasses; ++c) {
      Staging::Queue& q = st.queues[c];
      if (q.count == 0) continue;
      const std::uint32_t accepted =
          slot.channel->try_submit_burst(q.requests, q.count, shm::PriorityClass(c), /*wake=*/false);
      for (std::uint32_t i = 0; i < accepted; ++i) {
        ReplyContext& ctx = slot.contexts[q.requests[i].lease.buffer_id];
        ctx.live = 1;
        if (ctx.has_deadline) ++st.deadlines_live;
      }
      for (std::uint32_t i = accepted; i < q.count; ++i) {
        answer_busy(slot.contexts[q.requests[i].lease.buffer_id]);
        slot.channel->release(q.requests[i].lease);
      }
      accepted_total += accepted;
      q.count = 0;
    }
    if (accepted_total == 0) continue;
    slot.channel->wake_worker();
    count(stats_.requests, accepted_total);
    st.submitted += accepted_total;
    if (slot.stats != nullptr) count(slot.stats->submitted, accepted_total);
  }
  touched_.clear();
}

void Lcore::forward(std::uint32_t to, const Pending& p, std::uint64_t rx_ns, std::uint32_t slot) noexcept {
  const Frame& frame = *p.frame;
  Forward* ring = forward_out_[to].get();
  std::uint32_t pushed = 0;
  // A reassembled message is lent only from its own table (never passed on a second time).
  const bool lendable = p.reasm == nullptr || p.reasm == reasm_.get();
  if (ring != nullptr && frame.len <= kMaxFrame && lendable) {
    pushed = ring->producer.try_push_burst(1, [&](std::uint32_t, ForwardCell& cell) noexcept {
      cell.rx_ns = rx_ns;
      cell.len = frame.len;
      cell.slot = slot;
      cell.reasm = p.reasm;
      cell.reasm_entry = p.reasm_entry;
      cell.dedup = p.dedup;
      cell.dedup_entry = p.dedup_entry;
      cell.dedup_generation = p.dedup_generation;
      cell.settle = false;
      std::memcpy(cell.frame, frame.data, frame.len);
    });
  }
  if (pushed == 1) {
    if (p.reasm != nullptr) reasm_->hand_off(p.reasm_entry);
    count(stats_.forwarded);
    return;
  }
  count(stats_.forward_full);
  refuse_busy(p, rx_ns, BusyReason::forward_full, 0);
}

std::uint32_t Lcore::drain_forwarded() noexcept {
  std::uint32_t work = 0;
  for (Forward* ring : forward_in_) {
    if (ring == nullptr) continue;
    work += ring->consumer.try_pop_burst(kBurst, [&](const ForwardCell& cell) noexcept {
      if (cell.settle) {
        if (dedup_ != nullptr && cell.dedup == dedup_.get()) {
          const DedupTable::Settled settled =
              dedup_->settle(cell.dedup_entry, cell.dedup_generation, true, cell.reply,
                             std::span<const std::uint8_t>(cell.frame, cell.len), clock_.now_ns());
          if (settled.evicted > 0) count(stats_.dedup_evictions, settled.evicted);
        }
        return;
      }
      // The frame stays in the cell until the pop returns, and enqueue_local copies the
      // payload out before that. It was counted by the lcore that received it.
      Frame frame{const_cast<std::uint8_t*>(cell.frame), cell.len, 0};
      Pending p;
      const bool whole = cell.reasm != nullptr;
      if (prepare(frame, cell.rx_ns, true, p, whole)) {
        if (whole) {
          p.request = cell.reasm->header(cell.reasm_entry);
          p.reasm = cell.reasm;
          p.reasm_entry = cell.reasm_entry;
          p.rx_ns = cell.rx_ns;
        }
        p.dedup = cell.dedup;
        p.dedup_entry = cell.dedup_entry;
        p.dedup_generation = cell.dedup_generation;
        dispatch_request(p, cell.rx_ns, cell.slot);
      } else if (cell.dedup != nullptr) {
        cell.dedup->settle_remote(cell.dedup_entry, cell.dedup_generation, false);
      }
      // The message was copied into the worker's buffer, or refused: its lender may free it.
      if (whole) const_cast<ReassemblyTable*>(cell.reasm)->give_back(cell.reasm_entry);
    });
  }
  return work;
}

// The reply to a request another lcore received and looked up for dedup goes back to that lcore's
// reply cache through the forward ring to it (this lcore is that ring's one producer). False when
// it cannot: a payload longer than a cell, no such lcore, or the ring full.
bool Lcore::forward_settlement(const ReplyContext& ctx, const protocol::Header& reply, const std::uint8_t* data,
                               std::uint32_t length) noexcept {
  if (length > kMaxFrame || (length > 0 && data == nullptr)) return false;
  for (const Lcore* home : shared_.lcores) {
    if (home == nullptr || home->dedup_.get() != ctx.dedup) continue;
    if (home->id_ >= forward_out_.size() || forward_out_[home->id_] == nullptr) return false;
    return forward_out_[home->id_]->producer.try_push_burst(1, [&](std::uint32_t, ForwardCell& cell) noexcept {
      cell.settle = true;
      cell.reply = reply;
      cell.len = length;
      cell.dedup = ctx.dedup;
      cell.dedup_entry = ctx.dedup_entry;
      cell.dedup_generation = ctx.dedup_generation;
      cell.reasm = nullptr;
      if (length > 0) std::memcpy(cell.frame, data, length);
    }) == 1;
  }
  return false;
}

void Lcore::send_payload(const ReplyContext& ctx, const protocol::Header& reply, const std::uint8_t* data,
                         std::uint32_t length) noexcept {
  if (ctx.dedup != nullptr) settle_dedup(ctx, reply, data, length);
  // docs/protocol.md §6: with M the largest payload one datagram may carry (the frame, and the
  // interface's MTU), count = ceil(len / M) segments of S = ceil(len / count) bytes, the last
  // one the rest.
  const std::uint32_t ip_overhead = (ctx.ip_version == 6 ? 40u : 20u) + 8u + std::uint32_t(protocol::kHeaderLen);
  const std::uint32_t by_mtu = mtu_ > ip_overhead ? mtu_ - ip_overhead : 0;
  const std::uint32_t most = std::min(max_reply_payload(ctx, frame_capacity_), by_mtu);
  if (most == 0) return;
  const std::uint32_t segments = length == 0 ? 1 : (length + most - 1) / most;
  const std::uint32_t chunk = length == 0 ? 0 : (length + segments - 1) / segments;
  protocol::Header header = reply;
  header.segment_count = std::uint16_t(segments);
  header.message_len = length;
  if (segments > 1) count(stats_.reply_segments, segments);
  for (std::uint32_t seg = 0; seg < segments; ++seg) {
    if (tx_cache_count_ == 0) tx_cache_count_ = port_.tx_alloc_burst(tx_cache_, kBurst);
    if (tx_cache_count_ == 0) {
      // A long reply can need more frames than were free: send what is queued, reap the
      // completions and try once more before giving the rest up.
      flush_tx();
      port_.poll_completions();
      tx_cache_count_ = port_.tx_alloc_burst(tx_cache_, kBurst);
    }
    if (tx_cache_count_ == 0) {
      count(stats_.tx_dropped, segments - seg);
      return;
    }
    Frame frame = tx_cache_[--tx_cache_count_];
    const std::uint32_t offset = seg * chunk;
    const std::uint32_t piece = length - offset < chunk ? length - offset : chunk;
    header.segment_index = std::uint16_t(seg);
    std::uint32_t written =
        build_reply_frame(ctx, header, std::span<const std::uint8_t>(data == nullptr ? nullptr : data + offset, piece),
                          std::span<std::uint8_t>(frame.data, frame.len));
    if (written == 0) {
      tx_cache_[tx_cache_count_++] = frame;
      count(stats_.tx_dropped);
      return;
    }
    frame.len = written;
    tx_[tx_count_++] = frame;
    if (tx_count_ == sizeof(tx_) / sizeof(tx_[0])) flush_tx();
  }
}

void Lcore::answer_error(const ReplyContext& ctx, protocol::ErrorCode code, std::uint32_t retry_after_us) noexcept {
  count(stats_.errors_sent[std::size_t(code)]);
  send_payload(ctx, protocol::make_error_reply(ctx.request, code, protocol::random_span_id(), retry_after_us), nullptr,
               0);
}

void Lcore::answer_busy(const ReplyContext& ctx, BusyReason reason, std::uint32_t retry_after_us) noexcept {
  count(stats_.busy_sent);
  count(stats_.busy_reasons[std::size_t(reason)]);
  const std::uint32_t retry = retry_after_us != 0 ? retry_after_us : shared_.config.busy_retry_after_us;
  send_payload(ctx, protocol::make_busy_reply(ctx.request, retry, protocol::random_span_id()), nullptr, 0);
}

std::uint32_t Lcore::tx_room() noexcept {
  if (tx_cache_count_ < kBurst) {
    tx_cache_count_ += port_.tx_alloc_burst(tx_cache_ + tx_cache_count_, kBurst - tx_cache_count_);
  }
  return tx_cache_count_;
}

void Lcore::flush_tx() noexcept {
  if (tx_count_ == 0) {
    cache_transmitted();
    if (traces_->pending() != 0) traces_->transmitted(clock_.now_ns());
    return stages_->transmitted();
  }
  std::uint32_t sent = port_.tx_burst(tx_, tx_count_);
  if (sent < tx_count_) {
    port_.tx_free(tx_ + sent, tx_count_ - sent);
    count(stats_.tx_dropped, tx_count_ - sent);
  }
  count(stats_.tx_frames, sent);
  tx_count_ = 0;
  cache_transmitted();
  stages_->transmitted();
  if (traces_->pending() != 0) traces_->transmitted(clock_.now_ns());
}

std::uint32_t Lcore::poll_replies(std::uint64_t now) noexcept {
  std::uint32_t work = 0;
  shm::Completion completions[kBurst];
  for (std::uint32_t local = 0; local < owned_.size(); ++local) {
    WorkerSlot& slot = *owned_[local];
    // A stalled worker's replies are taken too: they are late (already answered), and taking
    // them frees their buffers.
    const std::uint32_t state = slot.state.load(std::memory_order_acquire);
    if (state != std::uint32_t(WorkerSlotState::alive) && state != std::uint32_t(WorkerSlotState::stalled)) continue;
    // Take only as many replies as there are TX frames for. Without frames a reply taken off
    // the ring could only be dropped; left in the worker's ring it waits for the sends in
    // flight to complete, and the worker's full reply ring is the backpressure it feels.
    const std::uint32_t room = tx_room();
    if (room == 0) {
      count(stats_.tx_backpressure);
      break;
    }
    std::uint32_t n = slot.channel->poll_replies(completions, room < kBurst ? room : kBurst);
    for (std::uint32_t i = 0; i < n; ++i) {
      const shm::Completion& c = completions[i];
      ReplyContext& ctx = slot.contexts[c.request_buffer];
      // A request the deadline sweep already answered was taken off the count then.
      if (ctx.has_deadline && ctx.live && !ctx.answered && staging_[local]->deadlines_live > 0) {
        --staging_[local]->deadlines_live;
      }
      if (ctx.answered) {
        count(stats_.late_replies);
      } else if (ctx.has_deadline && now > ctx.deadline_ns) {
        answer_error(ctx, protocol::ErrorCode::deadline_exceeded);
      } else if (c.status != shm::ReplyStatus::ok) {
        answer_error(ctx, error_of(c.status));
      } else {
        const protocol::SpanId span = handler_span(c.reply);
        protocol::Header reply = protocol::make_reply(ctx.request, protocol::MessageType::response, span);
        send_payload(ctx, reply, reinterpret_cast<const std::uint8_t*>(c.data), c.length);
        store_in_cache(ctx, reinterpret_cast<const std::uint8_t*>(c.data), c.length, now);
        count(stats_.responses);
        stages_->on_reply(c.reply, now, std::uint8_t(ctx.request.priority));
        traces_->on_reply(c.reply, span, now,
                          (ctx.request.trace_flags & protocol::kTraceSampled) != 0 ? SampledBy::flag : SampledBy::rate);
      }
      ctx.live = 0;
      slot.channel->finish(c);
    }
    if (n > 0) {
      // Loaned buffers came back with these replies: restock now rather than at the next
      // housekeeping tick, or a busy worker runs out and falls back to in-place replies.
      slot.channel->refill_loans();
      staging_[local]->completed += n;
      if (slot.stats != nullptr) count(slot.stats->completed, n);
    }
    work += n;
    if (slot.channel->worker_misbehaved() && slot.stats != nullptr) {
      // Impossible ring indices: the worker is broken or hostile. Kill it; the death
      // watch then reclaims its buffers like any other death.
      std::int32_t pid = slot.stats->pid.load(std::memory_order_relaxed);
      if (pid > 0) kill(pid, SIGKILL);
    }
  }
  return work;
}

void Lcore::reclaim_dead(WorkerSlot& slot) noexcept {
  lost_.clear();
  (void)slot.channel->reclaim(lost_);
  // Requests the deadline sweep already answered are not lost: only the ones answered
  // here count, so `lost` always equals the worker_failed ERRORs this death caused.
  std::uint32_t lost = 0;
  for (const shm::LostRequest& request : lost_) {
    ReplyContext& ctx = slot.contexts[request.user_cookie];
    if (ctx.live && !ctx.answered) {
      answer_error(ctx, protocol::ErrorCode::worker_failed, 100'000u);
      ++lost;
    }
    ctx.live = 0;
  }
  staging_[slot.local_index]->deadlines_live = 0;
  sched_->drain[slot.local_index].reset();  // a successor is measured afresh
  if (slot.stats != nullptr) {
    count(slot.stats->lost, lost);
    count(slot.stats->deaths);
    slot.stats->generation.store(slot.channel->generation(), std::memory_order_relaxed);
    slot.stats->pid.store(0, std::memory_order_relaxed);
    // Housekeeping samples these only for live slots: publish the reclaimed state now.
    publish_depths(slot);
    slot.stats->inflight.store(slot.channel->inflight(), std::memory_order_relaxed);
    slot.stats->free_buffers.store(slot.channel->free_buffers(), std::memory_order_relaxed);
  }
  // A drained worker leaves with nothing in flight: routine, not an alarm. Only an exit that
  // cost requests is a warning.
  const std::uint32_t free_buffers = slot.channel->free_buffers();
  const std::uint32_t loans = slot.channel->total_buffers() - free_buffers;
  if (lost == 0) {
    AXON_LOG_INFO("engine",
                  "worker '%s' exited with no request in flight; every buffer reclaimed (%u free, %u restocked "
                  "as loans for the next worker)",
                  slot.name.c_str(), free_buffers, loans);
  } else {
    AXON_LOG_WARN("engine",
                  "worker '%s' died: %u in-flight request(s) answered with ERROR worker_failed; every buffer "
                  "reclaimed (%u free, %u restocked as loans for the next worker)",
                  slot.name.c_str(), lost, free_buffers, loans);
  }
  slot.state.store(std::uint32_t(WorkerSlotState::vacant), std::memory_order_release);
  if (slot.stats != nullptr) slot.stats->state.store(std::uint32_t(WorkerSlotState::vacant), std::memory_order_release);
}

// A worker with requests waiting in its ring that takes none and answers none for
// worker_stall_timeout_ms is stalled (hung, SIGSTOPped, spinning): the data plane stops routing
// to it and answers everything it holds with worker_failed now, instead of letting clients
// get BUSY or wait for as long as it hangs. Its late replies are discarded (ctx.answered). The
// control plane sees "stalled" in the slot list and replaces it; if it resumes first, it is
// alive again.
void Lcore::watch_progress(WorkerSlot& slot, Staging& st, std::uint32_t state, std::uint64_t now) noexcept {
  const std::uint64_t timeout_ns = std::uint64_t(shared_.config.worker_stall_timeout_ms) * 1'000'000u;
  if (timeout_ns == 0) return;
  const std::uint64_t depth = slot.channel->request_depth();
  const std::uint64_t taken = st.submitted - depth;
  const bool moved = taken != st.taken_seen || st.completed != st.completed_seen;
  st.taken_seen = taken;
  st.completed_seen = st.completed;
  if (moved || depth == 0) {
    st.quiet_since_ns = 0;
    std::uint32_t expected = std::uint32_t(WorkerSlotState::stalled);
    if (moved && state == expected &&
        slot.state.compare_exchange_strong(expected, std::uint32_t(WorkerSlotState::alive),
                                           std::memory_order_acq_rel)) {
      if (slot.stats != nullptr)
        slot.stats->state.store(std::uint32_t(WorkerSlotState::alive), std::memory_order_release);
      AXON_LOG_INFO("engine", "worker '%s' makes progress again: routing to it", slot.name.c_str());
    }
    return;
  }
  if (state == std::uint32_t(WorkerSlotState::stalled)) return;
  if (st.quiet_since_ns == 0) {
    st.quiet_since_ns = now;
    return;
  }
  if (now - st.quiet_since_ns < timeout_ns) return;
  // Only from alive: the control thread may have marked it dying meanwhile (reclaim wins).
  std::uint32_t expected = std::uint32_t(WorkerSlotState::alive);
  if (!slot.state.compare_exchange_strong(expected, std::uint32_t(WorkerSlotState::stalled),
                                          std::memory_order_acq_rel)) {
    return;
  }
  std::uint32_t answered = 0;
  const std::uint32_t total = slot.channel->total_buffers();
  for (std::uint32_t id = 0; id < total; ++id) {
    ReplyContext& ctx = slot.contexts[id];
    if (!ctx.live || ctx.answered) continue;
    answer_error(ctx, protocol::ErrorCode::worker_failed, 100'000u);
    ctx.answered = 1;
    if (ctx.has_deadline && st.deadlines_live > 0) --st.deadlines_live;
    ++answered;
  }
  if (slot.stats != nullptr) {
    count(slot.stats->stalls);
    count(slot.stats->lost, answered);
    slot.stats->state.store(std::uint32_t(WorkerSlotState::stalled), std::memory_order_release);
  }
  AXON_LOG_WARN("engine",
                "worker '%s' (pid %d) took none of its %llu queued request(s) for %u ms: stalled; %u request(s) "
                "answered with ERROR worker_failed, no new ones routed to it until it resumes or is replaced",
                slot.name.c_str(), slot.stats != nullptr ? int(slot.stats->pid.load(std::memory_order_relaxed)) : -1,
                static_cast<unsigned long long>(depth), shared_.config.worker_stall_timeout_ms, answered);
}

// The worker's request ring depths, in total and per class, into its stats block.
void Lcore::publish_depths(WorkerSlot& slot) noexcept {
  const std::uint64_t interactive = slot.channel->request_depth(shm::PriorityClass::interactive);
  const std::uint64_t background = slot.channel->request_depth(shm::PriorityClass::background);
  slot.stats->depth.store(interactive + background, std::memory_order_relaxed);
  slot.stats->depth_interactive.store(interactive, std::memory_order_relaxed);
  slot.stats->depth_background.store(background, std::memory_order_relaxed);
}

void Lcore::housekeeping(std::uint64_t now) noexcept {
  const bool sweep = now >= next_deadline_sweep_ns_;
  if (sweep) next_deadline_sweep_ns_ = now + kDeadlineSweepNs;
  for (std::uint32_t local = 0; local < owned_.size(); ++local) {
    WorkerSlot& slot = *owned_[local];
    std::uint32_t state = slot.state.load(std::memory_order_acquire);
    if (state == std::uint32_t(WorkerSlotState::dying)) {
      reclaim_dead(slot);
      continue;
    }
    if (state != std::uint32_t(WorkerSlotState::alive) && state != std::uint32_t(WorkerSlotState::stalled)) continue;
    slot.channel->refill_loans();
    Staging& st = *staging_[local];
    watch_progress(slot, st, state, now);
    if (sweep && st.deadlines_live > 0) {
      // Answer expired requests now rather than when (or if) the worker replies; the
      // reply that comes later is counted as late and dropped.
      const std::uint32_t total = slot.channel->total_buffers();
      for (std::uint32_t id = 0; id < total; ++id) {
        ReplyContext& ctx = slot.contexts[id];
        if (ctx.live && ctx.has_deadline && !ctx.answered && now > ctx.deadline_ns) {
          answer_error(ctx, protocol::ErrorCode::deadline_exceeded);
          ctx.answered = 1;
          --st.deadlines_live;
        }
      }
    }
    dispatch::DrainMeter& meter = sched_->drain[local];
    meter.sample(now, st.completed, slot.channel->inflight());
    if (slot.stats != nullptr) {
      publish_depths(slot);
      slot.stats->inflight.store(slot.channel->inflight(), std::memory_order_relaxed);
      slot.stats->free_buffers.store(slot.channel->free_buffers(), std::memory_order_relaxed);
      slot.stats->drain_rate.store(meter.rate_per_s, std::memory_order_relaxed);
      slot.stats->queue_delay_ns.store(dispatch::queue_delay_ns(slot.channel->inflight(), meter.rate_per_s),
                                       std::memory_order_relaxed);
    }
  }
  if (reasm_ != nullptr) {
    count(stats_.drops[std::size_t(protocol::Reason::reassembly_timeout)], reasm_->expire(now));
    stats_.reassembly_bytes.store(reasm_->bytes_in_use(), std::memory_order_relaxed);
    stats_.reassembly_messages.store(reasm_->messages_in_use(), std::memory_order_relaxed);
  }
  if (dedup_ != nullptr) {
    (void)dedup_->expire(now, kDedupSweep);
    stats_.dedup_arena_bytes.store(dedup_->bytes_in_use(), std::memory_order_relaxed);
    stats_.dedup_entries.store(dedup_->entries_in_use(), std::memory_order_relaxed);
  }
  publish_cache();
  port_.poll_completions();
  const PortCounters port = port_.counters();
  stats_.port_rx_dropped.store(port.rx_dropped, std::memory_order_relaxed);
  stats_.port_tx_errors.store(port.tx_errors, std::memory_order_relaxed);
}

// The request's first hop, "NIC receive" (docs/observability.md): the backend's own stamp when it
// has one, else the burst's `now`. The XDP hook stamps with CLOCK_MONOTONIC; the lcore's hop clock
// is a line fitted to it once at start, which drifts from it slowly, so the stamp is carried onto
// the hop clock by their offset, read once per burst that has stamps (`offset`, INT64_MIN until
// then: one clock_gettime). A frame stamped after `now` arrived between the burst's clock read
// and its RX peek: it gets `now`, the hops must not run backwards. A stamp more than a second
// before `now` is not one to trust (a frame cannot wait that long in a ring the lcore polls):
// counted, and `now` is used.
std::uint64_t Lcore::first_hop(const Frame& frame, std::uint64_t now, std::int64_t& offset) noexcept {
  if (frame.rx_ns == 0) return now;
  if (offset == INT64_MIN) offset = std::int64_t(clock_.now_ns() - monotonic_ns());
  const std::uint64_t rx = frame.rx_ns + std::uint64_t(offset);
  if (rx <= now && now - rx > 1'000'000'000u) {
    count(stats_.rx_hook_stamp_rejected);
    return now;
  }
  count(stats_.rx_hook_stamped);
  return rx < now ? rx : now;
}

std::uint32_t Lcore::poll_once() noexcept {
  const std::uint64_t now = clock_.now_ns();
  std::uint32_t work = 0;
  Frame frames[kBurst];
  std::uint32_t n = port_.rx_burst(frames, kBurst);
  std::uint64_t bytes = 0;
  // Interactive first (docs/scheduling.md): the burst is parsed once, its interactive requests
  // (and those of agents without class scheduling, in arrival order) are dispatched at once,
  // its background requests after them, so they never take a worker or ring room first.
  Pending pending[kBurst];
  std::uint32_t later[kBurst];
  std::uint32_t later_count = 0;
  std::uint64_t rx_ns[kBurst];
  std::int64_t stamp_offset = INT64_MIN;
  for (std::uint32_t i = 0; i < n; ++i) {
    bytes += frames[i].len;
    rx_ns[i] = first_hop(frames[i], now, stamp_offset);
    if (!prepare(frames[i], rx_ns[i], false, pending[i])) continue;
    if (deferred(pending[i])) {
      later[later_count++] = i;
    } else {
      dispatch_pending(pending[i], rx_ns[i]);
    }
  }
  for (std::uint32_t k = 0; k < later_count; ++k) dispatch_pending(pending[later[k]], rx_ns[later[k]]);
  count(stats_.rx_frames, n);
  count(stats_.rx_bytes, bytes);
  flush_staged();
  port_.rx_release(frames, n);
  work += n;
  work += drain_forwarded();
  flush_staged();
  // A fresh clock for replies: a worker on another core often answers requests submitted
  // earlier in this same iteration, which `now` (taken before rx) would record as 0 ns.
  work += poll_replies(clock_.now_ns());
  publish_outstanding();
  flush_tx();
  if (now >= next_housekeeping_ns_) {
    next_housekeeping_ns_ = now + std::uint64_t(shared_.config.housekeeping_us) * 1000u;
    housekeeping(now);
    flush_tx();
  }
  shared_.routes.quiescent(id_);
  count(stats_.loops);
  if (work == 0) count(stats_.idle_loops);
  return work;
}

// Staged requests are in inflight() now: admission's per-iteration count starts again, and
// dispatch on every lcore sees each owned worker's exact load.
void Lcore::publish_outstanding() noexcept {
  for (std::uint32_t local = 0; local < owned_.size(); ++local) {
    sched_->admitted[local] = 0;
    owned_[local]->outstanding.store(owned_[local]->channel->inflight(), std::memory_order_relaxed);
  }
}

std::uint64_t Lcore::inflight() const noexcept {
  std::uint64_t total = 0;
  for (const WorkerSlot* slot : owned_) total += slot->channel->inflight();
  return total;
}

void Lcore::abandon_inflight(protocol::ErrorCode code) noexcept {
  for (WorkerSlot* slot : owned_) {
    const std::uint32_t total = slot->channel->total_buffers();
    for (std::uint32_t id = 0; id < total; ++id) {
      ReplyContext& ctx = slot->contexts[id];
      if (ctx.live && !ctx.answered) {
        answer_error(ctx, code, 1'000'000u);
        ctx.answered = 1;
      }
    }
  }
  flush_tx();
}

void Lcore::run() noexcept {
  while (!shared_.stop.load(std::memory_order_relaxed)) {
    if (poll_once() == 0) cpu_relax();
  }
  // Drain: keep serving replies for in-flight requests, bounded in time.
  const std::uint64_t deadline = clock_.now_ns() + std::uint64_t(shared_.config.drain_timeout_ms) * 1'000'000u;
  while (inflight() > 0 && clock_.now_ns() < deadline) {
    if (poll_once() == 0) cpu_relax();
  }
  if (inflight() > 0) abandon_inflight(protocol::ErrorCode::overloaded);
  // Give the last replies a chance to leave before the socket closes.
  for (int i = 0; i < 100; ++i) {
    flush_tx();
    port_.poll_completions();
  }
  shared_.routes.offline(id_);
}

}  // namespace axon::dataplane

// Data-plane side of a worker segment: pool, in-flight table, validation, reclaim.
#include "axon/shm/channel.h"

#include <cstring>

#include "axon/common/clock.h"
#include "axon/shm/eventcount.h"

namespace axon::shm {

ShmResult<WorkerChannel> WorkerChannel::create(const ChannelOptions& options) {
  if (auto ok = check_geometry(options.geometry); !ok) return ok.error();
  if (options.small_loans > options.geometry.loan_capacity || options.large_loans > options.geometry.loan_capacity) {
    return make_error(ShmError::invalid_argument, "loan targets must not exceed loan_capacity (" +
                                                      std::to_string(options.geometry.loan_capacity) + ")");
  }
  if (options.small_loans >= options.geometry.small_buffer_count ||
      options.large_loans >= options.geometry.large_buffer_count) {
    return make_error(ShmError::invalid_argument,
                      "loan targets must leave buffers for requests; lower small_loans/large_loans or add buffers");
  }
  RegionOptions region_options;
  region_options.size = segment_bytes(options.geometry);
  region_options.numa_node = options.numa_node;
  region_options.allow_fallback = options.allow_fallback;
  region_options.name = "axon-worker-" + std::to_string(options.worker_id);
  auto region = Region::create(region_options);
  if (!region) return region.error();

  WorkerChannel channel;
  channel.options_ = options;
  channel.clock_ = process_clock();
  channel.region_ = std::move(region).value();
  const auto& g = options.geometry;
  channel.small_count_ = g.small_buffer_count;
  std::uint32_t total = g.small_buffer_count + g.large_buffer_count;
  channel.state_.assign(total, BufferState::free);
  channel.inflight_.assign(total, InflightEntry{});
  channel.free_small_.reserve(g.small_buffer_count);
  channel.free_large_.reserve(g.large_buffer_count);
  if (auto bound = channel.bind(/*generation=*/1); !bound) return bound.error();
  return channel;
}

// (Re)formats the segment and resets every piece of private bookkeeping to "all free".
ShmResult<Ok> WorkerChannel::bind(std::uint64_t generation) {
  auto view = format_segment(region_.base(), region_.size(), options_.geometry, options_.worker_id, options_.numa_node,
                             region_.backing(), generation);
  if (!view) return view.error();
  view_ = view.value();
  small_slab_ = view_.header->small;
  large_slab_ = view_.header->large;
  generation_ = generation;
  for (PriorityClass cls : {PriorityClass::interactive, PriorityClass::background}) {
    RingHeader* ring = view_.request_ring_of(cls);
    requests_[std::size_t(cls)] = RingProducer<Descriptor>(ring, view_.slots<Descriptor>(ring));
  }
  replies_ = RingConsumer<Descriptor>(view_.reply_ring, view_.slots<Descriptor>(view_.reply_ring));
  small_loans_ = RingProducer<LoanSlot>(view_.small_loan_ring, view_.slots<LoanSlot>(view_.small_loan_ring));
  large_loans_ = RingProducer<LoanSlot>(view_.large_loan_ring, view_.slots<LoanSlot>(view_.large_loan_ring));
  std::fill(state_.begin(), state_.end(), BufferState::free);
  free_small_.clear();
  free_large_.clear();
  // Pushed in reverse so the first allocation takes buffer 0.
  for (std::uint32_t id = small_count_; id-- > 0;) free_small_.push_back(id);
  for (std::uint32_t id = std::uint32_t(state_.size()); id-- > small_count_;) free_large_.push_back(id);
  inflight_count_ = 0;
  small_loans_out_ = 0;
  large_loans_out_ = 0;
  refill_loans();
  return Ok{};
}

std::uint32_t WorkerChannel::capacity_of(std::uint32_t id) const noexcept {
  return id < small_count_ ? small_slab_.buffer_size : large_slab_.buffer_size;
}

std::uint64_t WorkerChannel::offset_of(std::uint32_t id) const noexcept {
  const SlabClass& slab = id < small_count_ ? small_slab_ : large_slab_;
  std::uint32_t index = id < small_count_ ? id : id - small_count_;
  return slab.offset + std::uint64_t(index) * slab.buffer_size;
}

// Maps an offset the worker wrote back to a buffer id, rejecting anything that is not
// exactly the start of one of this segment's buffers.
bool WorkerChannel::buffer_of_offset(std::uint64_t offset, std::uint32_t& id) const noexcept {
  const SlabClass& small = small_slab_;
  const SlabClass& large = large_slab_;
  if (offset >= small.offset && offset < small.offset + std::uint64_t(small.count) * small.buffer_size) {
    std::uint64_t rel = offset - small.offset;
    if (rel % small.buffer_size != 0) return false;
    id = std::uint32_t(rel / small.buffer_size);
    return true;
  }
  if (offset >= large.offset && offset < large.offset + std::uint64_t(large.count) * large.buffer_size) {
    std::uint64_t rel = offset - large.offset;
    if (rel % large.buffer_size != 0) return false;
    id = small_count_ + std::uint32_t(rel / large.buffer_size);
    return true;
  }
  return false;
}

bool WorkerChannel::try_alloc(std::uint32_t bytes, BufferLease& out) noexcept {
  std::vector<std::uint32_t>* pool = nullptr;
  if (bytes <= small_slab_.buffer_size && !free_small_.empty()) {
    pool = &free_small_;
  } else if (bytes <= large_slab_.buffer_size && !free_large_.empty()) {
    pool = &free_large_;
  }
  if (pool == nullptr) [[unlikely]] {
    ++stats_.alloc_failed;
    return false;
  }
  std::uint32_t id = pool->back();
  pool->pop_back();
  state_[id] = BufferState::leased;
  out.buffer_id = id;
  out.data = view_.at(offset_of(id));
  out.capacity = capacity_of(id);
  return true;
}

void WorkerChannel::free_buffer(std::uint32_t id) noexcept {
  state_[id] = BufferState::free;
  // Capacity was reserved for every buffer at creation, so push_back never allocates.
  (id < small_count_ ? free_small_ : free_large_).push_back(id);
}

void WorkerChannel::release(const BufferLease& lease) noexcept {
  if (lease.buffer_id < state_.size() && state_[lease.buffer_id] == BufferState::leased) free_buffer(lease.buffer_id);
}

std::uint32_t WorkerChannel::request_room(PriorityClass cls) noexcept {
  RingProducer<Descriptor>& ring = requests_[std::size_t(cls) & 1u];
  return ring.free_slots(ring.capacity());
}

void WorkerChannel::wake_worker() noexcept {
  eventcount_notify(view_.header->request_event);
}

std::uint32_t WorkerChannel::try_submit_burst(OutgoingRequest* requests, std::uint32_t n, PriorityClass cls,
                                              bool wake) noexcept {
  const std::size_t c = std::size_t(cls) & 1u;
  const std::uint64_t now = clock_.now_ns();
  std::uint32_t accepted = requests_[c].try_push_burst(n, [&](std::uint32_t i, Descriptor& slot) noexcept {
    OutgoingRequest& request = requests[i];
    const std::uint32_t id = request.lease.buffer_id;
    ring_detail::copy_body(slot, request.meta);  // all but `commit`: only the ring writes the stamp
    slot.buffer_offset = std::uint32_t(offset_of(id));
    slot.length = request.length;
    slot.inflight_slot = id;
    slot.flags = std::uint16_t(id < small_count_ ? 0 : kFlagLargeBuffer);
    slot.status = 0;
    slot.hop_ns[kHopEnqueue] = now;
    state_[id] = BufferState::inflight;
    inflight_[id] = InflightEntry{request.meta.user_cookie, now};
  });
  if (accepted < n) {
    ++stats_.request_ring_full;
    ++stats_.class_ring_full[c];
  }
  if (accepted > 0) {
    inflight_count_ += accepted;
    stats_.submitted += accepted;
    stats_.class_submitted[c] += accepted;
    if (wake) eventcount_notify(view_.header->request_event);
  }
  return accepted;
}

std::uint32_t WorkerChannel::poll_replies(Completion* out, std::uint32_t max) noexcept {
  std::uint32_t produced = 0;
  (void)replies_.try_pop_burst(max, [&](const Descriptor& reply) noexcept {
    const std::uint32_t slot = reply.inflight_slot;
    if (slot >= state_.size() || state_[slot] != BufferState::inflight) {
      ++stats_.invalid_replies;
      return;
    }
    std::uint32_t reply_buffer = slot;
    if ((reply.flags & kFlagReplyInPlace) == 0) {
      std::uint32_t loaned = 0;
      if (!buffer_of_offset(reply.buffer_offset, loaned) || state_[loaned] != BufferState::loaned) {
        ++stats_.invalid_replies;
        return;
      }
      reply_buffer = loaned;
    }
    if (reply.length > capacity_of(reply_buffer)) {
      ++stats_.invalid_replies;
      return;
    }
    if (reply_buffer != slot) {
      state_[reply_buffer] = BufferState::replied;
      (reply_buffer < small_count_ ? small_loans_out_ : large_loans_out_) -= 1;
    }
    state_[slot] = BufferState::replied;
    --inflight_count_;
    const InflightEntry& entry = inflight_[slot];
    Completion& c = out[produced++];
    c.user_cookie = entry.user_cookie;
    c.enqueue_ns = entry.enqueue_ns;
    c.status = ReplyStatus(reply.status);
    c.data = view_.at(offset_of(reply_buffer));
    c.length = reply.length;
    c.request_buffer = slot;
    c.reply_buffer = reply_buffer;
    c.reply = reply;
  });
  stats_.completed += produced;
  return produced;
}

void WorkerChannel::finish(const Completion& completion) noexcept {
  for (std::uint32_t id : {completion.request_buffer, completion.reply_buffer}) {
    if (id < state_.size() && state_[id] == BufferState::replied) free_buffer(id);
  }
}

void WorkerChannel::stock(RingProducer<LoanSlot>& ring, std::vector<std::uint32_t>& pool, std::uint32_t& outstanding,
                          std::uint32_t target) noexcept {
  if (outstanding >= target) return;
  std::uint32_t want = target - outstanding;
  if (want > pool.size()) want = std::uint32_t(pool.size());
  std::uint32_t pushed = ring.try_push_burst(want, [&](std::uint32_t i, LoanSlot& slot) noexcept {
    std::uint32_t id = pool[pool.size() - 1 - i];
    slot.buffer_offset = std::uint32_t(offset_of(id));
    slot.capacity = capacity_of(id);
  });
  for (std::uint32_t i = 0; i < pushed; ++i) {
    state_[pool.back()] = BufferState::loaned;
    pool.pop_back();
  }
  outstanding += pushed;
}

void WorkerChannel::refill_loans() noexcept {
  stock(small_loans_, free_small_, small_loans_out_, options_.small_loans);
  stock(large_loans_, free_large_, large_loans_out_, options_.large_loans);
}

bool WorkerChannel::worker_misbehaved() const noexcept {
  return replies_.corrupt() || requests_[0].corrupt() || requests_[1].corrupt() || small_loans_.corrupt() ||
         large_loans_.corrupt();
}

std::uint32_t WorkerChannel::reclaim(std::vector<LostRequest>& lost) {
  std::uint32_t reported = 0;
  for (std::uint32_t id = 0; id < state_.size(); ++id) {
    if (state_[id] == BufferState::inflight) {
      const InflightEntry& entry = inflight_[id];
      lost.push_back(LostRequest{entry.user_cookie});
      ++reported;
    }
  }
  // Fold the dead worker's counters into ours before the header is wiped.
  add_segment_counters(stats_);
  stats_.lost_on_reclaim += reported;
  ++stats_.reclaims;
  // Reformatting rebuilds the free lists from scratch, so every buffer, whatever state
  // the worker left it in, is back in the pool afterwards.
  auto rebound = bind(generation_ + 1);
  (void)rebound;  // cannot fail: same region, same geometry that was accepted at create
  return reported;
}

void WorkerChannel::add_segment_counters(ChannelStats& s) const noexcept {
  const SegmentHeader& h = *view_.header;
  s.torn_replies += view_.reply_ring->consumer.torn_slots.load(std::memory_order_relaxed);
  s.wakes_issued += h.request_event.wakes_issued.load(std::memory_order_relaxed);
  s.worker_served[0] += h.interactive_served.load(std::memory_order_relaxed);
  s.worker_served[1] += h.background_served.load(std::memory_order_relaxed);
  s.worker_deadline_expired += h.deadline_expired.load(std::memory_order_relaxed);
}

ChannelStats WorkerChannel::stats() const noexcept {
  ChannelStats s = stats_;
  add_segment_counters(s);
  return s;
}

}  // namespace axon::shm

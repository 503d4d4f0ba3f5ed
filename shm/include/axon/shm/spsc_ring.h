// Process-local views of a shared single-producer single-consumer ring.
//
// The ring itself (RingHeader + slots) lives in shared memory; these views hold the
// process-local addresses of it. Each side publishes a whole burst with one release
// store of its index, stamps every slot it writes, and only touches the peer's line
// when its cached copy of the peer's index runs out.
//
// The commit stamp doubles as the consumer's fast readiness signal: the producer writes a
// slot's body, then release-stores its stamp (index + 1), then publishes the burst's
// head. A single-slot pop that finds the next slot already stamped for the index it
// expects takes it without reading the producer's head at all, so handing over one
// message costs one cache-line transfer (the slot's) instead of two (head, then slot).
// The head is read by a single-slot pop only when the next slot is not stamped, to tell "empty" from a
// slot the producer published without a valid stamp (torn, skipped and counted), and
// then only on a new view's first empty poll and every kLookEvery-th empty poll in a row.
// A consumer spinning on an empty ring therefore polls only the slot: reading the head
// there pulls the producer's line across while its head store is in flight, and as x86
// commits stores in order that stalls the producer's next message (measured: the one-way
// handoff got 1.6x slower). Bursts still size themselves from the head, one read per
// exhausted cache, which the burst amortises. To keep the stamp word race-free, the
// producer never writes it except with that release store: try_push_burst(items, n)
// copies slot bodies around it, and fill callbacks must not touch it.
//
// The peer is another process and may be buggy or hostile, so every index read from the
// peer is checked: a peer index that claims more than `capacity` entries, or moves
// backwards, marks the ring corrupt and the side stops using it (the data plane then
// treats the worker as failed). Nothing here allocates, locks or throws.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "axon/shm/layout.h"

namespace axon::shm {

namespace ring_detail {

// Slots are plain bytes in shared memory whose first member is the 64-bit commit stamp.
template <typename Slot>
constexpr bool valid_slot() {
  return std::is_trivially_copyable_v<Slot> && std::is_standard_layout_v<Slot> &&
         std::is_same_v<decltype(Slot::commit), std::uint64_t> && offsetof(Slot, commit) == 0;
}

// Copies everything but the stamp, which only the release store in the producer writes.
template <typename Slot>
inline void copy_body(Slot& to, const Slot& from) noexcept {
  constexpr std::size_t kStamp = sizeof(std::uint64_t);
  std::memcpy(reinterpret_cast<unsigned char*>(&to) + kStamp, reinterpret_cast<const unsigned char*>(&from) + kStamp,
              sizeof(Slot) - kStamp);
}

template <typename Slot>
[[nodiscard]] inline std::uint64_t load_stamp(const Slot& slot) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(slot.commit)).load(std::memory_order_acquire);
}

}  // namespace ring_detail

template <typename Slot>
class RingProducer {
  static_assert(ring_detail::valid_slot<Slot>(),
                "a ring slot is trivially copyable, standard layout, with a uint64_t `commit` first");

 public:
  RingProducer() noexcept = default;
  RingProducer(RingHeader* header, Slot* slots) noexcept
      : header_(header), slots_(slots), mask_(header->geometry.capacity - 1u) {}

  [[nodiscard]] bool valid() const noexcept { return header_ != nullptr; }
  [[nodiscard]] bool corrupt() const noexcept { return corrupt_; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return mask_ + 1u; }

  // Room for at least `wanted` more slots? Re-reads the consumer's index only when the
  // cached one says no, so a producer that keeps up costs no shared-line miss.
  [[nodiscard]] std::uint32_t free_slots(std::uint32_t wanted) noexcept {
    const std::uint64_t head = header_->producer.head.load(std::memory_order_relaxed);
    std::uint64_t free = capacity() - (head - header_->producer.cached_tail);
    if (free < wanted) {
      // The consumer may run ahead of a head we have not published yet, but only into
      // slots of a burst in progress; here, between bursts, tail <= head always holds.
      const std::uint64_t tail = header_->consumer.tail.load(std::memory_order_acquire);
      if (tail > head || head - tail > capacity()) [[unlikely]] {
        corrupt_ = true;
        return 0;
      }
      header_->producer.cached_tail = tail;
      free = capacity() - (head - tail);
    }
    return std::uint32_t(free);
  }

  // Writes min(n, room) slots, produced in place by fill(i, Slot&), and publishes them
  // with a single release store. Returns how many were written; a short count is counted
  // as a full event and the caller still owns the rest. fill() must leave `commit` alone:
  // the ring stamps it afterwards, and a value written there mid-fill that happened to
  // equal the stamp would let a single-slot pop take the slot before fill() finished.
  template <typename Fill>
  [[nodiscard]] std::uint32_t try_push_burst(std::uint32_t n, Fill&& fill) noexcept {
    return push(n, fill);
  }

  [[nodiscard]] std::uint32_t try_push_burst(const Slot* items, std::uint32_t n) noexcept {
    return push(n, [items](std::uint32_t i, Slot& slot) noexcept { ring_detail::copy_body(slot, items[i]); });
  }

  [[nodiscard]] bool try_push(const Slot& item) noexcept { return try_push_burst(&item, 1) == 1; }

  // Entries written but not yet consumed, as last seen (for stats and backpressure).
  [[nodiscard]] std::uint64_t depth() const noexcept {
    const std::uint64_t head = header_->producer.head.load(std::memory_order_relaxed);
    const std::uint64_t tail = header_->consumer.tail.load(std::memory_order_relaxed);
    return head > tail ? head - tail : 0;
  }

 private:
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  template <typename Write>
  [[nodiscard]] std::uint32_t push(std::uint32_t n, Write&& write) noexcept {
    if (n == 0 || corrupt_) return 0;
    std::uint32_t room = free_slots(n);
    std::uint32_t count = n < room ? n : room;
    if (count < n) bump(header_->producer.full_events);
    if (count == 0) return 0;
    const std::uint64_t head = header_->producer.head.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < count; ++i) {
      Slot& slot = slots_[(head + i) & mask_];
      write(i, slot);
      // The stamp goes last: it is what a polling consumer (and crash forensics) trusts.
      std::atomic_ref<std::uint64_t>(slot.commit).store(head + i + 1, std::memory_order_release);
    }
    // Both stores hit the producer's own line back to back, before the consumer can pull
    // it away between them.
    bump(header_->producer.pushed_total, count);
    header_->producer.head.store(head + count, std::memory_order_release);
    return count;
  }

  RingHeader* header_ = nullptr;
  Slot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
  bool corrupt_ = false;
};

template <typename Slot>
class RingConsumer {
  static_assert(ring_detail::valid_slot<Slot>(),
                "a ring slot is trivially copyable, standard layout, with a uint64_t `commit` first");

 public:
  RingConsumer() noexcept = default;
  RingConsumer(RingHeader* header, Slot* slots) noexcept
      : header_(header), slots_(slots), mask_(header->geometry.capacity - 1u) {}

  [[nodiscard]] bool valid() const noexcept { return header_ != nullptr; }
  [[nodiscard]] bool corrupt() const noexcept { return corrupt_; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return mask_ + 1u; }

  // Consecutive empty polls between two looks at the producer's head (see the top).
  static constexpr std::uint32_t kLookEvery = 1024;

  // Entries ready to read (a lower bound when the producer is mid-burst). Uses the cached
  // head first, then the next slot's stamp, and reads the producer's head only every
  // kLookEvery-th call that found nothing (a spinning worker calls this in its loop). A
  // published slot always carries its stamp, so no message is missed: this is also what
  // a sleeper rechecks after registering on the eventcount.
  [[nodiscard]] std::uint32_t available() noexcept {
    if (corrupt_) return 0;
    const std::uint64_t tail = header_->consumer.tail.load(std::memory_order_relaxed);
    const std::uint64_t cached = header_->consumer.cached_head;
    if (cached > tail) return clamp(cached - tail);
    if (ring_detail::load_stamp(slots_[tail & mask_]) == tail + 1) return 1;
    if (++peeks_ % kLookEvery != 0 || !refresh_head(tail)) return 0;
    const std::uint64_t head = header_->consumer.cached_head;
    return head > tail ? clamp(head - tail) : 0;
  }

  // Hands up to `max` slots, in order, to visit(const Slot&), then frees them with one
  // release store. A slot whose commit stamp is wrong although the producer's head covers
  // it is skipped and counted as torn. Returns the number of slots consumed (torn ones
  // included). A burst (max > 1) learns how many slots are there from the head, read once
  // when the cached copy runs out; a single-slot pop polls the slot's stamp (see the top).
  template <typename Visit>
  [[nodiscard]] std::uint32_t try_pop_burst(std::uint32_t max, Visit&& visit) noexcept {
    if (corrupt_ || max == 0) return 0;
    const std::uint64_t tail = header_->consumer.tail.load(std::memory_order_relaxed);
    if (max == 1) return pop_one(tail, visit);
    std::uint64_t head = header_->consumer.cached_head;
    if (head <= tail) {
      if (!refresh_head(tail)) return 0;
      head = header_->consumer.cached_head;
      // head < tail: single pops took slots of a burst still in progress; the rest of it
      // is published shortly.
      if (head <= tail) return 0;
    }
    const std::uint32_t ready = clamp(head - tail);
    const std::uint32_t count = ready < max ? ready : max;
    for (std::uint32_t i = 0; i < count; ++i) {
      const Slot& slot = slots_[(tail + i) & mask_];
      if (ring_detail::load_stamp(slot) != tail + i + 1) [[unlikely]] {
        count_torn();
        continue;
      }
      visit(slot);
    }
    header_->consumer.tail.store(tail + count, std::memory_order_release);
    return count;
  }

  [[nodiscard]] std::uint32_t try_pop_burst(Slot* out, std::uint32_t max) noexcept {
    std::uint32_t written = 0;
    (void)try_pop_burst(max, [&](const Slot& slot) noexcept { out[written++] = slot; });
    return written;
  }

  [[nodiscard]] bool try_pop(Slot& out) noexcept { return try_pop_burst(&out, 1) == 1; }

  [[nodiscard]] bool empty() noexcept { return available() == 0; }

 private:
  // The latency path: the slot's own stamp says it is ready, so the producer's head is
  // read only to tell "empty" from torn, and only on the polls the top describes.
  template <typename Visit>
  [[nodiscard]] std::uint32_t pop_one(std::uint64_t tail, Visit& visit) noexcept {
    const Slot& slot = slots_[tail & mask_];
    if (ring_detail::load_stamp(slot) != tail + 1) {
      if (tail >= header_->consumer.cached_head) {
        if (idle_polls_++ % kLookEvery != 0 || !refresh_head(tail)) return 0;
        if (tail >= header_->consumer.cached_head) return 0;
      }
      // Covered by the head; the acquire on it makes a finished stamp visible.
      if (ring_detail::load_stamp(slot) != tail + 1) {
        count_torn();
        header_->consumer.tail.store(tail + 1, std::memory_order_release);
        return 1;
      }
    }
    visit(slot);
    header_->consumer.tail.store(tail + 1, std::memory_order_release);
    idle_polls_ = 1;  // the next empty poll does not look: the producer's head store is in flight
    return 1;
  }

  void count_torn() noexcept {
    header_->consumer.torn_slots.store(header_->consumer.torn_slots.load(std::memory_order_relaxed) + 1,
                                       std::memory_order_relaxed);
  }

  [[nodiscard]] std::uint32_t clamp(std::uint64_t n) const noexcept {
    return n > capacity() ? capacity() : std::uint32_t(n);
  }

  // Reads the producer's head into the cached copy. The head never moves backwards and
  // never runs more than `capacity` ahead of the tail; anything else marks the ring
  // corrupt. (The tail may legitimately be ahead of the head: slots of a burst still in
  // progress are taken by their stamps.)
  [[nodiscard]] bool refresh_head(std::uint64_t tail) noexcept {
    const std::uint64_t head = header_->producer.head.load(std::memory_order_acquire);
    if (head < header_->consumer.cached_head || (head > tail && head - tail > capacity())) [[unlikely]] {
      corrupt_ = true;
      return false;
    }
    header_->consumer.cached_head = head;
    return true;
  }

  RingHeader* header_ = nullptr;
  Slot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
  bool corrupt_ = false;
  std::uint32_t idle_polls_ = 0;  // empty single pops in a row (a multiple of kLookEvery: look)
  std::uint32_t peeks_ = 0;       // available() calls that found nothing stamped
};

}  // namespace axon::shm

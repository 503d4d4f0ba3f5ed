// Process-local views of a shared single-producer single-consumer ring.
//
// The ring itself (RingHeader + slots) lives in shared memory; these views hold the
// process-local addresses of it. Each side publishes a whole burst with one release
// store of its index, stamps every slot it writes, and only touches the peer's line
// when its cached copy of the peer's index runs out.
//
// The peer is another process and may be buggy or hostile, so every index read from the
// peer is checked: a peer index that claims more than `capacity` entries, or moves
// backwards, marks the ring corrupt and the side stops using it (the data plane then
// treats the worker as failed). Nothing here allocates, locks or throws.
#pragma once

#include <atomic>
#include <cstdint>

#include "axon/shm/layout.h"

namespace axon::shm {

template <typename Slot>
class RingProducer {
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

  // Writes min(n, room) slots, produced by fill(i, Slot&), and publishes them with a
  // single release store. Returns how many were written; a short count is counted as a
  // full event and the caller still owns the rest.
  template <typename Fill>
  [[nodiscard]] std::uint32_t try_push_burst(std::uint32_t n, Fill&& fill) noexcept {
    if (n == 0 || corrupt_) return 0;
    std::uint32_t room = free_slots(n);
    std::uint32_t count = n < room ? n : room;
    if (count < n) bump(header_->producer.full_events);
    if (count == 0) return 0;
    const std::uint64_t head = header_->producer.head.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < count; ++i) {
      Slot& slot = slots_[(head + i) & mask_];
      fill(i, slot);
      // The stamp goes last so a reader that bypasses `head` (crash forensics) can tell a
      // finished slot from a torn one.
      std::atomic_ref<std::uint64_t>(slot.commit).store(head + i + 1, std::memory_order_release);
    }
    header_->producer.head.store(head + count, std::memory_order_release);
    header_->producer.pushed_total.store(
        header_->producer.pushed_total.load(std::memory_order_relaxed) + count, std::memory_order_relaxed);
    return count;
  }

  [[nodiscard]] std::uint32_t try_push_burst(const Slot* items, std::uint32_t n) noexcept {
    return try_push_burst(n, [items](std::uint32_t i, Slot& slot) noexcept { slot = items[i]; });
  }

  [[nodiscard]] bool try_push(const Slot& item) noexcept { return try_push_burst(&item, 1) == 1; }

  // Entries written but not yet consumed, as last seen (for stats and backpressure).
  [[nodiscard]] std::uint64_t depth() const noexcept {
    return header_->producer.head.load(std::memory_order_relaxed) -
           header_->consumer.tail.load(std::memory_order_relaxed);
  }

 private:
  static void bump(std::atomic<std::uint64_t>& counter) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  RingHeader* header_ = nullptr;
  Slot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
  bool corrupt_ = false;
};

template <typename Slot>
class RingConsumer {
 public:
  RingConsumer() noexcept = default;
  RingConsumer(RingHeader* header, Slot* slots) noexcept
      : header_(header), slots_(slots), mask_(header->geometry.capacity - 1u) {}

  [[nodiscard]] bool valid() const noexcept { return header_ != nullptr; }
  [[nodiscard]] bool corrupt() const noexcept { return corrupt_; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return mask_ + 1u; }

  // Entries ready to read. Re-reads the producer's index only when the cached one is
  // exhausted.
  [[nodiscard]] std::uint32_t available() noexcept {
    const std::uint64_t tail = header_->consumer.tail.load(std::memory_order_relaxed);
    std::uint64_t ready = header_->consumer.cached_head - tail;
    if (ready == 0) {
      const std::uint64_t head = header_->producer.head.load(std::memory_order_acquire);
      if (head < tail || head - tail > capacity()) [[unlikely]] {
        corrupt_ = true;
        return 0;
      }
      header_->consumer.cached_head = head;
      ready = head - tail;
    }
    return std::uint32_t(ready);
  }

  // Hands up to `max` slots, in order, to visit(const Slot&), then frees them with one
  // release store. A slot whose commit stamp is wrong is skipped and counted as torn.
  // Returns the number of slots consumed (torn ones included).
  template <typename Visit>
  [[nodiscard]] std::uint32_t try_pop_burst(std::uint32_t max, Visit&& visit) noexcept {
    if (corrupt_) return 0;
    std::uint32_t ready = available();
    std::uint32_t count = ready < max ? ready : max;
    if (count == 0) return 0;
    const std::uint64_t tail = header_->consumer.tail.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < count; ++i) {
      const Slot& slot = slots_[(tail + i) & mask_];
      if (slot.commit != tail + i + 1) [[unlikely]] {
        header_->consumer.torn_slots.store(header_->consumer.torn_slots.load(std::memory_order_relaxed) + 1,
                                           std::memory_order_relaxed);
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
  RingHeader* header_ = nullptr;
  Slot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
  bool corrupt_ = false;
};

}  // namespace axon::shm

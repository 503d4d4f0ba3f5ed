// Open addressing with linear probing over power-of-two tables, shared by the per-lcore tables
// (dedup, reassembly, response cache): one hash finaliser, and backward-shift deletion, which
// keeps every probe chain gap-free without tombstones (a table that churns at line rate would
// otherwise fill with them).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <memory>

namespace axon::dataplane::probe {

// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit, so the low bits a
// table masks with are as good as the high ones.
[[nodiscard]] constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// Slots for a table that holds at most `n` elements: a power of two, at least twice n, so the
// load factor stays at or below one half and probe chains short.
[[nodiscard]] constexpr std::uint32_t slots_for(std::uint32_t n) noexcept {
  return std::bit_ceil(std::max<std::uint32_t>(n, 1u) * 2u);
}

// Whether home `k` of the element at `j` lies cyclically outside (i, j]: then it may move to
// the hole at i without leaving its own probe chain.
[[nodiscard]] constexpr bool may_fill(std::uint32_t i, std::uint32_t j, std::uint32_t k) noexcept {
  return i <= j ? (k <= i || k > j) : (k <= i && k > j);
}

// Backward-shift deletion for a table whose slots hold the elements themselves: `hole` has just
// been emptied; the elements after it in the same run move back where their chains allow.
// is_empty(j), home(j) (the element's hash, masked here) and move(from, to) (which must leave
// `from` empty) are the table's own.
template <class IsEmpty, class Home, class Move>
void close_hole(std::uint32_t hole, std::uint32_t mask, IsEmpty is_empty, Home home, Move move) noexcept {
  for (std::uint32_t j = (hole + 1) & mask; !is_empty(j); j = (j + 1) & mask) {
    if (may_fill(hole, j, std::uint32_t(home(j)) & mask)) {
      move(j, hole);
      hole = j;
    }
  }
}

// An index of element numbers (an entry, an arena granule) keyed by a 64-bit hash that the
// owning table can recompute from the element: the table keeps keys and hashes, the index only
// where to find them. Sized once at setup; nothing on the hot path allocates.
class Index {
 public:
  static constexpr std::uint32_t kEmpty = ~0u;

  // Setup only: room for at most `elements` at once.
  void allocate(std::uint32_t elements) {
    const std::uint32_t slots = slots_for(elements);
    mask_ = slots - 1;
    slots_.reset(new std::uint32_t[slots]);
    std::fill_n(slots_.get(), slots, kEmpty);
  }

  // The slot of the first element on `hash`'s chain for which matches(element) holds, or kEmpty.
  template <class Matches>
  [[nodiscard]] std::uint32_t find_slot(std::uint64_t hash, Matches matches) const noexcept {
    for (std::uint32_t i = std::uint32_t(hash) & mask_;; i = (i + 1) & mask_) {
      const std::uint32_t e = slots_[i];
      if (e == kEmpty) return kEmpty;
      if (matches(e)) return i;
    }
  }

  // The element for which matches(element) holds, or kEmpty.
  template <class Matches>
  [[nodiscard]] std::uint32_t find(std::uint64_t hash, Matches matches) const noexcept {
    const std::uint32_t slot = find_slot(hash, matches);
    return slot == kEmpty ? kEmpty : slots_[slot];
  }

  [[nodiscard]] std::uint32_t at(std::uint32_t slot) const noexcept { return slots_[slot]; }

  // The caller guarantees room (at most `elements` of allocate() held at once).
  void insert(std::uint32_t element, std::uint64_t hash) noexcept {
    std::uint32_t i = std::uint32_t(hash) & mask_;
    while (slots_[i] != kEmpty) i = (i + 1) & mask_;
    slots_[i] = element;
  }

  // Empties `slot`; hash_of(element) recomputes the hash of the elements that may move back.
  template <class HashOf>
  void erase_slot(std::uint32_t slot, HashOf hash_of) noexcept {
    slots_[slot] = kEmpty;
    close_hole(
        slot, mask_, [this](std::uint32_t j) { return slots_[j] == kEmpty; },
        [&](std::uint32_t j) { return hash_of(slots_[j]); },
        [this](std::uint32_t from, std::uint32_t to) {
          slots_[to] = slots_[from];
          slots_[from] = kEmpty;
        });
  }

  // Removes `element` (stored under `hash`); nothing when it is not indexed.
  template <class HashOf>
  void erase(std::uint32_t element, std::uint64_t hash, HashOf hash_of) noexcept {
    const std::uint32_t slot = find_slot(hash, [element](std::uint32_t e) { return e == element; });
    if (slot != kEmpty) erase_slot(slot, hash_of);
  }

 private:
  std::unique_ptr<std::uint32_t[]> slots_;
  std::uint32_t mask_ = 0;
};

}  // namespace axon::dataplane::probe

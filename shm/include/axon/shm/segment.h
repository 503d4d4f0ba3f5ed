// One worker's segment: geometry, formatting (data plane) and validated attach (worker).
#pragma once

#include <cstddef>
#include <cstdint>

#include "axon/common/clock.h"
#include "axon/shm/error.h"
#include "axon/shm/layout.h"
#include "axon/shm/region.h"
#include "axon/shm/spsc_ring.h"

namespace axon::shm {

struct SegmentGeometry {
  std::uint32_t request_capacity = 1024;  // per request ring (interactive, background); power of two
  std::uint32_t reply_capacity = 1024;    // power of two
  std::uint32_t loan_capacity = 64;       // per loan ring, power of two
  std::uint32_t small_buffer_size = 2048;
  std::uint32_t small_buffer_count = 2048;
  std::uint32_t large_buffer_size = 65536;
  std::uint32_t large_buffer_count = 32;
};

// Checks a geometry before anything is allocated for it.
ShmResult<Ok> check_geometry(const SegmentGeometry& geometry);

// Bytes a segment of this geometry needs.
std::size_t segment_bytes(const SegmentGeometry& geometry) noexcept;

// The hop clock a segment carries (SegmentHeader::clock, written by format_segment from the
// data plane's process_clock()).
[[nodiscard]] inline TscClock hop_clock_of(const SegmentHeader& header) noexcept {
  return TscClock{header.clock.tsc_base, header.clock.ns_base, header.clock.mult, header.clock.shift};
}

// Process-local addresses of everything inside one mapped segment.
struct SegmentView {
  std::byte* base = nullptr;
  std::size_t size = 0;
  SegmentHeader* header = nullptr;
  RingHeader* request_ring = nullptr;  // interactive
  RingHeader* background_ring = nullptr;
  RingHeader* reply_ring = nullptr;
  RingHeader* small_loan_ring = nullptr;
  RingHeader* large_loan_ring = nullptr;

  template <typename Slot>
  [[nodiscard]] Slot* slots(const RingHeader* ring) const noexcept {
    return reinterpret_cast<Slot*>(base + ring->geometry.slots_offset);
  }
  [[nodiscard]] RingHeader* request_ring_of(PriorityClass cls) const noexcept {
    return cls == PriorityClass::background ? background_ring : request_ring;
  }
  [[nodiscard]] std::byte* at(std::uint64_t offset) const noexcept { return base + offset; }
  [[nodiscard]] std::uint64_t offset_of(const void* p) const noexcept {
    return std::uint64_t(static_cast<const std::byte*>(p) - base);
  }
};

// Writes a fresh header, ring headers and slab geometry into [base, base+size).
ShmResult<SegmentView> format_segment(std::byte* base, std::size_t size, const SegmentGeometry& geometry,
                                      std::uint32_t worker_id, int numa_node, SegmentBacking backing,
                                      std::uint64_t generation);

// Validates a mapped segment written by the other side: magic, version (the message
// names both), sizes, and that every offset and slab lies inside the region, before any
// of it is used.
ShmResult<SegmentView> validate_segment(std::byte* base, std::size_t size);

}  // namespace axon::shm

// Segment formatting and attach-time validation.
#include "axon/shm/segment.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

namespace axon::shm {
namespace {

constexpr std::size_t kAlign = kFalseSharingRange;

std::size_t align_up(std::size_t value) {
  return (value + kAlign - 1) / kAlign * kAlign;
}

Error<ShmError> fail(ShmError code, std::string message) {
  return make_error(code, std::move(message));
}

struct Plan {
  std::size_t request_ring, reply_ring, small_loan_ring, large_loan_ring, background_ring;
  std::size_t request_slots, reply_slots, small_loan_slots, large_loan_slots, background_slots;
  std::size_t small_slab, large_slab, total;
};

Plan plan(const SegmentGeometry& g) {
  Plan p{};
  std::size_t cursor = align_up(sizeof(SegmentHeader));
  auto take = [&cursor](std::size_t bytes) {
    std::size_t at = cursor;
    cursor = align_up(cursor + bytes);
    return at;
  };
  p.request_ring = take(sizeof(RingHeader));
  p.reply_ring = take(sizeof(RingHeader));
  p.small_loan_ring = take(sizeof(RingHeader));
  p.large_loan_ring = take(sizeof(RingHeader));
  p.background_ring = take(sizeof(RingHeader));
  p.request_slots = take(std::size_t(g.request_capacity) * sizeof(Descriptor));
  p.reply_slots = take(std::size_t(g.reply_capacity) * sizeof(Descriptor));
  p.small_loan_slots = take(std::size_t(g.loan_capacity) * sizeof(LoanSlot));
  p.large_loan_slots = take(std::size_t(g.loan_capacity) * sizeof(LoanSlot));
  // Both request rings have request_capacity slots: a class never borrows the other's room.
  p.background_slots = take(std::size_t(g.request_capacity) * sizeof(Descriptor));
  p.small_slab = take(std::size_t(g.small_buffer_size) * g.small_buffer_count);
  p.large_slab = take(std::size_t(g.large_buffer_size) * g.large_buffer_count);
  p.total = cursor;
  return p;
}

void init_ring(std::byte* base, std::size_t header_at, std::size_t slots_at, std::uint32_t capacity,
               std::uint32_t slot_size) {
  auto* ring = new (base + header_at) RingHeader{};
  ring->geometry.slots_offset = slots_at;
  ring->geometry.capacity = capacity;
  ring->geometry.slot_size = slot_size;
  std::memset(base + slots_at, 0, std::size_t(capacity) * slot_size);
}

bool inside(std::uint64_t offset, std::uint64_t bytes, std::size_t size) {
  return offset <= size && bytes <= size - offset;
}

}  // namespace

ShmResult<Ok> check_geometry(const SegmentGeometry& g) {
  auto pow2 = [](std::uint32_t v) { return v >= 2 && std::has_single_bit(v); };
  if (!pow2(g.request_capacity) || !pow2(g.reply_capacity) || !pow2(g.loan_capacity)) {
    return fail(ShmError::invalid_argument,
                "ring capacities must be powers of two >= 2 (request " + std::to_string(g.request_capacity) +
                    ", reply " + std::to_string(g.reply_capacity) + ", loan " + std::to_string(g.loan_capacity) + ")");
  }
  if (g.small_buffer_size == 0 || g.small_buffer_size % 64 != 0 || g.large_buffer_size % 64 != 0 ||
      g.large_buffer_size < g.small_buffer_size) {
    return fail(ShmError::invalid_argument, "buffer sizes must be multiples of 64 with large >= small (small " +
                                                std::to_string(g.small_buffer_size) + ", large " +
                                                std::to_string(g.large_buffer_size) + ")");
  }
  if (g.small_buffer_count == 0 || g.large_buffer_count == 0) {
    return fail(ShmError::invalid_argument, "each buffer class needs at least one buffer");
  }
  if (segment_bytes(g) > (std::size_t{1} << 32)) {
    return fail(ShmError::invalid_argument, "a segment must stay under 4 GiB because descriptors hold 32-bit offsets");
  }
  return Ok{};
}

std::size_t segment_bytes(const SegmentGeometry& geometry) noexcept {
  return plan(geometry).total;
}

ShmResult<SegmentView> format_segment(std::byte* base, std::size_t size, const SegmentGeometry& g,
                                      std::uint32_t worker_id, int numa_node, SegmentBacking backing,
                                      std::uint64_t generation) {
  if (auto ok = check_geometry(g); !ok) return ok.error();
  Plan p = plan(g);
  if (p.total > size) {
    return fail(ShmError::invalid_argument, "region of " + std::to_string(size) + " bytes is too small for a " +
                                                std::to_string(p.total) + "-byte segment");
  }
  std::memset(base, 0, align_up(sizeof(SegmentHeader)));
  auto* header = new (base) SegmentHeader{};
  init_ring(base, p.request_ring, p.request_slots, g.request_capacity, sizeof(Descriptor));
  init_ring(base, p.reply_ring, p.reply_slots, g.reply_capacity, sizeof(Descriptor));
  init_ring(base, p.small_loan_ring, p.small_loan_slots, g.loan_capacity, sizeof(LoanSlot));
  init_ring(base, p.large_loan_ring, p.large_loan_slots, g.loan_capacity, sizeof(LoanSlot));
  init_ring(base, p.background_ring, p.background_slots, g.request_capacity, sizeof(Descriptor));
  header->layout_version = kLayoutVersion;
  header->header_size = sizeof(SegmentHeader);
  header->segment_size = size;
  header->generation = generation;
  header->worker_id = worker_id;
  header->numa_node = numa_node;
  header->backing = std::uint32_t(backing);
  header->request_ring_offset = p.request_ring;
  header->reply_ring_offset = p.reply_ring;
  header->small_loan_ring_offset = p.small_loan_ring;
  header->large_loan_ring_offset = p.large_loan_ring;
  header->background_ring_offset = p.background_ring;
  header->small = SlabClass{p.small_slab, g.small_buffer_size, g.small_buffer_count};
  header->large = SlabClass{p.large_slab, g.large_buffer_size, g.large_buffer_count};
  const TscClock& clock = process_clock();
  header->clock = HopClock{clock.tsc_base, clock.ns_base, clock.mult, clock.shift};
  // The magic is written last: a half-formatted segment never looks valid.
  std::atomic_ref<std::uint64_t>(header->magic).store(kSegmentMagic, std::memory_order_release);
  return validate_segment(base, size);
}

ShmResult<SegmentView> validate_segment(std::byte* base, std::size_t size) {
  if (base == nullptr || size < sizeof(SegmentHeader)) {
    return fail(ShmError::truncated, "segment of " + std::to_string(size) + " bytes cannot hold its header");
  }
  auto* header = reinterpret_cast<SegmentHeader*>(base);
  std::uint64_t magic = std::atomic_ref<std::uint64_t>(header->magic).load(std::memory_order_acquire);
  if (magic != kSegmentMagic) {
    return fail(
        ShmError::bad_magic, "not an axon segment (magic 0x" + [&] {
          char hex[17];
          std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(magic));
          return std::string(hex);
        }() + "); attach only to the fd the data plane handed over");
  }
  if (header->layout_version != kLayoutVersion) {
    return fail(ShmError::version_mismatch, "segment layout version " + std::to_string(header->layout_version) +
                                                " but this SDK speaks version " + std::to_string(kLayoutVersion) +
                                                "; rebuild the worker against the data plane's axon release");
  }
  if (header->header_size != sizeof(SegmentHeader) || header->segment_size != size) {
    return fail(ShmError::truncated, "segment header claims " + std::to_string(header->segment_size) + " bytes but " +
                                         std::to_string(size) + " are mapped");
  }
  SegmentView view;
  view.base = base;
  view.size = size;
  view.header = header;
  struct RingCheck {
    std::uint64_t offset;
    RingHeader** out;
    std::uint32_t slot_size;
    const char* name;
  } rings[] = {
      {header->request_ring_offset, &view.request_ring, sizeof(Descriptor), "interactive request"},
      {header->background_ring_offset, &view.background_ring, sizeof(Descriptor), "background request"},
      {header->reply_ring_offset, &view.reply_ring, sizeof(Descriptor), "reply"},
      {header->small_loan_ring_offset, &view.small_loan_ring, sizeof(LoanSlot), "small loan"},
      {header->large_loan_ring_offset, &view.large_loan_ring, sizeof(LoanSlot), "large loan"},
  };
  for (auto& ring : rings) {
    if (ring.offset % kAlign != 0 || !inside(ring.offset, sizeof(RingHeader), size)) {
      return fail(ShmError::corrupt_geometry, std::string(ring.name) + " ring header lies outside the segment");
    }
    auto* rh = reinterpret_cast<RingHeader*>(base + ring.offset);
    const auto& geo = rh->geometry;
    if (geo.slot_size != ring.slot_size || geo.capacity < 2 || !std::has_single_bit(geo.capacity) ||
        geo.slots_offset % 64 != 0 || !inside(geo.slots_offset, std::uint64_t(geo.capacity) * geo.slot_size, size)) {
      return fail(ShmError::corrupt_geometry, std::string(ring.name) + " ring geometry is invalid (capacity " +
                                                  std::to_string(geo.capacity) + ", slot size " +
                                                  std::to_string(geo.slot_size) + ")");
    }
    *ring.out = rh;
  }
  for (const SlabClass* slab : {&header->small, &header->large}) {
    if (slab->buffer_size == 0 || slab->buffer_size % 64 != 0 || slab->count == 0 || slab->offset % 64 != 0 ||
        !inside(slab->offset, std::uint64_t(slab->buffer_size) * slab->count, size)) {
      return fail(ShmError::corrupt_geometry, "buffer slab lies outside the segment");
    }
  }
  return view;
}

}  // namespace axon::shm

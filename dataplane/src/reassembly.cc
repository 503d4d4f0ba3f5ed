// Reassembly of segmented requests: fixed tables, a block arena, no allocation after create().
#include "reassembly.h"

#include <sys/mman.h>

#include <cstring>

namespace axon::dataplane {

namespace {

constexpr std::size_t kHugePage = 2u << 20;

using probe::mix;

std::uint64_t hash_of(const SegmentKey& key) noexcept {
  std::uint64_t a = 0, b = 0;
  std::memcpy(&a, key.src_addr, 8);
  std::memcpy(&b, key.src_addr + 8, 8);
  std::uint64_t h = mix(key.request_id ^ (std::uint64_t(key.tenant_id) << 16 | key.src_port));
  h = mix(h ^ a);
  return mix(h ^ b);
}

bool same_key(const SegmentKey& x, const SegmentKey& y) noexcept {
  return x.request_id == y.request_id && x.tenant_id == y.tenant_id && x.src_port == y.src_port &&
         std::memcmp(x.src_addr, y.src_addr, sizeof x.src_addr) == 0;
}

// §6: every segment carries the same header except segment_index and payload_len.
bool same_message(const protocol::Header& a, const protocol::Header& b) noexcept {
  return a.message_len == b.message_len && a.segment_count == b.segment_count && a.agent_id == b.agent_id &&
         a.session_key == b.session_key && a.priority == b.priority && a.trace_flags == b.trace_flags &&
         a.trace_id == b.trace_id && a.span_id == b.span_id && a.deadline_us == b.deadline_us;
}

}  // namespace

static_assert(ReassemblyTable::kNone == probe::Index::kEmpty, "find() passes the index's empty mark on as kNone");

struct ReassemblyTable::Entry {
  enum State : std::uint8_t { free = 0, partial, complete, away };
  SegmentKey key{};
  std::uint64_t hash = 0;
  protocol::Header header{};
  std::uint64_t first_ns = 0;
  std::uint32_t segment_size = 0;  // S = ceil(message_len / segment_count)
  std::uint32_t received = 0;
  std::uint32_t block_count = 0;
  std::uint32_t active_at = 0;  // position in active_
  State state = free;
  std::atomic<std::uint8_t> returned{0};  // set by the lcore a message was handed to
  std::uint32_t blocks[kMaxBlocks] = {};
  std::uint64_t seen[kMaxSegments / 64] = {};
};

Result<std::unique_ptr<ReassemblyTable>, ReassemblyError> ReassemblyTable::create(const ReassemblyLimits& limits) {
  if (limits.messages == 0 || limits.memory_per_lcore < kBlockSize || limits.memory_per_tenant < kBlockSize ||
      limits.max_message == 0 || limits.max_message > protocol::kMaxMessageLen) {
    return make_error(ReassemblyError::invalid_limits,
                      "reassembly limits out of range: set [reassembly] messages >= 1, memory_per_lcore and "
                      "memory_per_tenant >= 4096, and a large buffer of at most 65536 bytes");
  }
  std::unique_ptr<ReassemblyTable> t(new ReassemblyTable());
  t->limits_ = limits;
  t->timeout_ns_ = std::uint64_t(limits.timeout_ms) * 1'000'000u;
  t->block_count_ = limits.memory_per_lcore / kBlockSize;
  t->tenant_block_limit_ = limits.memory_per_tenant / kBlockSize;
  const std::size_t bytes = std::size_t(t->block_count_) * kBlockSize;
  t->arena_bytes_ = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* arena = mmap(nullptr, t->arena_bytes_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  if (arena == MAP_FAILED) {
    arena = mmap(nullptr, t->arena_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  }
  if (arena == MAP_FAILED) {
    t->arena_ = nullptr;
    return make_error(ReassemblyError::no_memory, "cannot map " + std::to_string(t->arena_bytes_) +
                                                      " bytes of reassembly memory: lower [reassembly] "
                                                      "memory_per_lcore or free memory");
  }
  t->arena_ = static_cast<std::uint8_t*>(arena);
  t->entries_.reset(new Entry[limits.messages]);
  t->active_.reset(new std::uint32_t[limits.messages]);
  t->free_entries_.reset(new std::uint32_t[limits.messages]);
  for (std::uint32_t i = 0; i < limits.messages; ++i) t->free_entries_[i] = limits.messages - 1 - i;
  t->free_entry_count_ = limits.messages;
  t->free_blocks_.reset(new std::uint32_t[t->block_count_]);
  for (std::uint32_t i = 0; i < t->block_count_; ++i) t->free_blocks_[i] = t->block_count_ - 1 - i;
  t->free_block_count_ = t->block_count_;
  t->index_.allocate(limits.messages);
  const std::uint32_t slots = probe::slots_for(limits.messages);
  t->tenant_mask_ = slots - 1;  // at most one tenant per held message
  t->tenants_.reset(new TenantUse[slots]());
  return t;
}

ReassemblyTable::~ReassemblyTable() {
  if (arena_ != nullptr) munmap(arena_, arena_bytes_);
}

std::uint32_t ReassemblyTable::find(const SegmentKey& key, std::uint64_t hash) const noexcept {
  return index_.find(hash, [&](std::uint32_t e) { return entries_[e].hash == hash && same_key(entries_[e].key, key); });
}

void ReassemblyTable::index_erase(std::uint32_t entry) noexcept {
  index_.erase(entry, entries_[entry].hash, [this](std::uint32_t e) { return entries_[e].hash; });
}

std::uint32_t ReassemblyTable::tenant_slot(std::uint32_t tenant_id, bool insert) noexcept {
  for (std::uint32_t i = std::uint32_t(mix(tenant_id)) & tenant_mask_;; i = (i + 1) & tenant_mask_) {
    if (tenants_[i].blocks == 0) {
      if (!insert) return kNone;
      tenants_[i].tenant_id = tenant_id;
      return i;
    }
    if (tenants_[i].tenant_id == tenant_id) return i;
  }
}

void ReassemblyTable::tenant_erase(std::uint32_t i) noexcept {
  tenants_[i].blocks = 0;
  probe::close_hole(
      i, tenant_mask_, [this](std::uint32_t j) { return tenants_[j].blocks == 0; },
      [this](std::uint32_t j) { return mix(tenants_[j].tenant_id); },
      [this](std::uint32_t from, std::uint32_t to) {
        tenants_[to] = tenants_[from];
        tenants_[from].blocks = 0;
      });
}

std::uint64_t ReassemblyTable::tenant_bytes(std::uint32_t tenant_id) const noexcept {
  for (std::uint32_t i = std::uint32_t(mix(tenant_id)) & tenant_mask_;; i = (i + 1) & tenant_mask_) {
    if (tenants_[i].blocks == 0) return 0;
    if (tenants_[i].tenant_id == tenant_id) return std::uint64_t(tenants_[i].blocks) * kBlockSize;
  }
}

void ReassemblyTable::free_entry(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  if (e.state == Entry::partial) index_erase(entry);
  const std::uint32_t slot = tenant_slot(e.key.tenant_id, false);
  if (slot != kNone) {
    tenants_[slot].blocks -= e.block_count;
    if (tenants_[slot].blocks == 0) tenant_erase(slot);
  }
  for (std::uint32_t b = 0; b < e.block_count; ++b) free_blocks_[free_block_count_++] = e.blocks[b];
  blocks_used_ -= e.block_count;
  e.block_count = 0;
  e.state = Entry::free;
  e.returned.store(0, std::memory_order_relaxed);
  free_entries_[free_entry_count_++] = entry;
  const std::uint32_t last = active_[--messages_used_];
  active_[e.active_at] = last;
  entries_[last].active_at = e.active_at;
}

ReassemblyTable::Outcome ReassemblyTable::add(const SegmentKey& key, const protocol::Header& h,
                                              std::span<const std::uint8_t> payload, std::uint64_t now_ns) noexcept {
  Outcome out;
  const std::uint64_t hash = hash_of(key);
  std::uint32_t entry = find(key, hash);
  if (entry != kNone && !same_message(entries_[entry].header, h)) {
    free_entry(entry);
    out.verdict = Verdict::mismatch;
    out.freed = true;
    return out;
  }
  const std::uint32_t count = h.segment_count;
  const std::uint32_t length = h.message_len;
  if (count > kMaxSegments || length > limits_.max_message) {
    out.verdict = Verdict::too_large;
    return out;
  }
  // §6 geometry: segments 0..count-2 carry S bytes, the last 1..S bytes.
  const std::uint32_t size = count == 0 ? 0 : (length + count - 1) / count;
  const std::uint64_t before_last = std::uint64_t(count - 1) * size;
  const std::uint32_t last = before_last < length ? std::uint32_t(length - before_last) : 0;
  const std::uint32_t expected = h.segment_index + 1u < count ? size : last;
  if (count < 2 || h.segment_index >= count || last == 0 || payload.size() != expected || h.payload_len != expected) {
    if (entry != kNone) {
      free_entry(entry);
      out.freed = true;
    }
    out.verdict = Verdict::offset;
    return out;
  }
  if (entry == kNone) {
    const std::uint32_t need = (length + kBlockSize - 1) / kBlockSize;
    if (free_entry_count_ == 0 || free_block_count_ < need) {
      out.verdict = Verdict::no_memory;
      return out;
    }
    const std::uint32_t used = std::uint32_t(tenant_bytes(key.tenant_id) / kBlockSize);
    if (used + need > tenant_block_limit_) {
      out.verdict = Verdict::no_tenant_memory;
      return out;
    }
    entry = free_entries_[--free_entry_count_];
    Entry& e = entries_[entry];
    e.key = key;
    e.hash = hash;
    e.header = h;
    e.header.segment_index = 0;
    e.header.payload_len = std::uint16_t(length > 0xffff ? 0xffff : length);
    e.first_ns = now_ns;
    e.segment_size = size;
    e.received = 0;
    e.block_count = need;
    for (std::uint32_t b = 0; b < need; ++b) e.blocks[b] = free_blocks_[--free_block_count_];
    std::memset(e.seen, 0, sizeof e.seen);
    e.state = Entry::partial;
    index_.insert(entry, entries_[entry].hash);
    tenants_[tenant_slot(key.tenant_id, true)].blocks += need;
    blocks_used_ += need;
    e.active_at = messages_used_;
    active_[messages_used_++] = entry;
  }
  Entry& e = entries_[entry];
  const std::uint32_t index = h.segment_index;
  const std::uint64_t bit = 1ull << (index % 64);
  if ((e.seen[index / 64] & bit) != 0) {
    out.verdict = Verdict::duplicate;
    return out;
  }
  e.seen[index / 64] |= bit;
  std::uint32_t offset = index * size;
  std::size_t done = 0;
  while (done < payload.size()) {
    const std::uint32_t within = offset % kBlockSize;
    const std::size_t piece = std::min<std::size_t>(payload.size() - done, kBlockSize - within);
    std::memcpy(block(e.blocks[offset / kBlockSize]) + within, payload.data() + done, piece);
    done += piece;
    offset += std::uint32_t(piece);
  }
  if (++e.received < count) return out;
  index_erase(entry);  // complete: a retransmission of the same id is a new message
  e.state = Entry::complete;
  out.verdict = Verdict::complete;
  out.entry = entry;
  return out;
}

const protocol::Header& ReassemblyTable::header(std::uint32_t entry) const noexcept {
  return entries_[entry].header;
}

std::uint64_t ReassemblyTable::first_ns(std::uint32_t entry) const noexcept {
  return entries_[entry].first_ns;
}

void ReassemblyTable::copy_out(std::uint32_t entry, std::uint8_t* out) const noexcept {
  const Entry& e = entries_[entry];
  const std::uint32_t length = e.header.message_len;
  for (std::uint32_t at = 0, b = 0; at < length; at += kBlockSize, ++b) {
    std::memcpy(out + at, block(e.blocks[b]), std::min<std::uint32_t>(kBlockSize, length - at));
  }
}

void ReassemblyTable::release(std::uint32_t entry) noexcept {
  if (entry < limits_.messages && entries_[entry].state == Entry::complete) free_entry(entry);
}

void ReassemblyTable::hand_off(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  if (e.state == Entry::partial) index_erase(entry);
  e.state = Entry::away;
}

void ReassemblyTable::give_back(std::uint32_t entry) noexcept {
  entries_[entry].returned.store(1, std::memory_order_release);
  given_back_.fetch_add(1, std::memory_order_release);
}

std::uint32_t ReassemblyTable::expire(std::uint64_t now_ns) noexcept {
  if (messages_used_ == 0) return 0;
  std::uint32_t expired = 0;
  given_back_.exchange(0, std::memory_order_acquire);
  // free_entry() moves the last active entry into the freed position: look at it again.
  for (std::uint32_t at = 0; at < messages_used_;) {
    const std::uint32_t i = active_[at];
    Entry& e = entries_[i];
    if (e.state == Entry::partial && now_ns >= e.first_ns && now_ns - e.first_ns >= timeout_ns_) {
      free_entry(i);
      ++expired;
    } else if (e.state == Entry::away && e.returned.load(std::memory_order_acquire) != 0) {
      free_entry(i);
    } else {
      ++at;
    }
  }
  return expired;
}

}  // namespace axon::dataplane

// Retransmit dedup and the reply cache: fixed tables and a ring arena, no allocation after create().
#include "dedup.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace axon::dataplane {

namespace {

using probe::mix;

constexpr std::size_t kHugePage = 2u << 20;

std::uint64_t hash_of(const DedupKey& key, std::uint32_t agent_id) noexcept {
  std::uint64_t a = 0, b = 0;
  std::memcpy(&a, key.src_addr, 8);
  std::memcpy(&b, key.src_addr + 8, 8);
  std::uint64_t h = mix(key.request_id ^ (std::uint64_t(key.tenant_id) << 16 | key.src_port));
  h = mix(h ^ a ^ (std::uint64_t(agent_id) << 32));
  return mix(h ^ b);
}

// A remote settlement: (generation << 2) | 2 | executed; 0 = none.
constexpr std::uint64_t kRemoteSet = 2;

}  // namespace

static_assert(DedupTable::kNone == probe::Index::kEmpty, "find() passes the index's empty mark on as kNone");

struct DedupTable::Entry {
  enum State : std::uint8_t { free = 0, in_flight, cached, tombstone };
  DedupKey key{};
  std::uint64_t hash = 0;
  std::uint32_t agent_id = 0;
  std::uint32_t generation = 0;
  State state = free;
  DedupPolicy policy{};
  std::uint64_t expires_ns = 0;  // cached, tombstone: dead from then on
  protocol::Header reply{};      // cached
  std::uint32_t offset = 0;      // cached: the payload in the arena
  std::uint32_t length = 0;
  std::uint32_t prev = kNone;  // cached: the agent's list
  std::uint32_t next = kNone;
  std::uint32_t active_at = 0;
  std::atomic<std::uint64_t> remote{0};
};

Result<std::unique_ptr<DedupTable>, DedupError> DedupTable::create(const DedupLimits& limits) {
  if (limits.entries == 0 || limits.entries > kMaxEntries || limits.arena_bytes < 4096) {
    return make_error(DedupError::invalid_limits,
                      "dedup limits out of range: set [dedup] entries to 16 .. 1048576 and arena_bytes >= 65536");
  }
  std::unique_ptr<DedupTable> t(new DedupTable());
  t->limits_ = limits;
  t->arena_size_ = limits.arena_bytes;
  t->mapped_bytes_ = (std::size_t(limits.arena_bytes) + kHugePage - 1) / kHugePage * kHugePage;
  void* arena = mmap(nullptr, t->mapped_bytes_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  if (arena == MAP_FAILED) {
    arena = mmap(nullptr, t->mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  }
  if (arena == MAP_FAILED) {
    return make_error(DedupError::no_memory,
                      "cannot map " + std::to_string(t->mapped_bytes_) +
                          " bytes for the reply cache: lower [dedup] arena_bytes or free memory");
  }
  t->arena_ = static_cast<std::uint8_t*>(arena);
  const std::uint32_t n = limits.entries;
  t->entries_.reset(new Entry[n]);
  t->active_.reset(new std::uint32_t[n]);
  t->free_.reset(new std::uint32_t[n]);
  for (std::uint32_t i = 0; i < n; ++i) t->free_[i] = n - 1 - i;
  t->free_count_ = n;
  t->records_.reset(new Record[n]);
  t->index_.allocate(n);
  const std::uint32_t slots = probe::slots_for(n);
  t->agent_mask_ = slots - 1;  // at most one agent per cached entry
  t->agents_.reset(new AgentList[slots]());
  return t;
}

DedupTable::~DedupTable() {
  if (arena_ != nullptr) munmap(arena_, mapped_bytes_);
}

std::uint32_t DedupTable::find(const DedupKey& key, std::uint32_t agent_id, std::uint64_t hash) const noexcept {
  return index_.find(hash, [&](std::uint32_t e) {
    const Entry& x = entries_[e];
    return x.hash == hash && x.agent_id == agent_id && x.key.request_id == key.request_id &&
           x.key.tenant_id == key.tenant_id && x.key.src_port == key.src_port &&
           std::memcmp(x.key.src_addr, key.src_addr, sizeof key.src_addr) == 0;
  });
}

void DedupTable::index_erase(std::uint32_t entry) noexcept {
  index_.erase(entry, entries_[entry].hash, [this](std::uint32_t e) { return entries_[e].hash; });
}

std::uint32_t DedupTable::agent_slot(std::uint32_t agent_id, bool insert) noexcept {
  for (std::uint32_t i = std::uint32_t(mix(agent_id)) & agent_mask_;; i = (i + 1) & agent_mask_) {
    if (agents_[i].count == 0) {
      if (!insert) return kNone;
      agents_[i] = AgentList{agent_id, 0, kNone, kNone};
      return i;
    }
    if (agents_[i].agent_id == agent_id) return i;
  }
}

void DedupTable::agent_erase(std::uint32_t i) noexcept {
  agents_[i].count = 0;
  probe::close_hole(
      i, agent_mask_, [this](std::uint32_t j) { return agents_[j].count == 0; },
      [this](std::uint32_t j) { return mix(agents_[j].agent_id); },
      [this](std::uint32_t from, std::uint32_t to) {
        agents_[to] = agents_[from];
        agents_[from].count = 0;
      });
}

std::uint32_t DedupTable::cached(std::uint32_t agent_id) const noexcept {
  for (std::uint32_t i = std::uint32_t(mix(agent_id)) & agent_mask_;; i = (i + 1) & agent_mask_) {
    if (agents_[i].count == 0) return 0;
    if (agents_[i].agent_id == agent_id) return agents_[i].count;
  }
}

// Appends a cached entry at its agent's tail (most recent).
void DedupTable::link(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  AgentList& a = agents_[agent_slot(e.agent_id, true)];
  e.prev = a.tail;
  e.next = kNone;
  if (a.tail != kNone) {
    entries_[a.tail].next = entry;
  } else {
    a.head = entry;
  }
  a.tail = entry;
  ++a.count;
}

void DedupTable::unlink(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  const std::uint32_t slot = agent_slot(e.agent_id, false);
  if (slot == kNone) return;
  AgentList& a = agents_[slot];
  if (e.prev != kNone) {
    entries_[e.prev].next = e.next;
  } else {
    a.head = e.next;
  }
  if (e.next != kNone) {
    entries_[e.next].prev = e.prev;
  } else {
    a.tail = e.prev;
  }
  e.prev = e.next = kNone;
  if (--a.count == 0) agent_erase(slot);
}

// The payload goes, the key stays until the window ends: a retransmit is answered
// duplicate_reply_evicted, never run again.
void DedupTable::to_tombstone(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  if (e.state != Entry::cached) return;
  unlink(entry);
  live_bytes_ -= e.length;
  e.length = 0;
  e.state = Entry::tombstone;
}

void DedupTable::free_entry(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  if (e.state == Entry::cached) to_tombstone(entry);
  index_erase(entry);
  e.state = Entry::free;
  ++e.generation;  // stale arena records and remote marks no longer match
  e.remote.store(0, std::memory_order_relaxed);
  free_[free_count_++] = entry;
  const std::uint32_t last = active_[--used_];
  active_[e.active_at] = last;
  entries_[last].active_at = e.active_at;
}

bool DedupTable::apply_remote(std::uint32_t entry, std::uint64_t now_ns) noexcept {
  Entry& e = entries_[entry];
  const std::uint64_t mark = e.remote.load(std::memory_order_acquire);
  if (e.state != Entry::in_flight || mark == 0 || (mark >> 2) != e.generation) return true;
  e.remote.store(0, std::memory_order_relaxed);
  if ((mark & 1u) == 0) {
    free_entry(entry);
    return false;
  }
  e.state = Entry::tombstone;
  e.length = 0;
  e.expires_ns = now_ns + e.policy.window_ns;
  return true;
}

DedupTable::Lookup DedupTable::begin(const DedupKey& key, std::uint32_t agent_id, const DedupPolicy& policy,
                                     std::uint64_t now_ns) noexcept {
  Lookup out;
  const std::uint64_t hash = hash_of(key, agent_id);
  std::uint32_t entry = find(key, agent_id, hash);
  if (entry != kNone && !apply_remote(entry, now_ns)) entry = kNone;
  if (entry != kNone) {
    Entry& e = entries_[entry];
    if (e.state != Entry::in_flight && now_ns >= e.expires_ns) {
      free_entry(entry);  // past its window: dead, the request is new
    } else {
      out.entry = entry;
      out.generation = e.generation;
      switch (e.state) {
        case Entry::in_flight: out.verdict = Verdict::in_flight; break;
        case Entry::tombstone: out.verdict = Verdict::tombstone; break;
        default:
          out.verdict = Verdict::answered;
          if (e.policy.eviction == model::ReplyCacheEviction::lru && entries_[entry].next != kNone) {
            unlink(entry);
            link(entry);
          }
          break;
      }
      return out;
    }
  }
  if (free_count_ == 0) return out;  // untracked
  entry = free_[--free_count_];
  Entry& e = entries_[entry];
  e.key = key;
  e.hash = hash;
  e.agent_id = agent_id;
  e.state = Entry::in_flight;
  e.policy = policy;
  e.length = 0;
  e.prev = e.next = kNone;
  e.remote.store(0, std::memory_order_relaxed);
  index_.insert(entry, entries_[entry].hash);
  e.active_at = used_;
  active_[used_++] = entry;
  out.verdict = Verdict::fresh;
  out.entry = entry;
  out.generation = e.generation;
  return out;
}

const protocol::Header& DedupTable::reply(std::uint32_t entry) const noexcept {
  return entries_[entry].reply;
}

std::span<const std::uint8_t> DedupTable::payload(std::uint32_t entry) const noexcept {
  const Entry& e = entries_[entry];
  return {arena_ + e.offset, e.length};
}

bool DedupTable::pop_record() noexcept {
  const Record r = records_[record_first_];
  record_first_ = record_first_ + 1 == limits_.entries ? 0 : record_first_ + 1;
  --record_count_;
  Entry& e = entries_[r.entry];
  if (e.state != Entry::cached || e.generation != r.generation || e.offset != r.offset || e.length == 0) return false;
  to_tombstone(r.entry);
  return true;
}

// A ring: payloads are laid out in allocation order; the space a new one needs is taken from
// the oldest (the records right after head_), wrapping to offset 0 when the end is too short.
std::uint32_t DedupTable::allocate(std::uint32_t length, std::uint32_t& evicted) noexcept {
  if (length > arena_size_) return kNone;
  if (record_count_ == limits_.entries && pop_record()) ++evicted;
  if (record_count_ == 0) head_ = 0;
  const bool wrap = std::uint64_t(head_) + length > arena_size_;
  while (record_count_ > 0) {
    const Record& f = records_[record_first_];
    const std::uint64_t end = std::uint64_t(f.offset) + f.length;
    const bool overlaps = wrap ? (end > head_ || f.offset < length) : (f.offset < head_ + length && end > head_);
    if (!overlaps) break;
    if (pop_record()) ++evicted;
  }
  const std::uint32_t offset = wrap ? 0 : head_;
  head_ = offset + length;
  return offset;
}

DedupTable::Settled DedupTable::settle(std::uint32_t entry, std::uint32_t generation, bool executed,
                                       const protocol::Header& reply, std::span<const std::uint8_t> payload,
                                       std::uint64_t now_ns) noexcept {
  Settled out;
  if (entry >= limits_.entries) return out;
  Entry& e = entries_[entry];
  if (e.state != Entry::in_flight || e.generation != generation) return out;
  if (!executed) {
    free_entry(entry);
    return out;
  }
  e.expires_ns = now_ns + e.policy.window_ns;
  e.reply = reply;
  e.state = Entry::tombstone;
  e.length = 0;
  // The agent's share first (its least recent or oldest reply goes), then arena space.
  while (cached(e.agent_id) >= e.policy.cache_entries) {
    const std::uint32_t slot = agent_slot(e.agent_id, false);
    to_tombstone(agents_[slot].head);
    ++out.evicted;
  }
  const auto length = std::uint32_t(payload.size());
  std::uint32_t offset = 0;
  if (length > 0) {
    offset = allocate(length, out.evicted);
    if (offset == kNone) return out;  // larger than the arena: a tombstone
    std::memcpy(arena_ + offset, payload.data(), length);
    const std::uint32_t at = record_first_ + record_count_;
    records_[at >= limits_.entries ? at - limits_.entries : at] = Record{entry, e.generation, offset, length};
    ++record_count_;
  }
  e.offset = offset;
  e.length = length;
  e.state = Entry::cached;
  live_bytes_ += length;
  link(entry);
  out.cached = true;
  return out;
}

void DedupTable::settle_remote(std::uint32_t entry, std::uint32_t generation, bool executed) noexcept {
  if (entry >= limits_.entries) return;
  entries_[entry].remote.store(std::uint64_t(generation) << 2 | kRemoteSet | (executed ? 1u : 0u),
                               std::memory_order_release);
}

std::uint32_t DedupTable::expire(std::uint64_t now_ns, std::uint32_t budget) noexcept {
  std::uint32_t freed = 0;
  for (std::uint32_t seen = 0; seen < budget && used_ > 0; ++seen) {
    if (cursor_ >= used_) cursor_ = 0;
    const std::uint32_t i = active_[cursor_];
    Entry& e = entries_[i];
    if (!apply_remote(i, now_ns)) {
      ++freed;  // forgotten: another entry moved into cursor_
      continue;
    }
    if (e.state != Entry::in_flight && now_ns >= e.expires_ns) {
      free_entry(i);
      ++freed;
      continue;
    }
    ++cursor_;
  }
  return freed;
}

}  // namespace axon::dataplane

// The response cache: a preallocated ring log of records and an open-addressing index over it.
#include "response_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace axon::dataplane {

namespace {

constexpr std::size_t kHugePage = 2u << 20;

using probe::mix;

std::uint64_t home_of(const CacheKey& key) noexcept {
  return mix(key.hash[0] ^ (std::uint64_t(key.tenant_id) << 32 | key.agent_id));
}

std::uint64_t round_up(std::uint64_t n) noexcept {
  return (n + ResponseCache::kAlign - 1) / ResponseCache::kAlign * ResponseCache::kAlign;
}

}  // namespace

// One record in the arena: this header in the first kAlign bytes, the payload after it.
struct ResponseCache::Record {
  CacheKey key;
  std::uint64_t stored_ns;
  std::uint64_t expires_ns;
  std::uint32_t gen;
  std::uint32_t length;  // payload bytes
  std::uint32_t size;    // record bytes: header, payload, padding (a multiple of kAlign)
  std::uint32_t live;    // 1: in the index; 0: dropped, or padding before the arena's end
};

void invalidate_changed(CacheGenerations& generations, const std::vector<model::Route>& before,
                        const std::vector<model::Route>& after) {
  std::unordered_map<std::uint32_t, const model::Route*> old;
  for (const model::Route& r : before) old.emplace(r.id, &r);
  for (const model::Route& r : after) {
    const auto it = old.find(r.id);
    if (it == old.end() || it->second->tenant != r.tenant ||
        it->second->scheduling.cacheable != r.scheduling.cacheable ||
        it->second->scheduling.cache_ttl_ms != r.scheduling.cache_ttl_ms) {
      generations.invalidate(r.id);
    }
    if (it != old.end()) old.erase(it);
  }
  for (const auto& [id, route] : old) generations.invalidate(id);
}

Result<std::unique_ptr<ResponseCache>, CacheError> ResponseCache::create(std::uint64_t bytes) {
  static_assert(sizeof(Record) <= kAlign, "a record's header fits its first granule");
  if (bytes < kMinBytes || bytes > kMaxBytes) {
    return make_error(CacheError::invalid_size, "[response_cache] bytes must be 0 (no cache) or from " +
                                                    std::to_string(kMinBytes) + " to " + std::to_string(kMaxBytes));
  }
  std::unique_ptr<ResponseCache> c(new ResponseCache());
  c->capacity_ = bytes / kAlign * kAlign;
  c->mapped_ = (c->capacity_ + kHugePage - 1) / kHugePage * kHugePage;
  void* arena = mmap(nullptr, c->mapped_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  if (arena == MAP_FAILED) {
    arena = mmap(nullptr, c->mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  }
  if (arena == MAP_FAILED) {
    return make_error(CacheError::no_memory, "cannot map " + std::to_string(c->mapped_) +
                                                 " bytes for the response cache: lower [response_cache] bytes or "
                                                 "free memory");
  }
  c->arena_ = static_cast<std::uint8_t*>(arena);
  // At most capacity / kAlign records (an empty reply takes one granule): the index stays at
  // most half full.
  c->index_.allocate(std::uint32_t(c->capacity_ / kAlign));
  c->scratch_.reset(new std::uint8_t[kMaxRequest]);
  return c;
}

ResponseCache::~ResponseCache() {
  if (arena_ != nullptr) munmap(arena_, mapped_);
}

CacheKey ResponseCache::key_of(std::uint32_t tenant_id, std::uint32_t agent_id,
                               std::span<const std::uint8_t> payload) noexcept {
  const XXH128_hash_t h = XXH3_128bits(payload.data(), payload.size());
  CacheKey key;
  key.tenant_id = tenant_id;
  key.agent_id = agent_id;
  key.hash[0] = h.low64;
  key.hash[1] = h.high64;
  return key;
}

ResponseCache::Record& ResponseCache::record(std::uint32_t granule) const noexcept {
  return *reinterpret_cast<Record*>(arena_ + std::uint64_t(granule) * kAlign);
}

std::uint32_t ResponseCache::find(const CacheKey& key, std::uint64_t home) const noexcept {
  return index_.find_slot(home, [&](std::uint32_t granule) {
    const CacheKey& k = record(granule).key;
    return k.hash[0] == key.hash[0] && k.hash[1] == key.hash[1] && k.tenant_id == key.tenant_id &&
           k.agent_id == key.agent_id;
  });
}

std::uint32_t ResponseCache::slot_of(std::uint32_t granule) const noexcept {
  return index_.find_slot(home_of(record(granule).key), [granule](std::uint32_t g) { return g == granule; });
}

void ResponseCache::drop(std::uint32_t slot) noexcept {
  Record& r = record(index_.at(slot));
  r.live = 0;
  live_bytes_ -= r.size;
  --entries_;
  index_.erase_slot(slot, [this](std::uint32_t granule) { return home_of(record(granule).key); });
}

void ResponseCache::evict_oldest(std::uint64_t now_ns) noexcept {
  const Record& r = record(std::uint32_t(tail_ / kAlign));
  if (r.live != 0) {
    if (now_ns >= r.expires_ns) {
      ++counters_.expirations;
    } else {
      ++counters_.evictions;
    }
    drop(slot_of(std::uint32_t(tail_ / kAlign)));
  }
  used_ -= r.size;
  tail_ += r.size;
  if (tail_ == capacity_) tail_ = 0;
  if (used_ == 0) head_ = tail_ = 0;
}

// Free bytes are [head, capacity) and [0, tail) while the log has not wrapped (head > tail, or
// empty), [head, tail) once it has. A record never straddles the end: the rest of the arena
// becomes a padding record and the log wraps.
std::uint64_t ResponseCache::make_room(std::uint64_t need, std::uint64_t now_ns) noexcept {
  for (;;) {
    if (used_ == 0) head_ = tail_ = 0;
    if (used_ == 0 || head_ > tail_) {
      if (capacity_ - head_ >= need) return head_;
      if (head_ < capacity_) {
        Record& pad = record(std::uint32_t(head_ / kAlign));
        pad.live = 0;
        pad.size = std::uint32_t(capacity_ - head_);
        used_ += pad.size;
      }
      head_ = 0;
      continue;
    }
    if (tail_ - head_ >= need) return head_;
    evict_oldest(now_ns);
  }
}

bool ResponseCache::try_lookup(const CacheKey& key, std::uint32_t gen, std::uint64_t ttl_ns, std::uint64_t now_ns,
                               std::span<const std::uint8_t>& out) noexcept {
  const std::uint32_t slot = find(key, home_of(key));
  if (slot == kEmpty) return false;
  const Record& r = record(index_.at(slot));
  if (r.gen != gen) {
    ++counters_.invalidations;
    drop(slot);
    return false;
  }
  // The TTL in force now: an agent whose TTL was lowered serves nothing older than the new one.
  if (now_ns >= r.expires_ns || now_ns - r.stored_ns >= ttl_ns) {
    ++counters_.expirations;
    drop(slot);
    return false;
  }
  ++counters_.hits;
  out = std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&r) + kAlign, r.length);
  return true;
}

bool ResponseCache::insert(const CacheKey& key, std::uint32_t gen, std::uint64_t ttl_ns, std::uint64_t now_ns,
                           std::span<const std::uint8_t> payload) noexcept {
  const std::uint64_t need = kAlign + round_up(payload.size());
  if (need > capacity_) {
    ++counters_.too_large;
    return false;
  }
  const std::uint64_t home = home_of(key);
  // Two identical requests were both misses while the first was in flight: the later reply wins.
  if (const std::uint32_t old = find(key, home); old != kEmpty) drop(old);
  const std::uint64_t at = make_room(need, now_ns);
  head_ = at + need;
  used_ += need;
  Record& r = record(std::uint32_t(at / kAlign));
  r.key = key;
  r.stored_ns = now_ns;
  r.expires_ns = now_ns + ttl_ns;
  r.gen = gen;
  r.length = std::uint32_t(payload.size());
  r.size = std::uint32_t(need);
  r.live = 1;
  if (!payload.empty()) std::memcpy(arena_ + at + kAlign, payload.data(), payload.size());
  index_.insert(std::uint32_t(at / kAlign), home);
  live_bytes_ += need;
  ++entries_;
  ++counters_.insertions;
  return true;
}

}  // namespace axon::dataplane

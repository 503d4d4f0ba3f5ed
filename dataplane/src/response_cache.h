// The response cache of one lcore (docs/operations.md, "Response cache"): successful RESPONSE
// payloads of cacheable agents, keyed by (tenant, agent, XXH3-128 of the request payload), kept
// for the agent's cache_ttl_ms and served to later identical requests without a worker.
//
// Everything is preallocated by create(): a byte arena (on hugepages when the system has them)
// used as a ring log, and an open-addressing index sized for the most records the arena can
// hold. insert() and try_lookup() never allocate. Eviction is FIFO by insertion: a new entry
// that does not fit pushes out the oldest ones, so the arena's bytes are the one bound and no
// entry moves once written. Entries of an invalidated agent (its generation moved on), expired
// entries and entries of an agent whose TTL was lowered are dropped when a lookup meets them,
// and their bytes come back when the ring's tail passes them.
//
// Threading: one lcore owns a ResponseCache and calls everything. CacheGenerations is shared:
// the control thread bumps a generation, lcores read it with one load per lookup.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "axon/common/model.h"
#include "axon/common/result.h"

#include "probe_index.h"

namespace axon::dataplane {

// What a cached reply answers: tenant and agent compared exactly, the payload by its 128-bit hash.
struct CacheKey {
  std::uint32_t tenant_id = 0;
  std::uint32_t agent_id = 0;
  std::uint64_t hash[2] = {0, 0};
};

// The cache's counters, plain: the owner lcore copies them into its stats block.
struct CacheCounters {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;  // cacheable requests that went to a worker (count_miss)
  std::uint64_t insertions = 0;
  std::uint64_t evictions = 0;      // live entries pushed out for room before their TTL ran out
  std::uint64_t expirations = 0;    // entries found (or pushed out) past their TTL
  std::uint64_t invalidations = 0;  // entries found stale: their agent's generation moved on
  std::uint64_t too_large = 0;      // replies larger than the whole arena, not stored
};

// Per-agent generations, shared by every lcore. An entry is served only while it carries its
// agent's current generation; invalidating bumps it (agents hash onto kSlots counters: a bump
// also invalidates the agents that share the slot, never serves anything stale).
class CacheGenerations {
 public:
  static constexpr std::uint32_t kSlots = 4096;
  [[nodiscard]] std::uint32_t current(std::uint32_t agent_id) const noexcept {
    return gens_[agent_id & (kSlots - 1)].load(std::memory_order_acquire);
  }
  void invalidate(std::uint32_t agent_id) noexcept {
    gens_[agent_id & (kSlots - 1)].fetch_add(1, std::memory_order_acq_rel);
  }
  void invalidate_all() noexcept {
    for (auto& g : gens_) g.fetch_add(1, std::memory_order_acq_rel);
  }

 private:
  std::array<std::atomic<std::uint32_t>, kSlots> gens_{};
};

// A request of a cacheable agent on its way to a worker: what its reply is stored under.
struct CachedRequest {
  bool keyed = false;
  CacheKey key;
  std::uint32_t gen = 0;
};

// Receive times of the replies an lcore served from its cache since its last transmit: their
// hit latency (rx -> transmit) is recorded once their frames are handed to the port.
struct CacheHits {
  static constexpr std::uint32_t kMax = 256;
  std::uint64_t rx_ns[kMax];
  std::uint32_t count = 0;
};

// Before new agent tables go live: bumps the generation of every agent whose cache settings or
// tenant changed, that appeared or that went away, so no entry stored under the old
// configuration is served under the new one.
void invalidate_changed(CacheGenerations& generations, const std::vector<model::Route>& before,
                        const std::vector<model::Route>& after);

enum class CacheError { invalid_size, no_memory };

class ResponseCache {
 public:
  static constexpr std::uint32_t kAlign = 64;             // record header and payload granule
  static constexpr std::uint64_t kMinBytes = 128u << 10;  // room for a 64 KiB reply, twice
  static constexpr std::uint64_t kMaxBytes = 1ull << 30;  // per lcore
  static constexpr std::uint32_t kMaxRequest = 65536;     // scratch for a reassembled request

  static Result<std::unique_ptr<ResponseCache>, CacheError> create(std::uint64_t bytes);
  ~ResponseCache();
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  // The key of a request: XXH3-128 of its payload, with its tenant and agent.
  [[nodiscard]] static CacheKey key_of(std::uint32_t tenant_id, std::uint32_t agent_id,
                                       std::span<const std::uint8_t> payload) noexcept;

  // A fresh entry for `key` stored under generation `gen` within the agent's current TTL: its
  // payload in `out` (valid until the next insert). Stale entries met on the way are dropped.
  [[nodiscard]] bool try_lookup(const CacheKey& key, std::uint32_t gen, std::uint64_t ttl_ns, std::uint64_t now_ns,
                                std::span<const std::uint8_t>& out) noexcept;
  // Stores a successful reply (replacing an entry of the same key). False: larger than the arena.
  bool insert(const CacheKey& key, std::uint32_t gen, std::uint64_t ttl_ns, std::uint64_t now_ns,
              std::span<const std::uint8_t> payload) noexcept;
  void count_miss() noexcept { ++counters_.misses; }

  // Room for one reassembled request's payload, to hash it before dispatch.
  [[nodiscard]] std::uint8_t* scratch() noexcept { return scratch_.get(); }

  [[nodiscard]] const CacheCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::uint64_t bytes_in_use() const noexcept { return live_bytes_; }  // live entries' records
  [[nodiscard]] std::uint32_t entries() const noexcept { return entries_; }
  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }

 private:
  struct Record;
  static constexpr std::uint32_t kEmpty = probe::Index::kEmpty;

  ResponseCache() = default;
  [[nodiscard]] Record& record(std::uint32_t granule) const noexcept;
  [[nodiscard]] std::uint32_t find(const CacheKey& key, std::uint64_t home) const noexcept;  // index slot
  [[nodiscard]] std::uint32_t slot_of(std::uint32_t granule) const noexcept;
  void drop(std::uint32_t slot) noexcept;
  [[nodiscard]] std::uint64_t make_room(std::uint64_t need, std::uint64_t now_ns) noexcept;
  void evict_oldest(std::uint64_t now_ns) noexcept;

  std::uint8_t* arena_ = nullptr;
  std::size_t mapped_ = 0;
  std::uint64_t capacity_ = 0;  // usable arena bytes, a multiple of kAlign
  std::uint64_t head_ = 0;      // where the next record goes
  std::uint64_t tail_ = 0;      // the oldest record
  std::uint64_t used_ = 0;      // bytes between tail and head, dropped records and padding included
  std::uint64_t live_bytes_ = 0;
  std::uint32_t entries_ = 0;
  probe::Index index_;  // granules of live records by home_of(key)
  std::unique_ptr<std::uint8_t[]> scratch_;
  CacheCounters counters_{};
};

}  // namespace axon::dataplane

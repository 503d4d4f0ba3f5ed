// Retransmit dedup and the reply cache of one lcore (docs/scheduling.md, "Retransmit dedup").
//
// A request of an agent with dedup_window_ms > 0 is looked up by (tenant, source address and
// port, request id, agent) before dispatch:
//   - unknown: entered in flight, dispatched (fresh);
//   - in flight: absorbed, no reply (the original's reply answers the client);
//   - answered less than the agent's window ago: re-answered from the cached reply;
//   - a tombstone (answered within the window, payload given up): ERROR duplicate_reply_evicted.
// The reply that settles an in-flight entry is cached when the request reached a worker (it ran,
// or may have: RESPONSE, handler errors, deadline_exceeded/worker_failed/overloaded after
// dispatch); a refusal before dispatch (BUSY, unknown agent, ...) forgets the entry, so a retry
// runs.
//
// Everything is preallocated by create(): a fixed entry table, its key index, a per-agent index
// of cached replies (each agent's list in LRU or FIFO order, at most its reply_cache_entries)
// and a ring arena of reply payloads on hugepages (offsets, never pointers). Payloads go into the
// arena in order; an allocation that needs the space of the oldest payloads turns their entries
// into tombstones (an eviction). Entries past their window are dead: freed at lookup or by
// expire(). Nothing allocates or locks after create().
//
// Threading: the owner lcore calls everything, except settle_remote(): an in-flight request
// forwarded to another lcore (the owner of its worker) is settled by that lcore, either with its
// reply sent back through the forward ring (the engine then calls settle() here) or, when that
// cannot be done (a long reply, a full ring, a refusal), with an atomic mark, which the owner
// applies at its next lookup of the key or expire(): a reply settled so becomes a tombstone.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "axon/common/model.h"
#include "axon/common/result.h"
#include "axon/protocol/axp.h"

#include "probe_index.h"
#include "reassembly.h"

namespace axon::dataplane {

// (tenant, source address and port, request id) as for reassembly; the agent is compared too.
using DedupKey = SegmentKey;

struct DedupLimits {
  std::uint32_t entries = 8192;          // requests tracked at once (in flight, cached, tombstones)
  std::uint32_t arena_bytes = 4u << 20;  // cached reply payloads
};

// An agent's knobs, copied into each entry when it is entered (a route change applies to new
// requests only).
struct DedupPolicy {
  std::uint64_t window_ns = 0;
  std::uint32_t cache_entries = 256;
  model::ReplyCacheEviction eviction = model::ReplyCacheEviction::lru;
};

enum class DedupError { invalid_limits, no_memory };

class DedupTable {
 public:
  static constexpr std::uint32_t kNone = ~0u;
  static constexpr std::uint32_t kMaxEntries = 1u << 20;

  enum class Verdict : std::uint8_t { fresh, in_flight, answered, tombstone, untracked };
  struct Lookup {
    Verdict verdict = Verdict::untracked;
    std::uint32_t entry = kNone;  // fresh, answered
    std::uint32_t generation = 0;
  };
  struct Settled {
    std::uint32_t evicted = 0;  // cached replies given up to make room (now tombstones)
    bool cached = false;        // the reply's payload is kept (else: forgotten or a tombstone)
  };

  static Result<std::unique_ptr<DedupTable>, DedupError> create(const DedupLimits& limits);
  ~DedupTable();
  DedupTable(const DedupTable&) = delete;
  DedupTable& operator=(const DedupTable&) = delete;

  // Looks up a request of `agent_id` received at now_ns; an unknown one is entered in flight
  // (fresh) unless the table is full (untracked: dispatch it without dedup). A cached hit under
  // LRU becomes its agent's most recent entry.
  [[nodiscard]] Lookup begin(const DedupKey& key, std::uint32_t agent_id, const DedupPolicy& policy,
                             std::uint64_t now_ns) noexcept;
  // The cached reply of an `answered` lookup (valid until the next call that changes the table).
  [[nodiscard]] const protocol::Header& reply(std::uint32_t entry) const noexcept;
  [[nodiscard]] std::span<const std::uint8_t> payload(std::uint32_t entry) const noexcept;
  // Settles in-flight entry (entry, generation): `executed` caches `reply` and `payload` for the
  // entry's window (or keeps a tombstone when the payload cannot be kept); otherwise forgets it.
  // A stale (entry, generation) is ignored.
  Settled settle(std::uint32_t entry, std::uint32_t generation, bool executed, const protocol::Header& reply,
                 std::span<const std::uint8_t> payload, std::uint64_t now_ns) noexcept;
  // The same from another lcore (any thread): executed -> tombstone, else forgotten.
  void settle_remote(std::uint32_t entry, std::uint32_t generation, bool executed) noexcept;
  // Examines up to `budget` entries (round robin): frees those past their window and applies
  // remote settlements. Returns the entries freed.
  std::uint32_t expire(std::uint64_t now_ns, std::uint32_t budget) noexcept;

  [[nodiscard]] std::uint64_t bytes_in_use() const noexcept { return live_bytes_; }  // cached payload bytes
  [[nodiscard]] std::uint32_t entries_in_use() const noexcept { return used_; }
  [[nodiscard]] std::uint32_t cached(std::uint32_t agent_id) const noexcept;  // the agent's cached replies
  [[nodiscard]] const DedupLimits& limits() const noexcept { return limits_; }

 private:
  struct Entry;
  struct AgentList {
    std::uint32_t agent_id;
    std::uint32_t count;  // 0: free slot
    std::uint32_t head;   // evicted first
    std::uint32_t tail;
  };
  struct Record {  // one arena allocation, in allocation order
    std::uint32_t entry;
    std::uint32_t generation;
    std::uint32_t offset;
    std::uint32_t length;
  };

  DedupTable() = default;
  [[nodiscard]] std::uint32_t find(const DedupKey& key, std::uint32_t agent_id, std::uint64_t hash) const noexcept;
  void index_erase(std::uint32_t entry) noexcept;
  [[nodiscard]] std::uint32_t agent_slot(std::uint32_t agent_id, bool insert) noexcept;
  void agent_erase(std::uint32_t slot) noexcept;
  void link(std::uint32_t entry) noexcept;
  void unlink(std::uint32_t entry) noexcept;
  void to_tombstone(std::uint32_t entry) noexcept;
  void free_entry(std::uint32_t entry) noexcept;
  // Applies a remote settlement; true when the entry is still in use.
  bool apply_remote(std::uint32_t entry, std::uint64_t now_ns) noexcept;
  // Arena space for `length` bytes (kNone: larger than the arena); counts the payloads it evicts.
  [[nodiscard]] std::uint32_t allocate(std::uint32_t length, std::uint32_t& evicted) noexcept;
  bool pop_record() noexcept;  // true when it evicted a cached payload

  DedupLimits limits_{};
  std::uint8_t* arena_ = nullptr;
  std::size_t mapped_bytes_ = 0;
  std::uint32_t arena_size_ = 0;
  std::uint32_t head_ = 0;  // next arena offset
  std::unique_ptr<Record[]> records_;
  std::uint32_t record_first_ = 0;
  std::uint32_t record_count_ = 0;
  std::unique_ptr<Entry[]> entries_;
  std::unique_ptr<std::uint32_t[]> active_;  // entries in use, densely (expire() walks these)
  std::unique_ptr<std::uint32_t[]> free_;    // stack
  std::uint32_t free_count_ = 0;
  std::uint32_t used_ = 0;
  std::uint32_t cursor_ = 0;  // expire()'s position in active_
  probe::Index index_;        // entries by hash
  std::unique_ptr<AgentList[]> agents_;
  std::uint32_t agent_mask_ = 0;
  std::uint64_t live_bytes_ = 0;
};

// Where an in-flight request's dedup entry is: carried with the request to whichever lcore
// answers it (Lcore::Pending, the forward ring, ReplyContext).
struct DedupRef {
  DedupTable* table = nullptr;  // null: not tracked
  std::uint32_t entry = 0;
  std::uint32_t generation = 0;
};

}  // namespace axon::dataplane

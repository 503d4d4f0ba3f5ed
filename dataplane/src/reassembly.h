// The reassembly table of one lcore: segmented requests (docs/protocol.md §6) are held here
// until every segment has arrived, then copied once into the worker's large buffer.
//
// Everything is preallocated by create(): a fixed number of message entries, a key index, a
// tenant index and an arena of 4 KiB blocks (on hugepages when the system has them). add()
// never allocates. A message is charged its message_len rounded up to whole blocks from its
// first segment on, against the lcore's arena and against its tenant's share, so a flood of
// first segments that never complete can fill at most the tenant's share; expire() returns the
// memory of messages older than the timeout.
//
// Threading: the owner lcore calls everything, except that a complete message handed to
// another lcore (the owner of the chosen worker) is read by that lcore with copy_out() and
// given back with give_back(); the owner frees it at its next expire().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "axon/common/result.h"
#include "axon/protocol/axp.h"

#include "probe_index.h"

namespace axon::dataplane {

struct ReassemblyLimits {
  std::uint32_t timeout_ms = 500;
  std::uint32_t memory_per_lcore = 8u << 20;  // arena bytes
  std::uint32_t memory_per_tenant = 2u << 20;
  std::uint32_t messages = 1024;  // partial messages held at once
  // Largest message accepted: the worker's large buffer (never above 65536).
  std::uint32_t max_message = 65536;
};

// Who sent a segment: a message is identified by (tenant, source address and port, request id).
struct SegmentKey {
  std::uint32_t tenant_id = 0;
  std::uint16_t src_port = 0;
  std::uint8_t src_addr[16] = {};
  std::uint64_t request_id = 0;
};

enum class ReassemblyError { invalid_limits, no_memory };

class ReassemblyTable {
 public:
  static constexpr std::uint32_t kBlockSize = 4096;
  static constexpr std::uint32_t kMaxBlocks = 65536 / kBlockSize;
  // A message of more segments is refused (reassembly_too_large): the received-segment bitmap
  // is fixed. 1024 segments of 64 KiB is a 64-byte segment payload, far below any MTU.
  static constexpr std::uint32_t kMaxSegments = 1024;
  static constexpr std::uint32_t kNone = ~0u;

  enum class Verdict : std::uint8_t {
    held,      // stored; the message is still incomplete
    complete,  // stored, and it was the last one: `entry` holds the whole message
    // Dropped, each under its reason; for mismatch and offset a partial message of the same key
    // was freed as well.
    duplicate,
    mismatch,
    offset,
    no_memory,
    no_tenant_memory,
    too_large,
  };
  struct Outcome {
    Verdict verdict = Verdict::held;
    std::uint32_t entry = kNone;  // for complete
    bool freed = false;           // a held partial message was freed (mismatch, offset)
  };

  static Result<std::unique_ptr<ReassemblyTable>, ReassemblyError> create(const ReassemblyLimits& limits);
  ~ReassemblyTable();
  ReassemblyTable(const ReassemblyTable&) = delete;
  ReassemblyTable& operator=(const ReassemblyTable&) = delete;

  // One validated REQUEST segment with segment_count > 1 (header `h`, its payload), received at now_ns.
  [[nodiscard]] Outcome add(const SegmentKey& key, const protocol::Header& h, std::span<const std::uint8_t> payload,
                            std::uint64_t now_ns) noexcept;
  // A complete message: its header as segment 0 carried it (payload_len and segment_index of the
  // whole: message_len and 0), when its first segment arrived, and its bytes copied to `out`
  // (at least message_len bytes).
  [[nodiscard]] const protocol::Header& header(std::uint32_t entry) const noexcept;
  [[nodiscard]] std::uint64_t first_ns(std::uint32_t entry) const noexcept;
  void copy_out(std::uint32_t entry, std::uint8_t* out) const noexcept;
  // The owner is done with a complete message (dispatched or refused): its memory is free.
  void release(std::uint32_t entry) noexcept;
  // The message goes to another lcore: it leaves the key index now (a retransmission starts
  // afresh) but keeps its memory until that lcore calls give_back() (any thread).
  void hand_off(std::uint32_t entry) noexcept;
  void give_back(std::uint32_t entry) noexcept;
  // Frees messages whose first segment is older than the timeout (returns how many, the
  // reassembly_timeout drops) and messages given back by other lcores.
  std::uint32_t expire(std::uint64_t now_ns) noexcept;

  [[nodiscard]] std::uint64_t bytes_in_use() const noexcept { return std::uint64_t(blocks_used_) * kBlockSize; }
  [[nodiscard]] std::uint32_t messages_in_use() const noexcept { return messages_used_; }
  [[nodiscard]] std::uint64_t tenant_bytes(std::uint32_t tenant_id) const noexcept;
  [[nodiscard]] const ReassemblyLimits& limits() const noexcept { return limits_; }

 private:
  struct Entry;
  struct TenantUse {
    std::uint32_t tenant_id;
    std::uint32_t blocks;  // 0: free slot
  };

  ReassemblyTable() = default;
  [[nodiscard]] std::uint32_t find(const SegmentKey& key, std::uint64_t hash) const noexcept;
  void index_erase(std::uint32_t entry) noexcept;
  [[nodiscard]] std::uint32_t tenant_slot(std::uint32_t tenant_id, bool insert) noexcept;
  void tenant_erase(std::uint32_t slot) noexcept;
  void free_entry(std::uint32_t entry) noexcept;
  [[nodiscard]] std::uint8_t* block(std::uint32_t id) const noexcept { return arena_ + std::size_t(id) * kBlockSize; }

  ReassemblyLimits limits_{};
  std::uint64_t timeout_ns_ = 0;
  std::uint8_t* arena_ = nullptr;
  std::size_t arena_bytes_ = 0;
  std::unique_ptr<Entry[]> entries_;
  std::unique_ptr<std::uint32_t[]> active_;        // entries not free, densely (expire() scans only these)
  std::unique_ptr<std::uint32_t[]> free_entries_;  // stack
  std::uint32_t free_entry_count_ = 0;
  std::unique_ptr<std::uint32_t[]> free_blocks_;  // stack
  std::uint32_t free_block_count_ = 0;
  std::uint32_t block_count_ = 0;
  probe::Index index_;                    // entries by hash
  std::unique_ptr<TenantUse[]> tenants_;  // open addressing by tenant id, linear probing
  std::uint32_t tenant_mask_ = 0;
  std::uint32_t tenant_block_limit_ = 0;
  std::uint32_t blocks_used_ = 0;
  std::uint32_t messages_used_ = 0;
  std::atomic<std::uint32_t> given_back_{0};  // hand-offs returned since the last expire()
};

}  // namespace axon::dataplane

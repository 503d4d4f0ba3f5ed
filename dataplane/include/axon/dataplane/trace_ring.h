// The trace file (run_dir/dataplane.traces, docs/observability.md "Traces"): per lcore, one
// single-producer single-consumer ring of SpanRecords. The lcore writes one record when it
// sends the RESPONSE of a sampled request (one copy, no allocation; a full ring drops the
// record and counts it in the ring's full_events); the control plane is the one consumer, maps
// the file read-write to advance each ring's tail, and turns the records into spans.
//
// Layout, every block a 128-byte multiple: TraceFileHeader (128 B), then per lcore a
// shm::RingHeader (384 B) followed by `capacity` SpanRecords (128 B each). Changing any of it
// bumps kTraceVersion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "axon/common/result.h"
#include "axon/dataplane/stats.h"
#include "axon/shm/layout.h"
#include "axon/shm/spsc_ring.h"

namespace axon::dataplane {

inline constexpr std::uint64_t kTraceMagic = 0x314352544e4f5841ull;  // "AXONTRC1" little-endian
inline constexpr std::uint32_t kTraceVersion = 1;
inline constexpr std::uint32_t kTraceRingCapacity = 1024;  // records per lcore (power of two)

// The hops of a traced request (docs/observability.md, "Hops and stages").
enum TraceHop : unsigned {
  kTraceRx = 0,
  kTraceEnqueue = 1,
  kTraceWorkerDequeue = 2,
  kTraceWorkerDone = 3,
  kTraceReplyDequeue = 4,
  kTraceTx = 5,
};
inline constexpr std::size_t kTraceHops = 6;

// Why a request was traced.
enum class SampledBy : std::uint8_t { flag = 1, rate = 2 };

// One sampled RESPONSE. The control plane makes the spans from it: the appliance span (rx to
// tx, child of parent_span_id), one span per stage (ingress, queue, handler, return, egress,
// children of the appliance span) and the handler's own span (handler_span_id, child of
// parent_span_id: the span the RESPONSE carried, docs/protocol.md §5).
struct alignas(64) SpanRecord {
  std::uint64_t commit;  // ring stamp
  std::uint64_t request_id;
  std::uint8_t trace_id[16];
  std::uint8_t parent_span_id[8];     // the request's span_id (or the fresh root of a replaced context)
  std::uint8_t appliance_span_id[8];  // random, made when the record is written
  std::uint8_t handler_span_id[8];    // the handler's span: the RESPONSE's span_id
  std::uint64_t hop_ns[kTraceHops];   // CLOCK_MONOTONIC; each hop at or after the one before
  std::uint32_t tenant_id;
  std::uint32_t agent_id;
  std::uint16_t lcore;
  std::uint8_t trace_flags;  // as the request carried them
  std::uint8_t klass;        // shm::PriorityClass
  std::uint8_t sampled_by;   // SampledBy
  std::uint8_t reserved[3];
};
static_assert(sizeof(SpanRecord) == 128);
static_assert(offsetof(SpanRecord, commit) == 0);
static_assert(offsetof(SpanRecord, trace_id) == 16);
static_assert(offsetof(SpanRecord, parent_span_id) == 32);
static_assert(offsetof(SpanRecord, appliance_span_id) == 40);
static_assert(offsetof(SpanRecord, handler_span_id) == 48);
static_assert(offsetof(SpanRecord, hop_ns) == 56);
static_assert(offsetof(SpanRecord, tenant_id) == 104);
static_assert(offsetof(SpanRecord, lcore) == 112);
static_assert(offsetof(SpanRecord, sampled_by) == 116);

struct alignas(128) TraceFileHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t lcore_count;
  std::uint32_t capacity;     // records per lcore ring
  std::uint32_t record_size;  // sizeof(SpanRecord)
  std::uint32_t sample_ppm;   // [telemetry] trace_sample_rate in parts per million, for readers
  std::uint32_t reserved0;
};
static_assert(sizeof(TraceFileHeader) == 128);
static_assert(offsetof(TraceFileHeader, magic) == 0 && offsetof(TraceFileHeader, version) == 8);

constexpr std::size_t trace_lcore_bytes(std::uint32_t capacity) noexcept {
  return sizeof(shm::RingHeader) + std::size_t(capacity) * sizeof(SpanRecord);
}
constexpr std::size_t trace_file_size(std::uint32_t lcores, std::uint32_t capacity) noexcept {
  return sizeof(TraceFileHeader) + std::size_t(lcores) * trace_lcore_bytes(capacity);
}

// A mapping of the trace file (writer or reader), unmapped and closed on destruction.
class TraceMapping {
 public:
  TraceMapping() = default;
  TraceMapping(std::byte* base, std::size_t size, int fd) noexcept : base_(base), size_(size), fd_(fd) {}
  TraceMapping(TraceMapping&& other) noexcept;
  TraceMapping& operator=(TraceMapping&& other) noexcept;
  TraceMapping(const TraceMapping&) = delete;
  TraceMapping& operator=(const TraceMapping&) = delete;
  ~TraceMapping();

  [[nodiscard]] const TraceFileHeader& header() const noexcept { return *reinterpret_cast<TraceFileHeader*>(base_); }
  [[nodiscard]] shm::RingHeader* ring(std::uint32_t lcore) const noexcept {
    return reinterpret_cast<shm::RingHeader*>(base_ + sizeof(TraceFileHeader) +
                                              std::size_t(lcore) * trace_lcore_bytes(header().capacity));
  }
  [[nodiscard]] SpanRecord* records(std::uint32_t lcore) const noexcept {
    return reinterpret_cast<SpanRecord*>(reinterpret_cast<std::byte*>(ring(lcore)) + sizeof(shm::RingHeader));
  }
  [[nodiscard]] bool valid() const noexcept { return base_ != nullptr; }

 private:
  void release() noexcept;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
};

// The data plane's side: creates the file (under a temporary name, renamed into place whole).
Result<TraceMapping, StatsError> create_trace_file(const std::string& path, std::uint32_t lcores,
                                                   std::uint32_t capacity, std::uint32_t sample_ppm);

// The control plane's side: the one consumer of every ring.
class TraceReader {
 public:
  static Result<TraceReader, StatsError> open(const std::string& path);

  [[nodiscard]] std::uint32_t lcore_count() const noexcept { return mapping_.header().lcore_count; }
  [[nodiscard]] std::uint32_t sample_ppm() const noexcept { return mapping_.header().sample_ppm; }
  // Takes every record written since the last call, from every lcore, oldest first per lcore;
  // calls on_record(const SpanRecord&) for each. Returns how many.
  template <typename F>
  std::size_t drain(F&& on_record) {
    std::size_t n = 0;
    for (std::uint32_t l = 0; l < lcore_count(); ++l) {
      shm::RingConsumer<SpanRecord> ring(mapping_.ring(l), mapping_.records(l));
      SpanRecord burst[32];
      while (std::uint32_t got = ring.try_pop_burst(burst, 32)) {
        for (std::uint32_t i = 0; i < got; ++i) on_record(burst[i]);
        n += got;
      }
    }
    return n;
  }
  // Records the lcores dropped because their ring was full, and wrote, since the file was made.
  [[nodiscard]] std::uint64_t dropped() const noexcept;
  [[nodiscard]] std::uint64_t written() const noexcept;
  // The file's inode: a restarted data plane makes a new file under the same name.
  [[nodiscard]] std::uint64_t inode() const noexcept { return inode_; }

 private:
  TraceMapping mapping_;
  std::uint64_t inode_ = 0;
};

}  // namespace axon::dataplane

// StatsReader: the read-only RAII view of the stats file, its per-lcore totals and the
// writer liveness probe.
#include "axon/dataplane/stats_reader.h"

#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "axon/common/clock.h"

#include "stats_map.h"

namespace axon::dataplane {
namespace {

std::uint64_t load(const Counter& c) noexcept {
  return c.load(std::memory_order_relaxed);
}

}  // namespace

std::uint64_t LcoreTotals::errors() const noexcept {
  std::uint64_t sum = 0;
  for (std::uint64_t e : errors_sent) sum += e;
  return sum;
}

Result<StatsReader, StatsError> StatsReader::open(const std::string& path) {
  auto mapped = detail::map_stats_readonly(path);
  if (!mapped) return Error<StatsError>{mapped.error()};
  return StatsReader(StatsMapping(mapped->view, mapped->size, mapped->fd));
}

bool StatsReader::alive() const noexcept {
  const int fd = mapping_.fd();
  if (fd < 0) return false;
  // The writer holds LOCK_EX for its whole life. A shared lock that we can take means nobody
  // holds it any more: give it back at once (other readers probe the same way).
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
    flock(fd, LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

bool StatsReader::ready() const noexcept {
  return view().header != nullptr && view().header->ready.load(std::memory_order_acquire) != 0 && alive();
}

std::int64_t StatsReader::heartbeat_age_ms() const noexcept {
  const std::uint64_t beat = view().header->heartbeat_ns.load(std::memory_order_relaxed);
  const std::uint64_t now = monotonic_ns();
  return beat != 0 && now >= beat ? std::int64_t((now - beat) / 1'000'000) : -1;
}

LcoreTotals StatsReader::totals() const noexcept {
  LcoreTotals t;
  for (std::uint32_t i = 0; i < view().header->lcore_count; ++i) {
    const LcoreStats& l = view().lcores[i];
    t.rx_frames += load(l.rx_frames);
    t.rx_bytes += load(l.rx_bytes);
    t.tx_frames += load(l.tx_frames);
    t.requests += load(l.requests);
    t.responses += load(l.responses);
    t.busy_sent += load(l.busy_sent);
    t.forwarded += load(l.forwarded);
    t.forward_full += load(l.forward_full);
    t.tx_dropped += load(l.tx_dropped);
    t.tx_backpressure += load(l.tx_backpressure);
    t.late_replies += load(l.late_replies);
    t.invalid_replies += load(l.invalid_replies);
    t.loops += load(l.loops);
    t.idle_loops += load(l.idle_loops);
    for (std::size_t e = 0; e < protocol::kErrorCodeCount; ++e) t.errors_sent[e] += load(l.errors_sent[e]);
    for (std::size_t r = 0; r < protocol::kReasonCount; ++r) t.drops[r] += load(l.drops[r]);
    t.port_rx_dropped += load(l.port_rx_dropped);
    t.port_tx_errors += load(l.port_tx_errors);
    for (std::size_t b = 0; b < kBusyReasonCount; ++b) t.busy_reasons[b] += load(l.busy_reasons[b]);
    t.deadline_expired += load(l.deadline_expired);
    t.deadline_unmeetable += load(l.deadline_unmeetable);
    t.reassembled += load(l.reassembled);
    t.reply_segments += load(l.reply_segments);
    t.trace_context_invalid += load(l.trace_context_invalid);
    t.rx_hook_stamped += load(l.rx_hook_stamped);
    t.rx_hook_stamp_rejected += load(l.rx_hook_stamp_rejected);
    t.reassembly_bytes += load(l.reassembly_bytes);
    t.reassembly_messages += load(l.reassembly_messages);
    t.dedup_misses += load(l.dedup_misses);
    t.dedup_absorbed += load(l.dedup_absorbed);
    t.dedup_hits += load(l.dedup_hits);
    t.dedup_tombstone_hits += load(l.dedup_tombstone_hits);
    t.dedup_untracked += load(l.dedup_untracked);
    t.dedup_evictions += load(l.dedup_evictions);
    t.dedup_arena_bytes += load(l.dedup_arena_bytes);
    t.dedup_entries += load(l.dedup_entries);
    t.cache_hits += load(l.cache_hits);
    t.cache_misses += load(l.cache_misses);
    t.cache_insertions += load(l.cache_insertions);
    t.cache_evictions += load(l.cache_evictions);
    t.cache_expirations += load(l.cache_expirations);
    t.cache_invalidations += load(l.cache_invalidations);
    t.cache_bytes += load(l.cache_bytes);
    t.cache_entries += load(l.cache_entries);
  }
  return t;
}

StageTotals StatsReader::stage_latency(Stage stage, std::size_t klass) const noexcept {
  StageTotals t;
  for (std::uint32_t i = 0; i < view().header->lcore_count; ++i) {
    const StageHistogram& h = view().lcores[i].stage_latency[std::size_t(stage)][klass & 1u];
    for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) t.buckets[b] += load(h.buckets[b]);
    t.sum_ns += load(h.sum_ns);
  }
  for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) t.count += t.buckets[b];
  return t;
}

StageTotals StatsReader::stage_latency(Stage stage) const noexcept {
  StageTotals t = stage_latency(stage, 0);
  t.merge(stage_latency(stage, 1));
  return t;
}

StageTotals StatsReader::cache_hit_latency() const noexcept {
  StageTotals t;
  for (std::uint32_t i = 0; i < view().header->lcore_count; ++i) {
    const StageHistogram& h = view().lcores[i].cache_hit_latency;
    for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) t.buckets[b] += load(h.buckets[b]);
    t.sum_ns += load(h.sum_ns);
  }
  for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) t.count += t.buckets[b];
  return t;
}

void StageTotals::merge(const StageTotals& other) noexcept {
  for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) buckets[b] += other.buckets[b];
  sum_ns += other.sum_ns;
  count += other.count;
}

std::uint64_t StageTotals::below(std::uint64_t edge_ns) const noexcept {
  std::uint64_t n = 0;
  for (std::uint32_t b = 0; b < kHistogramBuckets && histogram_lower(b) + histogram_width(b) <= edge_ns; ++b) {
    n += buckets[b];
  }
  return n;
}

std::uint64_t StatsReader::lcores(Counter LcoreStats::*member) const noexcept {
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < view().header->lcore_count; ++i) sum += load(view().lcores[i].*member);
  return sum;
}

std::uint64_t StatsReader::errors_sent(protocol::ErrorCode code) const noexcept {
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < view().header->lcore_count; ++i)
    sum += load(view().lcores[i].errors_sent[std::size_t(code)]);
  return sum;
}

std::uint64_t StatsReader::lcore_drops(protocol::Reason reason) const noexcept {
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < view().header->lcore_count; ++i)
    sum += load(view().lcores[i].drops[std::size_t(reason)]);
  return sum;
}

}  // namespace axon::dataplane

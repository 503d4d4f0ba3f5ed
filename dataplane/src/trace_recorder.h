// Sampled traces of one lcore (docs/observability.md, "Traces"): the head-sampling decision at
// enqueue, and one SpanRecord per sampled RESPONSE written to the lcore's trace ring once its
// frame was handed to the port (the tx hop). Off the hot path for everything not sampled: one
// flag test per reply, and one random draw per request only when a sample rate is set.
//
// Hot path: no allocation, no lock. A full ring drops the record (the ring counts it).
#pragma once

#include <cstdint>
#include <cstring>

#include "axon/common/clock.h"
#include "axon/dataplane/trace_ring.h"
#include "axon/protocol/axp.h"
#include "axon/shm/layout.h"
#include "axon/shm/spsc_ring.h"

namespace axon::dataplane {

class TraceRecorder {
 public:
  // ring null: no trace file, nothing is recorded. sample_ppm: the head-sampling rate.
  TraceRecorder(shm::RingHeader* ring, SpanRecord* records, std::uint16_t lcore, std::uint32_t sample_ppm,
                std::uint64_t seed) noexcept
      : lcore_(lcore), sample_ppm_(sample_ppm), rng_(seed | 1u) {
    if (ring != nullptr) ring_ = shm::RingProducer<SpanRecord>(ring, records);
  }

  [[nodiscard]] bool enabled() const noexcept { return ring_.valid(); }

  // Head sampling: true when the rate picks this request (never when the rate is 0).
  [[nodiscard]] bool pick() noexcept {
    if (sample_ppm_ == 0 || !enabled()) return false;
    if (sample_ppm_ >= 1'000'000u) return true;
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_ % 1'000'000u < sample_ppm_;
  }

  // A RESPONSE for `reply` (the worker's descriptor, which carries the trace context the handler
  // got and its span) taken off the reply ring at dequeue_ns. Recorded when the descriptor's
  // sampled flag is set (by the client, or by pick() at enqueue).
  void on_reply(const shm::Descriptor& reply, const protocol::SpanId& handler_span, std::uint64_t dequeue_ns,
                SampledBy by) noexcept {
    if (!enabled() || (reply.trace_flags & protocol::kTraceSampled) == 0) return;
    if (count_ == kMaxPending) transmitted(dequeue_ns);  // never in practice: flushed every loop
    SpanRecord& r = pending_[count_++];
    r.request_id = reply.request_id;
    std::memcpy(r.trace_id, reply.trace_id, sizeof r.trace_id);
    std::memcpy(r.parent_span_id, reply.parent_span_id, sizeof r.parent_span_id);
    const protocol::SpanId appliance = protocol::random_span_id();
    std::memcpy(r.appliance_span_id, appliance.data(), sizeof r.appliance_span_id);
    std::memcpy(r.handler_span_id, handler_span.data(), sizeof r.handler_span_id);
    std::uint64_t previous = reply.hop_ns[shm::kHopRx];
    const std::uint64_t stamps[kTraceHops - 1] = {reply.hop_ns[shm::kHopRx], reply.hop_ns[shm::kHopEnqueue],
                                                  reply.hop_ns[shm::kHopWorkerDequeue],
                                                  reply.hop_ns[shm::kHopWorkerComplete], dequeue_ns};
    // As the stage histograms do: a hop stamped before its predecessor (another core's clock
    // read just before a ring operation) or not at all takes its predecessor's stamp.
    for (std::size_t h = 0; h + 1 < kTraceHops; ++h) {
      previous = stamps[h] > previous ? stamps[h] : previous;
      r.hop_ns[h] = previous;
    }
    r.hop_ns[kTraceTx] = 0;
    r.tenant_id = reply.tenant_id;
    r.agent_id = reply.agent_id;
    r.lcore = lcore_;
    r.trace_flags = reply.trace_flags;
    r.klass = std::uint8_t(shm::priority_class_of(reply.priority));
    r.sampled_by = std::uint8_t(by);
  }

  // The replies recorded since the last call were handed to the port at tx_ns.
  void transmitted(std::uint64_t tx_ns) noexcept {
    if (count_ == 0) return;
    for (std::uint32_t i = 0; i < count_; ++i) {
      SpanRecord& r = pending_[i];
      const std::uint64_t dequeue = r.hop_ns[kTraceReplyDequeue];
      r.hop_ns[kTraceTx] = tx_ns > dequeue ? tx_ns : dequeue;
    }
    (void)ring_.try_push_burst(pending_, count_);  // a short push counts full_events: the drops
    count_ = 0;
  }
  [[nodiscard]] std::uint32_t pending() const noexcept { return count_; }

 private:
  static constexpr std::uint32_t kMaxPending = 64;
  shm::RingProducer<SpanRecord> ring_;
  std::uint16_t lcore_;
  std::uint32_t sample_ppm_;
  std::uint64_t rng_;
  std::uint32_t count_ = 0;
  SpanRecord pending_[kMaxPending];
};

}  // namespace axon::dataplane

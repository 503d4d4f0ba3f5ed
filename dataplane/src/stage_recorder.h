// Per-stage latency recording of one lcore (docs/observability.md, "Stages"): a reply's hop
// stamps (rx, enqueue, worker dequeue, worker done: they ride in its descriptor) become the
// ingress, queue, handler and return stages when the lcore takes the reply off the ring;
// egress and total wait until the reply's frame is handed to the port.
//
// Hot path: no allocation, no lock. Every stage of a reply is recorded exactly once, and the
// stages of one reply add up to its total (see after()).
#pragma once

#include <cstdint>

#include "axon/common/clock.h"
#include "axon/dataplane/stats.h"
#include "axon/shm/layout.h"

namespace axon::dataplane {

class StageRecorder {
 public:
  StageRecorder(LcoreStats& stats, bool enabled, const TscClock& clock) noexcept
      : stats_(stats), enabled_(enabled), clock_(clock) {}

  [[nodiscard]] bool enabled() const noexcept { return enabled_; }
  [[nodiscard]] std::uint32_t pending() const noexcept { return count_; }

  // A RESPONSE built from `reply`, taken off the reply ring at dequeue_ns.
  void on_reply(const shm::Descriptor& reply, std::uint64_t dequeue_ns, std::uint8_t axp_priority) noexcept {
    if (!enabled_) return;
    const std::size_t klass = std::size_t(shm::priority_class_of(axp_priority));
    const std::uint64_t* hop = reply.hop_ns;
    const std::uint64_t rx = hop[shm::kHopRx];
    if (rx == 0) return;
    const std::uint64_t enqueue = after(rx, hop[shm::kHopEnqueue]);
    const std::uint64_t worker_dequeue = after(enqueue, hop[shm::kHopWorkerDequeue]);
    const std::uint64_t worker_done = after(worker_dequeue, hop[shm::kHopWorkerComplete]);
    const std::uint64_t reply_dequeue = after(worker_done, dequeue_ns);
    record(stats_.stage_latency[std::size_t(Stage::ingress)][klass], enqueue - rx);
    record(stats_.stage_latency[std::size_t(Stage::queue)][klass], worker_dequeue - enqueue);
    record(stats_.stage_latency[std::size_t(Stage::handler)][klass], worker_done - worker_dequeue);
    record(stats_.stage_latency[std::size_t(Stage::ret)][klass], reply_dequeue - worker_done);
    if (count_ == kMaxPending) on_transmit(reply_dequeue);  // never in practice: flush_tx runs every loop
    pending_[count_++] = Pending{rx, reply_dequeue, std::uint32_t(klass)};
  }

  // Called after each TX burst (and after a loop without one): the replies recorded since were
  // handed to the port now, in this burst or in one send_payload flushed. A clock read only
  // when there are any.
  void transmitted() noexcept {
    if (count_ != 0) on_transmit(clock_.now_ns());
  }

  // The replies recorded since the last call were handed to the port at tx_ns.
  void on_transmit(std::uint64_t tx_ns) noexcept {
    for (std::uint32_t i = 0; i < count_; ++i) {
      const Pending& p = pending_[i];
      const std::uint64_t tx = after(p.dequeue_ns, tx_ns);
      record(stats_.stage_latency[std::size_t(Stage::egress)][p.klass], tx - p.dequeue_ns);
      record(stats_.stage_latency[std::size_t(Stage::total)][p.klass], tx - p.rx_ns);
    }
    count_ = 0;
  }

 private:
  static constexpr std::uint32_t kMaxPending = 256;
  struct Pending {
    std::uint64_t rx_ns;
    std::uint64_t dequeue_ns;
    std::uint32_t klass;
  };

  // A hop's stamp, moved up to its predecessor's when it is earlier: a stamp read just before
  // a ring operation on another core (the worker's burst stamp, the reply poll's) can precede
  // the stamp of the hop before it. A hop left unstamped (0) takes its predecessor's too.
  static std::uint64_t after(std::uint64_t previous, std::uint64_t stamp) noexcept {
    return stamp > previous ? stamp : previous;
  }

  LcoreStats& stats_;
  bool enabled_;
  const TscClock& clock_;  // the lcore's: the hop stamps' time base
  std::uint32_t count_ = 0;
  Pending pending_[kMaxPending];
};

}  // namespace axon::dataplane

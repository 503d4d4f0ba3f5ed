// TraceStore: the one consumer of the data plane's trace rings (<run_dir>/dataplane.traces,
// dataplane/include/axon/dataplane/trace_ring.h) and the control plane's memory of sampled
// traces (docs/observability.md, "Traces").
//
// One job: every interval its own thread drains every lcore's ring (opening the file when it
// appears, reopening it when a restarted data plane made a new one: another inode), turns each
// SpanRecord into a TraceEntry with its spans (hop stamps moved from CLOCK_MONOTONIC to
// CLOCK_REALTIME with one offset per drain), names the tenant and agent through a resolver the
// daemon gives it, and keeps the last `capacity` entries (the oldest evicted and counted). Each
// new entry is also handed to a sink (the OTLP exporter), which must not block.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "axon/controlplane/traces.h"
#include "axon/dataplane/trace_ring.h"

namespace axon::controlplane {

// One record's entry: the appliance span (rx..tx, kind server, child of the request's span),
// the ingress, queue, return and egress stages (children of the appliance span, ids from
// `next_id`) and the handler span (worker dequeue..done, child of the request's span). Hops
// earlier than their predecessor are moved up to it. `realtime_offset_ns` = CLOCK_REALTIME -
// CLOCK_MONOTONIC.
TraceEntry make_trace_entry(const dataplane::SpanRecord& record, std::int64_t realtime_offset_ns,
                            const std::function<std::uint64_t()>& next_id);

std::string to_hex(const std::uint8_t* bytes, std::size_t size);

class TraceStore {
 public:
  struct Options {
    std::string path;  // <run_dir>/dataplane.traces
    std::size_t capacity = 4096;
    std::chrono::milliseconds interval{100};
  };
  using Resolver = std::function<void(TraceEntry&)>;  // fills tenant and agent names
  using Sink = std::function<void(const TraceEntry&)>;

  TraceStore(Options options, Resolver resolver, Sink sink = {});
  ~TraceStore();  // stops the thread
  TraceStore(const TraceStore&) = delete;
  TraceStore& operator=(const TraceStore&) = delete;

  void start();  // the draining thread
  // One drain: (re)opens the file if needed, stores what the rings hold. Returns how many
  // records it took. Called by the thread; tests call it directly.
  std::size_t poll();

  std::vector<TraceEntry> recent(const TraceQuery& query) const;    // newest first
  std::vector<TraceEntry> find(const std::string& trace_id) const;  // oldest first
  std::string metrics() const;                                      // Prometheus families axon_trace*

 private:
  void reopen_if_needed();
  void run();

  Options options_;
  Resolver resolver_;
  Sink sink_;
  std::optional<dataplane::TraceReader> reader_;  // the store thread's only
  std::string open_error_;                        // the last one logged
  std::mt19937_64 random_;

  mutable std::mutex mutex_;
  std::deque<TraceEntry> entries_;
  std::uint64_t stored_ = 0;        // records taken from the rings
  std::uint64_t spans_ = 0;         // spans made from them
  std::uint64_t evicted_ = 0;       // entries pushed out by newer ones
  std::uint64_t dropped_base_ = 0;  // ring drops of trace files replaced since
  std::uint64_t dropped_ = 0;       // ... plus the current file's
  bool linked_ = false;

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace axon::controlplane

// MetricsExporter: Prometheus families from a daemon snapshot (see metrics_exporter.h).
#include "metrics_exporter.h"

#include <cstdio>

#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

// The per-stage latency histograms, merged over the lcores, in seconds; `le` edges are the
// fixed prometheus_edge_ns() set (128 ns .. 12.9 s), labels stage and class only.
void write_stage_latency(MetricsWriter& m, const dataplane::StatsReader& stats) {
  m.family("axon_dataplane_stage_latency_seconds", "histogram",
           "Latency of each stage of a request answered with RESPONSE, per AXP priority class: ingress (rx to "
           "worker ring), queue (ring to worker dequeue), handler, return (handler done to reply dequeue), egress "
           "(reply dequeue to transmit), total (rx to transmit) (docs/observability.md).");
  for (std::size_t s = 0; s < dataplane::kStageCount; ++s) {
    for (std::size_t c = 0; c < dataplane::kClassCount; ++c) {
      const dataplane::StageTotals t = stats.stage_latency(dataplane::Stage(s), c);
      const std::string stage = dataplane::to_string(dataplane::Stage(s));
      const std::string klass = c == 0 ? "interactive" : "background";
      for (std::uint32_t e = 0; e < dataplane::kPrometheusEdges; ++e) {
        char le[32];
        std::snprintf(le, sizeof le, "%.12g", double(dataplane::prometheus_edge_ns(e)) / 1e9);
        m.sample("_bucket", {{"stage", stage}, {"class", klass}, {"le", le}},
                 double(t.below(dataplane::prometheus_edge_ns(e))));
      }
      m.sample("_bucket", {{"stage", stage}, {"class", klass}, {"le", "+Inf"}}, double(t.count));
      m.sample("_sum", {{"stage", stage}, {"class", klass}}, double(t.sum_ns) / 1e9);
      m.sample("_count", {{"stage", stage}, {"class", klass}}, double(t.count));
    }
  }
}

// The response cache (docs/observability.md, "Response cache"): its counters and gauges summed
// over the lcores, and the hit latency (rx to transmit of a reply served from it) in seconds on
// the stage histograms' edges.
void write_response_cache(MetricsWriter& m, const dataplane::StatsReader& stats) {
  const dataplane::LcoreTotals t = stats.totals();
  const struct {
    const char* name;
    const char* help;
    std::uint64_t value;
  } counters[] = {
      {"axon_dataplane_cache_hits_total", "Requests of cacheable agents answered from the response cache.",
       t.cache_hits},
      {"axon_dataplane_cache_misses_total", "Requests of cacheable agents sent to a worker (no fresh entry).",
       t.cache_misses},
      {"axon_dataplane_cache_insertions_total", "Successful replies stored in the response cache.", t.cache_insertions},
      {"axon_dataplane_cache_evictions_total", "Entries pushed out for room before their TTL ran out (FIFO).",
       t.cache_evictions},
      {"axon_dataplane_cache_expirations_total", "Entries dropped past their agent's TTL.", t.cache_expirations},
      {"axon_dataplane_cache_invalidations_total",
       "Entries dropped because their agent was invalidated or reconfigured.", t.cache_invalidations},
  };
  for (const auto& c : counters) m.family(c.name, "counter", c.help).sample(double(c.value));
  m.family("axon_dataplane_cache_bytes", "gauge", "Bytes of live entries in the response caches (all lcores).")
      .sample(double(t.cache_bytes));
  m.family("axon_dataplane_cache_entries", "gauge", "Live entries in the response caches (all lcores).")
      .sample(double(t.cache_entries));
  const dataplane::StageTotals h = stats.cache_hit_latency();
  m.family("axon_dataplane_cache_hit_latency_seconds", "histogram",
           "Receive to transmit of each reply served from the response cache.");
  for (std::uint32_t e = 0; e < dataplane::kPrometheusEdges; ++e) {
    char le[32];
    std::snprintf(le, sizeof le, "%.12g", double(dataplane::prometheus_edge_ns(e)) / 1e9);
    m.sample("_bucket", {{"le", le}}, double(h.below(dataplane::prometheus_edge_ns(e))));
  }
  m.sample("_bucket", {{"le", "+Inf"}}, double(h.count));
  m.sample("_sum", {}, double(h.sum_ns) / 1e9);
  m.sample("_count", {}, double(h.count));
}

void write_dataplane(MetricsWriter& m, const dataplane::StatsReader& stats) {
  using dataplane::LcoreStats;
  auto sum = [&](auto field) { return double(stats.lcores(field)); };
  m.family("axon_dataplane_rx_frames_total", "counter", "Frames the data plane received.")
      .sample(sum(&LcoreStats::rx_frames));
  m.family("axon_dataplane_requests_total", "counter", "Valid requests queued to workers.")
      .sample(sum(&LcoreStats::requests));
  m.family("axon_dataplane_responses_total", "counter", "RESPONSE datagrams sent.").sample(sum(&LcoreStats::responses));
  m.family("axon_dataplane_busy_total", "counter", "BUSY replies the data plane sent, every reason.")
      .sample(sum(&LcoreStats::busy_sent));
  const dataplane::LcoreTotals totals = stats.totals();
  m.family("axon_dataplane_busy_reasons_total", "counter",
           "BUSY replies the data plane sent, by reason: ring_full (ring or buffers), forward_full, high_water, "
           "queue_delay, reservation, credits (uring/dpdk; xdp: axon_dataplane_credit_busy_total) "
           "(docs/scheduling.md).");
  for (std::size_t r = 0; r < dataplane::kBusyReasonCount; ++r) {
    m.sample({{"reason", dataplane::to_string(dataplane::BusyReason(r))}}, double(totals.busy_reasons[r]));
  }
  m.family("axon_dataplane_deadline_refused_total", "counter",
           "Requests answered ERROR deadline_exceeded before dispatch (never reached a worker): expired, or "
           "unmeetable (budget below the worker's estimated queueing delay).");
  m.sample({{"kind", "expired"}}, double(totals.deadline_expired));
  m.sample({{"kind", "unmeetable"}}, double(totals.deadline_unmeetable));
  m.family("axon_dataplane_reassembled_total", "counter",
           "Segmented requests reassembled whole (docs/protocol.md §6); the ones that were not are "
           "axon_dataplane_drops_total reasons reassembly_* and segment_*.")
      .sample(double(totals.reassembled));
  m.family("axon_dataplane_reply_segments_total", "counter", "Reply datagrams of replies sent in several segments.")
      .sample(double(totals.reply_segments));
  m.family("axon_dataplane_trace_context_invalid_total", "counter",
           "Requests with a malformed W3C trace context (exactly one of trace_id and span_id zero, docs/protocol.md "
           "§5): the handler got a fresh trace instead.")
      .sample(double(totals.trace_context_invalid));
  m.family("axon_dataplane_rx_hook_stamped_total", "counter",
           "Frames whose first hop (NIC receive) is the XDP hook's stamp ([xdp] rx_stamp) rather than the lcore's "
           "first sight of them.")
      .sample(double(totals.rx_hook_stamped));
  m.family("axon_dataplane_rx_hook_stamp_rejected_total", "counter",
           "XDP hook stamps not used (more than a second old): those frames were stamped by the lcore.")
      .sample(double(totals.rx_hook_stamp_rejected));
  m.family("axon_dataplane_reassembly_bytes", "gauge",
           "Reassembly memory in use per lcore (bytes of its [reassembly] memory_per_lcore arena).");
  for (std::uint32_t l = 0; l < stats.lcore_count(); ++l) {
    m.sample({{"lcore", std::to_string(l)}}, double(stats.lcore(l, &LcoreStats::reassembly_bytes)));
  }
  m.family("axon_dataplane_reassembly_messages", "gauge", "Partial segmented requests held per lcore.");
  for (std::uint32_t l = 0; l < stats.lcore_count(); ++l) {
    m.sample({{"lcore", std::to_string(l)}}, double(stats.lcore(l, &LcoreStats::reassembly_messages)));
  }
  m.family("axon_dataplane_dedup_lookups_total", "counter",
           "Requests of agents with dedup_window_ms > 0 by dedup outcome: miss (new, dispatched), absorbed (in "
           "flight already, no reply), hit (re-answered from the reply cache), tombstone_hit (answered within the "
           "window, reply given up: ERROR duplicate_reply_evicted), untracked (table full: dispatched without dedup).");
  m.sample({{"outcome", "miss"}}, double(totals.dedup_misses));
  m.sample({{"outcome", "absorbed"}}, double(totals.dedup_absorbed));
  m.sample({{"outcome", "hit"}}, double(totals.dedup_hits));
  m.sample({{"outcome", "tombstone_hit"}}, double(totals.dedup_tombstone_hits));
  m.sample({{"outcome", "untracked"}}, double(totals.dedup_untracked));
  m.family("axon_dataplane_reply_cache_evictions_total", "counter",
           "Cached replies given up for room (the agent's reply_cache_entries or the [dedup] arena); their keys "
           "stay as tombstones for the rest of the window.")
      .sample(double(totals.dedup_evictions));
  m.family("axon_dataplane_reply_cache_bytes", "gauge",
           "Cached reply payload bytes per lcore (of its [dedup] arena_bytes).");
  for (std::uint32_t l = 0; l < stats.lcore_count(); ++l) {
    m.sample({{"lcore", std::to_string(l)}}, double(stats.lcore(l, &LcoreStats::dedup_arena_bytes)));
  }
  m.family("axon_dataplane_dedup_entries", "gauge",
           "Dedup entries in use per lcore (in flight, cached and tombstones, of its [dedup] entries).");
  for (std::uint32_t l = 0; l < stats.lcore_count(); ++l) {
    m.sample({{"lcore", std::to_string(l)}}, double(stats.lcore(l, &LcoreStats::dedup_entries)));
  }
  m.family("axon_dataplane_slot_drain_rate_requests_per_second", "gauge",
           "Completions per second of each live worker slot while it had work (EWMA; 0 = not measured yet).");
  for (std::uint32_t w = 0; w < stats.worker_count(); ++w) {
    if (stats.worker_state(w) != dataplane::WorkerSlotState::alive) continue;
    m.sample({{"slot", stats.worker(w).name}}, double(stats.worker_counter(w, &dataplane::WorkerStats::drain_rate)));
  }
  m.family("axon_dataplane_slot_queue_delay_seconds", "gauge",
           "Estimated queueing delay of a new request at each live worker slot (queued + in flight over the drain "
           "rate).");
  for (std::uint32_t w = 0; w < stats.worker_count(); ++w) {
    if (stats.worker_state(w) != dataplane::WorkerSlotState::alive) continue;
    m.sample({{"slot", stats.worker(w).name}},
             double(stats.worker_counter(w, &dataplane::WorkerStats::queue_delay_ns)) / 1e9);
  }
  m.family("axon_dataplane_tx_dropped_total", "counter", "Reply frames dropped: the port had no TX room.")
      .sample(sum(&LcoreStats::tx_dropped));
  m.family("axon_dataplane_tx_backpressure_total", "counter",
           "Poll loops that left worker replies queued because no TX frame was free.")
      .sample(sum(&LcoreStats::tx_backpressure));
  m.family("axon_dataplane_port_errors_total", "counter",
           "Losses in the backend's port, below the engine: received datagrams it could not hand over "
           "(rx_dropped, e.g. truncated) and replies the kernel refused (tx_errors).");
  m.sample({{"kind", "rx_dropped"}}, sum(&LcoreStats::port_rx_dropped));
  m.sample({{"kind", "tx_errors"}}, sum(&LcoreStats::port_tx_errors));
  const auto& h = stats.header();
  m.family("axon_dataplane_device_errors_total", "counter",
           "Losses below the port: the DPDK device's rte_eth_stats, or the AF_XDP sockets' XDP_STATISTICS (xdp).");
  m.sample({{"kind", "rx_missed"}}, double(h.device_rx_missed.load(std::memory_order_relaxed)));
  m.sample({{"kind", "rx_nombuf"}}, double(h.device_rx_nombuf.load(std::memory_order_relaxed)));
  m.sample({{"kind", "rx_errors"}}, double(h.device_rx_errors.load(std::memory_order_relaxed)));
  m.sample({{"kind", "tx_errors"}}, double(h.device_tx_errors.load(std::memory_order_relaxed)));
  m.family("axon_dataplane_errors_total", "counter", "ERROR replies sent, by AXP error code.");
  for (std::size_t c = 1; c < protocol::kErrorCodeCount; ++c) {
    const auto code = protocol::ErrorCode(c);
    m.sample({{"code", protocol::to_string(code)}}, double(stats.errors_sent(code)));
  }
  m.family("axon_dataplane_drops_total", "counter",
           "Frames rejected, by reason and where (xdp: in the kernel, userspace: by the poll loop).");
  for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
    const auto reason = protocol::Reason(r);
    if (!protocol::is_drop(reason)) continue;
    if (!protocol::is_reassembly(reason)) {  // the XDP program never counts those
      m.sample({{"reason", protocol::to_string(reason)}, {"where", "xdp"}}, double(stats.xdp(reason)));
    }
    m.sample({{"reason", protocol::to_string(reason)}, {"where", "userspace"}}, double(stats.lcore_drops(reason)));
  }
  m.family("axon_dataplane_credit_busy_total", "counter",
           "Requests answered BUSY because their tenant was over its credits (xdp: by the XDP program with "
           "XDP_TX; userspace: by the poll loop on uring/dpdk).");
  m.sample({{"where", "xdp"}}, double(stats.xdp(protocol::Reason::busy_no_credits)));
  m.sample({{"where", "userspace"}}, double(stats.lcore_drops(protocol::Reason::busy_no_credits)));
  m.family("axon_xdp_class_frames_total", "counter",
           "XDP verdicts per AXP priority class (frames whose AXP header validated): ok is passed on, "
           "busy_no_credits answered BUSY, the rest dropped.");
  for (const auto klass : {protocol::Priority::interactive, protocol::Priority::background}) {
    const char* name = klass == protocol::Priority::interactive ? "interactive" : "background";
    for (std::size_t r = 0; r < protocol::kReasonCount; ++r) {
      const auto reason = protocol::Reason(r);
      if (reason == protocol::Reason::pass_not_axp || protocol::is_reassembly(reason)) continue;
      m.sample({{"class", name}, {"reason", protocol::to_string(reason)}}, double(stats.xdp(klass, reason)));
    }
  }
  write_stage_latency(m, stats);
  write_response_cache(m, stats);
}

}  // namespace

std::string export_metrics(const MetricsSnapshot& s) {
  MetricsWriter m;
  m.family("axon_controlplane_info", "gauge", "Build information of the control plane.")
      .sample({{"version", s.version}}, 1);
  m.family("axon_controlplane_uptime_seconds", "gauge", "Seconds since the control plane started.")
      .sample(s.uptime_seconds);
  m.family("axon_dataplane_up", "gauge", "1 while the control plane is linked to a running data plane.")
      .sample(s.dataplane_up ? 1 : 0);
  m.family("axon_dataplane_restarts_seen_total", "counter", "Data plane restarts the control plane noticed.")
      .sample(double(s.dataplane_restarts_seen));
  m.family("axon_table_pushes_rejected_total", "counter", "Table pushes the data plane refused.")
      .sample(double(s.table_pushes_rejected));
  m.family("axon_worker_spawn_failures_total", "counter", "Worker spawns that failed (exec, cgroup, user).")
      .sample(double(s.spawn_failures));
  m.family("axon_workers_adopted_total", "counter", "Workers taken over from a previous control plane.")
      .sample(double(s.workers_adopted));
  m.family("axon_worker_replacements_total", "counter",
           "Workers the control plane killed to replace them, by reason (stalled: the data plane found it "
           "taking no requests; requested: POST /v1/workers/{id}/kill).");
  for (const char* reason : {"stalled", "requested"}) {
    const auto it = s.worker_replacements.find(reason);
    m.sample({{"reason", reason}}, double(it == s.worker_replacements.end() ? 0 : it->second));
  }
  m.family("axon_agents", "gauge", "Registered agents.").sample(double(s.agents.size()));
  m.family("axon_tenants", "gauge", "Registered tenants.").sample(double(s.tenants));

  m.family("axon_agent_workers", "gauge", "Worker processes alive per agent.");
  for (const auto& a : s.agents) m.sample({{"agent", a.spec.name}}, a.workers);
  m.family("axon_agent_workers_warm", "gauge", "Workers attached to the data plane and serving, per agent.");
  for (const auto& a : s.agents) m.sample({{"agent", a.spec.name}}, a.warm);
  m.family("axon_agent_pool_min", "gauge", "Configured minimum warm workers per agent.");
  for (const auto& a : s.agents) m.sample({{"agent", a.spec.name}}, a.spec.pool.min);
  m.family("axon_agent_pool_max", "gauge", "Configured maximum workers per agent.");
  for (const auto& a : s.agents) m.sample({{"agent", a.spec.name}}, a.spec.pool.max);
  m.family("axon_agent_restarts_total", "counter", "Worker respawns per agent.");
  for (const auto& a : s.agents) m.sample({{"agent", a.spec.name}}, double(a.restarts));
  m.family("axon_agent_breaker_open", "gauge", "1 while the agent's crash-loop circuit breaker is open.");
  for (const auto& a : s.agents) m.sample({{"agent", a.spec.name}}, a.breaker == BreakerState::open ? 1 : 0);

  m.family("axon_pool_scale_events_total", "counter",
           "Autoscaler decisions applied, by agent, direction (up, down) and reason (queue_delay: the queueing "
           "delay stayed above the agent's target; idle: a worker stayed idle; min, max: the bounds moved).");
  for (const auto& [key, count] : s.scale_events) {
    const auto& [agent, direction, reason] = key;
    m.sample({{"agent", agent}, {"direction", direction}, {"reason", reason}}, double(count));
  }
  m.family("axon_agent_pool_target", "gauge", "The autoscaler's pool size per agent, within min..max.");
  for (const auto& sc : s.scaling) m.sample({{"agent", sc.agent}}, sc.target);
  m.family("axon_agent_queue_delay_seconds", "gauge",
           "The queueing delay the autoscaler last measured per agent (absent before two samples).");
  for (const auto& sc : s.scaling) {
    if (sc.queue_delay_us) m.sample({{"agent", sc.agent}}, double(*sc.queue_delay_us) / 1e6);
  }
  m.family("axon_agent_queue_delay_target_seconds", "gauge", "The queueing delay each agent's pool is sized for.");
  for (const auto& sc : s.scaling) m.sample({{"agent", sc.agent}}, double(sc.queue_delay_target_us) / 1e6);

  m.family("axon_worker_inflight", "gauge", "Requests in flight at the worker.");
  for (const auto& w : s.workers) m.sample({{"agent", w.agent}, {"worker", w.id}}, double(w.inflight));
  m.family("axon_worker_ring_depth", "gauge", "Requests queued in the worker's request ring.");
  for (const auto& w : s.workers) m.sample({{"agent", w.agent}, {"worker", w.id}}, double(w.ring_depth));

  if (s.stats != nullptr) write_dataplane(m, *s.stats);
  return m.str();
}

}  // namespace axon::controlplane

// ControlPlane's response-cache calls (ControlApi::invalidate_cache, get_cache): the agent is
// resolved here, the data plane does the work over the control socket (op invalidate_cache).
#include "axon/common/log.h"

#include "control_plane.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "cache";

}  // namespace

ApiResult<Ok> ControlPlane::invalidate_cache(const std::optional<std::string>& agent) {
  std::lock_guard lock(mutex_);
  std::uint32_t id = 0;  // 0: every agent
  if (agent) {
    const auto spec = find_agent(*agent);
    if (!spec) return spec.error();
    id = spec.value()->id;
  }
  if (!link_.connected()) {
    return api_error(ApiErrorCode::unavailable,
                     "no data plane is linked, so there is no cache to invalidate; retry once axon-dataplane runs");
  }
  if (const std::string refused = link_.invalidate_cache(id); !refused.empty()) {
    return api_error(ApiErrorCode::unavailable, "the data plane did not invalidate its cache: " + refused +
                                                    " (the agent's tables may not be pushed yet; retry)");
  }
  AXON_LOG_INFO(kLog, "response cache invalidated for %s", agent ? ("agent " + *agent).c_str() : "every agent");
  return Ok{};
}

ApiResult<CacheStatus> ControlPlane::get_cache(const std::string& agent) {
  std::lock_guard lock(mutex_);
  const auto spec = find_agent(agent);
  if (!spec) return spec.error();
  CacheStatus s;
  s.agent = agent;
  s.cacheable = spec.value()->scheduling.cacheable;
  s.cache_ttl_ms = spec.value()->scheduling.cache_ttl_ms;
  const dataplane::StatsReader* stats = link_.stats();
  s.dataplane_connected = link_.connected() && stats != nullptr;
  if (!s.dataplane_connected) return s;
  const dataplane::LcoreTotals t = stats->totals();
  s.hits = t.cache_hits;
  s.misses = t.cache_misses;
  s.insertions = t.cache_insertions;
  s.evictions = t.cache_evictions;
  s.expirations = t.cache_expirations;
  s.invalidations = t.cache_invalidations;
  s.bytes = t.cache_bytes;
  s.entries = t.cache_entries;
  const dataplane::StageTotals h = stats->cache_hit_latency();
  s.hit_latency_count = h.count;
  s.hit_latency_p50_us = h.quantile_ns(0.5) / 1000.0;
  s.hit_latency_p99_us = h.quantile_ns(0.99) / 1000.0;
  return s;
}

}  // namespace axon::controlplane

// The engine's side of the response cache (response_cache.h): where an lcore keys a request of
// a cacheable agent and answers it from its cache, stores a worker's successful reply, and
// publishes the cache's counters and hit latencies. Ingress order: reassembly, then (retransmit
// dedup,) then this, then dispatch to a worker.
#include <cstring>

#include "axon/common/clock.h"
#include "axon/common/log.h"
#include "axon/dataplane/engine.h"

#include "reassembly.h"
#include "reply_builder.h"
#include "response_cache.h"

namespace axon::dataplane {

void Lcore::open_cache() {
  const std::uint32_t bytes = shared_.config.response_cache.bytes;
  if (bytes == 0) return;
  auto cache = ResponseCache::create(bytes);
  if (!cache) {
    AXON_LOG_WARN("engine", "lcore %u: %s; cacheable agents will be served by their workers only", id_,
                  cache.message().c_str());
    return;
  }
  cache_ = std::move(cache).value();
  cache_hits_ = std::make_unique<CacheHits>();
}

bool Lcore::answer_from_cache(const Pending& p, std::uint64_t rx_ns, CachedRequest& cached) noexcept {
  if (cache_ == nullptr || p.route == nullptr || !p.route->scheduling.cacheable) return false;
  const std::span<const std::uint8_t> bytes(p.frame->data, p.frame->len);
  std::span<const std::uint8_t> payload;
  if (p.reasm != nullptr) {
    // The whole message, as the worker would see it (at most a large buffer: 64 KiB).
    p.reasm->copy_out(p.reasm_entry, cache_->scratch());
    payload = std::span<const std::uint8_t>(cache_->scratch(), p.request.message_len);
  } else {
    payload = protocol::payload_of(protocol::PacketParser::datagram_of(bytes, p.parsed));
  }
  cached.keyed = true;
  cached.key = ResponseCache::key_of(p.request.tenant_id, p.request.agent_id, payload);
  cached.gen = shared_.cache_generations->current(p.request.agent_id);
  const std::uint64_t ttl_ns = std::uint64_t(p.route->scheduling.cache_ttl_ms) * 1'000'000u;
  std::span<const std::uint8_t> hit;
  if (!cache_->try_lookup(cached.key, cached.gen, ttl_ns, clock_.now_ns(), hit)) return false;
  ReplyContext ctx;
  if (!capture_context(bytes, p.parsed, p.request, rx_ns, ctx)) {
    count(stats_.drops[std::size_t(protocol::Reason::eth_truncated)]);
    return true;
  }
  // The stored payload under this request's own header fields (docs/protocol.md §5).
  const protocol::Header reply =
      protocol::make_reply(ctx.request, protocol::MessageType::response, protocol::random_span_id());
  send_payload(ctx, reply, hit.data(), std::uint32_t(hit.size()));
  count(stats_.responses);
  if (cache_hits_->count == CacheHits::kMax) cache_transmitted();
  cache_hits_->rx_ns[cache_hits_->count++] = rx_ns;
  return true;
}

void Lcore::note_cacheable(ReplyContext& ctx, const CachedRequest* cached) noexcept {
  if (cached == nullptr || !cached->keyed) return;
  ctx.cacheable = 1;
  ctx.cache_gen = cached->gen;
  ctx.cache_hash[0] = cached->key.hash[0];
  ctx.cache_hash[1] = cached->key.hash[1];
  cache_->count_miss();
}

void Lcore::store_in_cache(const ReplyContext& ctx, const std::uint8_t* data, std::uint32_t length,
                           std::uint64_t now) noexcept {
  if (!ctx.cacheable || cache_ == nullptr) return;
  // The agent as configured now: one no longer cacheable (or moved to another tenant) stores nothing.
  const RouteTable* routes = shared_.routes.current();
  const AgentRoute* route = routes == nullptr ? nullptr : routes->find(ctx.request.agent_id);
  if (route == nullptr || !route->scheduling.cacheable || route->tenant_id != ctx.request.tenant_id) return;
  CacheKey key;
  key.tenant_id = ctx.request.tenant_id;
  key.agent_id = ctx.request.agent_id;
  key.hash[0] = ctx.cache_hash[0];
  key.hash[1] = ctx.cache_hash[1];
  (void)cache_->insert(key, ctx.cache_gen, std::uint64_t(route->scheduling.cache_ttl_ms) * 1'000'000u, now,
                       std::span<const std::uint8_t>(data, length));
}

void Lcore::cache_transmitted() noexcept {
  if (cache_hits_ == nullptr || cache_hits_->count == 0) return;
  const std::uint64_t tx = clock_.now_ns();
  for (std::uint32_t i = 0; i < cache_hits_->count; ++i) {
    const std::uint64_t rx = cache_hits_->rx_ns[i];
    record(stats_.cache_hit_latency, tx > rx ? tx - rx : 0);
  }
  cache_hits_->count = 0;
}

void Lcore::publish_cache() noexcept {
  if (cache_ == nullptr) return;
  const CacheCounters& c = cache_->counters();
  stats_.cache_hits.store(c.hits, std::memory_order_relaxed);
  stats_.cache_misses.store(c.misses, std::memory_order_relaxed);
  stats_.cache_insertions.store(c.insertions, std::memory_order_relaxed);
  stats_.cache_evictions.store(c.evictions, std::memory_order_relaxed);
  stats_.cache_expirations.store(c.expirations, std::memory_order_relaxed);
  stats_.cache_invalidations.store(c.invalidations, std::memory_order_relaxed);
  stats_.cache_bytes.store(cache_->bytes_in_use(), std::memory_order_relaxed);
  stats_.cache_entries.store(cache_->entries(), std::memory_order_relaxed);
}

}  // namespace axon::dataplane

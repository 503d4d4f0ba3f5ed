// The engine's retransmit-dedup hooks (docs/scheduling.md, "Retransmit dedup"): the lookup before
// dispatch on the lcore that received the request, and the settlement by whichever reply answers
// it. The table itself is dedup.{h,cc}.
#include <cstring>

#include "axon/common/clock.h"
#include "axon/dataplane/engine.h"

#include "dedup.h"
#include "reply_builder.h"

namespace axon::dataplane {

bool Lcore::deduplicate(Pending& p, std::uint64_t now) noexcept {
  const AgentRoute* route = p.route;
  // Only requests the agent will take: anything else is refused before dispatch anyway.
  if (dedup_ == nullptr || route == nullptr || route->scheduling.dedup_window_ms == 0 ||
      route->tenant_id != p.request.tenant_id) {
    return true;
  }
  DedupKey key;
  key.tenant_id = p.request.tenant_id;
  key.src_port = p.parsed.info.src_port;
  std::memcpy(key.src_addr, p.parsed.info.src_addr, sizeof key.src_addr);
  key.request_id = p.request.request_id;
  DedupPolicy policy;
  policy.window_ns = std::uint64_t(route->scheduling.dedup_window_ms) * 1'000'000u;
  policy.cache_entries = route->scheduling.reply_cache_entries;
  policy.eviction = route->scheduling.reply_cache_eviction;
  const DedupTable::Lookup found = dedup_->begin(key, p.request.agent_id, policy, now);
  using Verdict = DedupTable::Verdict;
  switch (found.verdict) {
    case Verdict::fresh:
      count(stats_.dedup_misses);
      p.dedup = dedup_.get();
      p.dedup_entry = found.entry;
      p.dedup_generation = found.generation;
      return true;
    case Verdict::untracked: count(stats_.dedup_untracked); return true;
    case Verdict::in_flight: count(stats_.dedup_absorbed); return false;
    case Verdict::tombstone:
      count(stats_.dedup_tombstone_hits);
      refuse_error(p, now, protocol::ErrorCode::duplicate_reply_evicted);
      return false;
    case Verdict::answered: break;
  }
  count(stats_.dedup_hits);
  ReplyContext ctx;
  if (!capture_context(std::span<const std::uint8_t>(p.frame->data, p.frame->len), p.parsed, p.request, now, ctx)) {
    count(stats_.drops[std::size_t(protocol::Reason::eth_truncated)]);
    return false;
  }
  // The reply as it first went out (the same span_id, error code and payload), every segment.
  const std::span<const std::uint8_t> payload = dedup_->payload(found.entry);
  send_payload(ctx, dedup_->reply(found.entry), payload.data(), std::uint32_t(payload.size()));
  return false;
}

void Lcore::settle_dedup(const ReplyContext& ctx, const protocol::Header& reply, const std::uint8_t* data,
                         std::uint32_t length) noexcept {
  // A worker holds (or held) the request: it ran, or may have. BUSY is never an answer to that.
  const bool executed = ctx.live != 0 && reply.type != protocol::MessageType::busy;
  if (ctx.dedup != dedup_.get()) {
    // Received by another lcore: the reply goes to its cache, or (too long for the forward ring's
    // cell, or the ring full) it keeps a tombstone.
    if (!executed || !forward_settlement(ctx, reply, data, length)) {
      ctx.dedup->settle_remote(ctx.dedup_entry, ctx.dedup_generation, executed);
    }
    return;
  }
  const DedupTable::Settled settled =
      dedup_->settle(ctx.dedup_entry, ctx.dedup_generation, executed, reply,
                     std::span<const std::uint8_t>(data, data == nullptr ? 0 : length), clock_.now_ns());
  if (settled.evicted > 0) count(stats_.dedup_evictions, settled.evicted);
}

void Lcore::forget_dedup(const Pending& p) noexcept {
  if (p.dedup == nullptr) return;
  if (p.dedup == dedup_.get()) {
    (void)dedup_->settle(p.dedup_entry, p.dedup_generation, false, protocol::Header{}, {}, 0);
  } else {
    p.dedup->settle_remote(p.dedup_entry, p.dedup_generation, false);
  }
}

void Lcore::attach_dedup(const Pending& p, ReplyContext& ctx) noexcept {
  ctx.dedup = p.dedup;
  ctx.dedup_entry = p.dedup_entry;
  ctx.dedup_generation = p.dedup_generation;
}

}  // namespace axon::dataplane

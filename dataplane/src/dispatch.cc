// Dispatch policies, the background reservation rule and the drain-rate arithmetic (see
// dispatch.h).
#include "dispatch.h"

#include <cmath>

namespace axon::dataplane::dispatch {
namespace {

// splitmix64's finaliser: every input bit affects every output bit.
std::uint64_t mix64(std::uint64_t v) noexcept {
  v += 0x9e3779b97f4a7c15ull;
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ull;
  v = (v ^ (v >> 27)) * 0x94d049bb133111ebull;
  return v ^ (v >> 31);
}

std::uint64_t next_random(std::uint64_t& s) noexcept {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

}  // namespace

std::uint64_t rendezvous_weight(std::uint64_t key, std::uint32_t slot) noexcept {
  return mix64(key ^ mix64(0x5bd1e995ull + slot));
}

std::uint32_t pick_sticky(std::span<const Candidate> candidates, std::uint64_t session_key) noexcept {
  std::uint32_t best = kNone;
  std::uint64_t best_weight = 0;
  for (std::uint32_t i = 0; i < candidates.size(); ++i) {
    const std::uint64_t w = rendezvous_weight(session_key, candidates[i].slot);
    // Ties (astronomically rare) go to the lower slot, so the choice never depends on order.
    if (best == kNone || w > best_weight || (w == best_weight && candidates[i].slot < candidates[best].slot)) {
      best = i;
      best_weight = w;
    }
  }
  return best;
}

std::uint32_t pick_p2c(std::span<const Candidate> candidates, std::uint64_t random) noexcept {
  const auto n = std::uint32_t(candidates.size());
  if (n == 0) return kNone;
  if (n == 1) return 0;
  const auto a = std::uint32_t(random % n);
  auto b = std::uint32_t((random >> 32) % (n - 1));
  if (b >= a) ++b;  // two distinct candidates
  return candidates[b].outstanding < candidates[a].outstanding ? b : a;
}

std::uint32_t pick_jsq(std::span<const Candidate> candidates, std::uint32_t start) noexcept {
  const auto n = std::uint32_t(candidates.size());
  if (n == 0) return kNone;
  std::uint32_t best = start % n;
  for (std::uint32_t k = 1; k < n; ++k) {
    const std::uint32_t i = (start + k) % n;
    if (candidates[i].outstanding < candidates[best].outstanding) best = i;
  }
  return best;
}

std::uint32_t pick_round_robin(std::span<const Candidate> candidates, std::uint32_t cursor) noexcept {
  return candidates.empty() ? kNone : std::uint32_t(cursor % candidates.size());
}

std::uint32_t pick(model::Dispatch policy, std::span<const Candidate> candidates, std::uint64_t session_key,
                   State& state) noexcept {
  switch (policy) {
    case model::Dispatch::sticky:
      if (session_key != 0) return pick_sticky(candidates, session_key);
      return pick_p2c(candidates, next_random(state.random));
    case model::Dispatch::p2c: return pick_p2c(candidates, next_random(state.random));
    case model::Dispatch::jsq: return pick_jsq(candidates, state.cursor++);
    case model::Dispatch::round_robin: return pick_round_robin(candidates, state.cursor++);
  }
  return pick_round_robin(candidates, state.cursor++);
}

std::uint32_t background_candidates(std::span<const Candidate> candidates, std::uint32_t reserved,
                                    Candidate* out) noexcept {
  std::uint32_t idle = 0;
  for (const Candidate& c : candidates) idle += c.outstanding == 0 ? 1u : 0u;
  const bool idle_allowed = idle > reserved;
  std::uint32_t n = 0;
  for (const Candidate& c : candidates) {
    if (c.outstanding != 0 || idle_allowed) out[n++] = c;
  }
  return n;
}

bool DrainMeter::sample(std::uint64_t now_ns, std::uint64_t completed, std::uint64_t outstanding) noexcept {
  if (last_sample_ns == 0 || completed < last_completed || now_ns < last_sample_ns) {
    // First sample, or the counter went back (a reclaimed worker's successor): start over.
    last_sample_ns = now_ns;
    last_completed = completed;
    last_outstanding = outstanding;
    busy_ns = 0;
    window_done = 0;
    return false;
  }
  const std::uint64_t done = completed - last_completed;
  if (last_outstanding > 0 || done > 0) busy_ns += now_ns - last_sample_ns;
  window_done += done;
  last_sample_ns = now_ns;
  last_completed = completed;
  last_outstanding = outstanding;
  // A busy window stays open until something completes: a worker slower than the window (one
  // request per 5 ms) is measured over as long as one request takes, not read as 0.
  if (busy_ns < kWindowNs || window_done == 0) return false;
  const std::uint64_t sample_rate = window_done * 1'000'000'000ull / busy_ns;
  rate_per_s =
      rate_per_s == 0
          ? sample_rate
          : std::uint64_t(std::int64_t(rate_per_s) + (std::int64_t(sample_rate) - std::int64_t(rate_per_s)) / 4);
  if (rate_per_s == 0) rate_per_s = 1;
  busy_ns = 0;
  window_done = 0;
  return true;
}

std::uint64_t queue_delay_ns(std::uint64_t outstanding, std::uint64_t rate_per_s) noexcept {
  if (rate_per_s == 0 || outstanding == 0) return 0;
  // outstanding is bounded by the buffer pool (< 2^32), so this cannot overflow.
  return outstanding * 1'000'000'000ull / rate_per_s;
}

std::uint32_t retry_after_us(std::uint64_t outstanding, std::uint64_t rate_per_s, std::uint32_t fallback_us) noexcept {
  if (rate_per_s == 0) return fallback_us;
  const std::uint64_t us = queue_delay_ns(outstanding, rate_per_s) / 1000u;
  if (us < kMinRetryAfterUs) return kMinRetryAfterUs;
  if (us > kMaxRetryAfterUs) return kMaxRetryAfterUs;
  return std::uint32_t(us);
}

std::uint32_t high_water_depth(double high_water, std::uint32_t capacity) noexcept {
  if (!(high_water < 1.0)) return capacity;
  const auto depth = std::uint32_t(std::ceil(high_water * double(capacity)));
  return depth == 0 ? 1u : depth;
}

}  // namespace axon::dataplane::dispatch

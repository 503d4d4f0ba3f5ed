// Dispatch and admission arithmetic: which of an agent's live workers takes a request, which
// workers a background request may not take (reserved interactive capacity), and the
// drain-rate estimate behind queueing delay, admission and retry_after_us
// (docs/scheduling.md). Pure functions over a snapshot the engine takes; noexcept and
// allocation-free, so they run on the hot path and are unit tested without an engine.
#pragma once

#include <cstdint>
#include <span>

#include "axon/common/model.h"

namespace axon::dataplane::dispatch {

// One live worker as a policy sees it.
struct Candidate {
  std::uint32_t slot = 0;         // worker slot index: the rendezvous key, stable for the slot's life
  std::uint32_t outstanding = 0;  // requests queued for it or in flight on it (0 = idle)
};

inline constexpr std::uint32_t kNone = ~0u;  // no candidate may take the request

// What the policies carry between calls, per lcore.
struct State {
  std::uint32_t cursor = 0;                      // round robin; tie-breaking start of jsq
  std::uint64_t random = 0x9e3779b97f4a7c15ull;  // xorshift64 state of p2c (never 0)
};

// Rendezvous (highest random weight) hashing: the weight of `slot` for `key`. The session goes to
// the live worker of the highest weight, so removing a worker moves only its own sessions, and
// adding one takes ~1/(n+1) of them from the others.
[[nodiscard]] std::uint64_t rendezvous_weight(std::uint64_t key, std::uint32_t slot) noexcept;

// Each returns an index into `candidates`, or kNone when it is empty.
[[nodiscard]] std::uint32_t pick_sticky(std::span<const Candidate> candidates, std::uint64_t session_key) noexcept;
// The shallower of two distinct candidates drawn from `random` (ties: the first drawn).
[[nodiscard]] std::uint32_t pick_p2c(std::span<const Candidate> candidates, std::uint64_t random) noexcept;
// The shallowest; among equals, the first at or after `start` (so ties rotate).
[[nodiscard]] std::uint32_t pick_jsq(std::span<const Candidate> candidates, std::uint32_t start) noexcept;
[[nodiscard]] std::uint32_t pick_round_robin(std::span<const Candidate> candidates, std::uint32_t cursor) noexcept;
// The agent's policy; sticky without a session key (0) falls back to p2c. Advances `state`.
[[nodiscard]] std::uint32_t pick(model::Dispatch policy, std::span<const Candidate> candidates,
                                 std::uint64_t session_key, State& state) noexcept;

// Reserved interactive capacity (DARC-like): copies into `out` (room for candidates.size())
// the candidates a background request may take, and returns how many. Idle workers are
// allowed only while more than `reserved` of them are idle, so the last `reserved` idle ones
// stay free for interactive requests; busy workers are always allowed (background queues
// behind work already there). 0 allowed: the request gets BUSY (reason reservation).
[[nodiscard]] std::uint32_t background_candidates(std::span<const Candidate> candidates, std::uint32_t reserved,
                                                  Candidate* out) noexcept;

// ---- drain rate, queueing delay, retry_after_us ---------------------------------------

// The drain-rate estimate of one worker, updated by its owner lcore's housekeeping: an EWMA
// (weight 1/4) of completions per second of *busy* time, sampled once at least kWindowNs of
// busy time holds a completion. An interval between two samples counts as busy when the worker
// held work at its start or completed something in it; idle intervals count for nothing. So
// at light load the estimate is the service rate, not the arrival rate: a worker that answers
// one request per millisecond in 20 us is not read as draining 1000/s. (A request that arrives
// and completes within one interval charges the whole interval, so the estimate is a lower
// bound of the service rate, by at most one housekeeping period per request.)
struct DrainMeter {
  static constexpr std::uint64_t kWindowNs = 1'000'000;
  std::uint64_t rate_per_s = 0;  // 0 = not measured yet
  std::uint64_t last_sample_ns = 0;
  std::uint64_t last_completed = 0;    // the worker's completion count at the last sample
  std::uint64_t last_outstanding = 0;  // what it held at the last sample
  std::uint64_t busy_ns = 0;           // busy time accumulated in this window
  std::uint64_t window_done = 0;       // completions in this window

  // `completed`: the worker's completions so far (monotonic); `outstanding`: queued or in
  // flight now. Returns true when the estimate changed.
  bool sample(std::uint64_t now_ns, std::uint64_t completed, std::uint64_t outstanding) noexcept;
  void reset() noexcept { *this = DrainMeter{}; }
};

// Estimated queueing delay of a new request behind `outstanding` others at `rate_per_s`;
// 0 when the rate is not known yet (no delay-based admission or deadline refusal then).
[[nodiscard]] std::uint64_t queue_delay_ns(std::uint64_t outstanding, std::uint64_t rate_per_s) noexcept;

inline constexpr std::uint32_t kMinRetryAfterUs = 50;         // below this a retry only meets BUSY again
inline constexpr std::uint32_t kMaxRetryAfterUs = 1'000'000;  // a client never waits more than 1 s on our word
// retry_after_us of a BUSY: the time the worker needs to drain what it holds at its measured
// rate (outstanding / rate), clamped to [kMinRetryAfterUs, kMaxRetryAfterUs]; `fallback_us`
// (the config's busy_retry_after_us) while the rate is unknown.
[[nodiscard]] std::uint32_t retry_after_us(std::uint64_t outstanding, std::uint64_t rate_per_s,
                                           std::uint32_t fallback_us) noexcept;

// The ring depth at which a ring of `capacity` slots is at `high_water` (a fraction in (0, 1]);
// capacity itself for 1 (only a full ring refuses).
[[nodiscard]] std::uint32_t high_water_depth(double high_water, std::uint32_t capacity) noexcept;

}  // namespace axon::dataplane::dispatch

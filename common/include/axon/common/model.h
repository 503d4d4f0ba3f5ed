// The one model both daemons share: a tenant, an agent and a route as the data plane's
// control socket carries them, and the one strict IP prefix parse.
//
// The control plane's config, its REST JSON and registry, the control codec and the data
// plane's config all describe the same things; they use these types instead of keeping
// copies. Fields the control plane alone needs (an agent's command, pool, user) live in its
// own AgentSpec, which carries an Agent's identity fields.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "axon/common/result.h"

namespace axon::model {

// An allowed source prefix. Parsed once, strictly, by parse_ip_prefix().
struct IpPrefix {
  std::uint8_t ip_version = 4;          // 4 or 6
  std::uint8_t length = 32;             // prefix bits, <= 32 (IPv4) or <= 128 (IPv6)
  std::array<std::uint8_t, 16> addr{};  // network order; IPv4 uses the first 4 bytes

  // True when the first `length` bits of `address` (16 or 4 bytes, network order, of the
  // same version) equal this prefix's. Hot path: no allocation.
  bool contains(const std::uint8_t* address) const noexcept;
  std::string to_string() const;  // "10.0.0.0/8", "2001:db8::/32"
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
};

enum class PrefixError { invalid };

// Strict: "<IPv4 or IPv6 address>" or "<address>/<bits>", bits in decimal without sign,
// spaces or leading zeros, at most the address's width; no bits set beyond the prefix
// ("10.0.0.1/8" is refused: the operator meant 10.0.0.0/8 or 10.0.0.1/32). A bare address
// is a host prefix (/32, /128). The message names the text and says what is expected.
Result<IpPrefix, PrefixError> parse_ip_prefix(std::string_view text);

// A tenant: who may send (prefixes), how fast (rate limits) and how much the workers take
// from it now (credits). docs/scheduling.md, "Per-class limits" and "Credits and BUSY from
// XDP", gives the rules; docs/operations.md lists the keys.
//
// Rates: rate_pps/burst limit the tenant's requests of every class together; the per-class
// pairs limit only requests of that AXP priority (0 interactive, 1 background). A request
// must pass every limit that applies to it (the class limit, then the all-classes one); each
// limit is a GCRA bucket, 0 pps = none of that kind. A rate needs a burst >= 1.
//
// Credits (Breakwater-style admission control): credits_max > 0 turns them on. The data plane
// grants the tenant a budget of requests per credit refresh interval, between credits_min and
// credits_max, raised while its workers' queueing delay stays under credit_delay_target_us and
// cut when it passes it; a request beyond the budget is answered BUSY (from XDP where the
// program runs). 0 = credits off: unlimited.
struct Tenant {
  std::uint32_t id = 0;  // AXP tenant id (1..2^32-1)
  std::string name;
  std::uint32_t rate_pps = 0;  // every class together; 0 = unlimited
  std::uint32_t burst = 0;
  std::vector<std::string> prefixes;  // allowed source prefixes, "10.0.0.0/8"; each parses
  // New fields go after prefixes, so positional initialisers of the older ones stay valid.
  std::uint32_t interactive_rate_pps = 0;  // priority 0 only; 0 = no class limit
  std::uint32_t interactive_burst = 0;
  std::uint32_t background_rate_pps = 0;  // priority 1 only; 0 = no class limit
  std::uint32_t background_burst = 0;
  std::uint32_t credits_max = 0;             // requests per refresh interval at most; 0 = credits off
  std::uint32_t credits_min = 1;             // the budget never drops below this (<= credits_max)
  std::uint32_t credit_delay_target_us = 0;  // 0 = the data plane's [credits] target_delay_us
  friend bool operator==(const Tenant&, const Tenant&) = default;
};

// How the data plane spreads an agent's requests over its workers (docs/scheduling.md,
// "Dispatch policies"). Names in value order: enum_names() (JsonReader reads them).
enum class Dispatch : std::uint8_t {
  sticky,       // rendezvous hash of session_key over the live workers; no key: p2c
  p2c,          // the shallower of two random live workers (ring depth + in flight)
  jsq,          // the shallowest live worker
  round_robin,  // the next live worker in turn
};
constexpr std::array<const char*, 4> enum_names(Dispatch) {
  return {"sticky", "p2c", "jsq", "round_robin"};
}
const char* to_string(Dispatch dispatch) noexcept;

// Which cached reply an agent's full reply cache gives up first (docs/scheduling.md,
// "Retransmit dedup"): the least recently answered-or-re-answered one, or the oldest.
enum class ReplyCacheEviction : std::uint8_t { lru, fifo };
constexpr std::array<const char*, 2> enum_names(ReplyCacheEviction) {
  return {"lru", "fifo"};
}
const char* to_string(ReplyCacheEviction eviction) noexcept;

// An agent's scheduling knobs (docs/scheduling.md lists each with its effect). The data
// plane applies them per request; the control plane carries them in its config and REST API
// and checks what needs the pool's size (reserved <= pool max).
struct Scheduling {
  Dispatch dispatch = Dispatch::sticky;
  // true: interactive requests go ahead of background ones (two rings, interactive first in
  // each burst, background reservation). false: every request goes to the interactive ring in
  // arrival order, one FIFO (the baseline bench/mixed compares against).
  bool class_scheduling = true;
  // Workers kept for interactive requests: background work is never placed on one of the
  // last max(reserved_interactive, ceil(share * live workers)) idle workers.
  std::uint32_t reserved_interactive = 0;
  double reserved_interactive_share = 0.0;  // 0..1
  // BUSY a new request when its worker's estimated queueing delay (outstanding / drain rate)
  // passes this; 0 = no delay-based admission (a full ring or high_water still answer BUSY).
  std::uint32_t queue_delay_target_us = 0;
  // BUSY a new request when its ring is filled to this fraction of its capacity, (0, 1];
  // 1 = only a full ring.
  double high_water = 1.0;
  // Retransmit dedup (docs/protocol.md §1, docs/scheduling.md "Retransmit dedup"): a request whose
  // (tenant, source address and port, request_id) is in flight is absorbed, and one answered less
  // than dedup_window_ms ago is re-answered from the lcore's reply cache. 0 = off (the default: a
  // client that reuses request ids for new requests would otherwise get old replies).
  std::uint32_t dedup_window_ms = 0;
  std::uint32_t reply_cache_entries = 256;  // replies with payload kept per lcore for this agent
  ReplyCacheEviction reply_cache_eviction = ReplyCacheEviction::lru;
  // Response cache (docs/operations.md, "Response cache"): a successful RESPONSE of a cacheable
  // agent is kept for cache_ttl_ms and answers later requests of the same tenant with the same
  // payload without a worker. Carried with the scheduling knobs because every path that carries
  // those (TOML, control socket, REST) must carry these too.
  bool cacheable = false;
  std::uint32_t cache_ttl_ms = 0;  // 1..kMaxCacheTtlMs when cacheable; 0 or any valid TTL when not
  friend bool operator==(const Scheduling&, const Scheduling&) = default;
};

// Every scheduling key but `dispatch` and `reply_cache_eviction` (names, parsed by parse_dispatch
// and parse_reply_cache_eviction next to each walk), with its field: the one list the config
// readers (data plane and control plane TOML), the JSON readers (control socket, REST) and the
// JSON writers walk, so a new knob is added here once. Works on a const Scheduling too (the
// writers).
template <class SchedulingRef, class Visit>
requires std::is_same_v<std::remove_const_t<SchedulingRef>, Scheduling>
void for_each_scheduling_field(SchedulingRef& s, Visit&& visit) {
  visit("class_scheduling", s.class_scheduling);
  visit("reserved_interactive", s.reserved_interactive);
  visit("reserved_interactive_share", s.reserved_interactive_share);
  visit("queue_delay_target_us", s.queue_delay_target_us);
  visit("high_water", s.high_water);
  visit("dedup_window_ms", s.dedup_window_ms);
  visit("reply_cache_entries", s.reply_cache_entries);
  visit("cacheable", s.cacheable);
  visit("cache_ttl_ms", s.cache_ttl_ms);
}

inline constexpr std::uint32_t kMaxReservedInteractive = 64;         // an agent's worker limit
inline constexpr std::uint32_t kMaxQueueDelayTargetUs = 60'000'000;  // one minute
inline constexpr std::uint32_t kMaxDedupWindowMs = 600'000;          // ten minutes
inline constexpr std::uint32_t kMaxReplyCacheEntries = 65'536;
inline constexpr std::uint32_t kMaxCacheTtlMs = 86'400'000;  // one day

enum class SchedulingError { invalid };

// "sticky", "p2c", "jsq" or "round_robin"; anything else is refused with the list.
Result<Dispatch, SchedulingError> parse_dispatch(std::string_view name);
// "lru" or "fifo"; anything else is refused with the list.
Result<ReplyCacheEviction, SchedulingError> parse_reply_cache_eviction(std::string_view name);
// Range checks of every field; the message is "<where>: <field>: <what to use>" (without
// "<where>: " when where is empty).
Result<Ok, SchedulingError> check_scheduling(const Scheduling& scheduling, std::string_view where);
// How many of `live` workers are held back from background work: the larger of the count
// and the share (rounded up), at most `live`.
std::uint32_t reserved_workers(const Scheduling& scheduling, std::uint32_t live) noexcept;

// The limit rules every source of a Tenant (data plane TOML, control socket, control plane
// config and REST) applies beyond field types: each rate needs a burst, and credits_min <=
// credits_max when credits are on. Ids and prefixes are checked by the callers. Empty when the
// limits are fine; otherwise a message that names the field and the fix (callers prefix the
// tenant).
std::string tenant_limits_problem(const Tenant& tenant);

// An agent as the data plane routes on it.
struct Agent {
  std::uint32_t id = 0;      // AXP agent id (1..2^32-1)
  std::uint32_t tenant = 0;  // the tenant whose requests it may serve
  std::string name;
  Scheduling scheduling{};  // "{}": positional initialisers of the fields above stay warning-free
  friend bool operator==(const Agent&, const Agent&) = default;
};

// Where an agent's requests go: the agent and the worker slots its requests are spread
// over (empty = requests are answered with an ERROR). The control socket's table entry,
// the data plane config's [[agents]] and the REST API's GET /v1/routes entry.
struct Route {
  std::uint32_t id = 0;  // the agent's AXP id
  std::uint32_t tenant = 0;
  std::string name;                  // the agent's name
  std::vector<std::string> workers;  // worker slot names
  Scheduling scheduling{};           // "{}": positional initialisers of the fields above stay warning-free
  Agent agent() const { return Agent{id, tenant, name, scheduling}; }
  friend bool operator==(const Route&, const Route&) = default;
};

}  // namespace axon::model

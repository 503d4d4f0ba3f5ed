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
  Agent agent() const { return Agent{id, tenant, name}; }
  friend bool operator==(const Route&, const Route&) = default;
};

}  // namespace axon::model

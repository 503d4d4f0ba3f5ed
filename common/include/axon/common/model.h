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

// A tenant: who may send (prefixes) and how fast (rate_pps with burst).
struct Tenant {
  std::uint32_t id = 0;  // AXP tenant id (1..2^32-1)
  std::string name;
  std::uint32_t rate_pps = 0;  // 0 = unlimited
  std::uint32_t burst = 0;
  std::vector<std::string> prefixes;  // allowed source prefixes, "10.0.0.0/8"; each parses
  friend bool operator==(const Tenant&, const Tenant&) = default;
};

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

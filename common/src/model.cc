// The one strict IP prefix parse and the scheduling knobs' checks (see model.h).
#include "axon/common/model.h"

#include <arpa/inet.h>

#include <cmath>
#include <cstring>

namespace axon::model {

namespace {

Error<PrefixError> invalid(std::string_view text, const std::string& why) {
  return make_error(PrefixError::invalid, "'" + std::string(text) + "' is not an IP prefix: " + why +
                                              " (write an address such as 192.0.2.7, or a prefix such as "
                                              "10.0.0.0/8 or 2001:db8::/32)");
}

}  // namespace

Result<IpPrefix, PrefixError> parse_ip_prefix(std::string_view text) {
  const auto slash = text.find('/');
  const std::string address(text.substr(0, slash));
  IpPrefix p;
  if (inet_pton(AF_INET, address.c_str(), p.addr.data()) == 1) {
    p.ip_version = 4;
    p.length = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), p.addr.data()) == 1) {
    p.ip_version = 6;
    p.length = 128;
  } else {
    return invalid(text, "'" + address + "' is not an IPv4 or IPv6 address");
  }
  if (slash != std::string_view::npos) {
    const std::string_view bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string_view::npos ||
        (bits.size() > 1 && bits[0] == '0')) {
      return invalid(text, "the prefix length must be a decimal number");
    }
    unsigned n = 0;
    for (const char c : bits) n = n * 10 + unsigned(c - '0');
    if (n > p.length) {
      return invalid(text, "the prefix length is above " + std::to_string(p.length));
    }
    p.length = std::uint8_t(n);
  }
  const unsigned width = p.ip_version == 4 ? 4 : 16;
  for (unsigned bit = p.length; bit < width * 8; ++bit) {
    if ((p.addr[bit / 8] >> (7 - bit % 8)) & 1u) {
      return invalid(text, "bits are set beyond the first " + std::to_string(p.length));
    }
  }
  return p;
}

bool IpPrefix::contains(const std::uint8_t* address) const noexcept {
  const unsigned full = length / 8u, rest = length % 8u;
  if (std::memcmp(addr.data(), address, full) != 0) return false;
  if (rest == 0) return true;
  const auto mask = std::uint8_t(0xffu << (8 - rest));
  return (addr[full] & mask) == (address[full] & mask);
}

std::string IpPrefix::to_string() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(ip_version == 4 ? AF_INET : AF_INET6, addr.data(), buffer, sizeof buffer);
  return std::string(buffer) + "/" + std::to_string(length);
}

const char* to_string(Dispatch dispatch) noexcept {
  const auto names = enum_names(Dispatch{});
  const auto i = std::size_t(dispatch);
  return i < names.size() ? names[i] : "unknown";
}

Result<Dispatch, SchedulingError> parse_dispatch(std::string_view name) {
  const auto names = enum_names(Dispatch{});
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (name == names[i]) return Dispatch(i);
  }
  return make_error(SchedulingError::invalid, "unknown dispatch policy '" + std::string(name) +
                                                  "'; use \"sticky\", \"p2c\", \"jsq\" or \"round_robin\"");
}

const char* to_string(ReplyCacheEviction eviction) noexcept {
  const auto names = enum_names(ReplyCacheEviction{});
  const auto i = std::size_t(eviction);
  return i < names.size() ? names[i] : "unknown";
}

Result<ReplyCacheEviction, SchedulingError> parse_reply_cache_eviction(std::string_view name) {
  const auto names = enum_names(ReplyCacheEviction{});
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (name == names[i]) return ReplyCacheEviction(i);
  }
  return make_error(SchedulingError::invalid,
                    "unknown reply cache eviction '" + std::string(name) + "'; use \"lru\" or \"fifo\"");
}

Result<Ok, SchedulingError> check_scheduling(const Scheduling& s, std::string_view where) {
  auto invalid = [&](const std::string& what) {
    return make_error(SchedulingError::invalid, where.empty() ? what : std::string(where) + ": " + what);
  };
  if (std::size_t(s.dispatch) >= enum_names(Dispatch{}).size()) {
    return invalid("dispatch: use \"sticky\", \"p2c\", \"jsq\" or \"round_robin\"");
  }
  if (s.reserved_interactive > kMaxReservedInteractive) {
    return invalid("reserved_interactive: at most " + std::to_string(kMaxReservedInteractive) +
                   " (an agent's worker limit); reserve fewer workers or use reserved_interactive_share");
  }
  // Written so that NaN fails too.
  if (!(s.reserved_interactive_share >= 0.0 && s.reserved_interactive_share <= 1.0)) {
    return invalid("reserved_interactive_share: use a share of the pool between 0 and 1, e.g. 0.25");
  }
  if (!(s.high_water > 0.0 && s.high_water <= 1.0)) {
    return invalid(
        "high_water: use a fraction of the ring's capacity above 0 and at most 1, e.g. 0.75 (1 = only a "
        "full ring answers BUSY)");
  }
  if (s.queue_delay_target_us > kMaxQueueDelayTargetUs) {
    return invalid("queue_delay_target_us: at most " + std::to_string(kMaxQueueDelayTargetUs) +
                   " (one minute); 0 turns delay-based admission off");
  }
  if (s.dedup_window_ms > kMaxDedupWindowMs) {
    return invalid("dedup_window_ms: at most " + std::to_string(kMaxDedupWindowMs) +
                   " (ten minutes); cover the client's whole retry span, e.g. 5000; 0 turns dedup off");
  }
  if (s.reply_cache_entries == 0 || s.reply_cache_entries > kMaxReplyCacheEntries) {
    return invalid("reply_cache_entries: use 1 to " + std::to_string(kMaxReplyCacheEntries) +
                   " cached replies per lcore for this agent, e.g. 256");
  }
  if (std::size_t(s.reply_cache_eviction) >= enum_names(ReplyCacheEviction{}).size()) {
    return invalid("reply_cache_eviction: use \"lru\" or \"fifo\"");
  }
  if (s.cache_ttl_ms > kMaxCacheTtlMs || (s.cacheable && s.cache_ttl_ms == 0)) {
    return invalid("cache_ttl_ms: a cacheable agent needs a TTL from 1 to " + std::to_string(kMaxCacheTtlMs) +
                   " ms (one day), e.g. 5000");
  }
  return Ok{};
}

std::uint32_t reserved_workers(const Scheduling& s, std::uint32_t live) noexcept {
  std::uint32_t n = s.reserved_interactive;
  if (s.reserved_interactive_share > 0.0) {
    const auto by_share = std::uint32_t(std::ceil(s.reserved_interactive_share * double(live) - 1e-9));
    if (by_share > n) n = by_share;
  }
  return n < live ? n : live;
}

std::string tenant_limits_problem(const Tenant& tenant) {
  const struct {
    const char* rate;
    const char* burst_name;
    std::uint32_t pps, burst;
  } limits[] = {{"rate_pps", "burst", tenant.rate_pps, tenant.burst},
                {"interactive_rate_pps", "interactive_burst", tenant.interactive_rate_pps, tenant.interactive_burst},
                {"background_rate_pps", "background_burst", tenant.background_rate_pps, tenant.background_burst}};
  for (const auto& l : limits) {
    if (l.pps > 0 && l.burst == 0) {
      return std::string(l.rate) + " needs " + l.burst_name + " >= 1 (how many requests may come back to back)";
    }
    if (l.pps > 1'000'000'000u) return std::string(l.rate) + " must be at most 1000000000";
  }
  if (tenant.credits_max > 0 && tenant.credits_min > tenant.credits_max) {
    return "credits_min (" + std::to_string(tenant.credits_min) + ") must not exceed credits_max (" +
           std::to_string(tenant.credits_max) + ")";
  }
  return {};
}

}  // namespace axon::model

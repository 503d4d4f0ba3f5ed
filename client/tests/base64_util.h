// Base64 (RFC 4648, padded) for the fleet tests that write etcd JSON-gateway bodies by hand.
#pragma once

#include <string>

namespace axon::client::testing {

inline std::string b64(const std::string& s) {
  static constexpr char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto at = [&](std::size_t i) { return i < s.size() ? static_cast<unsigned>(static_cast<unsigned char>(s[i])) : 0u; };
  std::string out;
  for (std::size_t i = 0; i < s.size(); i += 3) {
    const unsigned v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += i + 1 < s.size() ? t[(v >> 6) & 63] : '=';
    out += i + 2 < s.size() ? t[v & 63] : '=';
  }
  return out;
}

}  // namespace axon::client::testing

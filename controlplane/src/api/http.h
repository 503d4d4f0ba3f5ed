// HTTP pieces the REST layer shares that are not the wire format (Boost.Beast owns that,
// see transport.cc): the response a handler builds, and percent-decoding of paths and query
// strings. Pure functions over strings, no I/O.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace axon::controlplane::http {

inline constexpr std::size_t kMaxHeaderBytes = 16 * 1024;  // request line + headers

// Decodes %XX; false on a malformed escape. '+' stays '+' unless plus_is_space.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space);

// Splits "a=1&b=2"; false on a malformed escape. Repeated keys: the last one wins.
bool parse_query(std::string_view query, std::map<std::string, std::string>& out);

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

}  // namespace axon::controlplane::http

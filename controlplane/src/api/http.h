// HTTP/1.1 message handling for the API server: parsing a request head, percent-decoding
// paths and query strings, and writing responses. Pure functions over strings, no I/O.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace axon::controlplane::http {

inline constexpr std::size_t kMaxHeaderBytes = 16 * 1024;

struct RequestHead {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // percent-encoded, as sent
  std::string query;   // after '?', without it
  int minor_version = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  const std::string* header(std::string_view lower_name) const;
};

// A parse failure: the status to answer with and the reason.
struct HeadError {
  int status;
  std::string message;
};

// Parses the head (request line + headers) without the final blank line.
std::optional<RequestHead> parse_head(std::string_view head, HeadError& error);

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

const char* reason_phrase(int status);

// The full message; keep_alive=false adds "Connection: close".
std::string serialize(const Response& response, bool keep_alive);

}  // namespace axon::controlplane::http

// HTTP/1.1 request-head parsing and response writing (see http.h). Strict by design: a
// control plane has few, well-behaved clients, so anything ambiguous is refused.
#include "api/http.h"

#include <cctype>

namespace axon::controlplane::http {
namespace {

bool is_token_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (std::isalnum(u)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const std::string* RequestHead::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

std::optional<RequestHead> parse_head(std::string_view head, HeadError& error) {
  RequestHead out;
  auto fail = [&](int status, std::string message) -> std::optional<RequestHead> {
    error = HeadError{status, std::move(message)};
    return std::nullopt;
  };
  auto line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  head = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);

  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != line.npos) {
    return fail(400, "malformed request line; expected \"METHOD /path HTTP/1.1\"");
  }
  out.method = std::string(line.substr(0, sp1));
  out.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  const auto version = line.substr(sp2 + 1);
  if (out.method.empty()) return fail(400, "empty method in request line");
  for (const char c : out.method) {
    if (!is_token_char(c)) return fail(400, "invalid character in method");
  }
  if (version == "HTTP/1.1") {
    out.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    out.minor_version = 0;
  } else {
    return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  if (out.target.empty() || out.target.front() != '/') return fail(400, "request target must be an absolute path");
  for (const char c : out.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return fail(400, "request target contains a control or non-ASCII character");
  }
  const auto qmark = out.target.find('?');
  out.path = out.target.substr(0, qmark);
  if (qmark != std::string::npos) out.query = out.target.substr(qmark + 1);

  while (!head.empty()) {
    line_end = head.find("\r\n");
    line = head.substr(0, line_end);
    head = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
    if (line.empty()) continue;
    if (line.front() == ' ' || line.front() == '\t') return fail(400, "obsolete header line folding is not accepted");
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(400, "malformed header line (no name or no ':')");
    std::string name(line.substr(0, colon));
    for (char& c : name) {
      if (!is_token_char(c)) return fail(400, "invalid character in header name");
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    const auto value = trim(line.substr(colon + 1));
    for (const char c : value) {
      if (c == '\r' || c == '\n' || c == '\0') return fail(400, "invalid character in header value");
    }
    out.headers.emplace_back(std::move(name), std::string(value));
  }
  return out;
}

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex(in[i + 1]);
      const int lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi << 4 | lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

bool parse_query(std::string_view query, std::map<std::string, std::string>& out) {
  out.clear();
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    std::string key, value;
    if (!percent_decode(pair.substr(0, eq), key, true)) return false;
    if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), value, true)) return false;
    out[key] = value;
  }
  return true;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize(const Response& response, bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " + reason_phrase(response.status) + "\r\n";
  if (response.status != 204) {
    out += "Content-Type: " + response.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  }
  out += "Cache-Control: no-store\r\n";
  for (const auto& [name, value] : response.headers) out += name + ": " + value + "\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (response.status != 204) out += response.body;
  return out;
}

}  // namespace axon::controlplane::http

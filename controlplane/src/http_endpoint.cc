// parse_http_endpoint (config.h): the [tracing] otlp_endpoint URL, checked at load and split
// for the OTLP exporter's client.
#include "axon/controlplane/config.h"

namespace axon::controlplane {

std::optional<HttpEndpoint> parse_http_endpoint(const std::string& url) {
  HttpEndpoint e;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    e.tls = true;
    rest = url.substr(8);
  } else {
    return std::nullopt;
  }
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  e.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.empty() || authority.find_first_of("@ ?#") != std::string::npos) return std::nullopt;
  if (e.target.find_first_of(" \r\n#") != std::string::npos) return std::nullopt;
  e.port = e.tls ? "443" : "80";
  std::size_t colon = std::string::npos;
  if (authority.front() == '[') {  // [v6]:port
    const auto close = authority.find(']');
    if (close == std::string::npos) return std::nullopt;
    e.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return std::nullopt;
      colon = close + 1;
    }
  } else {
    colon = authority.find(':');
    e.host = authority.substr(0, colon);
  }
  if (e.host.empty()) return std::nullopt;
  if (colon != std::string::npos) {
    e.port = authority.substr(colon + 1);
    if (e.port.empty() || e.port.size() > 5 || e.port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(e.port) == 0 || std::stoul(e.port) > 65535) {
      return std::nullopt;
    }
  }
  return e;
}

}  // namespace axon::controlplane

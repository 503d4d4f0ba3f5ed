// Address resolution and formatting for the benchmark tools.
#include "axon/loadgen/net.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>

#include "axon/client/client.h"

namespace axon::loadgen {

std::uint16_t SockAddr::port() const noexcept {
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
}

std::string SockAddr::to_string() const {
  char host[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(port());
  }
  inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(port());
}

Result<SockAddr, NetError> resolve_udp(const std::string& host_port, std::uint16_t default_port, int family) {
  auto hp = client::parse_host_port(host_port, default_port);
  if (!hp) return make_error(NetError::invalid, hp.message());
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* list = nullptr;
  std::string service = std::to_string(hp->port);
  if (int rc = getaddrinfo(hp->host.c_str(), service.c_str(), &hints, &list); rc != 0)
    return make_error(NetError::resolve_failed, "cannot resolve '" + hp->host + "': " + gai_strerror(rc));
  SockAddr out;
  std::memcpy(&out.storage, list->ai_addr, list->ai_addrlen);
  out.len = list->ai_addrlen;
  freeaddrinfo(list);
  return out;
}

Result<SockAddr, NetError> numeric_address(const std::string& address, std::uint16_t port) {
  SockAddr out;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET, address.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    out.len = sizeof *a4;
    return out;
  }
  out = SockAddr{};
  if (inet_pton(AF_INET6, address.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    out.len = sizeof *a6;
    return out;
  }
  return make_error(NetError::invalid, "'" + address + "' is not a numeric IPv4 or IPv6 address");
}

}  // namespace axon::loadgen

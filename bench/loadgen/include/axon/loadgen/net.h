// Socket address helpers shared by the load generator, the packet generator and the baseline
// server: numeric or named HOST[:PORT] to a sockaddr, and back to text for reports.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "axon/common/result.h"

namespace axon::loadgen {

enum class NetError { invalid, resolve_failed, socket_failed };

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;

  [[nodiscard]] int family() const noexcept { return storage.ss_family; }
  [[nodiscard]] const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  [[nodiscard]] sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
  [[nodiscard]] std::uint16_t port() const noexcept;
  // "a.b.c.d:port" or "[v6]:port".
  [[nodiscard]] std::string to_string() const;
};

// HOST[:PORT] or [V6][:PORT] (names allowed) to one UDP address; `family` AF_UNSPEC takes the
// first the resolver returns.
[[nodiscard]] Result<SockAddr, NetError> resolve_udp(const std::string& host_port, std::uint16_t default_port,
                                                     int family = AF_UNSPEC);

// A numeric address with an explicit port, e.g. for bind(): "0.0.0.0", "::", "10.1.2.3".
[[nodiscard]] Result<SockAddr, NetError> numeric_address(const std::string& address, std::uint16_t port);

}  // namespace axon::loadgen

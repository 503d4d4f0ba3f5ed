// A scripted AXP "server" on a loopback UDP socket for the client tests: it receives what the
// client sends and answers (or stays silent) as a test says, for what a real server will not do
// on demand (silence, dropped attempts, BUSY, garbage, segments out of order).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <span>
#include <vector>

#include "axon/protocol/axp.h"

namespace axon::client::testing {

namespace p = axon::protocol;

class FakeServer {
 public:
  explicit FakeServer(int family = AF_INET) {
    fd_ = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    ok_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0 &&
          getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0;
    port_ = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                     : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  ~FakeServer() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return ok_; }
  std::uint16_t port() const { return port_; }

  // Waits for one request; returns its bytes and remembers the sender for reply().
  std::vector<std::uint8_t> receive(int timeout_ms = 2000) {
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) return {};
    std::vector<std::uint8_t> buf(70000);
    peer_len_ = sizeof peer_;
    ssize_t n = recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&peer_), &peer_len_);
    buf.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return buf;
  }
  void send(std::span<const std::uint8_t> dgram) {
    sendto(fd_, dgram.data(), dgram.size(), 0, reinterpret_cast<sockaddr*>(&peer_), peer_len_);
  }
  void reply(const p::Header& h, std::span<const std::uint8_t> payload) {
    std::vector<std::uint8_t> out(p::kHeaderLen + payload.size());
    out.resize(p::encode_datagram(h, payload, out));
    send(out);
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  std::uint16_t port_ = 0;
  sockaddr_storage peer_{};
  socklen_t peer_len_ = 0;
};

}  // namespace axon::client::testing

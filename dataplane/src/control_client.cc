// ControlClient: one blocking SOCK_SEQPACKET connection to <run_dir>/control.sock, one JSON
// request and one reply per call, each bounded by the client's timeout.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "axon/common/clock.h"
#include "axon/dataplane/control.h"

#include "control_codec.h"

namespace axon::dataplane::control {
namespace {

Error<ControlError> io_failure(const std::string& path, const std::string& what) {
  return make_error(ControlError::io_error, "control socket " + path + ": " + what);
}

// Waits for `events` on fd until deadline; false on timeout.
bool wait_for(int fd, short events, std::uint64_t deadline_ns) {
  for (;;) {
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline_ns) return false;
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, int((deadline_ns - now + 999'999) / 1'000'000));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

}  // namespace

std::string control_socket_path(const std::string& run_dir) {
  return run_dir + "/control.sock";
}

Result<ControlClient, ControlError> ControlClient::connect(const std::string& run_dir, int timeout_ms) {
  const std::string path = control_socket_path(run_dir);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    return make_error(ControlError::not_running, "control socket path " + path + " is longer than " +
                                                     std::to_string(sizeof address.sun_path - 1) +
                                                     " bytes; use a shorter run_dir");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return io_failure(path, std::string("socket() failed: ") + std::strerror(errno));
  widen_socket_buffers(fd);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == ENOENT || err == ECONNREFUSED) {
      return make_error(ControlError::not_running, "no data plane control socket at " + path +
                                                       ": is axon-dataplane running with run_dir=" + run_dir + "?");
    }
    if (err == EACCES || err == EPERM) {
      return make_error(ControlError::refused,
                        "permission denied on " + path +
                            ": run as root or as the data plane's user, or as a member of the socket's group "
                            "(mode 0660) listed in [dataplane] control_uids");
    }
    return io_failure(path, std::string("connect failed: ") + std::strerror(err));
  }
  return ControlClient(fd, path, timeout_ms);
}

ControlClient::ControlClient(int fd, std::string path, int timeout_ms) noexcept
    : fd_(fd), path_(std::move(path)), timeout_ms_(timeout_ms) {}

ControlClient::ControlClient(ControlClient&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)), timeout_ms_(other.timeout_ms_) {
  other.fd_ = -1;
}

ControlClient& ControlClient::operator=(ControlClient&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    timeout_ms_ = other.timeout_ms_;
    other.fd_ = -1;
  }
  return *this;
}

ControlClient::~ControlClient() {
  close();
}

void ControlClient::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<std::string, ControlError> ControlClient::call(const std::string& request) {
  if (fd_ < 0) {
    return make_error(ControlError::io_error,
                      "this ControlClient is closed (moved from, or its data plane went "
                      "away); connect again");
  }
  if (request.size() > kMaxMessageBytes) {
    return make_error(ControlError::protocol_error, "the request is " + std::to_string(request.size()) +
                                                        " bytes, more than the control protocol's " +
                                                        std::to_string(kMaxMessageBytes) + "-byte limit");
  }
  const std::uint64_t deadline = monotonic_ns() + std::uint64_t(timeout_ms_) * 1'000'000u;
  auto lost = [&](const std::string& what) {
    // The connection is unusable once a call failed halfway: a late reply would be read
    // as the answer to the next request.
    close();
    return make_error(ControlError::io_error,
                      "control socket " + path_ + ": " + what + "; reconnect (is the data plane still running?)");
  };
  // A message waiting before we sent anything is the data plane's refusal (uid not
  // allowed), sent right after accepting us: read it instead of sending into a closed peer.
  pollfd early{fd_, POLLIN, 0};
  const bool refused_early = ::poll(&early, 1, 0) > 0 && (early.revents & POLLIN) != 0;
  for (; !refused_early;) {
    ssize_t sent = send(fd_, request.data(), request.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent == ssize_t(request.size())) break;
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN) {
      if (!wait_for(fd_, POLLOUT, deadline)) return lost("timed out sending the request");
      continue;
    }
    if (sent < 0 && errno == EMSGSIZE) {
      return make_error(ControlError::io_error, "the request (" + std::to_string(request.size()) +
                                                    " bytes) exceeds this socket's send buffer; raise "
                                                    "net.core.wmem_max or apply smaller tables");
    }
    // The peer is gone, but a refusal it sent before closing may still be waiting.
    if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
    return lost(std::string("send failed: ") + std::strerror(errno));
  }
  std::string reply(kMaxMessageBytes + 1, '\0');
  for (;;) {
    if (!wait_for(fd_, POLLIN, deadline)) {
      return lost("no reply within " + std::to_string(timeout_ms_) + " ms");
    }
    ssize_t got = recv(fd_, reply.data(), reply.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // A peer that closed with our request unread reports ECONNRESET first (the error is
    // cleared by reading it); its last message, e.g. a refusal, may still be queued.
    if (got < 0 && errno == ECONNRESET) got = recv(fd_, reply.data(), reply.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0 && (errno == ECONNRESET || errno == EAGAIN)) got = 0;
    if (got < 0) return lost(std::string("receive failed: ") + std::strerror(errno));
    if (got == 0) {
      close();
      return make_error(ControlError::not_running,
                        "the data plane closed " + path_ + " without replying (it exited or restarted); connect again");
    }
    if (std::size_t(got) > kMaxMessageBytes) return lost("the reply exceeds the 1 MiB message limit");
    reply.resize(std::size_t(got));
    return reply;
  }
}

Result<Hello, ControlError> ControlClient::hello() {
  auto reply = call(encode_hello_request());
  if (!reply) return reply.error();
  return parse_hello_reply(reply.value());
}

Result<std::uint64_t, ControlError> ControlClient::apply(const Tables& tables) {
  auto reply = call(encode_apply_request(tables));
  if (!reply) return reply.error();
  return parse_applied_reply(reply.value());
}

Result<Ok, ControlError> ControlClient::invalidate_cache(std::uint32_t agent_id) {
  auto reply = call(encode_invalidate_cache_request(agent_id));
  if (!reply) return reply.error();
  return parse_ok_reply(reply.value());
}

Result<Ok, ControlError> ControlClient::grant(const std::string& slot, std::int32_t pid) {
  auto reply = call(encode_grant_request(slot, pid));
  if (!reply) return reply.error();
  return parse_ok_reply(reply.value());
}

Result<std::vector<SlotInfo>, ControlError> ControlClient::slots() {
  auto reply = call(encode_slots_request());
  if (!reply) return reply.error();
  return parse_slots_reply(reply.value());
}

}  // namespace axon::dataplane::control

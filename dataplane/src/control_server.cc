// Control socket server: accept with a uid check, one request -> one reply, bounded sizes,
// and a bounded number of connections, all without ever blocking the control thread.
#include "control_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "axon/common/log.h"

namespace axon::dataplane::control {
namespace {

constexpr const char* kLog = "control";

}  // namespace

Result<std::unique_ptr<ControlServer>, ServerError> ControlServer::listen(const std::string& path,
                                                                          std::vector<std::uint32_t> allowed_uids) {
  auto fail = [&](const std::string& what) {
    return make_error(ServerError::socket_failed, "control socket " + path + ": " + what);
  };
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    return fail("the path is longer than " + std::to_string(sizeof address.sun_path - 1) +
                " bytes; choose a shorter run_dir");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  std::unique_ptr<ControlServer> server(new ControlServer());
  server->path_ = path;
  server->allowed_uids_ = std::move(allowed_uids);
  server->listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (server->listen_fd_ < 0) return fail(std::string("socket() failed: ") + std::strerror(errno));
  unlink(path.c_str());  // a stale socket from a predecessor that was killed
  // Created 0660 from the start (umask), so no other user can connect before the chmod.
  const mode_t old_mask = umask(0117);
  const int bound = bind(server->listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0 || ::listen(server->listen_fd_, 16) != 0) {
    return fail(std::string("cannot listen: ") + std::strerror(bound != 0 ? bind_errno : errno) +
                "; check that run_dir exists and is writable");
  }
  (void)chmod(path.c_str(), 0660);
  server->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (server->epoll_fd_ < 0) return fail(std::string("epoll_create1 failed: ") + std::strerror(errno));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = server->listen_fd_;
  if (epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->listen_fd_, &event) != 0) {
    return fail(std::string("epoll_ctl failed: ") + std::strerror(errno));
  }
  server->buffer_.resize(kMaxMessageBytes + 1);
  return server;
}

ControlServer::~ControlServer() {
  for (int fd : connections_) close(fd);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

void ControlServer::serve(const Handler& handler) {
  epoll_event events[kMaxConnections + 1];
  const int n = epoll_wait(epoll_fd_, events, int(kMaxConnections + 1), 0);
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == listen_fd_) {
      accept_all();
    } else if (std::find(connections_.begin(), connections_.end(), fd) != connections_.end()) {
      if ((events[i].events & EPOLLIN) != 0) {
        read_requests(fd, handler);
      } else {
        drop(fd);  // hang-up or error with nothing left to read
      }
    }
  }
}

void ControlServer::accept_all() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) AXON_LOG_WARN(kLog, "accept on %s failed: %s", path_.c_str(), std::strerror(errno));
      return;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      AXON_LOG_WARN(kLog, "SO_PEERCRED on %s failed: %s; dropping the connection", path_.c_str(), std::strerror(errno));
      close(fd);
      continue;
    }
    const bool allowed = cred.uid == 0 || cred.uid == geteuid() ||
                         std::find(allowed_uids_.begin(), allowed_uids_.end(), cred.uid) != allowed_uids_.end();
    if (!allowed) {
      ++refused_;
      AXON_LOG_WARN(kLog, "refused control connection from pid %d uid %u: not root, not uid %u, not in control_uids",
                    int(cred.pid), unsigned(cred.uid), unsigned(geteuid()));
      (void)reply(fd, encode_error("refused: uid " + std::to_string(cred.uid) +
                                       " may not use this control socket; run as root or as uid " +
                                       std::to_string(geteuid()) + ", or add the uid to [dataplane] control_uids",
                                   true));
      close(fd);
      continue;
    }
    if (connections_.size() >= kMaxConnections) {
      AXON_LOG_WARN(kLog, "refused control connection from pid %d: already %zu connections", int(cred.pid),
                    connections_.size());
      (void)reply(fd, encode_error("too many control connections (" + std::to_string(kMaxConnections) +
                                   "); close idle clients and retry"));
      close(fd);
      continue;
    }
    widen_socket_buffers(fd);
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP;
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      close(fd);
      continue;
    }
    connections_.push_back(fd);
  }
}

void ControlServer::read_requests(int fd, const Handler& handler) {
  for (;;) {
    ssize_t got = recv(fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) return;
    if (got <= 0) {
      drop(fd);  // the peer closed (or the connection broke): nothing to answer
      return;
    }
    std::string text;
    if (std::size_t(got) > kMaxMessageBytes) {
      ++bad_requests_;
      text = encode_error("request of " + std::to_string(got) + " bytes exceeds the " +
                          std::to_string(kMaxMessageBytes) + "-byte limit");
    } else {
      auto request = parse_request(std::string_view(buffer_.data(), std::size_t(got)));
      if (!request) {
        ++bad_requests_;
        AXON_LOG_WARN(kLog, "bad control request: %s", request.message().c_str());
        text = encode_error(request.message());
      } else {
        text = handler(request.value());
      }
    }
    if (!reply(fd, text)) {
      drop(fd);
      return;
    }
  }
}

bool ControlServer::reply(int fd, const std::string& text) {
  for (;;) {
    ssize_t sent = send(fd, text.data(), text.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent == ssize_t(text.size())) return true;
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EMSGSIZE) {
      // Too large for this socket's buffer: say so rather than leave the client waiting.
      const std::string small = encode_error("the reply (" + std::to_string(text.size()) +
                                             " bytes) does not fit the socket buffer; raise net.core.wmem_max");
      return send(fd, small.data(), small.size(), MSG_DONTWAIT | MSG_NOSIGNAL) == ssize_t(small.size());
    }
    // EAGAIN: a client that does not read its replies loses its connection, never the
    // control thread's time.
    return false;
  }
}

void ControlServer::drop(int fd) {
  (void)epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  connections_.erase(std::remove(connections_.begin(), connections_.end(), fd), connections_.end());
}

}  // namespace axon::dataplane::control

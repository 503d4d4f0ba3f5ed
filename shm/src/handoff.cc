// SCM_RIGHTS fd passing over SOCK_SEQPACKET Unix sockets: message boundaries are kept,
// so one send is exactly one HandoffMessage plus its fd.
#include "axon/shm/handoff.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace axon::shm {
namespace {

Error<ShmError> fail(std::string message) {
  return make_error(ShmError::handoff_failed, std::move(message));
}

std::string errno_text() {
  return std::strerror(errno);
}

bool fill_address(const std::string& path, sockaddr_un& address) {
  std::memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return true;
}

bool wait_readable(int fd, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

}  // namespace

ShmResult<Ok> send_segment(int socket_fd, int segment_fd, const HandoffMessage& message) {
  iovec iov{const_cast<HandoffMessage*>(&message), sizeof message};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &segment_fd, sizeof(int));
  ssize_t sent;
  do {
    sent = sendmsg(socket_fd, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != ssize_t(sizeof message)) {
    return fail("sending the segment fd to the worker failed: " + errno_text() + "; the worker may have exited");
  }
  return Ok{};
}

ShmResult<ReceivedSegment> receive_segment(int socket_fd, int timeout_ms) {
  if (!wait_readable(socket_fd, timeout_ms)) {
    return fail("no segment arrived within " + std::to_string(timeout_ms) +
                " ms; is the data plane running and did it accept this worker?");
  }
  ReceivedSegment received;
  iovec iov{&received.message, sizeof received.message};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t got;
  do {
    got = recvmsg(socket_fd, &msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  // Collect every fd first so none leaks whatever goes wrong below.
  int fds[4];
  int nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int n = int((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < n && nfds < 4; ++i) std::memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
  }
  auto close_fds = [&] {
    for (int i = 0; i < nfds; ++i) close(fds[i]);
  };
  if (got != ssize_t(sizeof received.message) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    close_fds();
    return fail(got == 0 ? "the data plane closed the handoff socket without sending a segment"
                         : "malformed handoff message (" + std::to_string(got) + " bytes)");
  }
  if (received.message.magic != kHandoffMagic || received.message.version != kHandoffVersion) {
    close_fds();
    return fail("handoff protocol mismatch (version " + std::to_string(received.message.version) + ", expected " +
                std::to_string(kHandoffVersion) + "); use matching axon releases");
  }
  if (nfds != 1) {
    close_fds();
    return fail("handoff carried " + std::to_string(nfds) + " fds instead of exactly one");
  }
  received.fd = fds[0];
  return received;
}

ShmResult<PeerCredentials> peer_credentials(int socket_fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return fail("SO_PEERCRED failed: " + errno_text());
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

ShmResult<HandoffListener> HandoffListener::listen(const std::string& path) {
  sockaddr_un address;
  if (!fill_address(path, address)) {
    return fail("socket path '" + path + "' is empty or longer than " + std::to_string(sizeof(address.sun_path) - 1) +
                " bytes; choose a shorter path");
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket(AF_UNIX) failed: " + errno_text());
  unlink(path.c_str());  // a stale socket from a crashed predecessor
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd, 64) != 0) {
    std::string why = errno_text();
    close(fd);
    return fail("cannot listen on " + path + ": " + why + "; check that the directory exists and is writable");
  }
  // Root only until the control plane hands the socket to the uid of the slot's worker.
  chmod(path.c_str(), 0600);
  HandoffListener listener;
  listener.fd_ = fd;
  listener.path_ = path;
  return listener;
}

HandoffListener::HandoffListener(HandoffListener&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
  other.path_.clear();
}

HandoffListener& HandoffListener::operator=(HandoffListener&& other) noexcept {
  if (this != &other) {
    // Close and unlink ours by hand: calling ~HandoffListener() here would also destroy
    // path_, and assigning to a destroyed string is a use-after-free and a double free.
    if (fd_ >= 0) {
      close(fd_);
      unlink(path_.c_str());
    }
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
    other.path_.clear();
  }
  return *this;
}

HandoffListener::~HandoffListener() {
  if (fd_ >= 0) {
    close(fd_);
    unlink(path_.c_str());
  }
  fd_ = -1;
}

ShmResult<int> HandoffListener::accept(int timeout_ms) {
  if (!wait_readable(fd_, timeout_ms)) {
    return fail("no worker connected to " + path_ + " within " + std::to_string(timeout_ms) + " ms");
  }
  int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return fail("accept on " + path_ + " failed: " + errno_text());
  return conn;
}

ShmResult<int> connect_handoff(const std::string& path, int timeout_ms) {
  sockaddr_un address;
  if (!fill_address(path, address)) return fail("socket path '" + path + "' is invalid");
  int waited = 0;
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket(AF_UNIX) failed: " + errno_text());
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
    int err = errno;
    close(fd);
    // The listener may still be starting: retry briefly on "not there yet".
    if ((err != ENOENT && err != ECONNREFUSED) || waited >= timeout_ms) {
      return fail("cannot connect to " + path + ": " + std::strerror(err) + "; is the data plane running?");
    }
    usleep(10'000);
    waited += 10;
  }
}

}  // namespace axon::shm

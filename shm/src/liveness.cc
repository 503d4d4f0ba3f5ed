// pidfd + epoll death watch. A pidfd becomes readable when its process exits, and unlike
// a pid it cannot be recycled under us.
#include "axon/shm/liveness.h"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace axon::shm {
namespace {
Error<ShmError> fail(std::string message) {
  return make_error(ShmError::watch_failed, std::move(message));
}
}  // namespace

ShmResult<DeathWatch> DeathWatch::create() {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return fail(std::string("epoll_create1 failed: ") + std::strerror(errno));
  DeathWatch watch;
  watch.epoll_fd_ = fd;
  return watch;
}

DeathWatch::DeathWatch(DeathWatch&& other) noexcept : epoll_fd_(other.epoll_fd_), entries_(std::move(other.entries_)) {
  other.epoll_fd_ = -1;
  other.entries_.clear();
}

DeathWatch& DeathWatch::operator=(DeathWatch&& other) noexcept {
  if (this != &other) {
    close_all();
    epoll_fd_ = other.epoll_fd_;
    entries_ = std::move(other.entries_);
    other.epoll_fd_ = -1;
    other.entries_.clear();
  }
  return *this;
}

DeathWatch::~DeathWatch() {
  close_all();
}

void DeathWatch::close_all() noexcept {
  for (const Entry& entry : entries_) close(entry.pidfd);
  entries_.clear();
  if (epoll_fd_ >= 0) close(epoll_fd_);
  epoll_fd_ = -1;
}

ShmResult<Ok> DeathWatch::watch(pid_t pid, std::uint64_t key) {
  int pidfd = int(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    return fail("pidfd_open(" + std::to_string(pid) + ") failed: " + std::strerror(errno) +
                (errno == ESRCH ? " (the process already exited)" : ""));
  }
  // The event names the pidfd, not the key: with the key alone, a predecessor's death
  // could not be told from the current occupant's.
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = pidfd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pidfd, &event) != 0) {
    std::string why = std::strerror(errno);
    close(pidfd);
    return fail("epoll_ctl on a pidfd failed: " + why);
  }
  forget(key);  // one process per key: the new one replaces the old
  entries_.push_back(Entry{key, pidfd});
  return Ok{};
}

void DeathWatch::remove_at(std::size_t i) noexcept {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, entries_[i].pidfd, nullptr);
  close(entries_[i].pidfd);
  entries_[i] = entries_.back();
  entries_.pop_back();
}

void DeathWatch::forget(std::uint64_t key) noexcept {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].key == key) {
      remove_at(i);
      return;  // watch() keeps at most one entry per key
    }
  }
}

std::uint32_t DeathWatch::poll(std::vector<std::uint64_t>& dead, int timeout_ms) {
  if (entries_.empty()) return 0;
  epoll_event events[32];
  int n;
  do {
    n = epoll_wait(epoll_fd_, events, 32, timeout_ms);
  } while (n < 0 && errno == EINTR);
  std::uint32_t reported = 0;
  for (int i = 0; i < n; ++i) {
    const int pidfd = events[i].data.fd;
    for (std::size_t e = 0; e < entries_.size(); ++e) {
      if (entries_[e].pidfd != pidfd) continue;
      dead.push_back(entries_[e].key);
      remove_at(e);  // report each death once
      ++reported;
      break;
    }
  }
  return reported;
}

}  // namespace axon::shm

// Learning of a worker's death at once, through pidfds, instead of heartbeat timeouts.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "axon/shm/error.h"

namespace axon::shm {

// Watches any number of processes with one epoll set of pidfds; poll() is one system call
// however many workers there are, so the data plane can call it every housekeeping tick.
class DeathWatch {
 public:
  static ShmResult<DeathWatch> create();
  DeathWatch() = default;
  DeathWatch(DeathWatch&& other) noexcept;
  DeathWatch& operator=(DeathWatch&& other) noexcept;
  ~DeathWatch();

  // Starts watching pid under the caller's key. Fails if pid does not exist. A key names
  // one process at a time: watching a key that is already watched replaces the old process
  // (a slot with a new occupant is not concerned by its predecessor's death, which would
  // otherwise be reported under the key and reclaim the live successor).
  ShmResult<Ok> watch(pid_t pid, std::uint64_t key);
  // Stops watching key (e.g. a worker drained and exited normally).
  void forget(std::uint64_t key) noexcept;
  // Appends the keys of processes that exited since the last call. Waits at most
  // timeout_ms (0 = just look). Each death is reported once.
  std::uint32_t poll(std::vector<std::uint64_t>& dead, int timeout_ms);
  [[nodiscard]] std::size_t watched() const noexcept { return entries_.size(); }
  // Readable when a watched process exited: lets callers fold the watch into their own poll().
  [[nodiscard]] int fd() const noexcept { return epoll_fd_; }

 private:
  struct Entry {
    std::uint64_t key;
    int pidfd;
  };
  void close_all() noexcept;
  void remove_at(std::size_t i) noexcept;
  int epoll_fd_ = -1;
  std::vector<Entry> entries_;
};

}  // namespace axon::shm

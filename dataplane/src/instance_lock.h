// One data plane per run_dir: <run_dir>/dataplane.lock, flocked for the daemon's lifetime and
// holding its pid. A second instance with the same run_dir would otherwise replace the first
// one's control and slot sockets (and its stats file) while the first keeps the interface.
#pragma once

#include <string>

#include "axon/common/result.h"

namespace axon::dataplane {

enum class InstanceLockError { held, io_error };

class InstanceLock {
 public:
  // Takes the lock without waiting. `held`: another live instance has it; the message names
  // its pid and says what to do. The kernel releases the lock when this process exits, however
  // it exits, so a crashed instance never blocks the next start.
  static Result<InstanceLock, InstanceLockError> acquire(const std::string& run_dir);

  InstanceLock(InstanceLock&& other) noexcept;
  InstanceLock& operator=(InstanceLock&& other) noexcept;
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  ~InstanceLock();

 private:
  explicit InstanceLock(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace axon::dataplane

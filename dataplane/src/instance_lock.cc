// InstanceLock: flock on <run_dir>/dataplane.lock, with the holder's pid written into the file
// so a refused second instance can name it.
#include "instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace axon::dataplane {

Result<InstanceLock, InstanceLockError> InstanceLock::acquire(const std::string& run_dir) {
  const std::string path = run_dir + "/dataplane.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(InstanceLockError::io_error,
                      "cannot open " + path + ": " + std::strerror(errno) + "; set run_dir to a writable directory");
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char text[32] = {};
    const ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    if (err != EWOULDBLOCK) {
      return make_error(InstanceLockError::io_error, "cannot lock " + path + ": " + std::strerror(err));
    }
    const std::string pid = n > 0 ? std::string(text, std::size_t(n)) : std::string("unknown");
    return make_error(InstanceLockError::held, "another axon-dataplane (pid " + pid.substr(0, pid.find('\n')) +
                                                   ") is running with run_dir " + run_dir +
                                                   "; stop it first, or give this instance a run_dir of its own");
  }
  // Ours: record the pid (whole file rewritten; a reader that races us sees a short read).
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    const std::string why = std::strerror(errno);
    close(fd);
    return make_error(InstanceLockError::io_error, "cannot write " + path + ": " + why);
  }
  return InstanceLock(fd);
}

InstanceLock::InstanceLock(InstanceLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

InstanceLock& InstanceLock::operator=(InstanceLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) close(fd_);  // releases the lock; the file stays (removing it would race a starter)
}

}  // namespace axon::dataplane

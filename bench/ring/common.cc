// Helpers shared by every peer's child processes: results, statistics, the start line
// and the perf syscall counter.
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>

#include "bench.h"

namespace axon::bench {

void fail(RoleResult& r, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(r.error, sizeof r.error, fmt, args);
  va_end(args);
  r.status = 1;
}

LatencyStats summarize(std::vector<std::uint64_t>& ticks, double tsc_per_ns) {
  LatencyStats s;
  if (ticks.empty()) return s;
  std::sort(ticks.begin(), ticks.end());
  auto at = [&](double q) {
    std::size_t i = std::size_t(q * double(ticks.size() - 1) + 0.5);
    return double(ticks[std::min(i, ticks.size() - 1)]) / tsc_per_ns;
  };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  s.p999 = at(0.999);
  s.min = double(ticks.front()) / tsc_per_ns;
  s.max = double(ticks.back()) / tsc_per_ns;
  long double sum = 0;
  for (auto t : ticks) sum += t;
  s.mean = double(sum / ticks.size()) / tsc_per_ns;
  s.samples = ticks.size();
  return s;
}

namespace {

std::int64_t read_count(int fd) noexcept {
  std::uint64_t value = 0;
  if (::read(fd, &value, sizeof value) != sizeof value) return -1;
  return std::int64_t(value);
}

}  // namespace

SyscallCounter::SyscallCounter(int tracepoint_id) noexcept {
  if (tracepoint_id < 0) return;
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.config = std::uint64_t(tracepoint_id);
  attr.disabled = 1;
  attr.exclude_hv = 1;
  fd_ = int(syscall(SYS_perf_event_open, &attr, 0 /*this process*/, -1 /*any cpu*/, -1, PERF_FLAG_FD_CLOEXEC));
  if (fd_ < 0) return;
  // The disable ioctl is itself counted: measure that overhead, then check the counter
  // really sees system calls (a positive control), or declare it unusable.
  start();
  std::int64_t idle = stop();
  overhead_ = idle;
  start();
  for (int i = 0; i < 8; ++i) (void)syscall(SYS_getppid);
  std::int64_t eight = stop();
  if (idle < 0 || eight != 8) {
    close(fd_);
    fd_ = -1;
  }
}

SyscallCounter::~SyscallCounter() {
  if (fd_ >= 0) close(fd_);
}

void SyscallCounter::start() noexcept {
  if (fd_ < 0) return;
  ioctl(fd_, PERF_EVENT_IOC_RESET, 0);
  ioctl(fd_, PERF_EVENT_IOC_ENABLE, 0);
}

std::int64_t SyscallCounter::stop() noexcept {
  if (fd_ < 0) return -1;
  ioctl(fd_, PERF_EVENT_IOC_DISABLE, 0);
  std::int64_t count = read_count(fd_);
  if (count < 0) return -1;
  return count - overhead_;
}

bool start_line(Control& ctl, int role, RoleResult& r, const Params& p) {
  r.pid = int(getpid());
  ctl.ready.fetch_add(1, std::memory_order_acq_rel);
  const std::uint64_t limit = std::uint64_t(30e9 * p.tsc_per_ns);
  const std::uint64_t t0 = rdtsc();
  if (role == 0) {
    while (ctl.ready.load(std::memory_order_acquire) < 2) {
      cpu_relax();
      if (rdtsc() - t0 > limit) {
        fail(r, "the peer process never reached the start line");
        return false;
      }
    }
    ctl.go.store(1, std::memory_order_release);
  } else {
    while (ctl.go.load(std::memory_order_acquire) == 0) {
      cpu_relax();
      if (rdtsc() - t0 > limit) {
        fail(r, "the peer process never started the run");
        return false;
      }
    }
  }
  return true;
}

}  // namespace axon::bench

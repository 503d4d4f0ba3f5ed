// Shared-futex eventcount. The futex is not FUTEX_PRIVATE because the two sides are
// different processes mapping the same memfd.
#include "axon/shm/eventcount.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <ctime>

namespace axon::shm {
namespace {

std::uint32_t* futex_word(EventCount& ec) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return reinterpret_cast<std::uint32_t*>(&ec.epoch);
}

void bump(std::atomic<std::uint64_t>& counter) noexcept {
  counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void eventcount_notify(EventCount& ec) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (ec.waiters.load(std::memory_order_relaxed) == 0) {
    return;
  }
  ec.epoch.fetch_add(1, std::memory_order_seq_cst);
  bump(ec.wakes_issued);
  syscall(SYS_futex, futex_word(ec), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

std::uint32_t eventcount_prepare_wait(EventCount& ec) noexcept {
  ec.waiters.fetch_add(1, std::memory_order_seq_cst);
  std::uint32_t key = ec.epoch.load(std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return key;
}

void eventcount_cancel_wait(EventCount& ec) noexcept {
  ec.waiters.fetch_sub(1, std::memory_order_seq_cst);
}

void eventcount_wait(EventCount& ec, std::uint32_t key, std::uint64_t timeout_ns) noexcept {
  bump(ec.sleeps);
  timespec timeout{};
  timespec* timeout_ptr = nullptr;
  if (timeout_ns != 0) {
    timeout.tv_sec = time_t(timeout_ns / 1'000'000'000ull);
    timeout.tv_nsec = long(timeout_ns % 1'000'000'000ull);
    timeout_ptr = &timeout;
  }
  if (ec.epoch.load(std::memory_order_acquire) == key) {
    // EAGAIN (epoch moved), EINTR and ETIMEDOUT all mean "go and look again".
    syscall(SYS_futex, futex_word(ec), FUTEX_WAIT, key, timeout_ptr, nullptr, 0);
  }
  ec.waiters.fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace axon::shm

// Sleep/wake on a shared EventCount (see layout.h) without losing a wakeup.
//
// Consumer:                              Producer:
//   key = prepare_wait()  (waiters++,      publish head (release)
//         full fence)                      notify(): full fence, read waiters,
//   recheck the ring; if work:                       wake only if non-zero
//     cancel_wait()
//   else wait(key)
//
// The two full fences make the pair a store-buffer litmus test in which at least one
// side sees the other's store: either the consumer's recheck sees the new head, or the
// producer sees the waiter and wakes it (the io_uring need-wakeup lesson, liburing #541).
#pragma once

#include <cstdint>

#include "axon/shm/layout.h"

namespace axon::shm {

// Producer side. notify() makes no system call while nobody sleeps.
void eventcount_notify(EventCount& ec) noexcept;

// Consumer side.
[[nodiscard]] std::uint32_t eventcount_prepare_wait(EventCount& ec) noexcept;
void eventcount_cancel_wait(EventCount& ec) noexcept;
// Sleeps until notified, the epoch moved since prepare_wait, or timeout_ns passed
// (0 = no timeout). Always deregisters the waiter.
void eventcount_wait(EventCount& ec, std::uint32_t key, std::uint64_t timeout_ns) noexcept;

}  // namespace axon::shm

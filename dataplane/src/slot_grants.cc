// SlotGrants: the data plane's side of the control plane's slot grants (see slot_grants.h).
#include "slot_grants.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace axon::dataplane {
namespace {

constexpr std::size_t kMaxHeld = 64;  // across all slots: a flood of connections is refused

}  // namespace

SlotGrants::SlotGrants(std::size_t slots) : grants_(slots) {}

SlotGrants::~SlotGrants() {
  for (auto& g : grants_) {
    if (g.pidfd >= 0) ::close(g.pidfd);
  }
  for (auto& h : held_) ::close(h.fd);
}

Result<Ok, GrantError> SlotGrants::grant(std::size_t slot, pid_t pid) {
  int pidfd = -1;
  if (pid > 0) {
    pidfd = int(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
      return make_error(GrantError::no_such_process, "cannot grant slot to pid " + std::to_string(pid) + ": " +
                                                         std::strerror(errno) + " (it is not running)");
    }
  }
  Grant& g = grants_.at(slot);
  if (g.pidfd >= 0) ::close(g.pidfd);
  g.managed = true;
  g.pid = pid;
  g.pidfd = pidfd;
  return Ok{};
}

bool SlotGrants::alive(const Grant& grant) const {
  if (grant.pidfd < 0) return false;
  pollfd pfd{grant.pidfd, POLLIN, 0};
  return ::poll(&pfd, 1, 0) == 0;  // readable = exited
}

SlotGrants::Verdict SlotGrants::check(std::size_t slot, pid_t pid) const {
  const Grant& g = grants_.at(slot);
  if (!g.managed) return Verdict::allow;
  const bool granted_alive = alive(g);
  if (g.pid == pid && granted_alive) return Verdict::allow;
  // Granted to a live process that is not this one: refused. No live grantee (none yet, or
  // it died): the control plane's next grant decides.
  return granted_alive ? Verdict::refuse : Verdict::wait;
}

Result<Ok, GrantError> SlotGrants::hold(std::size_t slot, int fd, pid_t pid, std::uint64_t deadline_ns) {
  if (held_.size() >= kMaxHeld) {
    return make_error(GrantError::too_many_waiting,
                      std::to_string(kMaxHeld) + " connections already wait for their grants");
  }
  held_.push_back(Held{slot, fd, pid, deadline_ns});
  return Ok{};
}

void SlotGrants::settle(std::uint64_t now_ns, const std::function<void(std::size_t, int, pid_t)>& hand_over,
                        const std::function<void(std::size_t, int, pid_t, const char*)>& refuse) {
  std::vector<Held> still;
  std::vector<Held> settled;
  for (const Held& h : held_) {
    Verdict v = check(h.slot, h.pid);
    if (v == Verdict::wait && now_ns < h.deadline_ns) {
      still.push_back(h);
    } else {
      settled.push_back(h);
    }
  }
  held_ = std::move(still);
  // Callbacks last: a hand-over may change slot state, never held_ mid-iteration.
  for (const Held& h : settled) {
    switch (check(h.slot, h.pid)) {
      case Verdict::allow: hand_over(h.slot, h.fd, h.pid); break;
      case Verdict::refuse: refuse(h.slot, h.fd, h.pid, "the slot is granted to another process"); break;
      case Verdict::wait: refuse(h.slot, h.fd, h.pid, "no grant for this process arrived in time"); break;
    }
  }
}

}  // namespace axon::dataplane

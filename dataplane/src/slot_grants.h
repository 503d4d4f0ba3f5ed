// Which process may claim each worker slot that a control plane manages (issue 11 item 16).
//
// Without this, any process of a slot's uid could connect to its handoff socket between a
// worker's death and the control plane's respawn, take the slot and its traffic, and make
// the respawn fail. The control plane now names the pid it started for the slot (control
// op `grant`); a slot granted once is managed for the data plane's life, and a connection
// to it is handed the segment only when SO_PEERCRED names the granted pid and that very
// process (held by a pidfd since the grant, so a recycled pid does not pass) is alive.
// A connection that arrives before its grant (the worker was quicker than the control
// plane's message) is held for at most kGrantWaitMs; everything else is refused.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::dataplane {

enum class GrantError { no_such_process, too_many_waiting };

class SlotGrants {
 public:
  explicit SlotGrants(std::size_t slots);
  ~SlotGrants();
  SlotGrants(const SlotGrants&) = delete;
  SlotGrants& operator=(const SlotGrants&) = delete;

  // pid 0 = managed, no claimant yet. Fails (and changes nothing) when pid is not alive.
  Result<Ok, GrantError> grant(std::size_t slot, pid_t pid);

  enum class Verdict { allow, wait, refuse };
  Verdict check(std::size_t slot, pid_t pid) const;

  // Holds connection `fd` from `pid` until its grant arrives or `deadline_ns` passes.
  Result<Ok, GrantError> hold(std::size_t slot, int fd, pid_t pid, std::uint64_t deadline_ns);
  // Settles held connections: `hand_over(slot, fd, pid)` for each now allowed (it owns the
  // fd), `refuse(slot, fd, pid, why)` for each refused or expired (it owns the fd too).
  void settle(std::uint64_t now_ns, const std::function<void(std::size_t, int, pid_t)>& hand_over,
              const std::function<void(std::size_t, int, pid_t, const char*)>& refuse);
  std::size_t waiting() const noexcept { return held_.size(); }

 private:
  struct Grant {
    bool managed = false;
    pid_t pid = 0;
    int pidfd = -1;  // the granted process itself, so a recycled pid cannot pass
  };
  struct Held {
    std::size_t slot;
    int fd;
    pid_t pid;
    std::uint64_t deadline_ns;
  };
  bool alive(const Grant& grant) const;

  std::vector<Grant> grants_;
  std::vector<Held> held_;
};

}  // namespace axon::dataplane

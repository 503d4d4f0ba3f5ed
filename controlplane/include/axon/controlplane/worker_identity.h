// Who a worker runs as. Two rules live here so that the config loader, the REST API and
// the spawner apply the same ones:
//   - worker_uids: a range of uids, one per data plane slot, so that no two workers share a
//     uid (a worker can then neither open another worker's slot socket nor, through
//     /proc/<pid>/fd, its segment; see docs/architecture.md, "Isolation");
//   - allowed_worker_users / allowed_worker_commands: an admin token must not be enough to
//     run an arbitrary program, or any program as root.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::controlplane {

struct AgentSpec;

// [first, last], both inclusive; {0, 0} = no range (workers run as worker_user).
struct UidRange {
  uid_t first = 0;
  uid_t last = 0;
  bool empty() const noexcept { return first == 0 && last == 0; }
  std::size_t size() const noexcept { return empty() ? 0 : std::size_t(last - first) + 1; }
};

enum class IdentityError { invalid_range, range_too_small, no_such_user };

// "61000-61999" -> {61000, 61999}; uid 0 and ranges above 2^31 are refused.
Result<UidRange, IdentityError> parse_uid_range(const std::string& text);

// The uid of the slot at `slot_index` in the data plane's slot list, or nullopt when the
// range is too small (the message of slot_uid_error says what to do).
std::optional<uid_t> uid_for_slot(const UidRange& range, std::size_t slot_index) noexcept;

struct WorkerPolicy {
  std::string worker_user;                    // the configured default ("" = root)
  UidRange worker_uids;                       // the configured range (empty = none)
  std::vector<std::string> allowed_users;     // names; "root" only if listed explicitly
  std::vector<std::string> allowed_commands;  // "/dir/" = any path below it, else an exact path
};

// Empty string = allowed. Otherwise a message saying what is refused and which key of the
// control plane's config allows it. Checks the user the agent runs as (its own `user`, else
// the uid range, else worker_user) and command[0].
std::string check_worker_identity(const AgentSpec& agent, const WorkerPolicy& policy);

// Who one worker runs as: a user name, or a bare uid from the range (gid = uid).
struct WorkerIdentity {
  std::string user;
  std::optional<uid_t> uid;
};

// The identity of the worker on the data plane slot at `slot_index` (its position in the
// data plane's slot list, which is fixed for the data plane's life).
Result<WorkerIdentity, IdentityError> identity_for(const AgentSpec& agent, const WorkerPolicy& policy,
                                                   std::size_t slot_index);

// The uid and gid that own the slot socket for that identity (0:0 for root).
struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<Owner, IdentityError> owner_of(const WorkerIdentity& identity);

// True when `user` names uid 0 ("root", or another name for uid 0).
bool is_root_user(const std::string& user);

}  // namespace axon::controlplane

// spawn(): starts one worker process through libcap's launcher (cap_launch), in its cgroup,
// with no capabilities.
//
// The daemon is multi-threaded, so everything (argv/envp arrays, user lookups, fds) is
// prepared before the launch. The child gets a new session, stdin=/dev/null, stdout+stderr
// appended to the log, no other fds, its cgroup (it writes itself into cgroup.procs of every
// hierarchy before exec), its uid, gid and groups, and then libcap's CAP_MODE_NOPRIV:
// effective, permitted, inheritable, ambient and bounding sets empty, securebits set and
// locked, NO_NEW_PRIVS. There is deliberately no PR_SET_PDEATHSIG: workers outlive a
// control-plane crash and a restarted control plane adopts them (Supervisor::adopt).
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::controlplane {

class CgroupDriver;

// supervise_failed: the process started (or exists) but the supervisor could not watch its pidfd.
enum class SpawnError { invalid_argument, no_such_user, cgroup_failed, clone_failed, exec_failed, supervise_failed };

const char* to_string(SpawnError error) noexcept;

struct SpawnSpec {
  std::vector<std::string> argv;           // argv[0] is an absolute path
  std::map<std::string, std::string> env;  // the child's whole environment (plus a default PATH)
  std::string user;                        // "" = keep the daemon's uid; else setgroups/setgid/setuid
  // Instead of `user`: run as this uid with gid = uid and no supplementary groups (a uid
  // from [controlplane] worker_uids, which needs no /etc/passwd entry). Never 0.
  std::optional<uid_t> uid;
  std::string cgroup;  // group relative to CgroupDriver's <name> ("" = none)
  std::string working_dir = "/";
  std::string log_path;  // stdout+stderr appended here ("" = /dev/null)
  // Keep the daemon's uid and capabilities and skip NO_NEW_PRIVS. Only for axon-dataplane
  // when the control plane runs it ([dataplane] command); never for workers.
  bool keep_privileges = false;
};

struct Spawned {
  pid_t pid = 0;
  int pidfd = -1;  // owned by the caller (close it); CLOEXEC
};

// Returns once the child has exec'd (or failed to: exec_failed, "cannot exec /path: No such
// file or directory", the child reaped). cgroups may be null when spec.cgroup is "".
Result<Spawned, SpawnError> spawn(const SpawnSpec& spec, CgroupDriver* cgroups);

}  // namespace axon::controlplane

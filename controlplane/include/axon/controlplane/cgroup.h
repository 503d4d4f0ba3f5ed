// CgroupDriver: creates, limits, populates and removes the control plane's cgroups.
//
// Layout (the same on v2 and v1), as the control plane uses it:
//   <name>                           the subtree we own (default "axon")
//   <name>/<class>                   one group per priority class; class-level cpu_weight
//   <name>/<class>/<tenant>          groups a tenant's agents of that class
//   <name>/<class>/<tenant>/<agent>  the leaf; the agent's profile limits; workers live here
// The driver itself takes any relative path; it only insists that processes go to leaves.
//
// cgroup v2 is the primary path (production hosts). Its rules shape the design:
//  - no internal processes: a group that has children never holds processes, so workers
//    are placed in leaves only; when the delegated root is the daemon's own cgroup, the
//    daemon first moves itself into <root>/supervisor (a leaf beside <name>) so that
//    controllers can be enabled below the root;
//  - controllers are enabled top-down through cgroup.subtree_control, only those a limit
//    needs, so a host that delegates fewer controllers still works for the limits it has;
//  - delegation: under systemd, run with Delegate=yes; the root is then our own cgroup.
// cgroup v1 (hybrid/legacy hosts) mirrors the layout in each managed hierarchy
// (cpu, cpuset, memory, pids); a process is placed in every hierarchy.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::controlplane {

enum class CgroupMode { v2, v1 };

enum class CgroupError { not_mounted, missing_controller, permission_denied, io_error, invalid_value, busy };

const char* to_string(CgroupError error) noexcept;
const char* to_string(CgroupMode mode) noexcept;  // "v2" | "v1"

struct CgroupLimits {                                    // unset = leave the kernel default
  std::optional<std::uint32_t> cpu_weight;               // 1..10000 (v1: cpu.shares = weight*1024/100)
  std::optional<std::uint32_t> cpu_max_percent;          // of one CPU, e.g. 150 (v2 cpu.max "150000 100000")
  std::optional<std::string> cpuset_cpus, cpuset_mems;   // v1: copied from the parent when unset
  std::optional<std::uint64_t> memory_max, memory_high;  // bytes (v1: limit_in_bytes / soft_limit_in_bytes)
  std::optional<std::uint64_t> pids_max;
};

struct CgroupOptions {
  std::string name = "axon";  // the subtree we manage, under the root
  std::string mode = "auto";  // auto | v2 | v1
  // Default: detect. /sys/fs/cgroup when cgroup2 is mounted there and we are in its root
  // cgroup; otherwise our own cgroup (the systemd Delegate=yes case).
  std::string v2_root;
  std::string v1_root = "/sys/fs/cgroup";
  // Controllers the daemon manages. open() fails with missing_controller when one is not
  // available (v1: hierarchy not mounted under v1_root; v2: not in the root's
  // cgroup.controllers). ensure() refuses a limit whose controller is not managed.
  std::vector<std::string> controllers = {"cpu", "cpuset", "memory", "pids"};
};

class CgroupDriver {
 public:
  // Detects the mode with statfs (CGROUP2_SUPER_MAGIC vs TMPFS/CGROUP_SUPER_MAGIC) and
  // checks the managed controllers exist. Creates nothing yet.
  static Result<CgroupDriver, CgroupError> open(const CgroupOptions& options);

  CgroupMode mode() const { return mode_; }
  // e.g. "v1 (hybrid host: cpu,cpuset,memory,pids under /sys/fs/cgroup)"
  std::string describe() const;
  const std::string& name() const { return options_.name; }

  // Creates <name>/<relative> (and parents), enables the controllers the limits need down
  // the path (v2 subtree_control), applies the limits. Idempotent; re-applies limits.
  Result<Ok, CgroupError> ensure(const std::string& relative, const CgroupLimits& limits);
  // Moves pid into <name>/<relative>: every managed hierarchy (v1) / cgroup.procs (v2).
  Result<Ok, CgroupError> place(pid_t pid, const std::string& relative);
  // v2 only: an O_PATH|O_DIRECTORY fd of the group, for clone3 CLONE_INTO_CGROUP. The
  // caller closes it.
  Result<int, CgroupError> open_dir_fd(const std::string& relative);
  // cgroup.procs of the group in every hierarchy, opened for writing (CLOEXEC; the caller
  // closes them): a child writes "0" to each to move itself in before it execs.
  Result<std::vector<int>, CgroupError> open_procs_fds(const std::string& relative);
  // Processes in the group (union over the v1 hierarchies); empty if it does not exist.
  std::vector<pid_t> pids(const std::string& relative) const;
  // rmdir the group, then its empty parents up to (not including) <name>. busy while the
  // group holds processes or child groups. A group that does not exist is Ok.
  Result<Ok, CgroupError> remove_if_empty(const std::string& relative);
  // Removes every empty group below and including <name> (on daemon stop); busy if some
  // remain populated (those are left alone).
  Result<Ok, CgroupError> remove_all_empty();
  // Absolute path of <name>/<relative> (v1: in the first managed hierarchy), for display.
  std::string path_of(const std::string& relative) const;

 private:
  struct Hierarchy {
    std::string controller;  // the first managed controller found in it ("" for v2)
    std::vector<std::string> controllers;
    std::string root;  // absolute directory that holds <name>
  };
  CgroupDriver() = default;

  Result<Ok, CgroupError> open_v2(std::string v2_root);  // open() after the mode is chosen
  Result<Ok, CgroupError> open_v1();
  Result<Ok, CgroupError> ensure_v2(const std::string& relative, const CgroupLimits& limits);
  Result<Ok, CgroupError> ensure_v1(const std::string& relative, const CgroupLimits& limits);
  Result<Ok, CgroupError> prepare_v2_root();
  const Hierarchy* hierarchy_for(const std::string& controller) const;

  CgroupOptions options_;
  CgroupMode mode_ = CgroupMode::v2;
  std::vector<Hierarchy> hierarchies_;  // v2: exactly one
  std::vector<std::string> available_;  // v2: the root's cgroup.controllers
  bool v2_root_prepared_ = false;
  bool v2_root_is_own_cgroup_ = false;
};

}  // namespace axon::controlplane

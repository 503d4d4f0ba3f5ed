// CgroupDriver, cgroup v1 (hybrid and legacy hosts): one hierarchy per controller (or
// co-mounted set), the group created in each; cpuset groups inherit cpus/mems.
#include <linux/magic.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

#include "axon/controlplane/cgroup.h"

#include "cgroup_fs.h"

namespace axon::controlplane {

using namespace cgroupfs;  // NOLINT(google-build-using-namespace): the driver's own plumbing

// open(), v1: one hierarchy per managed controller, co-mounted ones shared.
Result<Ok, CgroupError> CgroupDriver::open_v1() {
  mode_ = CgroupMode::v1;
  for (const auto& c : options_.controllers) {
    std::string dir = options_.v1_root + "/" + c;
    if (fs_type(dir) != CGROUP_SUPER_MAGIC)
      return make_error(CgroupError::missing_controller, "controller '" + c +
                                                             "' is not available: no cgroup v1 hierarchy at " + dir +
                                                             "; mount it (mount -t cgroup -o " + c + " cgroup " + dir +
                                                             ") or remove " + c + " from the managed controllers");
    char real[PATH_MAX];
    if (!::realpath(dir.c_str(), real))
      return make_error(CgroupError::io_error, "cannot resolve " + dir + ": " + errno_text(errno));
    // Co-mounted controllers (cpu,cpuacct) share one hierarchy: write there once.
    auto same =
        std::find_if(hierarchies_.begin(), hierarchies_.end(), [&](const Hierarchy& h) { return h.root == real; });
    if (same != hierarchies_.end()) {
      same->controllers.push_back(c);
    } else {
      hierarchies_.push_back(Hierarchy{c, {c}, real});
    }
  }
  if (hierarchies_.empty())
    return make_error(CgroupError::missing_controller,
                      "no controllers to manage: list at least one of cpu, cpuset, memory, pids");
  return Ok{};
}

Result<Ok, CgroupError> CgroupDriver::ensure_v1(const std::string& relative, const CgroupLimits& limits) {
  auto parts = *split_relative(relative);
  for (const auto& h : hierarchies_) {
    bool is_cpuset = std::find(h.controllers.begin(), h.controllers.end(), "cpuset") != h.controllers.end();
    std::string dir = h.root + "/" + options_.name;
    std::string parent = h.root;
    for (std::size_t i = 0;; ++i) {
      if (auto err = make_dir(dir)) return *err;
      // A v1 cpuset group starts with empty cpus/mems and no task can join it: inherit the
      // parent's unless the profile sets them (below).
      if (is_cpuset) {
        for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
          auto mine = trim(read_small(dir + "/" + file).value_or(""));
          if (!mine.empty()) continue;
          auto theirs = trim(read_small(parent + "/" + file).value_or(""));
          if (int err = write_value(dir + "/" + file, theirs)) return write_error(err, dir, file, theirs, "cpuset");
        }
      }
      if (i == parts.size()) break;
      parent = dir;
      dir += "/" + parts[i];
    }
  }

  auto set = [&](const char* controller, const char* file,
                 const std::string& value) -> std::optional<Error<CgroupError>> {
    const Hierarchy* h = hierarchy_for(controller);
    std::string dir = h->root + "/" + options_.name + (relative.empty() ? "" : "/" + relative);
    if (int err = write_value(dir + "/" + file, value)) return write_error(err, dir, file, value, controller);
    return std::nullopt;
  };
  std::optional<Error<CgroupError>> err;
  if (!err && limits.cpu_weight)
    err = set("cpu", "cpu.shares", std::to_string(std::max<std::uint64_t>(2, *limits.cpu_weight * 1024ull / 100)));
  if (!err && limits.cpu_max_percent) {
    err = set("cpu", "cpu.cfs_period_us", "100000");
    if (!err) err = set("cpu", "cpu.cfs_quota_us", std::to_string(std::uint64_t{*limits.cpu_max_percent} * 1000));
  }
  if (!err && limits.cpuset_cpus) err = set("cpuset", "cpuset.cpus", *limits.cpuset_cpus);
  if (!err && limits.cpuset_mems) err = set("cpuset", "cpuset.mems", *limits.cpuset_mems);
  if (!err && limits.memory_max) err = set("memory", "memory.limit_in_bytes", std::to_string(*limits.memory_max));
  // v1 has no memory.high; the soft limit is the closest (reclaim pressure under contention).
  if (!err && limits.memory_high)
    err = set("memory", "memory.soft_limit_in_bytes", std::to_string(*limits.memory_high));
  if (!err && limits.pids_max) err = set("pids", "pids.max", std::to_string(*limits.pids_max));
  if (err) return *err;
  return Ok{};
}

}  // namespace axon::controlplane

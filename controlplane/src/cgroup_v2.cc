// CgroupDriver, cgroup v2: one unified hierarchy; controllers enabled top-down through
// cgroup.subtree_control, processes only in leaves (see cgroup.h).
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

// open(), v2: finds the root (our delegated cgroup unless given) and checks that it
// offers every managed controller.
Result<Ok, CgroupError> CgroupDriver::open_v2(std::string v2_root) {
  mode_ = CgroupMode::v2;
  if (v2_root.empty()) {
    if (fs_type(options_.v1_root) != CGROUP2_SUPER_MAGIC)
      return make_error(CgroupError::not_mounted, "cgroup2 is not mounted at " + options_.v1_root +
                                                      "; set the v2 root to a cgroup2 mount or use mode v1");
    auto loc = locate_v2(options_.v1_root);
    if (!loc)
      return make_error(CgroupError::not_mounted,
                        "cannot find the cgroup2 mount of " + options_.v1_root + " in /proc/self/mounts");
    // In the mount's root cgroup (no systemd, or a container) we manage from the top;
    // otherwise we are a service and own only our delegated cgroup. A daemon that already
    // moved itself into <root>/supervisor (an earlier open in this process) means <root>.
    v2_root = loc->own;
    const std::string leaf = "/supervisor";
    if (v2_root.size() > leaf.size() + loc->mount.size() &&
        v2_root.compare(v2_root.size() - leaf.size(), leaf.size(), leaf) == 0)
      v2_root.resize(v2_root.size() - leaf.size());
  }
  if (fs_type(v2_root) != CGROUP2_SUPER_MAGIC)
    return make_error(CgroupError::not_mounted,
                      "no cgroup2 filesystem at " + v2_root + "; check the v2 root option or use mode v1");
  auto loc = locate_v2(v2_root);
  v2_root_is_own_cgroup_ = loc && loc->mount != v2_root && (loc->own == v2_root || loc->own == v2_root + "/supervisor");
  v2_root_prepared_ = !(v2_root_is_own_cgroup_ && loc->own == v2_root);
  auto have = read_small(v2_root + "/cgroup.controllers");
  if (!have)
    return make_error(CgroupError::io_error, "cannot read " + v2_root + "/cgroup.controllers: " + errno_text(errno) +
                                                 "; check the v2 root option");
  available_ = split_words(*have);
  for (const auto& c : options_.controllers) {
    if (std::find(available_.begin(), available_.end(), c) == available_.end())
      return make_error(
          CgroupError::missing_controller,
          "controller '" + c + "' is not available (not in " + v2_root +
              "/cgroup.controllers: " + (have->empty() || *have == "\n" ? std::string("none") : trim(*have)) +
              "); enable it in the parent's cgroup.subtree_control or remove " + c + " from the managed controllers");
  }
  hierarchies_.push_back(Hierarchy{"", options_.controllers, v2_root});
  return Ok{};
}

// When the root is the daemon's own (delegated) cgroup, v2 forbids enabling controllers
// below it while the daemon lives there: move the daemon into a leaf beside <name>.
Result<Ok, CgroupError> CgroupDriver::prepare_v2_root() {
  if (v2_root_prepared_) return Ok{};
  const std::string& root = hierarchies_.front().root;
  std::string leaf = root + "/supervisor";
  if (auto err = make_dir(leaf)) return *err;
  if (int err = write_value(leaf + "/cgroup.procs", std::to_string(::getpid())))
    return write_error(err, leaf, "cgroup.procs", "", "");
  v2_root_prepared_ = true;
  return Ok{};
}

Result<Ok, CgroupError> CgroupDriver::ensure_v2(const std::string& relative, const CgroupLimits& limits) {
  auto parts = *split_relative(relative);
  const std::string& root = hierarchies_.front().root;
  std::vector<std::string> dirs{root, root + "/" + options_.name};
  for (const auto& p : parts) dirs.push_back(dirs.back() + "/" + p);

  // Before anything is created below the root, so that the root never ends up with both
  // processes and child groups (which blocks enabling controllers later).
  if (auto r = prepare_v2_root(); !r) return r;
  for (std::size_t i = 1; i < dirs.size(); ++i) {
    if (auto err = make_dir(dirs[i])) return *err;
  }

  auto needed = controllers_needed(limits);
  if (!needed.empty()) {
    // Enable top-down on every ancestor of the target (the target's own subtree_control
    // stays empty so that it can hold processes).
    for (std::size_t i = 0; i + 1 < dirs.size(); ++i) {
      auto enabled = split_words(read_small(dirs[i] + "/cgroup.subtree_control").value_or(""));
      std::string add;
      for (const auto& c : needed) {
        if (std::find(enabled.begin(), enabled.end(), c) == enabled.end()) add += (add.empty() ? "+" : " +") + c;
      }
      if (add.empty()) continue;
      if (int err = write_value(dirs[i] + "/cgroup.subtree_control", add))
        return write_error(err, dirs[i], "cgroup.subtree_control", add, "");
    }
  }

  const std::string& dir = dirs.back();
  auto set = [&](const char* controller, const char* file,
                 const std::string& value) -> std::optional<Error<CgroupError>> {
    if (int err = write_value(dir + "/" + file, value)) return write_error(err, dir, file, value, controller);
    return std::nullopt;
  };
  std::optional<Error<CgroupError>> err;
  if (!err && limits.cpu_weight) err = set("cpu", "cpu.weight", std::to_string(*limits.cpu_weight));
  if (!err && limits.cpu_max_percent)
    err = set("cpu", "cpu.max", std::to_string(std::uint64_t{*limits.cpu_max_percent} * 1000) + " 100000");
  if (!err && limits.cpuset_cpus) err = set("cpuset", "cpuset.cpus", *limits.cpuset_cpus);
  if (!err && limits.cpuset_mems) err = set("cpuset", "cpuset.mems", *limits.cpuset_mems);
  if (!err && limits.memory_high) err = set("memory", "memory.high", std::to_string(*limits.memory_high));
  if (!err && limits.memory_max) err = set("memory", "memory.max", std::to_string(*limits.memory_max));
  if (!err && limits.pids_max) err = set("pids", "pids.max", std::to_string(*limits.pids_max));
  if (err) return *err;
  return Ok{};
}

}  // namespace axon::controlplane

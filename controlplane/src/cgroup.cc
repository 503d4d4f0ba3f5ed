// CgroupDriver: cgroup v2 (primary) and v1 (hybrid/legacy hosts) behind one interface.
// See cgroup.h for the layout and the v2 rules it follows.
#include "axon/controlplane/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "cgroup_fs.h"

namespace axon::controlplane {

using namespace cgroupfs;  // NOLINT(google-build-using-namespace): the driver's own plumbing

const char* to_string(CgroupError error) noexcept {
  switch (error) {
    case CgroupError::not_mounted: return "not_mounted";
    case CgroupError::missing_controller: return "missing_controller";
    case CgroupError::permission_denied: return "permission_denied";
    case CgroupError::io_error: return "io_error";
    case CgroupError::invalid_value: return "invalid_value";
    case CgroupError::busy: return "busy";
  }
  return "unknown";
}

const char* to_string(CgroupMode mode) noexcept {
  return mode == CgroupMode::v2 ? "v2" : "v1";
}

Result<CgroupDriver, CgroupError> CgroupDriver::open(const CgroupOptions& options) {
  if (options.name.empty() || !split_relative(options.name) || options.name.find('/') != std::string::npos)
    return make_error(CgroupError::invalid_value,
                      "invalid cgroup name '" + options.name + "': use one name of letters, digits, '_', '-', '.'");
  if (options.mode != "auto" && options.mode != "v2" && options.mode != "v1")
    return make_error(CgroupError::invalid_value, "invalid cgroup mode '" + options.mode + "': use auto, v2 or v1");
  for (const auto& c : options.controllers) {
    if (c != "cpu" && c != "cpuset" && c != "memory" && c != "pids")
      return make_error(CgroupError::invalid_value,
                        "unsupported controller '" + c + "': the driver manages cpu, cpuset, memory and pids");
  }

  CgroupDriver driver;
  driver.options_ = options;

  // Pick the mode. On a hybrid host (tmpfs at v1_root) "auto" takes v1 unless the cgroup2
  // mount beside it has every managed controller.
  std::string v2_root = options.v2_root;
  bool want_v2 = options.mode == "v2";
  if (options.mode == "auto") {
    long root_type = fs_type(options.v1_root);
    if (!options.v2_root.empty()) {
      want_v2 = true;
    } else if (root_type == CGROUP2_SUPER_MAGIC) {
      want_v2 = true;
    } else if (root_type == TMPFS_MAGIC) {
      std::string unified = options.v1_root + "/unified";
      if (fs_type(unified) == CGROUP2_SUPER_MAGIC) {
        auto have = read_small(unified + "/cgroup.controllers");
        auto words = split_words(have.value_or(""));
        bool all = std::all_of(options.controllers.begin(), options.controllers.end(), [&](const std::string& c) {
          return std::find(words.begin(), words.end(), c) != words.end();
        });
        if (all && !options.controllers.empty()) {
          want_v2 = true;
          v2_root = unified;
        }
      }
    } else {
      return make_error(CgroupError::not_mounted,
                        "no cgroup filesystem at " + options.v1_root +
                            " (neither cgroup2 nor a tmpfs of v1 hierarchies); mount cgroups or set the cgroup root");
    }
  }

  auto opened = want_v2 ? driver.open_v2(v2_root) : driver.open_v1();
  if (!opened) return opened.error();
  return driver;
}

std::string CgroupDriver::describe() const {
  if (mode_ == CgroupMode::v2) {
    std::string root = hierarchies_.front().root;
    return "v2 (" + root + (v2_root_is_own_cgroup_ ? ", delegated" : "") +
           "; controllers: " + (available_.empty() ? std::string("none") : join(available_, ",")) + ")";
  }
  bool hybrid = fs_type(options_.v1_root + "/unified") == CGROUP2_SUPER_MAGIC;
  return std::string("v1 (") + (hybrid ? "hybrid" : "legacy") + " host: " + join(options_.controllers, ",") +
         " under " + options_.v1_root + ")";
}

const CgroupDriver::Hierarchy* CgroupDriver::hierarchy_for(const std::string& controller) const {
  for (const auto& h : hierarchies_) {
    if (std::find(h.controllers.begin(), h.controllers.end(), controller) != h.controllers.end()) return &h;
  }
  return nullptr;
}

std::string CgroupDriver::path_of(const std::string& relative) const {
  std::string path = hierarchies_.empty() ? std::string() : hierarchies_.front().root;
  path += "/" + options_.name;
  if (!relative.empty()) path += "/" + relative;
  return path;
}

Result<Ok, CgroupError> CgroupDriver::ensure(const std::string& relative, const CgroupLimits& limits) {
  if (!split_relative(relative)) return bad_relative(relative);
  if (auto err = validate_limits(limits)) return *err;
  for (const auto& c : controllers_needed(limits)) {
    if (std::find(options_.controllers.begin(), options_.controllers.end(), c) == options_.controllers.end()) {
      std::string where =
          mode_ == CgroupMode::v2 ? hierarchies_.front().root + "/cgroup.controllers" : options_.v1_root + "/" + c;
      bool present = mode_ == CgroupMode::v2 ? std::find(available_.begin(), available_.end(), c) != available_.end()
                                             : fs_type(options_.v1_root + "/" + c) == CGROUP_SUPER_MAGIC;
      std::string why = present ? "is not among the managed controllers (" + join(options_.controllers, ",") + ")"
                        : mode_ == CgroupMode::v2
                            ? "is not available (not in " + where + ": " +
                                  (available_.empty() ? std::string("none") : join(available_, ",")) + ")"
                            : "is not available (no v1 hierarchy at " + where + ")";
      return make_error(CgroupError::missing_controller,
                        "controller '" + c + "' " + why + "; enable it (v2: in the parent's cgroup.subtree_control) " +
                            "or remove the " + c + " limits from the profile");
    }
  }
  return mode_ == CgroupMode::v2 ? ensure_v2(relative, limits) : ensure_v1(relative, limits);
}

Result<Ok, CgroupError> CgroupDriver::place(pid_t pid, const std::string& relative) {
  if (!split_relative(relative)) return bad_relative(relative);
  if (pid <= 0) return make_error(CgroupError::invalid_value, "invalid pid " + std::to_string(pid));
  for (const auto& h : hierarchies_) {
    std::string dir = h.root + "/" + options_.name + (relative.empty() ? "" : "/" + relative);
    if (int err = write_value(dir + "/cgroup.procs", std::to_string(pid)))
      return write_error(err, dir, "cgroup.procs", std::to_string(pid), h.controller);
  }
  return Ok{};
}

Result<std::vector<int>, CgroupError> CgroupDriver::open_procs_fds(const std::string& relative) {
  if (!split_relative(relative)) return bad_relative(relative);
  std::vector<int> fds;
  for (const auto& h : hierarchies_) {
    std::string dir = h.root + "/" + options_.name + (relative.empty() ? "" : "/" + relative);
    int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      for (int open_fd : fds) ::close(open_fd);
      return make_error(err == ENOENT ? CgroupError::io_error : code_for(err),
                        "cannot open " + dir + "/cgroup.procs: " + errno_text(err) + "; " + hint_for(err, ""));
    }
    fds.push_back(fd);
  }
  return fds;
}

Result<int, CgroupError> CgroupDriver::open_dir_fd(const std::string& relative) {
  if (mode_ != CgroupMode::v2)
    return make_error(CgroupError::invalid_value,
                      "a cgroup directory fd (CLONE_INTO_CGROUP) needs cgroup v2; this "
                      "host runs " +
                          describe());
  if (!split_relative(relative)) return bad_relative(relative);
  std::string dir = path_of(relative);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return make_error(err == ENOENT ? CgroupError::io_error : code_for(err),
                      "cannot open cgroup " + dir + ": " + errno_text(err) + "; " + hint_for(err, ""));
  }
  return fd;
}

std::vector<pid_t> CgroupDriver::pids(const std::string& relative) const {
  std::set<pid_t> all;
  if (!split_relative(relative)) return {};
  for (const auto& h : hierarchies_) {
    std::string file = h.root + "/" + options_.name + (relative.empty() ? "" : "/" + relative) + "/cgroup.procs";
    std::istringstream in(read_small(file).value_or(""));
    pid_t pid;
    while (in >> pid) all.insert(pid);
  }
  return {all.begin(), all.end()};
}

Result<Ok, CgroupError> CgroupDriver::remove_if_empty(const std::string& relative) {
  auto parts = split_relative(relative);
  if (!parts) return bad_relative(relative);
  // Checked first so that a populated v1 group is not removed from some hierarchies only.
  if (auto inside = pids(relative); !inside.empty()) {
    std::string list;
    for (std::size_t i = 0; i < inside.size() && i < 8; ++i) {
      if (i > 0) list += ',';
      list += std::to_string(inside[i]);
    }
    return make_error(CgroupError::busy, "cannot remove cgroup " + path_of(relative) + ": it still holds processes (" +
                                             list + (inside.size() > 8 ? ",..." : "") + "); stop them first");
  }
  std::optional<Error<CgroupError>> first_error;
  for (const auto& h : hierarchies_) {
    std::string base = h.root + "/" + options_.name;
    std::string dir = base + (relative.empty() ? "" : "/" + relative);
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      int err = errno;
      if (!first_error) {
        std::string why = (err == EBUSY || err == ENOTEMPTY)
                              ? "it still holds processes or child groups; stop them first"
                              : std::string(hint_for(err, ""));
        first_error = make_error(code_for(err), "cannot remove cgroup " + dir + ": " + errno_text(err) + "; " + why);
      }
      continue;
    }
    // Then the empty parents, up to (not including) <name>; the first non-empty one stops.
    for (std::size_t n = parts->size(); n > 1; --n) {
      dir = dir.substr(0, dir.rfind('/'));
      if (::rmdir(dir.c_str()) != 0) break;
    }
  }
  if (first_error) return *first_error;
  return Ok{};
}

Result<Ok, CgroupError> CgroupDriver::remove_all_empty() {
  std::vector<std::string> busy;
  for (const auto& h : hierarchies_) remove_tree_bottom_up(h.root + "/" + options_.name, busy);
  if (!busy.empty()) return make_error(CgroupError::busy, "cgroups still in use (left in place): " + join(busy, ", "));
  return Ok{};
}

}  // namespace axon::controlplane

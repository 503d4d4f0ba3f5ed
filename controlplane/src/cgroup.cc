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

namespace axon::controlplane {

namespace {

constexpr const char* kDelegateHint = "run as root or delegate the subtree (systemd: Delegate=yes)";

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Reads a small kernel file; nullopt (errno kept) when it cannot be opened or read.
std::optional<std::string> read_small(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      errno = err;
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// One write() of the whole value: cgroup files take a value per write and report errors
// from write(), not open(). Returns 0 or errno.
int write_value(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n;
  do n = ::write(fd, value.data(), value.size());
  while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  ::close(fd);
  return err;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string word;
  while (in >> word) out.push_back(word);
  return out;
}

CgroupError code_for(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS: return CgroupError::permission_denied;
    case EINVAL:
    case ERANGE:
    case EOVERFLOW: return CgroupError::invalid_value;
    case EBUSY:
    case ENOTEMPTY: return CgroupError::busy;
    case ENOENT: return CgroupError::not_mounted;
    default: return CgroupError::io_error;
  }
}

// "what to do" for a failed write of `file` with errno `err`.
std::string hint_for(int err, const std::string& file) {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS: return kDelegateHint;
    case EINVAL:
    case ERANGE:
    case EOVERFLOW:
      if (file == "cgroup.procs") return "the process may be gone or not movable";
      return "check the value in the cgroup profile (and that it fits within the parent's limit)";
    case EBUSY:
      if (file == "cgroup.subtree_control" || file == "cgroup.procs")
        return "cgroup v2 allows processes only in leaf groups and controllers only above them; move the "
               "processes out of this group";
      return "the group is in use";
    case ENOENT: return "create the group first (ensure) or check the cgroup root option";
    case ESRCH: return "the process has exited";
    default: return "check the kernel log";
  }
}

Error<CgroupError> write_error(int err, const std::string& dir, const std::string& file, const std::string& value,
                               const std::string& controller) {
  std::string msg = "cannot write " + file;
  if (!value.empty() && value.size() < 64) msg += " = \"" + value + "\"";
  msg += " in " + dir;
  if (!controller.empty()) msg += " (controller '" + controller + "')";
  msg += ": " + errno_text(err) + "; " + hint_for(err, file);
  CgroupError code = err == ESRCH ? CgroupError::invalid_value : code_for(err);
  if (err == ENOENT) code = CgroupError::io_error;
  return make_error(code, msg);
}

bool valid_component(const std::string& c) {
  if (c.empty() || c == "." || c == ".." || c.size() > 128) return false;
  if (c.rfind("cgroup.", 0) == 0) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.' || ch == '@' ||
           ch == ':';
  });
}

// "a/b/c" -> {"a","b","c"}; "" -> {}; nullopt if any component is invalid.
std::optional<std::vector<std::string>> split_relative(const std::string& relative) {
  std::vector<std::string> parts;
  if (relative.empty()) return parts;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = relative.find('/', start);
    std::string part = relative.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!valid_component(part)) return std::nullopt;
    parts.push_back(part);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

Error<CgroupError> bad_relative(const std::string& relative) {
  return make_error(CgroupError::invalid_value, "invalid cgroup path '" + relative +
                                                    "': use '/'-separated names of letters, digits, '_', '-', "
                                                    "'.', '@', ':' (no '..', no leading '/', no 'cgroup.' prefix)");
}

long fs_type(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return -1;
  return static_cast<long>(st.f_type);
}

// Which limits need which controller.
std::vector<std::string> controllers_needed(const CgroupLimits& limits) {
  std::vector<std::string> out;
  if (limits.cpu_weight || limits.cpu_max_percent) out.push_back("cpu");
  if (limits.cpuset_cpus || limits.cpuset_mems) out.push_back("cpuset");
  if (limits.memory_max || limits.memory_high) out.push_back("memory");
  if (limits.pids_max) out.push_back("pids");
  return out;
}

std::optional<Error<CgroupError>> validate_limits(const CgroupLimits& limits) {
  if (limits.cpu_weight && (*limits.cpu_weight < 1 || *limits.cpu_weight > 10000))
    return make_error(CgroupError::invalid_value,
                      "cpu_weight " + std::to_string(*limits.cpu_weight) + " is out of range; use 1..10000");
  if (limits.cpu_max_percent && *limits.cpu_max_percent == 0)
    return make_error(CgroupError::invalid_value, "cpu_max_percent must be at least 1 (percent of one CPU)");
  return std::nullopt;
}

// mkdir that tolerates an existing directory.
std::optional<Error<CgroupError>> make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) return std::nullopt;
  int err = errno;
  std::string hint = err == ENOENT ? "the cgroup root does not exist; check the cgroup root option" : kDelegateHint;
  return make_error(code_for(err), "cannot create cgroup " + dir + ": " + errno_text(err) + "; " + hint);
}

// The cgroup2 mount that holds `path` and our own cgroup there ("0::/x" in
// /proc/self/cgroup), as an absolute path.
struct V2Location {
  std::string mount;
  std::string own;
};

std::optional<V2Location> locate_v2(const std::string& path) {
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, line;
  std::string best;
  while (std::getline(mounts, line)) {
    std::istringstream in(line);
    if (!(in >> dev >> dir >> type)) continue;
    if (type != "cgroup2") continue;
    if (path == dir || (path.rfind(dir, 0) == 0 && (dir == "/" || path[dir.size()] == '/'))) {
      if (dir.size() > best.size()) best = dir;
    }
  }
  if (best.empty()) return std::nullopt;
  V2Location loc{best, best};
  std::ifstream self("/proc/self/cgroup");
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) == 0) {
      std::string rel = line.substr(3);
      if (rel != "/") loc.own = best + rel;
    }
  }
  return loc;
}

void remove_tree_bottom_up(const std::string& dir, std::vector<std::string>& busy) {
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> children;
    while (dirent* e = ::readdir(d)) {
      if (e->d_type != DT_DIR) continue;
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      children.push_back(dir + "/" + n);
    }
    ::closedir(d);
    for (const auto& child : children) remove_tree_bottom_up(child, busy);
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) busy.push_back(dir);
}

}  // namespace

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

  if (want_v2) {
    driver.mode_ = CgroupMode::v2;
    if (v2_root.empty()) {
      if (fs_type(options.v1_root) != CGROUP2_SUPER_MAGIC)
        return make_error(CgroupError::not_mounted, "cgroup2 is not mounted at " + options.v1_root +
                                                        "; set the v2 root to a cgroup2 mount or use mode v1");
      auto loc = locate_v2(options.v1_root);
      if (!loc)
        return make_error(CgroupError::not_mounted,
                          "cannot find the cgroup2 mount of " + options.v1_root + " in /proc/self/mounts");
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
    driver.v2_root_is_own_cgroup_ =
        loc && loc->mount != v2_root && (loc->own == v2_root || loc->own == v2_root + "/supervisor");
    driver.v2_root_prepared_ = !(driver.v2_root_is_own_cgroup_ && loc->own == v2_root);
    auto have = read_small(v2_root + "/cgroup.controllers");
    if (!have)
      return make_error(CgroupError::io_error, "cannot read " + v2_root + "/cgroup.controllers: " + errno_text(errno) +
                                                   "; check the v2 root option");
    driver.available_ = split_words(*have);
    for (const auto& c : options.controllers) {
      if (std::find(driver.available_.begin(), driver.available_.end(), c) == driver.available_.end())
        return make_error(
            CgroupError::missing_controller,
            "controller '" + c + "' is not available (not in " + v2_root +
                "/cgroup.controllers: " + (have->empty() || *have == "\n" ? std::string("none") : trim(*have)) +
                "); enable it in the parent's cgroup.subtree_control or remove " + c + " from the managed controllers");
    }
    driver.hierarchies_.push_back(Hierarchy{"", options.controllers, v2_root});
    return driver;
  }

  driver.mode_ = CgroupMode::v1;
  for (const auto& c : options.controllers) {
    std::string dir = options.v1_root + "/" + c;
    if (fs_type(dir) != CGROUP_SUPER_MAGIC)
      return make_error(CgroupError::missing_controller, "controller '" + c +
                                                             "' is not available: no cgroup v1 hierarchy at " + dir +
                                                             "; mount it (mount -t cgroup -o " + c + " cgroup " + dir +
                                                             ") or remove " + c + " from the managed controllers");
    char real[PATH_MAX];
    if (!::realpath(dir.c_str(), real))
      return make_error(CgroupError::io_error, "cannot resolve " + dir + ": " + errno_text(errno));
    // Co-mounted controllers (cpu,cpuacct) share one hierarchy: write there once.
    auto same = std::find_if(driver.hierarchies_.begin(), driver.hierarchies_.end(),
                             [&](const Hierarchy& h) { return h.root == real; });
    if (same != driver.hierarchies_.end()) {
      same->controllers.push_back(c);
    } else {
      driver.hierarchies_.push_back(Hierarchy{c, {c}, real});
    }
  }
  if (driver.hierarchies_.empty())
    return make_error(CgroupError::missing_controller,
                      "no controllers to manage: list at least one of cpu, cpuset, memory, pids");
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

// Shared plumbing of the cgroup driver: see cgroup_fs.h.
#include "cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace axon::controlplane::cgroupfs {

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

}  // namespace axon::controlplane::cgroupfs

// Shared plumbing of the cgroup driver (cgroup.cc, cgroup_v1.cc, cgroup_v2.cc): small
// kernel-file I/O, path validation, and errors that tell the operator what to do.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"
#include "axon/controlplane/cgroup.h"

namespace axon::controlplane::cgroupfs {

inline constexpr const char* kDelegateHint = "run as root or delegate the subtree (systemd: Delegate=yes)";
std::string errno_text(int err);
std::string join(const std::vector<std::string>& items, const char* sep);
std::string trim(std::string s);
// Reads a small kernel file; nullopt (errno kept) when it cannot be opened or read.
std::optional<std::string> read_small(const std::string& path);
// One write() of the whole value: cgroup files take a value per write and report errors
// from write(), not open(). Returns 0 or errno.
int write_value(const std::string& path, const std::string& value);
std::vector<std::string> split_words(const std::string& s);
CgroupError code_for(int err);
// "what to do" for a failed write of `file` with errno `err`.
std::string hint_for(int err, const std::string& file);
Error<CgroupError> write_error(int err, const std::string& dir, const std::string& file, const std::string& value,
                               const std::string& controller);
bool valid_component(const std::string& c);
// "a/b/c" -> {"a","b","c"}; "" -> {}; nullopt if any component is invalid.
std::optional<std::vector<std::string>> split_relative(const std::string& relative);
Error<CgroupError> bad_relative(const std::string& relative);
long fs_type(const std::string& path);
// Which limits need which controller.
std::vector<std::string> controllers_needed(const CgroupLimits& limits);
std::optional<Error<CgroupError>> validate_limits(const CgroupLimits& limits);
// mkdir that tolerates an existing directory.
std::optional<Error<CgroupError>> make_dir(const std::string& dir);
// The cgroup2 mount that holds `path` and our own cgroup there ("0::/x" in
// /proc/self/cgroup), as an absolute path.
struct V2Location {
  std::string mount;
  std::string own;
};
std::optional<V2Location> locate_v2(const std::string& path);
void remove_tree_bottom_up(const std::string& dir, std::vector<std::string>& busy);

}  // namespace axon::controlplane::cgroupfs

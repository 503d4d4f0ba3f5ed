// axon::tuning: host tuning profiles (TOML data files) and the five verbs that act on them:
// check, apply, verify, diff and rollback.
//
// A profile names knobs (sysctls, hugepages, THP, CPU governor and idle states, IRQ
// affinity, busy polling and NAPI settings, NIC queues and coalescing, cgroup cpusets) and
// the kernel command line it needs. The verbs expand it against the host (online CPUs,
// NUMA nodes, the data plane's cores and interface) into one list of items, each a knob
// with its live value, the wanted value and what happens to it.
//
// Safety contract:
//   - apply writes every original value it is about to change into a snapshot file in the
//     state directory (write, fsync, rename, fsync the directory) before it changes any;
//   - rollback restores the snapshot exactly and removes it, also after a kill -9 at any
//     point of apply (it can be run again until it reports nothing left);
//   - a knob that cannot be set (missing, read-only, refused by the kernel or the driver)
//     is an item with status `skipped` and its reason, never a failure of the verb;
//   - every path is read and written below Options::root, so tests run against a sandbox
//     directory that mirrors /proc/sys and /sys.
//
// Setup code, not hot path: Result with an error enum, messages that say what to do.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::tuning {

enum class TuningError {
  profile_not_found,  // no <name>.toml in any profile directory
  invalid_profile,    // TOML syntax, an unknown key, a bad value, an include cycle
  invalid_input,      // a bad option: cores, root, data plane config
  io_error,           // the state directory or the snapshot cannot be written or read
  snapshot_corrupt,   // the snapshot exists but does not parse
  locked,             // another apply or rollback holds the state directory's lock
  wrong_namespace,    // rollback in another network namespace than the apply
  not_netns,          // netns_only was asked outside a separate network namespace
};

template <typename T>
using TResult = Result<T, TuningError>;

struct Options {
  // Every /proc, /sys and /etc path is taken below this directory ("/" on a real host).
  std::string root = "/";
  // Holds snapshot.json and the lock. Not below `root`: the sandbox tests keep it apart.
  std::string state_dir = "/var/lib/axon/tuning";
  // Searched in order for <profile>.toml; a name with a '/' or ending in .toml is a path.
  std::vector<std::string> profile_dirs = {"/etc/axon/tuning", "/usr/share/axon/tuning/profiles"};
  // The data plane's config: its [dataplane] cores and interface place the knobs that
  // depend on them (IRQs, cpusets, NAPI, NIC queues, kernel command line). Optional.
  std::string dataplane_config;
  // Overrides of what the data plane's config says (or stand-ins without one).
  std::optional<std::vector<int>> cores;
  std::vector<std::string> interfaces;
  // Only knobs that belong to the current network namespace (net.* sysctls, the
  // interfaces' sysfs files, ethtool); refuses to run in the initial namespace. The
  // namespace tests use it so a mistake can never touch the host.
  bool netns_only = false;
};

enum class Verb { check, apply, verify, diff, rollback };

enum class Status {
  ok,        // already as the profile wants
  change,    // check: would be changed
  changed,   // apply: was changed
  skipped,   // cannot be set or read here; `reason` says why
  drift,     // verify/diff: the live value differs from the profile
  restored,  // rollback: the original value was written back
  failed,    // rollback: the original could not be written back (kept in the snapshot)
};

struct Item {
  std::string section;  // sysctl, memory, cpu, irq, net, nic, cgroup
  std::string knob;     // what an operator calls it: "net.core.busy_poll", "eth0 combined queues"
  std::string group;    // alike knobs (one per CPU, IRQ, node) share it; reports collapse them
  std::string where;    // the file (below root) or "ethtool-netlink:<if>"
  std::string live;     // value before the verb acted; "" when it could not be read
  std::string want;     // the profile's value: "50", ">=512", "never"
  std::string now;      // value after the verb acted (apply/rollback)
  Status status = Status::ok;
  std::string reason;  // why skipped/failed, or a note (e.g. fewer hugepages granted)
};

// A kernel command line parameter the profile needs: never applied at run time.
struct CmdlineParam {
  std::string want;     // "nohz_full=1-3"
  std::string present;  // what /proc/cmdline has for that key ("" when absent)
  bool ok = false;
  bool unknown = false;  // needs the data plane's cores, which are not known
};

// What the verbs learned about the host, printed atop every report.
struct HostFacts {
  std::vector<int> online_cpus;
  std::vector<int> numa_nodes;
  std::vector<int> dataplane_cpus;     // from the data plane's config or Options::cores
  std::vector<int> housekeeping_cpus;  // online minus data plane
  std::vector<std::string> interfaces;
  std::string cores_from;   // "/etc/axon/dataplane.toml", "--cores", or "" (unknown)
  std::string cgroup_mode;  // "v2", "v1", "none"
};

struct Report {
  Verb verb = Verb::check;
  std::string profile;                // name ("" for rollback without a snapshot)
  std::vector<std::string> includes;  // the profiles it pulls in, outermost first
  std::string description;
  HostFacts host;
  std::vector<Item> items;
  std::vector<CmdlineParam> cmdline;
  std::string cmdline_fix;  // the exact parameters to add, "" when all are present
  std::string snapshot;     // the snapshot file the verb used or wrote ("" for none)
  std::vector<std::string> notes;

  [[nodiscard]] std::size_t count(Status status) const;
  // verify: true when no item drifted and every kernel parameter is present.
  [[nodiscard]] bool in_force() const;
};

// Called after each knob apply/rollback wrote (or tried to write); lets the CLI show
// progress and lets the crash tests stop a process at an exact point.
using Progress = std::function<void(const Item& item)>;

TResult<Report> check(const std::string& profile, const Options& options);
TResult<Report> apply(const std::string& profile, const Options& options, const Progress& progress = {});
TResult<Report> verify(const std::string& profile, const Options& options);
TResult<Report> diff(const std::string& profile, const Options& options);
// Restores the snapshot in the state directory; a report with no items when there is none.
TResult<Report> rollback(const Options& options, const Progress& progress = {});

struct ProfileInfo {
  std::string name;
  std::string path;
  std::string description;
  std::vector<std::string> includes;
};
// Every profile found in the profile directories (the first of a name wins).
TResult<std::vector<ProfileInfo>> list_profiles(const Options& options);

// The profile named by the last successful apply and not yet rolled back, if any.
TResult<std::optional<std::string>> applied_profile(const Options& options);

// A readable report, for axonctl and logs: host summary, one line per item (items of one
// group with the same outcome collapsed), the kernel command line, a summary line.
std::string render_text(const Report& report, bool verbose = false);
// The same report as JSON (the REST API's body).
std::string render_json(const Report& report);
// A report back from render_json's JSON (axonctl tune --remote prints what the API sent).
TResult<Report> report_from_json(const std::string& json);

// "2-3,6" -> {2, 3, 6}: the kernel's CPU list syntax; nullopt when it is not one.
std::optional<std::vector<int>> parse_cpu_list(const std::string& text);

const char* to_string(Verb verb) noexcept;
const char* to_string(Status status) noexcept;
const char* to_string(TuningError error) noexcept;

}  // namespace axon::tuning

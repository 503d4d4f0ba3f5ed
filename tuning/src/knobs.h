// Knobs: one settable value of the host, read and written as a string.
//
// A knob is either a file below the root prefix (sysctls, sysfs, /proc/irq, cgroup files)
// or one ethtool-netlink attribute of an interface. The verbs, the snapshot and rollback
// see only this type, so every section of a profile gets the same snapshot-first, skip-
// with-a-reason treatment.
#pragma once

#include <optional>
#include <string>

#include "axon/common/result.h"

#include "ethtool.h"

namespace axon::tuning {

enum class KnobKind { file, ethtool };

// How a file presents its value.
enum class FileFormat {
  plain,    // the trimmed text, runs of whitespace made one space ("4096 131072 6291456")
  bracket,  // "always [madvise] never": the bracketed word is the value, a word is written
  cpulist,  // "0-3,8": compared as sets
  cpumask,  // "00000000,0000000f": compared as sets
};

struct Knob {
  KnobKind kind = KnobKind::file;
  std::string section;  // profile section it came from: sysctl, memory, cpu, irq, net, nic, cgroup
  std::string label;    // operator's name: "net.core.busy_poll", "eth0 rx queues"
  std::string group;    // items of one group with one outcome print as one line
  // kind == file
  std::string path;  // absolute, as on a real host ("/proc/sys/net/core/busy_poll")
  FileFormat format = FileFormat::plain;
  // kind == ethtool
  std::string ifname;
  EthtoolParam param = EthtoolParam::combined_count;
  // Belongs to the current network namespace (net.* sysctl, interface files, ethtool).
  bool netns_scoped = false;

  // Identity in the snapshot: "file:<path>" or "ethtool:<if>:<param>".
  [[nodiscard]] std::string key() const;
  // "the file" or "ethtool-netlink:<if>", for reports.
  [[nodiscard]] std::string where() const;
};

// Why a knob could not be read or written; `missing` means there is nothing there at all
// (a rollback then has nothing to restore).
enum class KnobError { missing, refused };

struct KnobFailure {
  KnobError kind;
  std::string reason;  // operator-readable, names the file or the interface
};

// Reads the knob's value in its canonical form (see FileFormat); root is the prefix.
Result<std::string, KnobError> read_knob(const std::string& root, const Knob& knob, std::string& why);
// The value to keep in the snapshot so that writing it back restores the knob exactly:
// the file's text as it is (only its final newline dropped; tabs and all), except for
// bracket files, whose written form is the selected word.
Result<std::string, KnobError> read_original(const std::string& root, const Knob& knob, std::string& why);
// Writes `value`; never creates a file that is not there.
Result<Ok, KnobError> write_knob(const std::string& root, const Knob& knob, const std::string& value, std::string& why);

// Two values of one knob are the same setting (set semantics for cpu lists and masks).
bool same_value(const Knob& knob, const std::string& a, const std::string& b);

// Whole-file helpers for host facts (below root); nullopt when unreadable.
std::optional<std::string> read_text(const std::string& root, const std::string& path);
std::string join_root(const std::string& root, const std::string& path);

}  // namespace axon::tuning

// A root-prefix sandbox for the tuning tests: a temporary directory that mirrors the parts
// of /proc/sys, /proc/irq and /sys a profile touches (4 CPUs, 2 NUMA nodes, cpufreq, idle
// states, THP, a NIC with MSI vectors, cgroup v2 groups), so host-wide knobs can be
// applied and rolled back for real without touching the host.
#pragma once

#include <map>
#include <string>

namespace axon::tuning::test {

class Sandbox {
 public:
  Sandbox();
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  [[nodiscard]] const std::string& root() const { return root_; }
  [[nodiscard]] const std::string& state_dir() const { return state_; }
  [[nodiscard]] const std::string& profile_dir() const { return profiles_; }

  // Writes a file below the root (creating directories), content as given.
  void put(const std::string& path, const std::string& content) const;
  [[nodiscard]] std::string get(const std::string& path) const;
  // A profile file in the profile directory.
  void profile(const std::string& name, const std::string& toml) const;
  // Every regular file below the root with its content: the whole state of the "host".
  [[nodiscard]] std::map<std::string, std::string> tree() const;

 private:
  std::string base_;
  std::string root_;
  std::string state_;
  std::string profiles_;
};

}  // namespace axon::tuning::test

// CPU sets as the kernel writes them: lists ("0-3,8") in cpulist files and the command line,
// comma-grouped hex masks ("00000000,0000000f") in /proc/irq/*/smp_affinity and
// default_smp_affinity. One parse and one format for each, used by every section.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace axon::tuning {

// Sorted, unique CPU numbers.
using CpuSet = std::vector<int>;

// "0-3,8,10-11" (whitespace around it ignored, "" = empty); nullopt on anything else.
std::optional<CpuSet> parse_cpulist(const std::string& text);
// The shortest list form: {0,1,2,3,8} -> "0-3,8"; {} -> "".
std::string format_cpulist(const CpuSet& cpus);

// "3", "ff,ffffffff", "00000000,00000003" -> the CPUs whose bits are set.
std::optional<CpuSet> parse_cpumask(const std::string& text);
// The kernel's own form: 32-bit hex groups, most significant first, enough groups for
// `ncpus` CPUs (at least one).
std::string format_cpumask(const CpuSet& cpus, int ncpus);

CpuSet set_minus(const CpuSet& a, const CpuSet& b);
CpuSet set_and(const CpuSet& a, const CpuSet& b);

}  // namespace axon::tuning

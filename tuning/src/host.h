// What the verbs need to know about the host before they can place a profile on it:
// online CPUs, NUMA nodes, the data plane's cores and interfaces, the cgroup mode, the
// kernel command line, and each interface's interrupts. All read below the root prefix.
#pragma once

#include <string>
#include <vector>

#include "axon/tuning/tuning.h"

#include "cpus.h"

namespace axon::tuning {

// Fills HostFacts from the root prefix, the options and the data plane's config.
TResult<HostFacts> read_host(const Options& options);

// The interrupts of one interface: its PCI device's MSI vectors, else the /proc/interrupts
// lines that name the interface or its device (virtio2-input.0 for a virtio NIC).
std::vector<int> interface_irqs(const std::string& root, const std::string& ifname);
// Every IRQ under /proc/irq.
std::vector<int> all_irqs(const std::string& root);

// The cgroup directory that holds cpuset files for group paths ("" when there is none):
// /sys/fs/cgroup on v2, /sys/fs/cgroup/cpuset on v1. Not below root; join_root it.
std::string cpuset_mount(const std::string& root, std::string& mode);

// "net:[4026531840]" of the calling thread, "" when unreadable.
std::string current_netns();
// True when the caller is in a network namespace other than PID 1's.
bool in_separate_netns();
// The interfaces of the caller's network namespace (from netlink, not /sys).
std::vector<std::string> netns_interfaces();

}  // namespace axon::tuning

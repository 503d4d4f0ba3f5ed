// [dataplane] + [dpdk] configuration -> DpdkOptions. Free of DPDK types, so the daemon and
// tests use it whether or not the build has DPDK.
#pragma once

#include "axon/dataplane/config.h"
#include "axon/dataplane/port.h"

namespace axon::dataplane {

// One DPDK queue per [dataplane] queue, served by the lcore on the matching core.
DpdkOptions dpdk_options_from(const DataplaneConfig& config);

}  // namespace axon::dataplane

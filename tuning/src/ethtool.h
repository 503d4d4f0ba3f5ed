// NIC queue counts and interrupt coalescing through ethtool's generic netlink interface
// (ETHTOOL_MSG_CHANNELS_* and ETHTOOL_MSG_COALESCE_*), with libmnl. Each call opens its
// own socket in the caller's network namespace, so a test that enters a namespace it
// created talks to that namespace's interfaces only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "axon/common/result.h"

namespace axon::tuning {

enum class EthtoolParam {
  rx_count,
  tx_count,
  other_count,
  combined_count,
  rx_usecs,
  rx_frames,
  tx_usecs,
  tx_frames,
  adaptive_rx,
  adaptive_tx,
};

const char* to_string(EthtoolParam param) noexcept;
std::optional<EthtoolParam> ethtool_param_from_string(const std::string& name);

enum class EthtoolError {
  missing,  // no such interface here, or the driver does not report this attribute
  refused,  // the kernel or driver refused (EOPNOTSUPP, EINVAL: out of range, ...)
};

// The current value; `missing` when the device does not have it ("n/a" in ethtool -l/-c).
Result<std::uint32_t, EthtoolError> ethtool_read(const std::string& ifname, EthtoolParam param, std::string& why);
// The maximum for a queue count (rx/tx/other/combined); `missing` for the others.
Result<std::uint32_t, EthtoolError> ethtool_read_max(const std::string& ifname, EthtoolParam param, std::string& why);
Result<Ok, EthtoolError> ethtool_write(const std::string& ifname, EthtoolParam param, std::uint32_t value,
                                       std::string& why);

}  // namespace axon::tuning

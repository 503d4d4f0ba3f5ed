// Stand-in for the DPDK backend when the build found no libdpdk: the same entry points,
// failing with the fix.
#include "axon/dataplane/port.h"

namespace axon::dataplane {

std::vector<std::string> dpdk_eal_arguments(const DpdkOptions&) {
  return {};
}

Result<std::unique_ptr<DpdkRuntime>, PortError> open_dpdk(const DpdkOptions&) {
  return make_error(PortError::invalid_argument,
                    "this axon-dataplane was built without DPDK: install dpdk-dev (pkg-config libdpdk) and rebuild, "
                    "or use another backend");
}

}  // namespace axon::dataplane

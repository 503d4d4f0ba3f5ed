// The data plane's capabilities after setup (issue 12 item 5): once XDP is attached, the
// AF_XDP sockets, UMEM, hugepage segments and every socket exist, it keeps only what its
// run time needs, through libcap. docs/operations.md ("Capabilities at run time") lists
// them and why.
#pragma once

#include <sys/capability.h>

#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::dataplane {

enum class PrivilegeError { libcap_failed };

// What the running data plane still needs for `backend` ("xdp", "uring" or "dpdk").
std::vector<cap_value_t> runtime_capabilities(const std::string& backend);

// Keeps `keep` (those of them the process has) in the permitted and effective sets and
// drops everything else from every set, the bounding set included (when CAP_SETPCAP
// allows), for the calling thread and the threads it creates afterwards. Returns the kept
// set as text ("cap_kill,cap_net_admin=ep").
Result<std::string, PrivilegeError> drop_to(const std::vector<cap_value_t>& keep);

}  // namespace axon::dataplane

// Dropping the data plane's setup-time capabilities through libcap (see privileges.h).
#include "privileges.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

namespace axon::dataplane {
namespace {

using CapPtr = std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)>;

Error<PrivilegeError> fail(const std::string& what) {
  return make_error(PrivilegeError::libcap_failed,
                    what + ": " + std::strerror(errno) + "; the data plane keeps its setup capabilities");
}

}  // namespace

std::vector<cap_value_t> runtime_capabilities(const std::string& backend) {
  // CAP_KILL: an lcore SIGKILLs a worker that corrupts its rings, and workers run under
  // other uids. CAP_NET_ADMIN: detaching XDP at shutdown where it was attached through
  // netlink (libxdp's dispatcher, or kernels without XDP links).
  std::vector<cap_value_t> keep{CAP_KILL};
  if (backend == "xdp") keep.push_back(CAP_NET_ADMIN);
  // DPDK's PMDs and EAL threads (created during setup, before this drop, and not affected
  // by it) may reopen devices or remap memory at run time (hotplug, link changes).
  if (backend == "dpdk") {
    for (cap_value_t c : {CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, CAP_IPC_LOCK}) keep.push_back(c);
  }
  return keep;
}

Result<std::string, PrivilegeError> drop_to(const std::vector<cap_value_t>& keep) {
  CapPtr current(cap_get_proc(), cap_free);
  if (!current) return fail("cap_get_proc");
  auto kept = [&](cap_value_t c) { return std::find(keep.begin(), keep.end(), c) != keep.end(); };
  cap_flag_value_t setpcap = CAP_CLEAR;
  (void)cap_get_flag(current.get(), CAP_SETPCAP, CAP_EFFECTIVE, &setpcap);
  // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
  if (setpcap == CAP_SET) {
    for (cap_value_t c = 0; c < cap_value_t(cap_max_bits()); ++c) {
      if (!kept(c) && cap_get_bound(c) == 1 && cap_drop_bound(c) != 0) return fail("cap_drop_bound");
    }
  }
  if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() != 0) return fail("cap_reset_ambient");
  CapPtr next(cap_init(), cap_free);
  if (!next) return fail("cap_init");
  for (cap_value_t c : keep) {
    cap_flag_value_t permitted = CAP_CLEAR;
    if (cap_get_flag(current.get(), c, CAP_PERMITTED, &permitted) != 0 || permitted != CAP_SET) continue;
    if (cap_set_flag(next.get(), CAP_PERMITTED, 1, &c, CAP_SET) != 0 ||
        cap_set_flag(next.get(), CAP_EFFECTIVE, 1, &c, CAP_SET) != 0)
      return fail("cap_set_flag");
  }
  if (cap_set_proc(next.get()) != 0) return fail("cap_set_proc");
  char* text = cap_to_text(next.get(), nullptr);
  std::string out = text != nullptr ? text : "?";
  cap_free(text);
  return out;
}

}  // namespace axon::dataplane

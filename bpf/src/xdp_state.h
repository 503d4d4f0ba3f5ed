// XdpProgram's private state, shared by the loader (xdp_program.cc) and the table and
// counter calls (xdp_tables.cc). Not installed: libbpf and libxdp types stay behind XdpProgram.
#pragma once

#include <bpf/libbpf.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <string>

#include "axon/bpf/xdp_program.h"

#include "axon_xdp.skel.h"

namespace axon::bpf {

// How the program is attached, so detach() undoes exactly that.
enum class AttachPath { none, libxdp, link, netlink };

struct XdpProgram::State {
  axon_xdp* skel = nullptr;
  XdpConfig config;
  int ifindex = -1;
  AttachPath path = AttachPath::none;
  AttachMode mode = AttachMode::single;
  xdp_program* libxdp_prog = nullptr;  // only while attached through libxdp
  int link_fd = -1;                    // only while attached through a BPF link

  int prog_fd() const noexcept { return bpf_program__fd(skel->progs.axon_xdp_filter); }

  ~State() {
    if (link_fd >= 0) close(link_fd);
    if (libxdp_prog) xdp_program__close(libxdp_prog);
    if (skel) axon_xdp__destroy(skel);
  }
};

// strerror for a libbpf-style negative (or positive) errno.
std::string errno_text(int err);

}  // namespace axon::bpf

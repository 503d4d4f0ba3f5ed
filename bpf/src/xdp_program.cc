// XdpProgram: skeleton load with rodata config, native attach (libxdp dispatcher, else a single
// program through a BPF link), table updates and counter reads.
#include "axon/bpf/xdp_program.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "axon/common/log.h"
#include "axon/common/model.h"

#include "xdp_state.h"

namespace axon::bpf {
namespace {

constexpr const char* kLog = "xdp";

// libbpf and libxdp report through print callbacks; route them into axon's log. While the
// dispatcher is being probed they are silenced: its expected failure on kernels without
// freplace support prints a verifier log and a misleading "raise ulimit -l" hint.
std::atomic<bool> g_quiet{false};

// The kernel's answer to "does libxdp's dispatcher work here" does not change while we run.
enum class DispatcherSupport { unknown, yes, no };
std::atomic<DispatcherSupport> g_dispatcher{DispatcherSupport::unknown};

void forward_library_log(bool warning, const char* fmt, va_list args) {
  if (g_quiet.load(std::memory_order_relaxed)) return;
  char line[1024];
  int n = std::vsnprintf(line, sizeof line, fmt, args);
  if (n <= 0) return;
  std::size_t len = std::strlen(line);
  while (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
  if (warning) {
    AXON_LOG_WARN("libbpf", "%s", line);
  } else {
    AXON_LOG_DEBUG("libbpf", "%s", line);
  }
}

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  forward_library_log(level == LIBBPF_WARN, fmt, args);
  return 0;
}

int libxdp_print(enum libxdp_print_level level, const char* fmt, va_list args) {
  if (level == LIBXDP_DEBUG) return 0;
  forward_library_log(level == LIBXDP_WARN, fmt, args);
  return 0;
}

void install_library_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    libbpf_set_print(libbpf_print);
    libxdp_set_print(libxdp_print);
  });
}

class QuietLibraries {
 public:
  QuietLibraries() noexcept { g_quiet.store(true, std::memory_order_relaxed); }
  ~QuietLibraries() { g_quiet.store(false, std::memory_order_relaxed); }
  QuietLibraries(const QuietLibraries&) = delete;
  QuietLibraries& operator=(const QuietLibraries&) = delete;
};

}  // namespace

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

const char* to_string(XdpError code) noexcept {
  switch (code) {
    case XdpError::invalid_argument: return "invalid_argument";
    case XdpError::open_failed: return "open_failed";
    case XdpError::load_failed: return "load_failed";
    case XdpError::not_loaded: return "not_loaded";
    case XdpError::already_attached: return "already_attached";
    case XdpError::interface_not_found: return "interface_not_found";
    case XdpError::attach_failed: return "attach_failed";
    case XdpError::detach_failed: return "detach_failed";
    case XdpError::map_update_failed: return "map_update_failed";
    case XdpError::map_read_failed: return "map_read_failed";
    case XdpError::query_failed: return "query_failed";
    case XdpError::test_run_failed: return "test_run_failed";
  }
  return "unknown";
}

const char* to_string(AttachMode mode) noexcept {
  switch (mode) {
    case AttachMode::multiprog: return "multiprog";
    case AttachMode::single: return "single";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// IpPrefix

// The one strict parse (axon/common/model.h), turned into the map key's form.
XdpResult<IpPrefix> IpPrefix::parse(std::string_view text) {
  auto parsed = model::parse_ip_prefix(text);
  if (!parsed) return make_error(XdpError::invalid_argument, parsed.message());
  IpPrefix prefix;
  prefix.family = parsed->ip_version == 6 ? AF_INET6 : AF_INET;
  prefix.address = parsed->addr;
  prefix.length = parsed->length;
  return prefix;
}

std::string IpPrefix::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, address.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(length);
}

// ---------------------------------------------------------------------------------------------
// Load

XdpProgram::XdpProgram(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
XdpProgram::XdpProgram(XdpProgram&& other) noexcept = default;

XdpProgram& XdpProgram::operator=(XdpProgram&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
  }
  return *this;
}

XdpProgram::~XdpProgram() {
  release();
}

void XdpProgram::release() noexcept {
  if (!state_) return;
  if (state_->path != AttachPath::none) {
    auto result = detach();
    if (!result.ok()) AXON_LOG_ERROR(kLog, "%s", result.message().c_str());
  }
  state_.reset();
}

XdpResult<XdpProgram> XdpProgram::load(const XdpConfig& config) {
  install_library_logging();
  if (config.max_queues == 0 || config.max_queues > 4096)
    return make_error(XdpError::invalid_argument, "max_queues must be 1..4096 (the NIC's receive queue count)");
  bool any_port = false;
  for (std::uint16_t port : config.ports) any_port = any_port || port != 0;
  if (!any_port) return make_error(XdpError::invalid_argument, "configure at least one AXP UDP port (default 7400)");

  auto state = std::make_unique<State>();
  state->config = config;
  state->skel = axon_xdp__open();
  if (!state->skel)
    return make_error(XdpError::open_failed, "cannot open the embedded XDP object (" + errno_text(errno) +
                                                 "); the build is broken, rebuild axon");

  // Read-only data: written now, frozen by the load below.
  auto& cfg = state->skel->rodata->axon_cfg;
  for (std::size_t i = 0; i < kMaxPorts; ++i) cfg.ports[i] = axon_htons(config.ports[i]);
  cfg.flags = AXON_CFG_REQUESTS_ONLY;
  if (config.drop_all_fragments) cfg.flags |= AXON_CFG_DROP_ALL_FRAGMENTS;
  if (config.enforce_allowlist) cfg.flags |= AXON_CFG_ENFORCE_ALLOWLIST;
  if (config.enforce_rate) cfg.flags |= AXON_CFG_ENFORCE_RATE;
  if (config.deliver_to_kernel) cfg.flags |= AXON_CFG_DELIVER_TO_KERNEL;
  if (config.enforce_credits) cfg.flags |= AXON_CFG_ENFORCE_CREDITS;
  if (config.rx_stamp) cfg.flags |= AXON_CFG_RX_STAMP;

  if (int err = bpf_map__set_max_entries(state->skel->maps.axon_xsks, config.max_queues); err != 0)
    return make_error(XdpError::open_failed, "cannot size the AF_XDP socket map: " + errno_text(err));

  if (int err = axon_xdp__load(state->skel); err != 0) {
    std::string hint = (err == -EPERM || errno == EPERM)
                           ? "; loading XDP needs CAP_BPF and CAP_NET_ADMIN (run as root or grant them)"
                           : "; the verifier log above says which instruction it rejected";
    return make_error(XdpError::load_failed, "the kernel refused the XDP program: " + errno_text(err) + hint);
  }
  XdpProgram program(std::move(state));
  AXON_LOG_DEBUG(kLog, "loaded XDP program id %u", program.program_id());
  return XdpResult<XdpProgram>(std::move(program));
}

const XdpConfig& XdpProgram::config() const noexcept {
  return state_->config;
}
int XdpProgram::program_fd() const noexcept {
  return state_ ? state_->prog_fd() : -1;
}

std::uint32_t XdpProgram::program_id() const noexcept {
  if (!state_) return 0;
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(state_->prog_fd(), &info, &len) != 0) return 0;
  return info.id;
}

// ---------------------------------------------------------------------------------------------
// Attach and detach

XdpResult<int> interface_index(std::string_view interface_name) {
  std::string name(interface_name);
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0)
    return make_error(XdpError::interface_not_found,
                      "no interface named '" + name + "' in this network namespace; check `ip link` and the config");
  return static_cast<int>(index);
}

XdpResult<AttachedXdp> query_attached(int ifindex) {
  bpf_xdp_query_opts opts{};
  opts.sz = sizeof opts;
  if (int err = bpf_xdp_query(ifindex, 0, &opts); err != 0)
    return make_error(XdpError::query_failed, "cannot query XDP state of ifindex " + std::to_string(ifindex) + ": " +
                                                  errno_text(err) + "; check the interface still exists");
  AttachedXdp state;
  switch (opts.attach_mode) {
    case XDP_ATTACHED_DRV:
      state.program_id = opts.drv_prog_id;
      state.native = true;
      break;
    case XDP_ATTACHED_SKB: state.program_id = opts.skb_prog_id; break;
    case XDP_ATTACHED_HW: state.program_id = opts.hw_prog_id; break;
    case XDP_ATTACHED_MULTI: state.program_id = opts.drv_prog_id ? opts.drv_prog_id : opts.skb_prog_id; break;
    default: break;
  }
  state.native = state.native || (opts.attach_mode == XDP_ATTACHED_MULTI && opts.drv_prog_id != 0);
  return state;
}

XdpResult<AttachMode> XdpProgram::attach(std::string_view interface_name) {
  auto index = interface_index(interface_name);
  if (!index.ok()) return index.error();
  return attach(index.value());
}

XdpResult<AttachMode> XdpProgram::attach(int ifindex) {
  if (!state_) return make_error(XdpError::not_loaded, "attach() on a moved-from XdpProgram");
  if (state_->path != AttachPath::none)
    return make_error(XdpError::already_attached, "the program is already attached to ifindex " +
                                                      std::to_string(state_->ifindex) + "; detach() it first");
  char name[IF_NAMESIZE] = "?";
  if (!if_indextoname(static_cast<unsigned>(ifindex), name))
    return make_error(XdpError::interface_not_found, "no interface with index " + std::to_string(ifindex) +
                                                         " in this network namespace; check `ip link`");
  int prog_fd = state_->prog_fd();

  // 1. libxdp's dispatcher, so other XDP programs can share the interface.
  if (g_dispatcher.load() != DispatcherSupport::no) {
    xdp_program* prog;
    {
      QuietLibraries quiet;
      prog = xdp_program__from_bpf_obj(state_->skel->obj, nullptr);
    }
    if (libxdp_get_error(prog) == 0) {
      int err;
      {
        QuietLibraries quiet;
        err = xdp_program__attach(prog, ifindex, XDP_MODE_NATIVE, 0);
      }
      bool multiprog = false;
      AXON_LOG_DEBUG(kLog, "libxdp xdp_program__attach on %s returned %d", name, err);
      if (err == 0) {
        xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex);
        multiprog = libxdp_get_error(mp) == 0 && mp && !xdp_multiprog__is_legacy(mp);
        if (libxdp_get_error(mp) == 0 && mp) xdp_multiprog__close(mp);
        if (!multiprog) {
          // libxdp quietly fell back to a legacy attach of our program; undo it and use a link
          // instead, which the kernel removes by itself if this process dies.
          QuietLibraries quiet;
          (void)xdp_program__detach(prog, ifindex, XDP_MODE_NATIVE, 0);
        }
      }
      if (multiprog) {
        g_dispatcher.store(DispatcherSupport::yes);
        state_->libxdp_prog = prog;
        state_->path = AttachPath::libxdp;
        state_->mode = AttachMode::multiprog;
        state_->ifindex = ifindex;
        AXON_LOG_INFO(kLog, "attached to %s (native mode, behind libxdp's multi-program dispatcher)", name);
        return AttachMode::multiprog;
      }
      xdp_program__close(prog);
      if (err != -EBUSY && err != -EEXIST) g_dispatcher.store(DispatcherSupport::no);
    }
  }

  // 2. A single program, native mode, through a BPF link: XDP_FLAGS_DRV_MODE makes the kernel
  //    refuse rather than silently use generic mode, and the link dies with this process.
  bpf_link_create_opts link_opts{};
  link_opts.sz = sizeof link_opts;
  link_opts.flags = XDP_FLAGS_DRV_MODE;
  int link_fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &link_opts);
  if (link_fd >= 0) {
    state_->link_fd = link_fd;
    state_->path = AttachPath::link;
  } else if (int err = -link_fd; err == EINVAL || err == EOPNOTSUPP) {
    // 3. Kernels without XDP links (before 5.9): the netlink attach; detach() removes it.
    if (int nl_err = bpf_xdp_attach(ifindex, prog_fd, XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
        nl_err != 0)
      return make_error(XdpError::attach_failed, std::string("cannot attach XDP in native mode to ") + name + ": " +
                                                     errno_text(nl_err) +
                                                     "; the driver may lack native XDP (check `ethtool -i`), or "
                                                     "another program is attached (`ip link show " +
                                                     name + "`)");
    state_->path = AttachPath::netlink;
  } else {
    std::string why = errno_text(err);
    if (err == EBUSY || err == EEXIST) {
      auto other = query_attached(ifindex);
      why = "another XDP program (id " + std::to_string(other.ok() ? other->program_id : 0) +
            ") is attached; if it is a leftover, remove it with `ip link set dev " + name + " xdp off`";
    }
    return make_error(XdpError::attach_failed, std::string("cannot attach XDP in native mode to ") + name + ": " + why);
  }
  state_->mode = AttachMode::single;
  state_->ifindex = ifindex;
  AXON_LOG_INFO(kLog,
                "attached to %s as the only XDP program (native mode): libxdp's multi-program dispatcher is "
                "unavailable here (no freplace support in the kernel, or no bpffs at /sys/fs/bpf)",
                name);
  return AttachMode::single;
}

XdpResult<Ok> XdpProgram::detach() {
  if (!state_) return make_error(XdpError::not_loaded, "detach() on a moved-from XdpProgram");
  int err = 0;
  switch (state_->path) {
    case AttachPath::none: return Ok{};
    case AttachPath::libxdp:
      err = xdp_program__detach(state_->libxdp_prog, state_->ifindex, XDP_MODE_NATIVE, 0);
      if (err == 0) {
        xdp_program__close(state_->libxdp_prog);
        state_->libxdp_prog = nullptr;
      }
      break;
    case AttachPath::link:
      // Closing the last reference to the link detaches the program.
      err = close(state_->link_fd) == 0 ? 0 : -errno;
      state_->link_fd = -1;
      break;
    case AttachPath::netlink: {
      // REPLACE with our fd as the expected old program: never remove someone else's program.
      bpf_xdp_attach_opts opts{};
      opts.sz = sizeof opts;
      opts.old_prog_fd = state_->prog_fd();
      err = bpf_xdp_detach(state_->ifindex, XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE, &opts);
      break;
    }
  }
  if (err != 0)
    return make_error(XdpError::detach_failed, "cannot detach XDP from ifindex " + std::to_string(state_->ifindex) +
                                                   ": " + errno_text(err) +
                                                   "; remove it by hand with `ip link set dev <if> xdp off`");
  AXON_LOG_INFO(kLog, "detached from ifindex %d", state_->ifindex);
  state_->path = AttachPath::none;
  state_->ifindex = -1;
  return Ok{};
}

bool XdpProgram::attached() const noexcept {
  return state_ && state_->path != AttachPath::none;
}
int XdpProgram::attached_ifindex() const noexcept {
  return state_ ? state_->ifindex : -1;
}

}  // namespace axon::bpf

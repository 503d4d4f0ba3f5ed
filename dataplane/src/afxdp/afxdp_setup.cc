// AF_XDP port setup: UMEM on hugepages, socket creation with zero copy first and copy
// mode as the fallback, busy-poll options, and the initial fill of the RX side.
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "axon/common/clock.h"
#include "axon/common/log.h"

#include "afxdp/afxdp_port.h"

#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

namespace axon::dataplane {
namespace {

Error<PortError> fail(PortError code, std::string message) {
  return make_error(code, std::move(message));
}

// Busy polling lets the poll-mode core drive the NIC's NAPI itself instead of waiting for
// interrupts. Kernels or drivers that refuse an option just run without it.
void enable_busy_poll(int fd, const std::string& interface) {
  int one = 1;
  int usecs = 20;
  int budget = 64;
  bool ok = setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof one) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof usecs) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof budget) == 0;
  if (!ok) {
    AXON_LOG_INFO("afxdp", "%s: busy-poll socket options not accepted (%s); running interrupt-driven",
                  interface.c_str(), std::strerror(errno));
  }
}

}  // namespace

AfXdpPort::~AfXdpPort() {
  if (xsk_ != nullptr) xsk_socket__delete(xsk_);
  if (umem_ != nullptr) xsk_umem__delete(umem_);
}

Result<std::unique_ptr<Port>, PortError> open_af_xdp_port(const AfXdpOptions& options) {
  if (options.frame_size != 2048 && options.frame_size != 4096) {
    return fail(PortError::invalid_argument, "AF_XDP frame size must be 2048 or 4096");
  }
  if (options.frames < 256 || (options.frames & (options.frames - 1)) != 0) {
    return fail(PortError::invalid_argument, "AF_XDP frame count must be a power of two >= 256");
  }
  if (if_nametoindex(options.interface.c_str()) == 0) {
    return fail(PortError::interface_not_found,
                "interface '" + options.interface + "' does not exist; check `ip link` and the config's interface");
  }
  auto port = std::make_unique<AfXdpPort>();
  shm::RegionOptions area;
  area.size = std::size_t(options.frames) * options.frame_size;
  area.numa_node = options.numa_node;
  area.name = "axon-umem-" + options.interface + "-" + std::to_string(options.queue);
  auto region = shm::Region::create(area);
  if (!region) return fail(PortError::no_memory, "UMEM allocation failed: " + region.message());
  port->umem_area_ = std::move(region).value();
  port->frame_size_ = options.frame_size;

  // libxdp 1.3 leaves the completion ring's cached indices unset: start from zeroed rings.
  std::memset(&port->fill_, 0, sizeof port->fill_);
  std::memset(&port->comp_, 0, sizeof port->comp_);
  std::memset(&port->rx_, 0, sizeof port->rx_);
  std::memset(&port->tx_, 0, sizeof port->tx_);

  xsk_umem_config umem_config{};
  umem_config.fill_size = options.frames;
  umem_config.comp_size = options.frames;
  umem_config.frame_size = options.frame_size;
  umem_config.frame_headroom = 0;
  umem_config.flags = 0;
  if (int rc = xsk_umem__create(&port->umem_, port->umem_area_.base(), port->umem_area_.size(), &port->fill_,
                                &port->comp_, &umem_config);
      rc != 0) {
    return fail(PortError::umem_failed,
                "xsk_umem__create failed: " + std::string(std::strerror(-rc)) +
                    "; AF_XDP needs CAP_NET_ADMIN and CAP_IPC_LOCK (or a larger RLIMIT_MEMLOCK)");
  }

  xsk_socket_config socket_config{};
  socket_config.rx_size = options.frames / 2;
  socket_config.tx_size = options.frames / 2;
  // axon loads and attaches its own XDP program; libxdp must not install its default one.
  socket_config.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
  socket_config.xdp_flags = XDP_FLAGS_DRV_MODE;
  const bool try_zero_copy = options.zero_copy != AfXdpOptions::ZeroCopy::disabled;
  // The kernel releases a closed AF_XDP socket's hold on its queue asynchronously (after an
  // RCU grace period, from a workqueue), so a data plane restarted right after its
  // predecessor exited can find the queue still busy for a moment: wait that out, bounded.
  const std::uint64_t busy_deadline = monotonic_ns() + 5'000'000'000ull;
  bool busy_logged = false;
  auto create_socket = [&](std::uint32_t bind_flags) {
    socket_config.bind_flags = bind_flags;
    for (;;) {
      int result = xsk_socket__create(&port->xsk_, options.interface.c_str(), options.queue, port->umem_, &port->rx_,
                                      &port->tx_, &socket_config);
      if (result != -EBUSY || monotonic_ns() >= busy_deadline) return result;
      if (!busy_logged) {
        AXON_LOG_INFO("afxdp", "%s queue %u is busy (a previous AF_XDP socket still being released?); retrying",
                      options.interface.c_str(), options.queue);
        busy_logged = true;
      }
      usleep(10'000);
    }
  };
  std::string mode = "copy";
  int rc = -EOPNOTSUPP;
  if (try_zero_copy) {
    rc = create_socket(XDP_USE_NEED_WAKEUP | XDP_ZEROCOPY);
    if (rc == 0) mode = "zero-copy";
  }
  if (rc != 0) {
    if (options.zero_copy == AfXdpOptions::ZeroCopy::required) {
      return fail(PortError::zero_copy_required, "zero-copy AF_XDP is not supported on " + options.interface + " (" +
                                                     std::strerror(-rc) + "); set [xdp] zero_copy = \"auto\"");
    }
    if (try_zero_copy) {
      AXON_LOG_INFO("afxdp", "%s queue %u: zero copy unavailable (%s), using copy mode", options.interface.c_str(),
                    options.queue, std::strerror(-rc));
    }
    rc = create_socket(XDP_USE_NEED_WAKEUP | XDP_COPY);
    if (rc != 0) {
      return fail(PortError::socket_failed, "AF_XDP socket on " + options.interface + " queue " +
                                                std::to_string(options.queue) + " failed: " + std::strerror(-rc) +
                                                "; check that the queue exists (ethtool -l) and nothing else binds it");
    }
  }
  if (options.busy_poll) enable_busy_poll(xsk_socket__fd(port->xsk_), options.interface);

  // First half of the frames feeds the RX side, second half is the TX pool.
  const std::uint32_t rx_frames = options.frames / 2;
  std::uint32_t idx = 0;
  if (xsk_ring_prod__reserve(&port->fill_, rx_frames, &idx) != rx_frames) {
    return fail(PortError::umem_failed, "could not post the initial receive frames to the fill ring");
  }
  for (std::uint32_t i = 0; i < rx_frames; ++i) {
    *xsk_ring_prod__fill_addr(&port->fill_, idx + i) = std::uint64_t(i) * options.frame_size;
  }
  xsk_ring_prod__submit(&port->fill_, rx_frames);
  port->tx_pool_.reserve(options.frames - rx_frames);
  for (std::uint32_t i = options.frames; i-- > rx_frames;) {
    port->tx_pool_.push_back(std::uint64_t(i) * options.frame_size);
  }

  port->info_.backend = "af_xdp";
  port->info_.mode = mode;
  port->info_.interface = options.interface;
  port->info_.queue = options.queue;
  port->info_.frame_capacity = options.frame_size;
  AXON_LOG_INFO("afxdp", "%s queue %u: AF_XDP %s mode, %u frames of %u bytes on %s", options.interface.c_str(),
                options.queue, mode.c_str(), options.frames, options.frame_size,
                port->umem_area_.backing() == shm::SegmentBacking::hugetlb_2m ? "hugepages" : "4 KiB pages");
  return std::unique_ptr<Port>(std::move(port));
}

int af_xdp_socket_fd(const Port& port) noexcept {
  const auto* afxdp = dynamic_cast<const AfXdpPort*>(&port);
  return afxdp == nullptr ? -1 : afxdp->fd();
}

}  // namespace axon::dataplane

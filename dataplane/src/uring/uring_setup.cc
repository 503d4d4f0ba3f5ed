// io_uring socket port setup: one UDP socket per AXP port (SO_REUSEPORT, so every lcore gets
// its own), the ring, the provided-buffer ring the multishot receives draw from, and the TX
// frame pool. Needs no privilege beyond binding the ports: no BPF, no locked memory.
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "axon/common/log.h"

#include "uring/uring_port.h"

namespace axon::dataplane {
namespace {

constexpr const char* kLog = "uring";

Error<PortError> fail(PortError code, std::string message) {
  return make_error(code, std::move(message));
}

std::string errno_text(int err) {
  return std::string(std::strerror(err));
}

bool power_of_two(std::uint32_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

// Socket buffers: the privileged variant ignores rmem_max/wmem_max; unprivileged runs fall
// back to the capped one. Either way a refusal only costs burst tolerance.
void size_buffers(int fd, std::uint32_t bytes) {
  int value = int(bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &value, sizeof value) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, sizeof value);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &value, sizeof value) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, sizeof value);
  }
}

struct BindAddress {
  int family = AF_INET6;
  sockaddr_storage address{};
  socklen_t length = 0;
};

std::optional<BindAddress> parse_bind_address(const std::string& text, std::uint16_t port) {
  BindAddress out;
  if (text.empty() || text == "::") {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out.address);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;
    a->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    return out;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    auto* a = reinterpret_cast<sockaddr_in*>(&out.address);
    a->sin_family = AF_INET;
    a->sin_addr = v4;
    a->sin_port = htons(port);
    out.family = AF_INET;
    out.length = sizeof(sockaddr_in);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out.address);
    a->sin6_family = AF_INET6;
    a->sin6_addr = v6;
    a->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    return out;
  }
  return std::nullopt;
}

Result<int, PortError> open_socket(const UringOptions& options, std::uint16_t port, bool& ipv6_socket) {
  auto bind_to = parse_bind_address(options.bind_address, port);
  if (!bind_to) {
    return fail(PortError::invalid_argument,
                "[uring] bind_address '" + options.bind_address + "' is not an IPv4 or IPv6 address");
  }
  int fd = socket(bind_to->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && bind_to->family == AF_INET6 && options.bind_address.empty() && errno == EAFNOSUPPORT) {
    // IPv6 disabled on this host: serve IPv4 only.
    bind_to = parse_bind_address("0.0.0.0", port);
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return fail(PortError::socket_failed, "cannot create a UDP socket: " + errno_text(errno));
  ipv6_socket = bind_to->family == AF_INET6;
  const int one = 1, zero = 0;
  bool ok = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0;
  if (ok && ipv6_socket) {
    ok = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) == 0 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0;
  } else if (ok) {
    ok = setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
  }
  if (!ok) {
    int err = errno;
    close(fd);
    return fail(PortError::socket_failed, "UDP socket options (SO_REUSEPORT, PKTINFO) refused: " + errno_text(err));
  }
  if (!options.interface.empty() && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, options.interface.c_str(),
                                               socklen_t(options.interface.size())) != 0) {
    int err = errno;
    close(fd);
    return fail(PortError::socket_failed, "SO_BINDTODEVICE " + options.interface + " failed: " + errno_text(err) +
                                              "; set [uring] bind_to_device = false to listen on every interface");
  }
  size_buffers(fd, options.socket_buffer);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&bind_to->address), bind_to->length) != 0) {
    int err = errno;
    close(fd);
    std::string hint = err == EADDRINUSE      ? "; another process (not axon-dataplane of this user) holds the port"
                       : err == EACCES        ? "; ports below 1024 need CAP_NET_BIND_SERVICE"
                       : err == EADDRNOTAVAIL ? "; [uring] bind_address must be an address of this host"
                                              : "";
    return fail(PortError::socket_failed,
                "cannot bind UDP port " + std::to_string(port) +
                    (options.bind_address.empty() ? std::string() : " on " + options.bind_address) + ": " +
                    errno_text(err) + hint);
  }
  return fd;
}

// Tries the cheapest completion mode first: deferred task work runs only when this lcore asks
// for it (no inter-processor interrupts), and the flag in the SQ ring says when to ask.
int init_ring(UringPort& port, const UringOptions& options) {
  const std::uint32_t cq_entries = options.buffers + options.tx_frames;  // one CQE per buffer or frame at most
  const unsigned attempts[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  int rc = -EINVAL;
  for (unsigned flags : attempts) {
    io_uring_params params{};
    params.flags = flags | IORING_SETUP_CQSIZE;
    params.cq_entries = cq_entries;
    rc = io_uring_queue_init_params(options.ring_entries, &port.ring_, &params);
    if (rc == 0) {
      port.defer_taskrun_ = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
      port.taskrun_flag_ = (flags & IORING_SETUP_TASKRUN_FLAG) != 0;
      port.disabled_ = (flags & IORING_SETUP_R_DISABLED) != 0;
      return 0;
    }
    if (rc != -EINVAL) break;  // EPERM, ENOMEM, ENOSYS: a weaker mode will not help
  }
  return rc;
}

}  // namespace

UringPort::~UringPort() {
  // The ring first: it cancels the multishot receives that reference the sockets and buffers.
  if (ring_ready_) io_uring_queue_exit(&ring_);
  for (UringSocket& s : sockets_) {
    if (s.fd >= 0) close(s.fd);
  }
  if (buf_ring_ != nullptr) munmap(buf_ring_, buf_ring_bytes_);
}

Result<std::unique_ptr<Port>, PortError> open_uring_port(const UringOptions& options) {
  if (options.ports.empty() || options.ports.size() > 4) {
    return fail(PortError::invalid_argument, "io_uring port needs 1 to 4 UDP ports");
  }
  if (!power_of_two(options.buffers) || options.buffers < 64 || options.buffers > 32768) {
    return fail(PortError::invalid_argument, "[uring] buffers must be a power of two in [64, 32768]");
  }
  if (options.buffer_size < kUringPayloadOffset + 256 || options.buffer_size > 65536) {
    return fail(PortError::invalid_argument,
                "[uring] buffer_size must be in [" + std::to_string(kUringPayloadOffset + 256) + ", 65536]");
  }
  if (options.frame_size < 512 || options.frame_size > 65536) {
    return fail(PortError::invalid_argument, "[uring] frame_size must be in [512, 65536]");
  }
  if (options.tx_frames < 64 || options.tx_frames > (1u << 20)) {
    return fail(PortError::invalid_argument, "[uring] tx_frames must be in [64, 1048576]");
  }
  if (!power_of_two(options.ring_entries) || options.ring_entries < 64 || options.ring_entries > 32768) {
    return fail(PortError::invalid_argument, "[uring] ring_entries must be a power of two in [64, 32768]");
  }
  if (!options.interface.empty() && if_nametoindex(options.interface.c_str()) == 0) {
    return fail(PortError::interface_not_found,
                "interface '" + options.interface + "' does not exist; check `ip link` and the config's interface");
  }

  auto port = std::make_unique<UringPort>();
  for (std::uint16_t p : options.ports) {
    bool ipv6 = true;
    auto fd = open_socket(options, p, ipv6);
    if (!fd) return fail(fd.error().code, fd.message());
    UringSocket s;
    s.fd = fd.value();
    s.port = p;
    s.recv_template.msg_namelen = kUringNameLen;
    s.recv_template.msg_controllen = kUringControlLen;
    port->sockets_.push_back(s);
    port->ipv6_socket_ = ipv6;
  }

  if (int rc = init_ring(*port, options); rc != 0) {
    std::string hint = rc == -EPERM    ? "; io_uring is disabled for this process (sysctl kernel.io_uring_disabled)"
                       : rc == -ENOSYS ? "; this kernel has no io_uring"
                       : rc == -ENOMEM ? "; not enough memory for the rings (lower [uring] buffers/ring_entries)"
                                       : "";
    return fail(PortError::ring_failed, "io_uring setup failed: " + errno_text(-rc) + hint);
  }
  port->ring_ready_ = true;

  // The provided-buffer ring: page-aligned memory the kernel pops receive buffers from.
  port->buffers_ = options.buffers;
  port->buffer_size_ = options.buffer_size;
  port->buffer_stride_ = (options.buffer_size + 63u) & ~63u;
  port->buf_ring_bytes_ = std::size_t(options.buffers) * sizeof(io_uring_buf);
  void* ring_mem = mmap(nullptr, port->buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring_mem == MAP_FAILED) return fail(PortError::no_memory, "buffer ring allocation failed: " + errno_text(errno));
  port->buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(ring_mem);
  reg.ring_entries = options.buffers;
  reg.bgid = 0;
  if (int rc = io_uring_register_buf_ring(&port->ring_, &reg, 0); rc != 0) {
    return fail(PortError::ring_failed, "registering the provided-buffer ring failed: " + errno_text(-rc) +
                                            "; multishot receive needs Linux 6.0 or later");
  }

  // Receive buffers and TX frames: hugepages when free, never locked (no RLIMIT_MEMLOCK needed).
  shm::RegionOptions rx;
  rx.size = std::size_t(options.buffers) * port->buffer_stride_;
  rx.numa_node = options.numa_node;
  rx.lock = false;
  rx.name = "axon-uring-rx-" + std::to_string(options.queue);
  auto rx_region = shm::Region::create(rx);
  if (!rx_region) return fail(PortError::no_memory, "receive buffer allocation failed: " + rx_region.message());
  port->rx_area_ = std::move(rx_region).value();
  shm::RegionOptions tx = rx;
  tx.size = std::size_t(options.tx_frames) * options.frame_size;
  tx.name = "axon-uring-tx-" + std::to_string(options.queue);
  auto tx_region = shm::Region::create(tx);
  if (!tx_region) return fail(PortError::no_memory, "TX frame allocation failed: " + tx_region.message());
  port->tx_area_ = std::move(tx_region).value();
  port->frame_size_ = options.frame_size;

  io_uring_buf_ring_init(port->buf_ring_);
  const int mask = io_uring_buf_ring_mask(options.buffers);
  for (std::uint32_t i = 0; i < options.buffers; ++i) {
    io_uring_buf_ring_add(port->buf_ring_, port->rx_buffer(i), options.buffer_size, std::uint16_t(i), mask, int(i));
  }
  io_uring_buf_ring_advance(port->buf_ring_, int(options.buffers));

  port->tx_slots_.resize(options.tx_frames);
  port->tx_pool_.reserve(options.tx_frames);
  for (std::uint32_t i = options.tx_frames; i-- > 0;) port->tx_pool_.push_back(i);

  port->info_.backend = "uring";
  port->info_.mode = port->defer_taskrun_ ? "defer-taskrun" : port->taskrun_flag_ ? "coop-taskrun" : "plain";
  port->info_.interface = options.interface.empty() ? "any" : options.interface;
  port->info_.queue = options.queue;
  port->info_.frame_capacity = options.frame_size;
  std::string ports;
  for (std::uint16_t p : options.ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
  AXON_LOG_INFO(kLog, "queue %u: UDP port(s) %s on %s (%s), io_uring %s, %u receive buffers of %u bytes on %s",
                options.queue, ports.c_str(),
                options.bind_address.empty() ? "any address" : options.bind_address.c_str(),
                options.interface.empty() ? "every interface" : options.interface.c_str(), port->info_.mode.c_str(),
                options.buffers, options.buffer_size,
                port->rx_area_.backing() == shm::SegmentBacking::hugetlb_2m ? "hugepages" : "4 KiB pages");
  return std::unique_ptr<Port>(std::move(port));
}

}  // namespace axon::dataplane

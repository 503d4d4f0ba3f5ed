// AF_XDP transport of axon-loadgen: UMEM, socket, its XDP program (loadgen_xdp.bpf.c, embedded
// as a skeleton), frame building on send and frame parsing on receive.
#include "xsk_io.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "axon/common/clock.h"
#include "axon/protocol/axp.h"

#include "loadgen_xdp.skel.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

namespace axon::loadgen {
namespace {

constexpr std::uint32_t kFrameSize = 2048;
constexpr std::size_t kEth = sizeof(axon_eth_hdr);
constexpr std::size_t kIp = sizeof(axon_ipv4_hdr);
constexpr std::size_t kUdp = sizeof(axon_udp_hdr);
constexpr std::size_t kL2L4 = kEth + kIp + kUdp;

Error<XskError> fail(XskError code, std::string message) {
  return make_error(code, std::move(message));
}

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

bool parse_mac(const std::string& text, std::uint8_t out[6]) {
  unsigned v[6];
  char extra = 0;
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6)
    return false;
  for (int i = 0; i < 6; ++i) {
    if (v[i] > 0xff) return false;
    out[i] = static_cast<std::uint8_t>(v[i]);
  }
  return true;
}

// The MAC of dst_ip on dev from the kernel's neighbour table (/proc/net/arp), if known.
bool neighbour_mac(const std::string& dev, std::uint32_t dst_ip, std::uint8_t out[6]) {
  std::ifstream arp("/proc/net/arp");
  std::string line;
  std::getline(arp, line);  // header
  char ip_text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &dst_ip, ip_text, sizeof ip_text);
  while (std::getline(arp, line)) {
    std::istringstream in(line);
    std::string ip, hw_type, flags, mac, mask, iface;
    if (!(in >> ip >> hw_type >> flags >> mac >> mask >> iface)) continue;
    if (ip == ip_text && iface == dev && flags != "0x0" && parse_mac(mac, out)) return true;
  }
  return false;
}

std::uint16_t ip_checksum(const std::uint8_t* hdr) noexcept {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < kIp; i += 2) sum += static_cast<std::uint32_t>(hdr[i] << 8 | hdr[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

int libbpf_quiet(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  return std::vfprintf(stderr, fmt, args);
}

}  // namespace

struct XskIo::Impl {
  XskOptions options;
  int ifindex = 0;
  loadgen_xdp* skel = nullptr;
  bool attached = false;
  void* umem_area = nullptr;
  std::size_t umem_size = 0;
  bool hugepages = false;
  xsk_umem* umem = nullptr;
  xsk_socket* xsk = nullptr;
  xsk_ring_prod fill{};
  xsk_ring_cons comp{};
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
  std::vector<std::uint64_t> tx_pool;  // free TX frame addresses (a stack)
  std::uint32_t tx_outstanding = 0;    // submitted, not yet completed
  std::uint8_t header[kL2L4]{};        // Ethernet + IPv4 + UDP template
  std::uint16_t ip_id = 0;
  std::uint16_t src_port = 0;  // network order
  std::string mode;
  XskStats stats;
  std::uint64_t rx_addrs[kMaxBatch]{};

  ~Impl() {
    if (xsk != nullptr) xsk_socket__delete(xsk);
    if (umem != nullptr) xsk_umem__delete(umem);
    if (umem_area != nullptr) munmap(umem_area, umem_size);
    if (attached && skel != nullptr) {
      // Detach only our own program: another one attached since would be left alone.
      bpf_xdp_attach_opts opts{};
      opts.sz = sizeof opts;
      opts.old_prog_fd = bpf_program__fd(skel->progs.loadgen_rx);
      bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE, &opts);
    }
    if (skel != nullptr) loadgen_xdp__destroy(skel);
  }

  void kick() noexcept {
    ++stats.kicks;
    if (sendto(xsk_socket__fd(xsk), nullptr, 0, MSG_DONTWAIT, nullptr, 0) < 0 &&
        (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS))
      ++stats.kicks_busy;
  }
};

XskIo::XskIo(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
XskIo::~XskIo() = default;

Result<std::unique_ptr<XskIo>, XskError> XskIo::open(const XskOptions& options, std::uint32_t dst_ip,
                                                     std::uint16_t dst_port, std::uint16_t src_port) {
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.options = options;
  if (options.frames < 512 || (options.frames & (options.frames - 1)) != 0)
    return fail(XskError::invalid, "--xdp-frames must be a power of two >= 512");
  if (options.tx_ring < 64 || options.tx_ring > options.frames / 2 || (options.tx_ring & (options.tx_ring - 1)) != 0)
    return fail(XskError::invalid, "the AF_XDP TX ring must be a power of two between 64 and half the frames");
  s.ifindex = static_cast<int>(if_nametoindex(options.dev.c_str()));
  if (s.ifindex == 0)
    return fail(XskError::invalid, "--xdp-dev " + options.dev + ": no such interface (check ip link)");

  // Addresses: ours from the interface, the target's MAC from the option or the neighbour table.
  std::uint8_t src_mac[6], dst_mac[6];
  {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq req{};
    std::snprintf(req.ifr_name, sizeof req.ifr_name, "%s", options.dev.c_str());
    bool ok = fd >= 0 && ioctl(fd, SIOCGIFHWADDR, &req) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) return fail(XskError::setup_failed, "cannot read the MAC address of " + options.dev);
    std::memcpy(src_mac, req.ifr_hwaddr.sa_data, 6);
  }
  std::uint32_t src_ip = 0;
  {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) == 0) {
      for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
        if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET || options.dev != a->ifa_name) continue;
        src_ip = reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr;
        break;
      }
      freeifaddrs(list);
    }
    if (src_ip == 0) return fail(XskError::invalid, options.dev + " has no IPv4 address; the AF_XDP mode sends IPv4");
  }
  if (!options.dst_mac.empty()) {
    if (!parse_mac(options.dst_mac, dst_mac)) return fail(XskError::invalid, "--dst-mac: expected aa:bb:cc:dd:ee:ff");
  } else if (!neighbour_mac(options.dev, dst_ip, dst_mac)) {
    return fail(XskError::invalid, "the target's MAC is not in the neighbour table of " + options.dev +
                                       "; pass --dst-mac (e.g. from /sys/class/net/<peer>/address) or ping it first");
  }

  // The Ethernet/IPv4/UDP template; length fields and the IP checksum are set per frame.
  axon_eth_hdr eth{};
  std::memcpy(eth.dst, dst_mac, 6);
  std::memcpy(eth.src, src_mac, 6);
  eth.proto = htons(AXON_ETH_P_IPV4);
  axon_ipv4_hdr ip{};
  ip.version_ihl = 0x45;
  ip.frag_off = htons(0x4000);  // DF
  ip.ttl = 64;
  ip.protocol = AXON_IPPROTO_UDP;
  std::memcpy(ip.saddr, &src_ip, 4);
  std::memcpy(ip.daddr, &dst_ip, 4);
  axon_udp_hdr udp{};
  s.src_port = htons(src_port);
  udp.source = s.src_port;
  udp.dest = dst_port;
  udp.check = 0;  // optional over IPv4; every receiver of the suite accepts it
  std::memcpy(s.header, &eth, kEth);
  std::memcpy(s.header + kEth, &ip, kIp);
  std::memcpy(s.header + kEth + kIp, &udp, kUdp);

  // Our XDP program first: replies must have somewhere to go as soon as the socket exists.
  libbpf_set_print(libbpf_quiet);
  s.skel = loadgen_xdp__open();
  if (s.skel == nullptr) return fail(XskError::setup_failed, "cannot open the load generator's XDP program");
  s.skel->rodata->loadgen_port = s.src_port;
  if (int rc = loadgen_xdp__load(s.skel); rc != 0)
    return fail(XskError::setup_failed, "loading the load generator's XDP program failed: " + errno_text(rc) +
                                            " (needs root / CAP_BPF and CAP_NET_ADMIN)");
  bpf_xdp_attach_opts attach{};
  attach.sz = sizeof attach;
  if (int rc = bpf_xdp_attach(s.ifindex, bpf_program__fd(s.skel->progs.loadgen_rx),
                              XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, &attach);
      rc != 0) {
    return fail(
        XskError::setup_failed,
        "attaching XDP to " + options.dev + " failed: " + errno_text(rc) +
            (rc == -EBUSY || rc == -EEXIST ? " (another XDP program is attached: another load generator?)" : ""));
  }
  s.attached = true;

  // UMEM: hugepages when there are free ones, else ordinary pages.
  s.umem_size = std::size_t(options.frames) * kFrameSize;
  s.umem_area = mmap(nullptr, s.umem_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  s.hugepages = s.umem_area != MAP_FAILED;
  if (!s.hugepages)
    s.umem_area = mmap(nullptr, s.umem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (s.umem_area == MAP_FAILED) {
    s.umem_area = nullptr;
    return fail(XskError::setup_failed, "cannot map " + std::to_string(s.umem_size >> 20) + " MiB of UMEM");
  }
  xsk_umem_config umem_config{};
  umem_config.fill_size = options.frames;
  umem_config.comp_size = options.frames;
  umem_config.frame_size = kFrameSize;
  // libxdp leaves the completion ring's cached indices unset: start from zeroed rings (done by {}).
  if (int rc = xsk_umem__create(&s.umem, s.umem_area, s.umem_size, &s.fill, &s.comp, &umem_config); rc != 0)
    return fail(XskError::setup_failed, "xsk_umem__create: " + errno_text(rc));

  xsk_socket_config config{};
  config.rx_size = options.frames / 2;
  config.tx_size = options.tx_ring;
  config.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
  config.xdp_flags = XDP_FLAGS_DRV_MODE;
  s.mode = "zero-copy";
  config.bind_flags = XDP_USE_NEED_WAKEUP | XDP_ZEROCOPY;
  int rc = xsk_socket__create(&s.xsk, options.dev.c_str(), options.queue, s.umem, &s.rx, &s.tx, &config);
  if (rc != 0) {
    s.mode = "copy";
    config.bind_flags = XDP_USE_NEED_WAKEUP | XDP_COPY;
    rc = xsk_socket__create(&s.xsk, options.dev.c_str(), options.queue, s.umem, &s.rx, &s.tx, &config);
  }
  if (rc != 0)
    return fail(XskError::setup_failed,
                "AF_XDP socket on " + options.dev + " queue " + std::to_string(options.queue) + ": " + errno_text(rc));
  int xsk_fd = xsk_socket__fd(s.xsk);
  __u32 key = options.queue;
  if (bpf_map_update_elem(bpf_map__fd(s.skel->maps.loadgen_xsks), &key, &xsk_fd, BPF_ANY) != 0)
    return fail(XskError::setup_failed,
                "cannot register the AF_XDP socket in the XDP program's map: " + errno_text(errno));

  // The first half of the frames receives, the second half sends.
  const std::uint32_t rx_frames = options.frames / 2;
  std::uint32_t idx = 0;
  if (xsk_ring_prod__reserve(&s.fill, rx_frames, &idx) != rx_frames)
    return fail(XskError::setup_failed, "cannot post the receive frames to the fill ring");
  for (std::uint32_t i = 0; i < rx_frames; ++i)
    *xsk_ring_prod__fill_addr(&s.fill, idx + i) = std::uint64_t(i) * kFrameSize;
  xsk_ring_prod__submit(&s.fill, rx_frames);
  s.tx_pool.reserve(options.frames - rx_frames);
  for (std::uint32_t i = options.frames; i-- > rx_frames;) s.tx_pool.push_back(std::uint64_t(i) * kFrameSize);
  return std::unique_ptr<XskIo>(new XskIo(std::move(impl)));
}

unsigned XskIo::send(const iovec* datagrams, unsigned n) noexcept {
  Impl& s = *impl_;
  if (s.tx_pool.size() < n) reap();
  unsigned want = n < s.tx_pool.size() ? n : static_cast<unsigned>(s.tx_pool.size());
  std::uint32_t idx = 0;
  unsigned got = want == 0 ? 0 : xsk_ring_prod__reserve(&s.tx, want, &idx);
  auto* base = static_cast<std::uint8_t*>(s.umem_area);
  for (unsigned i = 0; i < got; ++i) {
    std::size_t len = datagrams[i].iov_len;
    if (len > kFrameSize - kL2L4) len = kFrameSize - kL2L4;  // the caller bounds datagrams well below this
    std::uint64_t addr = s.tx_pool.back();
    s.tx_pool.pop_back();
    std::uint8_t* f = base + addr;
    std::memcpy(f, s.header, kL2L4);
    std::uint8_t* ip = f + kEth;
    std::uint16_t tot = htons(static_cast<std::uint16_t>(kIp + kUdp + len));
    std::memcpy(ip + 2, &tot, 2);
    std::uint16_t id = htons(s.ip_id++);
    std::memcpy(ip + 4, &id, 2);
    std::uint16_t csum = htons(ip_checksum(ip));
    std::memcpy(ip + 10, &csum, 2);
    std::uint16_t ulen = htons(static_cast<std::uint16_t>(kUdp + len));
    std::memcpy(f + kEth + kIp + 4, &ulen, 2);
    std::memcpy(f + kL2L4, datagrams[i].iov_base, len);
    xdp_desc* desc = xsk_ring_prod__tx_desc(&s.tx, idx + i);
    desc->addr = addr;
    desc->len = static_cast<std::uint32_t>(kL2L4 + len);
    desc->options = 0;
  }
  if (got > 0) {
    xsk_ring_prod__submit(&s.tx, got);
    s.tx_outstanding += got;
    // Copy mode: the kernel moves queued frames (up to 32 per call) only when kicked.
    if (xsk_ring_prod__needs_wakeup(&s.tx)) s.kick();
  }
  if (got < n) s.stats.tx_no_frame += n - got;
  return got;
}

void XskIo::reap() noexcept {
  Impl& s = *impl_;
  std::uint32_t idx = 0;
  std::uint32_t n = xsk_ring_cons__peek(&s.comp, s.options.frames, &idx);
  for (std::uint32_t i = 0; i < n; ++i) s.tx_pool.push_back(*xsk_ring_cons__comp_addr(&s.comp, idx + i));
  if (n > 0) xsk_ring_cons__release(&s.comp, n);
  s.tx_outstanding -= n;
  // Descriptors the kernel has not taken off the TX ring yet (it takes up to 32 per call) need
  // another kick; frames it took but has not completed do not.
  if (xsk_prod_nb_free(&s.tx, s.tx.size) < s.tx.size && xsk_ring_prod__needs_wakeup(&s.tx)) s.kick();
}

unsigned XskIo::receive_begin(unsigned max, std::span<const std::uint8_t>* payloads) noexcept {
  Impl& s = *impl_;
  if (max > kMaxBatch) max = kMaxBatch;
  std::uint32_t idx = 0;
  unsigned n = xsk_ring_cons__peek(&s.rx, max, &idx);
  auto* base = static_cast<const std::uint8_t*>(s.umem_area);
  for (unsigned i = 0; i < n; ++i) {
    const xdp_desc* desc = xsk_ring_cons__rx_desc(&s.rx, idx + i);
    s.rx_addrs[i] = desc->addr;
    const std::uint8_t* f = base + xsk_umem__extract_addr(desc->addr) + xsk_umem__extract_offset(desc->addr);
    std::uint32_t len = desc->len;
    payloads[i] = {};
    // The XDP program only redirects IPv4/UDP to our port; check the lengths before trusting them.
    if (len < kL2L4) {
      ++s.stats.rx_not_ours;
      continue;
    }
    std::size_t ihl = static_cast<std::size_t>(f[kEth] & 0x0F) * 4;
    if (ihl < kIp || kEth + ihl + kUdp > len) {
      ++s.stats.rx_not_ours;
      continue;
    }
    const std::uint8_t* udp = f + kEth + ihl;
    std::size_t ulen = static_cast<std::size_t>(udp[4] << 8 | udp[5]);
    if (ulen < kUdp || kEth + ihl + ulen > len) {
      ++s.stats.rx_not_ours;
      continue;
    }
    payloads[i] = {udp + kUdp, ulen - kUdp};
  }
  if (n > 0) xsk_ring_cons__release(&s.rx, n);
  return n;
}

void XskIo::receive_end(unsigned n) noexcept {
  if (n == 0) return;
  Impl& s = *impl_;
  std::uint32_t idx = 0;
  // The fill ring has room for every receive frame, so this always gets n.
  std::uint32_t got = xsk_ring_prod__reserve(&s.fill, n, &idx);
  for (std::uint32_t i = 0; i < got; ++i)
    *xsk_ring_prod__fill_addr(&s.fill, idx + i) = xsk_umem__extract_addr(s.rx_addrs[i]);
  xsk_ring_prod__submit(&s.fill, got);
}

int XskIo::fd() const noexcept {
  return xsk_socket__fd(impl_->xsk);
}

XskStats XskIo::stats() const noexcept {
  XskStats out = impl_->stats;
  xdp_statistics st{};
  socklen_t len = sizeof st;
  if (getsockopt(xsk_socket__fd(impl_->xsk), SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
    out.rx_dropped = st.rx_dropped;
    out.rx_ring_full = st.rx_ring_full;
    out.rx_fill_ring_empty = st.rx_fill_ring_empty_descs;
    out.tx_invalid = st.tx_invalid_descs;
  }
  return out;
}

std::string XskIo::describe() const {
  return "AF_XDP " + impl_->mode + " mode on " + impl_->options.dev + " queue " + std::to_string(impl_->options.queue) +
         ", " + std::to_string(impl_->options.frames) + " frames on " +
         (impl_->hugepages ? "hugepages" : "4 KiB pages");
}

}  // namespace axon::loadgen

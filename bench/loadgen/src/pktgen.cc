// axon-pktgen: sends prebuilt Ethernet/IPv4/UDP/AXP frames as fast as it can (or at a set rate)
// from an AF_PACKET socket with the qdisc bypassed, batched with sendmmsg. It exists because this
// machine has no kernel pktgen module; the e2e benchmark uses it to measure how fast an XDP
// program drops malformed AXP traffic. The frames it sends are only ever put on the interface
// named on the command line (the e2e script's own veth).
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "axon/common/clock.h"
#include "axon/common/cpu.h"
#include "axon/loadgen/malformed.h"
#include "axon/protocol/axp.h"

namespace {

namespace p = axon::protocol;
using axon::loadgen::MalformedKind;

constexpr unsigned kBatch = 64;
constexpr std::size_t kFrameMax = 2048;
constexpr std::size_t kL2L4 = sizeof(axon_eth_hdr) + sizeof(axon_ipv4_hdr) + sizeof(axon_udp_hdr);

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true);
}

struct Options {
  std::string dev;
  std::string src_mac, dst_mac;
  std::string src_ip = "10.199.0.2", dst_ip = "10.199.0.1";
  std::uint16_t dport = p::kDefaultPort;
  std::uint16_t sport = 40000;
  std::string kind = "mix";
  std::size_t payload = 16;
  double rate = 0;
  double duration_s = 5;
  std::uint64_t count = 0;
  int cpu = -1;
  std::string json_file;
};

bool parse_mac(const std::string& text, std::uint8_t out[6]) {
  unsigned v[6];
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) {
    if (v[i] > 0xff) return false;
    out[i] = static_cast<std::uint8_t>(v[i]);
  }
  return true;
}

std::uint16_t ipv4_checksum(const std::uint8_t* hdr, std::size_t len) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += static_cast<std::uint32_t>(hdr[i] << 8 | hdr[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// Frame-level kinds on top of the AXP-level ones of malformed.h.
enum class FrameKind { valid, axp, ip_fragment, udp_bad_length, not_axp };

struct Frame {
  std::vector<std::uint8_t> bytes;
  std::string name;
};

// Ethernet + IPv4 + UDP around `dgram`; the headers use the wire structs the XDP program parses.
Frame build_frame(const Options& o, const std::uint8_t src_mac[6], const std::uint8_t dst_mac[6],
                  std::span<const std::uint8_t> dgram, FrameKind kind, std::string name) {
  Frame f;
  f.name = std::move(name);
  f.bytes.assign(kL2L4 + dgram.size(), 0);
  std::uint8_t* b = f.bytes.data();
  axon_eth_hdr eth{};
  std::memcpy(eth.dst, dst_mac, 6);
  std::memcpy(eth.src, src_mac, 6);
  eth.proto = htons(ETHERTYPE_IP);
  std::memcpy(b, &eth, sizeof eth);

  axon_ipv4_hdr ip{};
  ip.version_ihl = 0x45;
  ip.tot_len = htons(static_cast<std::uint16_t>(sizeof ip + sizeof(axon_udp_hdr) + dgram.size()));
  ip.frag_off = htons(kind == FrameKind::ip_fragment ? AXON_IPV4_MF : 0x4000 /* DF */);
  ip.ttl = 64;
  ip.protocol = AXON_IPPROTO_UDP;
  inet_pton(AF_INET, o.src_ip.c_str(), ip.saddr);
  inet_pton(AF_INET, o.dst_ip.c_str(), ip.daddr);
  std::memcpy(b + sizeof eth, &ip, sizeof ip);
  std::uint16_t csum = ipv4_checksum(b + sizeof eth, sizeof ip);
  b[sizeof eth + offsetof(axon_ipv4_hdr, check)] = static_cast<std::uint8_t>(csum >> 8);
  b[sizeof eth + offsetof(axon_ipv4_hdr, check) + 1] = static_cast<std::uint8_t>(csum);

  axon_udp_hdr udp{};
  udp.source = htons(o.sport);
  udp.dest = htons(kind == FrameKind::not_axp ? static_cast<std::uint16_t>(o.dport + 1) : o.dport);
  std::size_t udp_len = sizeof udp + dgram.size() + (kind == FrameKind::udp_bad_length ? 64 : 0);
  udp.len = htons(static_cast<std::uint16_t>(udp_len));
  udp.check = 0;  // optional over IPv4; XDP does not verify it
  std::memcpy(b + sizeof eth + sizeof ip, &udp, sizeof udp);
  std::memcpy(b + kL2L4, dgram.data(), dgram.size());
  return f;
}

std::vector<Frame> build_frames(const Options& o, const std::uint8_t src_mac[6], const std::uint8_t dst_mac[6],
                                std::string& error) {
  std::vector<std::uint8_t> buf(kFrameMax);
  std::vector<std::uint8_t> payload(o.payload, 'x');
  auto valid = [&] {
    p::Header h;
    h.tenant_id = 1;
    h.agent_id = 1;
    h.request_id = 1;
    std::size_t n = p::encode_datagram(h, payload, buf);
    return std::span<const std::uint8_t>(buf.data(), n);
  };
  auto axp_kind = [&](MalformedKind k) {
    std::size_t n = axon::loadgen::build_malformed(k, buf, o.payload);
    return build_frame(o, src_mac, dst_mac, {buf.data(), n}, FrameKind::axp, to_string(k));
  };
  std::vector<Frame> frames;
  if (o.kind == "mix") {
    for (std::size_t k = 0; k < axon::loadgen::kMalformedKinds; ++k)
      frames.push_back(axp_kind(static_cast<MalformedKind>(k)));
    frames.push_back(build_frame(o, src_mac, dst_mac, valid(), FrameKind::ip_fragment, "ip_fragment"));
    frames.push_back(build_frame(o, src_mac, dst_mac, valid(), FrameKind::udp_bad_length, "udp_bad_length"));
  } else if (o.kind == "valid") {
    frames.push_back(build_frame(o, src_mac, dst_mac, valid(), FrameKind::valid, "valid"));
  } else if (o.kind == "ip_fragment") {
    frames.push_back(build_frame(o, src_mac, dst_mac, valid(), FrameKind::ip_fragment, "ip_fragment"));
  } else if (o.kind == "udp_bad_length") {
    frames.push_back(build_frame(o, src_mac, dst_mac, valid(), FrameKind::udp_bad_length, "udp_bad_length"));
  } else if (o.kind == "not_axp") {
    frames.push_back(build_frame(o, src_mac, dst_mac, valid(), FrameKind::not_axp, "not_axp"));
  } else if (auto k = axon::loadgen::malformed_kind_from_string(o.kind)) {
    frames.push_back(axp_kind(*k));
  } else {
    error = "unknown --kind '" + o.kind + "'";
  }
  return frames;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"axon-pktgen: AF_PACKET sender of (malformed) AXP frames, for XDP drop-rate tests", "axon-pktgen"};
  app.add_option("--dev", o.dev, "Interface to send on")->required();
  app.add_option("--dst-mac", o.dst_mac, "Destination MAC (the receiving interface)")->required();
  app.add_option("--src-mac", o.src_mac, "Source MAC (default: the interface's)");
  app.add_option("--src-ip", o.src_ip, "Source IPv4 address")->capture_default_str();
  app.add_option("--dst-ip", o.dst_ip, "Destination IPv4 address")->capture_default_str();
  app.add_option("--dport", o.dport, "Destination UDP port (the AXP port)")->capture_default_str();
  app.add_option("--sport", o.sport, "Source UDP port")->capture_default_str();
  app.add_option("--kind", o.kind,
                 "mix (every malformed kind in turn), valid, not_axp, ip_fragment, udp_bad_length, bad_magic, "
                 "bad_version, lying_length, bad_header_len, truncated, bad_type, bad_priority, bad_segment, "
                 "not_request")
      ->capture_default_str();
  app.add_option("--payload", o.payload, "AXP payload bytes")->capture_default_str()->check(CLI::Range(0, 1400));
  app.add_option("--rate", o.rate, "Packets/s (0 = as fast as possible)")->capture_default_str();
  app.add_option("--duration", o.duration_s, "Seconds to send (at most 600)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 600.0));
  app.add_option("--count", o.count, "Stop after this many packets (0 = no limit)");
  app.add_option("--cpu", o.cpu, "Pin to this CPU");
  app.add_option("--json", o.json_file, "Write the result as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);  // protocol 0: this socket receives nothing
  if (fd < 0) {
    std::fprintf(stderr, "axon-pktgen: AF_PACKET socket: %s (needs CAP_NET_RAW)\n", std::strerror(errno));
    return 1;
  }
  unsigned ifindex = if_nametoindex(o.dev.c_str());
  if (ifindex == 0) {
    std::fprintf(stderr, "axon-pktgen: no interface '%s'\n", o.dev.c_str());
    return 1;
  }
  std::uint8_t src_mac[6], dst_mac[6];
  if (!parse_mac(o.dst_mac, dst_mac)) {
    std::fprintf(stderr, "axon-pktgen: --dst-mac '%s' is not a MAC address\n", o.dst_mac.c_str());
    return 2;
  }
  if (o.src_mac.empty()) {
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", o.dev.c_str());
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
      std::fprintf(stderr, "axon-pktgen: cannot read the MAC of %s: %s\n", o.dev.c_str(), std::strerror(errno));
      return 1;
    }
    std::memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
  } else if (!parse_mac(o.src_mac, src_mac)) {
    std::fprintf(stderr, "axon-pktgen: --src-mac '%s' is not a MAC address\n", o.src_mac.c_str());
    return 2;
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = static_cast<int>(ifindex);
  sll.sll_protocol = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
    std::fprintf(stderr, "axon-pktgen: bind to %s: %s\n", o.dev.c_str(), std::strerror(errno));
    return 1;
  }
  // Straight to the driver: no qdisc, the fastest a socket can put frames on a veth.
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0)
    std::fprintf(stderr, "axon-pktgen: PACKET_QDISC_BYPASS unavailable (%s); sending through the qdisc\n",
                 std::strerror(errno));

  std::string error;
  std::vector<Frame> frames = build_frames(o, src_mac, dst_mac, error);
  if (frames.empty()) {
    std::fprintf(stderr, "axon-pktgen: %s\n", error.c_str());
    return 2;
  }
  if (o.cpu >= 0) {
    if (auto pinned = axon::pin_this_thread(o.cpu); !pinned)
      std::fprintf(stderr, "axon-pktgen: %s\n", pinned.message().c_str());
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  prctl(PR_SET_TIMERSLACK, 1UL);

  // The batch cycles through the frame kinds; the iovecs point at the prebuilt frames.
  std::array<mmsghdr, kBatch> msgs{};
  std::array<iovec, kBatch> iov{};
  for (unsigned k = 0; k < kBatch; ++k) {
    Frame& f = frames[k % frames.size()];
    iov[k] = {f.bytes.data(), f.bytes.size()};
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
  }

  std::uint64_t sent = 0, errors = 0;
  std::uint64_t start = axon::monotonic_ns();
  std::uint64_t end = start + static_cast<std::uint64_t>(o.duration_s * 1e9);
  std::uint64_t now = start;
  while (!g_stop.load(std::memory_order_relaxed) && now < end && (o.count == 0 || sent < o.count)) {
    unsigned n = kBatch;
    if (o.count != 0 && o.count - sent < n) n = static_cast<unsigned>(o.count - sent);
    if (o.rate > 0) {
      // Pace by batch: wait until the schedule has room for n more packets.
      auto due = start + static_cast<std::uint64_t>(static_cast<double>(sent + n) / o.rate * 1e9);
      while ((now = axon::monotonic_ns()) < due && now < end) {
        if (due - now > 200'000) usleep(static_cast<useconds_t>((due - now) / 2000));
      }
      if (now >= end) break;
    }
    int r = sendmmsg(fd, msgs.data(), n, 0);
    if (r > 0) {
      sent += static_cast<unsigned>(r);
    } else if (errno != EINTR) {
      ++errors;  // ENOBUFS and friends: the device queue is full; keep pushing
    }
    now = axon::monotonic_ns();
  }
  double elapsed = static_cast<double>(axon::monotonic_ns() - start) / 1e9;
  ::close(fd);

  double pps = elapsed > 0 ? static_cast<double>(sent) / elapsed : 0;
  std::printf("axon-pktgen: kind=%s sent=%llu in %.2fs = %.0f pps (send errors %llu)\n", o.kind.c_str(),
              static_cast<unsigned long long>(sent), elapsed, pps, static_cast<unsigned long long>(errors));
  if (!o.json_file.empty()) {
    nlohmann::json j = {{"tool", "axon-pktgen"},
                        {"dev", o.dev},
                        {"kind", o.kind},
                        {"frames", frames.size()},
                        {"sent", sent},
                        {"elapsed_s", elapsed},
                        {"pps", pps},
                        {"send_errors", errors},
                        {"frame_bytes", frames[0].bytes.size()}};
    std::ofstream(o.json_file) << j.dump(2) << '\n';
  }
  return 0;
}

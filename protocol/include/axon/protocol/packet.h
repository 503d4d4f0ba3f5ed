// Frame parser for userspace data planes (AF_XDP, DPDK, raw sockets): Ethernet, up to two VLAN
// tags, IPv4 or IPv6, UDP, AXP.
//
// It runs axon_classify_frame() from bpf/axon_xdp.shared.h, the very function the XDP program
// runs, so a frame gets the same Reason here as in the kernel's counters. What it never returns
// are the XDP policy reasons (prefix_denied, rate_limited, no_socket), which need the maps.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "axon/protocol/axp.h"

namespace axon::protocol {

struct PacketConfig {
  std::array<std::uint16_t, AXON_MAX_PORTS> ports{kDefaultPort, 0, 0, 0};  // host order, 0 = unused
  bool requests_only = true;        // the appliance side: anything but REQUEST is not_request
  bool drop_all_fragments = false;  // every IP fragment is ip_fragment, not only attributable AXP

  // The C configuration the shared classifier takes (ports in network order, flag bits).
  [[nodiscard]] axon_config to_c() const noexcept;
};

// Where the parts of a frame are, in host order where it matters to a caller.
struct ParsedFrame {
  Reason reason = Reason::pass_not_axp;
  axon_packet_info info{};  // offsets, addresses and ports as the classifier left them

  [[nodiscard]] bool ok() const noexcept { return reason == Reason::ok; }
  [[nodiscard]] std::uint16_t src_port() const noexcept { return axon_ntohs(info.src_port); }
  [[nodiscard]] std::uint16_t dst_port() const noexcept { return axon_ntohs(info.dst_port); }
  [[nodiscard]] std::uint32_t tenant_id() const noexcept { return axon_ntohl(info.tenant_id); }
};

class PacketParser {
 public:
  explicit PacketParser(const PacketConfig& config) noexcept : config_(config.to_c()) {}

  // Hot path: inline, no allocation, reads nothing outside `frame`.
  [[nodiscard]] ParsedFrame parse(std::span<const std::uint8_t> frame) const noexcept {
    ParsedFrame out;
    const std::uint8_t* begin = frame.data();
    out.reason = to_reason(axon_classify_frame(begin, begin + frame.size(), &config_, &out.info));
    return out;
  }

  // The AXP datagram (header + payload) of a frame that parsed ok.
  [[nodiscard]] static std::span<const std::uint8_t> datagram_of(std::span<const std::uint8_t> frame,
                                                                 const ParsedFrame& parsed) noexcept {
    return frame.subspan(parsed.info.axp_offset, parsed.info.datagram_len);
  }

 private:
  axon_config config_;
};

}  // namespace axon::protocol

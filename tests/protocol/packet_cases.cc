// Frame builder and the shared case table (see packet_cases.h).
#include "packet_cases.h"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace axon::test {
namespace {

using protocol::Reason;

void put16(std::vector<std::uint8_t>& out, std::size_t at, std::uint16_t v) {
  out[at] = static_cast<std::uint8_t>(v >> 8);
  out[at + 1] = static_cast<std::uint8_t>(v);
}

void append16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

std::vector<std::uint8_t> address_bytes(int family, const std::string& text) {
  std::vector<std::uint8_t> bytes(family == AF_INET ? 4 : 16);
  if (inet_pton(family, text.c_str(), bytes.data()) != 1) throw std::invalid_argument("bad test address " + text);
  return bytes;
}

std::uint16_t ipv4_checksum(const std::uint8_t* header, std::size_t len) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += static_cast<std::uint32_t>(header[i] << 8 | header[i + 1]);
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

}  // namespace

protocol::Header FrameSpec::default_header() {
  protocol::Header h;
  h.type = protocol::MessageType::request;
  h.priority = protocol::Priority::interactive;
  h.trace_flags = protocol::kTraceSampled;
  h.tenant_id = kAllowedTenant;
  h.agent_id = 42;
  h.session_key = 0x1122334455667788ull;
  h.request_id = 0x0102030405060708ull;
  h.trace_id = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
  h.span_id = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  h.deadline_us = 50'000;
  return h;
}

std::vector<std::uint8_t> build_datagram(const FrameSpec& spec) {
  std::vector<std::uint8_t> datagram(protocol::kHeaderLen + spec.payload.size());
  if (protocol::encode_datagram(spec.axp, spec.payload, datagram) != datagram.size())
    throw std::logic_error("test datagram does not encode");
  if (spec.mutate_datagram) spec.mutate_datagram(datagram);
  return datagram;
}

std::vector<std::uint8_t> build_frame(const FrameSpec& spec) {
  const int family = spec.ip_version == 4 ? AF_INET : AF_INET6;
  std::vector<std::uint8_t> datagram = build_datagram(spec);
  // Ethernet: destination and source MAC, then VLAN tags and the ethertype.
  std::vector<std::uint8_t> frame = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  frame.reserve(128 + datagram.size() + spec.trailing_bytes);
  std::uint16_t ethertype = spec.ethertype ? spec.ethertype : (spec.ip_version == 4 ? 0x0800 : 0x86DD);
  for (std::size_t i = 0; i < spec.vlan_tpids.size(); ++i) {
    append16(frame, spec.vlan_tpids[i]);
    append16(frame, static_cast<std::uint16_t>(100 + i));  // the TCI of the next tag: VLAN id
  }
  append16(frame, ethertype);

  // UDP (or a stand-in L4 of the same size for other protocols).
  std::vector<std::uint8_t> l4;
  append16(l4, spec.src_port);
  append16(l4, spec.dst_port);
  append16(l4, spec.udp_length.value_or(static_cast<std::uint16_t>(8 + datagram.size())));
  append16(l4, 0);  // checksum 0: "not computed", legal for UDP over IPv4 and ignored by axon
  l4.insert(l4.end(), datagram.begin(), datagram.end());

  const auto src = address_bytes(family, spec.src);
  const auto dst = address_bytes(family, spec.dst);
  const std::size_t l3_start = frame.size();
  if (spec.ip_version == 4) {
    const std::size_t header_len = std::size_t{spec.ipv4_ihl} * 4;
    std::vector<std::uint8_t> ip(header_len < 20 ? 20 : header_len, 0);
    std::uint8_t nibble = spec.ip_version_nibble ? spec.ip_version_nibble : 4;
    ip[0] = static_cast<std::uint8_t>(nibble << 4 | (spec.ipv4_ihl & 0x0F));
    put16(ip, 2, spec.ip_length.value_or(static_cast<std::uint16_t>(ip.size() + l4.size())));
    put16(ip, 4, 0x1234);
    put16(ip, 6, spec.ipv4_frag_off);
    ip[8] = 64;
    ip[9] = spec.ip_protocol;
    std::memcpy(&ip[12], src.data(), 4);
    std::memcpy(&ip[16], dst.data(), 4);
    put16(ip, 10, ipv4_checksum(ip.data(), ip.size()));
    frame.insert(frame.end(), ip.begin(), ip.end());
  } else {
    std::vector<std::uint8_t> ext;
    std::uint8_t first_next = spec.ip_protocol;
    if (spec.ipv6_fragment) {
      ext = {spec.ip_protocol, 0, 0, 0, 0, 0, 0x56, 0x78};
      put16(ext, 2, *spec.ipv6_fragment);
      first_next = 44;
    }
    std::vector<std::uint8_t> ip(40, 0);
    std::uint8_t nibble = spec.ip_version_nibble ? spec.ip_version_nibble : 6;
    ip[0] = static_cast<std::uint8_t>(nibble << 4);
    put16(ip, 4, spec.ip_length.value_or(static_cast<std::uint16_t>(ext.size() + l4.size())));
    ip[6] = first_next;
    ip[7] = 64;
    std::memcpy(&ip[8], src.data(), 16);
    std::memcpy(&ip[24], dst.data(), 16);
    frame.insert(frame.end(), ip.begin(), ip.end());
    frame.insert(frame.end(), ext.begin(), ext.end());
  }
  (void)l3_start;
  frame.insert(frame.end(), l4.begin(), l4.end());
  frame.insert(frame.end(), spec.trailing_bytes, 0);
  if (spec.cut_frame_to && *spec.cut_frame_to < frame.size()) frame.resize(*spec.cut_frame_to);
  return frame;
}

protocol::PacketConfig case_parser_config() {
  protocol::PacketConfig config;
  config.ports = kCasePorts;
  config.requests_only = true;
  config.drop_all_fragments = false;
  return config;
}

const std::vector<PacketCase>& packet_cases() {
  static const std::vector<PacketCase> cases = [] {
    std::vector<PacketCase> t;
    // A frame that must pass both the parser and the XDP program as a valid request.
    auto valid = [&t](std::string name, FrameSpec spec) {
      t.push_back({std::move(name), build_frame(spec), Reason::ok, Reason::ok, kXdpPass});
    };
    // A frame both must reject (or pass as not-AXP) for the same reason.
    auto rejected = [&t](std::string name, FrameSpec spec, Reason reason) {
      std::uint32_t action = reason == Reason::pass_not_axp ? kXdpPass : kXdpDrop;
      t.push_back({std::move(name), build_frame(spec), reason, reason, action});
    };
    // Well-formed AXP that only the XDP policy (maps) rejects; the parser says ok.
    auto policy = [&t](std::string name, FrameSpec spec, Reason reason) {
      t.push_back({std::move(name), build_frame(spec), Reason::ok, reason, kXdpDrop});
    };
    // Bytes at an offset of the AXP header (network order for multi-byte values).
    auto set8 = [](std::size_t at, std::uint8_t v) { return [=](std::vector<std::uint8_t>& d) { d[at] = v; }; };
    auto set16 = [](std::size_t at, std::uint16_t v) { return [=](std::vector<std::uint8_t>& d) { put16(d, at, v); }; };
    auto set32 = [](std::size_t at, std::uint32_t v) {
      return [=](std::vector<std::uint8_t>& d) {
        put16(d, at, static_cast<std::uint16_t>(v >> 16));
        put16(d, at + 2, static_cast<std::uint16_t>(v));
      };
    };
    const FrameSpec base;
    const std::size_t ipv4_udp_end = 14 + 20 + 8;

    // --- valid requests ------------------------------------------------------------------------
    valid("ipv4_valid", base);
    {
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db8::10";
      s.dst = "2001:db8::1";
      valid("ipv6_valid", s);
    }
    {
      FrameSpec s;
      s.vlan_tpids = {0x8100};
      valid("vlan_tagged_valid", s);
    }
    {
      FrameSpec s;
      s.vlan_tpids = {0x88A8, 0x8100};
      valid("qinq_tagged_valid", s);
    }
    {
      FrameSpec s;
      s.dst_port = 7401;
      valid("second_configured_port_valid", s);
    }
    {
      FrameSpec s;
      s.ipv4_ihl = 6;
      valid("ipv4_options_valid", s);
    }
    {
      FrameSpec s;
      s.payload.clear();
      valid("empty_payload_valid", s);
    }
    {
      FrameSpec s;
      s.trailing_bytes = 4;
      valid("trailing_padding_valid", s);
    }
    {
      FrameSpec s;  // a later minor version: 8 more header bytes this receiver skips
      s.mutate_datagram = [](std::vector<std::uint8_t>& d) {
        d.insert(d.begin() + protocol::kHeaderLen, 8, 0xEE);
        put16(d, 8, 88);
      };
      valid("extended_header_len_valid", s);
    }
    {
      FrameSpec s;  // segment 2 of 3: valid on the wire; reassembly is the receiver's business
      s.mutate_datagram = [](std::vector<std::uint8_t>& d) {
        put16(d, 12, 1);
        put16(d, 14, 3);
        put16(d, 68, 0);
        put16(d, 70, 3000);
      };
      valid("middle_segment_valid", s);
    }

    // --- not AXP: handed to the kernel ---------------------------------------------------------
    {
      FrameSpec s;
      s.dst_port = 53;
      rejected("other_udp_port_passes", s, Reason::pass_not_axp);
    }
    {
      FrameSpec s;
      s.ip_protocol = 6;
      rejected("tcp_passes", s, Reason::pass_not_axp);
    }
    {
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db8::10";
      s.dst = "2001:db8::1";
      s.ip_protocol = 6;
      rejected("ipv6_tcp_passes", s, Reason::pass_not_axp);
    }
    {
      FrameSpec s;
      s.ethertype = 0x0806;
      rejected("arp_passes", s, Reason::pass_not_axp);
    }
    {
      FrameSpec s;
      s.vlan_tpids = {0x88A8, 0x8100, 0x8100};
      rejected("three_vlan_tags_pass", s, Reason::pass_not_axp);
    }
    {
      FrameSpec s;  // a later fragment has no UDP header: nothing says it is AXP
      s.ipv4_frag_off = 0x0010;
      rejected("ipv4_later_fragment_passes", s, Reason::pass_not_axp);
    }

    // --- malformed below AXP -------------------------------------------------------------------
    {
      FrameSpec s;
      s.cut_frame_to = 10;
      PacketCase c{"truncated_ethernet", build_frame(s), Reason::eth_truncated, Reason::eth_truncated, kXdpDrop};
      c.test_run_accepts = false;
      t.push_back(std::move(c));
    }
    {
      FrameSpec s;
      s.vlan_tpids = {0x8100};
      s.cut_frame_to = 16;
      rejected("truncated_vlan_tag", s, Reason::eth_truncated);
    }
    {
      FrameSpec s;
      s.cut_frame_to = 14 + 12;
      rejected("truncated_ipv4_header", s, Reason::ip_truncated);
    }
    {
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db8::10";
      s.dst = "2001:db8::1";
      s.cut_frame_to = 14 + 30;
      rejected("truncated_ipv6_header", s, Reason::ip_truncated);
    }
    {
      FrameSpec s;
      s.ipv4_ihl = 8;
      s.cut_frame_to = 14 + 24;  // the fixed 20 bytes are there, the options are not
      rejected("truncated_ipv4_options", s, Reason::ip_truncated);
    }
    {
      FrameSpec s;
      s.ip_version_nibble = 5;
      rejected("ipv4_bad_version_nibble", s, Reason::ip_malformed);
    }
    {
      FrameSpec s;
      s.ipv4_ihl = 4;
      rejected("ipv4_ihl_too_small", s, Reason::ip_malformed);
    }
    {
      FrameSpec s;
      s.ip_length = 16;
      rejected("ipv4_total_length_below_header", s, Reason::ip_malformed);
    }
    {
      FrameSpec s;
      s.ip_length = static_cast<std::uint16_t>(20 + 8 + protocol::kHeaderLen + 32 + 8);
      rejected("ipv4_datagram_longer_than_frame", s, Reason::ip_truncated);
    }
    {
      // Regression (found by axp_fuzz under ASan): an IPv6 extension header whose length fits the
      // declared payload length but not the frame. The walk stepped past the end of the buffer and
      // read the next header there. Next header 0 (hop-by-hop) makes the UDP header's first 8 bytes
      // the extension: source port 64 gives next header 0 again and a length of (0x40 + 1) * 8.
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db8::10";
      s.dst = "2001:db8::1";
      s.ip_protocol = 0;
      s.src_port = 64;
      s.ip_length = 4000;
      rejected("ipv6_extension_header_past_frame_end", s, Reason::ip_truncated);
    }
    {
      FrameSpec s;
      s.cut_frame_to = 14 + 20 + 4;
      rejected("truncated_udp_header", s, Reason::udp_truncated);
    }
    {
      FrameSpec s;
      s.udp_length = 6;
      rejected("udp_length_below_8", s, Reason::udp_bad_length);
    }
    {
      FrameSpec s;
      s.udp_length = static_cast<std::uint16_t>(8 + protocol::kHeaderLen + 32 + 1);
      rejected("udp_length_beyond_ip_payload", s, Reason::udp_bad_length);
    }
    {
      FrameSpec s;
      s.ipv4_frag_off = 0x2000;  // MF set, offset 0: the first fragment, addressed to AXP
      rejected("ipv4_first_fragment", s, Reason::ip_fragment);
    }
    {
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db8::10";
      s.dst = "2001:db8::1";
      s.ipv6_fragment = 0x0001;  // offset 0, M set
      rejected("ipv6_first_fragment", s, Reason::ip_fragment);
    }
    {
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db8::10";
      s.dst = "2001:db8::1";
      s.ipv6_fragment = 0x0000;  // an atomic fragment (RFC 8200): not actually fragmented
      valid("ipv6_atomic_fragment_valid", s);
    }

    // --- malformed AXP -------------------------------------------------------------------------
    {
      FrameSpec s;
      s.payload.clear();
      s.mutate_datagram = [](std::vector<std::uint8_t>& d) { d.resize(4); };
      rejected("datagram_shorter_than_8", s, Reason::axp_truncated);
    }
    {
      FrameSpec s;
      s.payload.clear();
      s.mutate_datagram = [](std::vector<std::uint8_t>& d) { d.resize(40); };
      rejected("datagram_shorter_than_header", s, Reason::axp_truncated);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set32(0, 0x41585020);
      rejected("bad_magic", s, Reason::bad_magic);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set8(4, 2);
      rejected("bad_version", s, Reason::bad_version);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set16(8, 72);
      rejected("header_len_below_80", s, Reason::bad_header_len);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set16(8, 84);
      rejected("header_len_not_multiple_of_8", s, Reason::bad_header_len);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set16(10, 32 + 16);
      rejected("payload_len_lies", s, Reason::bad_length);
    }
    {
      FrameSpec s;
      s.cut_frame_to = ipv4_udp_end + protocol::kHeaderLen + 10;  // IP and UDP claim 32 bytes of payload
      rejected("frame_cut_inside_payload", s, Reason::axp_truncated);
    }
    {
      FrameSpec s;
      s.cut_frame_to = ipv4_udp_end + 50;
      rejected("frame_cut_inside_axp_header", s, Reason::axp_truncated);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set8(5, 9);
      rejected("bad_message_type", s, Reason::bad_type);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set8(6, 7);
      rejected("bad_priority", s, Reason::bad_priority);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set16(14, 0);
      rejected("segment_count_zero", s, Reason::bad_segment);
    }
    {
      FrameSpec s;
      s.mutate_datagram = [](std::vector<std::uint8_t>& d) {
        put16(d, 12, 3);
        put16(d, 14, 3);
      };
      rejected("segment_index_past_count", s, Reason::bad_segment);
    }
    {
      FrameSpec s;
      s.mutate_datagram = [](std::vector<std::uint8_t>& d) {
        put16(d, 14, 2);
        put16(d, 68, 1);
        put16(d, 70, 1);  // message_len 65537
      };
      rejected("message_len_above_64k", s, Reason::too_large);
    }
    {
      FrameSpec s;
      s.mutate_datagram = set32(68, 64);
      rejected("single_segment_message_len_mismatch", s, Reason::bad_length);
    }
    {
      FrameSpec s;
      s.axp.type = protocol::MessageType::response;
      rejected("response_sent_to_appliance", s, Reason::not_request);
    }

    // --- XDP policy ----------------------------------------------------------------------------
    {
      FrameSpec s;
      s.src = "192.168.1.1";
      policy("source_outside_allowlist", s, Reason::prefix_denied);
    }
    {
      FrameSpec s;
      s.ip_version = 6;
      s.src = "2001:db9::10";
      s.dst = "2001:db8::1";
      policy("ipv6_source_outside_allowlist", s, Reason::prefix_denied);
    }
    {
      FrameSpec s;
      s.axp.tenant_id = kUnknownTenant;
      policy("unknown_tenant", s, Reason::prefix_denied);
    }
    return t;
  }();
  return cases;
}

}  // namespace axon::test

// libFuzzer target over the shared AXP validator and frame parser, and the reply builder that
// trusts their verdict.
//
// The first input byte picks how the rest is presented, so one corpus covers every layer:
//   0: a whole Ethernet frame for PacketParser::parse (the classifier the XDP program runs);
//   1: a UDP payload, wrapped in a valid Ethernet/IPv4/UDP frame (reaches AXP validation
//      without the fuzzer first having to discover Ethernet and IP);
//   2: the same over IPv6 with one VLAN tag;
//   3: a bare datagram for protocol::validate/validate_request/decode_header.
// Invariants checked on every input: the frame classifier and the datagram validator agree,
// a valid datagram decodes and re-encodes to a header that validates again, and a reply built
// for a valid request parses back as a valid reply.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "axon/protocol/axp.h"
#include "axon/protocol/packet.h"

#include "reply_builder.h"

namespace {

using axon::protocol::Reason;

[[noreturn]] void invariant_broken() {
  std::abort();
}

void check(bool ok) {
  if (!ok) invariant_broken();
}

std::vector<std::uint8_t> wrap(const std::uint8_t* payload, std::size_t size, bool ipv6) {
  std::vector<std::uint8_t> f(14 + (ipv6 ? 4 + 40 : 20) + 8 + size, 0);
  std::uint8_t* p = f.data();
  std::memset(p, 0x02, 12);
  std::size_t off = 12;
  if (ipv6) {
    p[off++] = 0x81;
    p[off++] = 0x00;
    p[off++] = 0x00;
    p[off++] = 0x64;
  }
  p[off++] = ipv6 ? 0x86 : 0x08;
  p[off++] = ipv6 ? 0xdd : 0x00;
  const std::size_t udp_len = 8 + size;
  if (ipv6) {
    p[off] = 0x60;
    p[off + 4] = std::uint8_t(udp_len >> 8);
    p[off + 5] = std::uint8_t(udp_len);
    p[off + 6] = 17;
    p[off + 7] = 64;
    p[off + 8 + 15] = 2;
    p[off + 24 + 15] = 1;
    off += 40;
  } else {
    const std::size_t total = 20 + udp_len;
    p[off] = 0x45;
    p[off + 2] = std::uint8_t(total >> 8);
    p[off + 3] = std::uint8_t(total);
    p[off + 6] = 0x40;
    p[off + 8] = 64;
    p[off + 9] = 17;
    p[off + 12] = 10;
    p[off + 15] = 2;
    p[off + 16] = 10;
    p[off + 19] = 1;
    off += 20;
  }
  p[off] = 0x9c;
  p[off + 1] = 0x40;
  p[off + 2] = std::uint8_t(axon::protocol::kDefaultPort >> 8);
  p[off + 3] = std::uint8_t(axon::protocol::kDefaultPort & 0xff);
  p[off + 4] = std::uint8_t(udp_len >> 8);
  p[off + 5] = std::uint8_t(udp_len);
  if (size > 0) std::memcpy(p + off + 8, payload, size);
  return f;
}

void check_datagram(std::span<const std::uint8_t> datagram) {
  const Reason any = axon::protocol::validate(datagram);
  const Reason request = axon::protocol::validate_request(datagram);
  check(any != Reason::ok ? request == any : (request == Reason::ok || request == Reason::not_request));
  if (any != Reason::ok) return;
  const axon::protocol::Header h = axon::protocol::decode_header(datagram);
  const auto payload = axon::protocol::payload_of(datagram);
  check(payload.size() == h.payload_len);
  check(payload.data() >= datagram.data() && payload.data() + payload.size() <= datagram.data() + datagram.size());
  // Re-encoding what was decoded gives a datagram that validates the same way.
  std::vector<std::uint8_t> again(axon::protocol::kHeaderLen + payload.size());
  const std::size_t n = axon::protocol::encode_datagram(h, payload, again);
  if (h.segment_count == 1) {
    check(n == again.size());
    check(axon::protocol::validate(again) == Reason::ok);
  }
}

void check_frame(std::span<const std::uint8_t> frame) {
  axon::protocol::PacketConfig config;
  const axon::protocol::PacketParser parser{config};
  const axon::protocol::ParsedFrame parsed = parser.parse(frame);
  check(!(parsed.reason == Reason::prefix_denied || parsed.reason == Reason::rate_limited ||
          parsed.reason == Reason::no_socket));
  if (!parsed.ok()) return;
  const auto datagram = axon::protocol::PacketParser::datagram_of(frame, parsed);
  check(datagram.data() >= frame.data() && datagram.data() + datagram.size() <= frame.data() + frame.size());
  // The frame classifier and the datagram validator are the same rules.
  check(axon::protocol::validate_request(datagram) == Reason::ok);
  check_datagram(datagram);

  // A reply to it, built the way the data plane builds one, parses back as a valid reply.
  const axon::protocol::Header request = axon::protocol::decode_header(datagram);
  axon::dataplane::ReplyContext ctx;
  if (!axon::dataplane::capture_context(frame, parsed, request, 1, ctx)) return;
  const auto reply_header =
      axon::protocol::make_reply(request, axon::protocol::MessageType::response, axon::protocol::random_span_id());
  std::vector<std::uint8_t> out(4096);
  const std::uint32_t max = axon::dataplane::max_reply_payload(ctx, std::uint32_t(out.size()));
  const auto body = axon::protocol::payload_of(datagram);
  const std::size_t take = body.size() < max ? body.size() : max;
  axon::protocol::Header single = reply_header;
  single.segment_count = 1;
  single.message_len = std::uint32_t(take);
  const std::uint32_t len = axon::dataplane::build_reply_frame(ctx, single, body.first(take), out);
  check(len != 0);
  axon::protocol::PacketConfig any_type;
  any_type.requests_only = false;
  any_type.ports = {parsed.src_port(), 0, 0, 0};
  const auto back = axon::protocol::PacketParser{any_type}.parse(std::span<const std::uint8_t>(out.data(), len));
  // Port 0 is "unused" in the classifier's config, so a request from port 0 has no reply port.
  if (parsed.src_port() != 0) check(back.ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0] % 4;
  const std::uint8_t* rest = data + 1;
  const std::size_t n = size - 1;
  switch (mode) {
    case 0: check_frame(std::span<const std::uint8_t>(rest, n)); break;
    case 1: {
      const auto frame = wrap(rest, n, false);
      check_frame(frame);
      break;
    }
    case 2: {
      const auto frame = wrap(rest, n, true);
      check_frame(frame);
      break;
    }
    default: check_datagram(std::span<const std::uint8_t>(rest, n)); break;
  }
  return 0;
}

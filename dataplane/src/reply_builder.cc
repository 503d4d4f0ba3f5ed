// Reply frame construction. The reply goes back the way the request came: MACs, IPs and
// ports swapped, VLAN tags kept, fresh IP and UDP checksums (the UDP one is mandatory on
// IPv6 and cheap enough to always compute).
#include "reply_builder.h"

#include <cstring>

namespace axon::dataplane {
namespace {

std::uint32_t sum_bytes(const std::uint8_t* data, std::size_t len, std::uint32_t sum) noexcept {
  while (len > 1) {
    sum += std::uint32_t(data[0]) << 8 | data[1];
    data += 2;
    len -= 2;
  }
  if (len == 1) sum += std::uint32_t(data[0]) << 8;
  return sum;
}

std::uint16_t fold(std::uint32_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return std::uint16_t(~sum & 0xffff);
}

void put16(std::uint8_t* p, std::uint16_t host) noexcept {
  p[0] = std::uint8_t(host >> 8);
  p[1] = std::uint8_t(host);
}

}  // namespace

bool capture_context(std::span<const std::uint8_t> frame, const protocol::ParsedFrame& parsed,
                     const protocol::Header& request, std::uint64_t rx_ns, ReplyContext& ctx) noexcept {
  const std::uint16_t l2_len = parsed.info.l3_offset;
  if (l2_len > sizeof ctx.l2 || l2_len > frame.size()) return false;
  std::memcpy(ctx.l2, frame.data(), l2_len);
  ctx.l2_len = std::uint8_t(l2_len);
  ctx.ip_version = parsed.info.ip_version;
  ctx.answered = 0;
  ctx.cacheable = 0;
  std::memcpy(ctx.src_addr, parsed.info.src_addr, sizeof ctx.src_addr);
  std::memcpy(ctx.dst_addr, parsed.info.dst_addr, sizeof ctx.dst_addr);
  ctx.src_port = parsed.info.src_port;
  ctx.dst_port = parsed.info.dst_port;
  ctx.has_deadline = request.deadline_us != 0;
  ctx.deadline_ns = rx_ns + std::uint64_t(request.deadline_us) * 1000u;
  ctx.request = request;
  ctx.dedup = nullptr;
  return true;
}

std::uint32_t max_reply_payload(const ReplyContext& ctx, std::uint32_t frame_capacity) noexcept {
  std::uint32_t overhead = ctx.l2_len + (ctx.ip_version == 6 ? 40u : 20u) + 8u + std::uint32_t(protocol::kHeaderLen);
  return frame_capacity > overhead ? frame_capacity - overhead : 0;
}

std::uint32_t build_reply_frame(const ReplyContext& ctx, const protocol::Header& reply,
                                std::span<const std::uint8_t> payload, std::span<std::uint8_t> out) noexcept {
  const std::uint32_t ip_len = ctx.ip_version == 6 ? 40u : 20u;
  const std::uint32_t udp_len = 8u + std::uint32_t(protocol::kHeaderLen) + std::uint32_t(payload.size());
  const std::uint32_t total = ctx.l2_len + ip_len + udp_len;
  if (total > out.size() || udp_len > 0xffff) return 0;
  std::uint8_t* p = out.data();

  // L2: the request's header with source and destination MACs exchanged.
  std::memcpy(p, ctx.l2, ctx.l2_len);
  std::memcpy(p, ctx.l2 + 6, 6);
  std::memcpy(p + 6, ctx.l2, 6);
  std::uint8_t* ip = p + ctx.l2_len;
  std::uint8_t* udp = ip + ip_len;

  std::uint32_t pseudo = 0;
  if (ctx.ip_version == 6) {
    std::memset(ip, 0, 40);
    ip[0] = 0x60;
    put16(ip + 4, std::uint16_t(udp_len));
    ip[6] = AXON_IPPROTO_UDP;
    ip[7] = 64;
    std::memcpy(ip + 8, ctx.dst_addr, 16);
    std::memcpy(ip + 24, ctx.src_addr, 16);
    pseudo = sum_bytes(ip + 8, 32, 0) + AXON_IPPROTO_UDP + udp_len;
  } else {
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, std::uint16_t(ip_len + udp_len));
    put16(ip + 4, 0);
    put16(ip + 6, 0x4000);  // DF: replies are never fragmented
    ip[8] = 64;
    ip[9] = AXON_IPPROTO_UDP;
    put16(ip + 10, 0);
    std::memcpy(ip + 12, ctx.dst_addr, 4);
    std::memcpy(ip + 16, ctx.src_addr, 4);
    put16(ip + 10, fold(sum_bytes(ip, 20, 0)));
    pseudo = sum_bytes(ip + 12, 8, 0) + AXON_IPPROTO_UDP + udp_len;
  }

  std::memcpy(udp, &ctx.dst_port, 2);
  std::memcpy(udp + 2, &ctx.src_port, 2);
  put16(udp + 4, std::uint16_t(udp_len));
  put16(udp + 6, 0);
  protocol::Header header = reply;
  header.payload_len = std::uint16_t(payload.size());
  std::size_t written = protocol::encode_header(header, std::span<std::uint8_t>(udp + 8, protocol::kHeaderLen));
  if (written != protocol::kHeaderLen) return 0;
  if (!payload.empty()) std::memcpy(udp + 8 + protocol::kHeaderLen, payload.data(), payload.size());
  std::uint16_t check = fold(sum_bytes(udp, udp_len, pseudo));
  put16(udp + 6, check == 0 ? 0xffff : check);
  return total;
}

}  // namespace axon::dataplane

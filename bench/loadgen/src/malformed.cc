// Malformed AXP datagrams built from a valid request with exactly one rule broken.
#include "axon/loadgen/malformed.h"

#include <cstring>
#include <vector>

#include "axon/protocol/axp.h"

namespace axon::loadgen {

namespace p = axon::protocol;

const char* to_string(MalformedKind kind) noexcept {
  switch (kind) {
    case MalformedKind::bad_magic: return "bad_magic";
    case MalformedKind::bad_version: return "bad_version";
    case MalformedKind::lying_length: return "lying_length";
    case MalformedKind::bad_header_len: return "bad_header_len";
    case MalformedKind::truncated: return "truncated";
    case MalformedKind::bad_type: return "bad_type";
    case MalformedKind::bad_priority: return "bad_priority";
    case MalformedKind::bad_segment: return "bad_segment";
    case MalformedKind::not_request: return "not_request";
    case MalformedKind::count: break;
  }
  return "unknown";
}

std::size_t build_malformed(MalformedKind kind, std::span<std::uint8_t> out, std::size_t payload_bytes) {
  std::vector<std::uint8_t> payload(payload_bytes, 'x');
  p::Header h;
  h.tenant_id = 1;
  h.agent_id = 1;
  h.request_id = kMalformedIdTag | static_cast<std::uint64_t>(kind);
  if (kind == MalformedKind::not_request) h.type = p::MessageType::response;
  std::size_t len = p::encode_datagram(h, payload, out);
  if (len == 0) return 0;
  // Break exactly one rule of docs/protocol.md §8, at the field the shared struct defines.
  auto put16 = [&out](std::size_t off, std::uint16_t v) {
    out[off] = static_cast<std::uint8_t>(v >> 8);
    out[off + 1] = static_cast<std::uint8_t>(v);
  };
  switch (kind) {
    case MalformedKind::bad_magic: out[offsetof(axp_header, magic)] ^= 0xFF; break;
    case MalformedKind::bad_version: out[offsetof(axp_header, version)] = AXP_VERSION + 1; break;
    case MalformedKind::lying_length:
      put16(offsetof(axp_header, payload_len), static_cast<std::uint16_t>(payload_bytes + 64));
      break;
    case MalformedKind::bad_header_len: put16(offsetof(axp_header, header_len), p::kHeaderLen + 4); break;
    case MalformedKind::truncated: len = p::kHeaderLen / 2; break;
    case MalformedKind::bad_type: out[offsetof(axp_header, type)] = 9; break;
    case MalformedKind::bad_priority: out[offsetof(axp_header, priority)] = 7; break;
    case MalformedKind::bad_segment: put16(offsetof(axp_header, segment_count), 0); break;
    case MalformedKind::not_request:
    case MalformedKind::count: break;
  }
  return len;
}

std::optional<MalformedKind> malformed_kind_from_string(const std::string& name) noexcept {
  for (std::size_t k = 0; k < kMalformedKinds; ++k)
    if (name == to_string(static_cast<MalformedKind>(k))) return static_cast<MalformedKind>(k);
  return std::nullopt;
}

}  // namespace axon::loadgen

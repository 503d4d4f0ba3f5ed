// Malformed AXP datagrams, one kind per rule of docs/protocol.md §8 that the XDP front door
// enforces on the AXP header: the load generator mixes them into its load, and axon-pktgen
// blasts them at the XDP program to measure its drop rate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace axon::loadgen {

// Request ids of malformed datagrams: kMalformedIdTag | kind, so a reply to one is recognisable.
inline constexpr std::uint64_t kMalformedIdTag = 0xBAD0000000000000ull;
inline constexpr std::uint64_t kMalformedIdMask = 0xFFF0000000000000ull;

// One malformed kind per rule the XDP front door enforces on the AXP header.
enum class MalformedKind : std::uint8_t {
  bad_magic,
  bad_version,
  lying_length,  // payload_len claims more bytes than the datagram has
  bad_header_len,
  truncated,  // shorter than the fixed header
  bad_type,
  bad_priority,
  bad_segment,
  not_request,  // a well-formed RESPONSE sent to the appliance
  count
};
inline constexpr std::size_t kMalformedKinds = static_cast<std::size_t>(MalformedKind::count);
[[nodiscard]] const char* to_string(MalformedKind kind) noexcept;

// Builds a malformed datagram of the given kind into `out` (from a valid request, so exactly one
// rule is broken); returns its length.
[[nodiscard]] std::size_t build_malformed(MalformedKind kind, std::span<std::uint8_t> out, std::size_t payload_bytes);

[[nodiscard]] std::optional<MalformedKind> malformed_kind_from_string(const std::string& name) noexcept;

}  // namespace axon::loadgen

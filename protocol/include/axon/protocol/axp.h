// AXP for C++: typed constants and enums over the shared wire definitions, header encode and
// decode, and the reply rules (echo the ids, continue the trace). docs/protocol.md is the spec.
//
// The wire struct, the enum values and the validator itself live in bpf/axon_xdp.shared.h, which
// the XDP program compiles too; this header only gives them C++ types, so the two sides cannot
// disagree about a byte or a rule.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "axon_xdp.shared.h"

namespace axon::protocol {

inline constexpr std::uint32_t kMagic = AXP_MAGIC;
inline constexpr std::uint8_t kVersion = AXP_VERSION;
inline constexpr std::size_t kHeaderLen = AXP_HEADER_LEN;
inline constexpr std::size_t kMaxHeaderLen = AXP_MAX_HEADER_LEN;
inline constexpr std::size_t kMaxMessageLen = AXP_MAX_MESSAGE_LEN;
inline constexpr std::uint16_t kDefaultPort = AXP_DEFAULT_PORT;
// Largest UDP payload over IPv4 (65535 - 20 - 8); a single datagram never carries more.
inline constexpr std::size_t kMaxDatagramLen = 65507;
inline constexpr std::uint8_t kTraceSampled = AXP_TRACE_SAMPLED;

enum class MessageType : std::uint8_t {
  request = AXP_MSG_REQUEST,
  response = AXP_MSG_RESPONSE,
  busy = AXP_MSG_BUSY,
  error = AXP_MSG_ERROR,
};

enum class Priority : std::uint8_t {
  interactive = AXP_PRIO_INTERACTIVE,
  background = AXP_PRIO_BACKGROUND,
};

enum class ErrorCode : std::uint16_t {
  none = AXP_ERR_NONE,
  malformed = AXP_ERR_MALFORMED,
  unsupported_version = AXP_ERR_UNSUPPORTED_VERSION,
  payload_too_large = AXP_ERR_PAYLOAD_TOO_LARGE,
  unknown_agent = AXP_ERR_UNKNOWN_AGENT,
  overloaded = AXP_ERR_OVERLOADED,
  worker_failed = AXP_ERR_WORKER_FAILED,
  deadline_exceeded = AXP_ERR_DEADLINE_EXCEEDED,
  rate_limited = AXP_ERR_RATE_LIMITED,
  handler_error = AXP_ERR_HANDLER_ERROR,
  unknown_tenant = AXP_ERR_UNKNOWN_TENANT,
  internal = AXP_ERR_INTERNAL,
  duplicate_reply_evicted = AXP_ERR_DUPLICATE_REPLY_EVICTED,
};
inline constexpr std::size_t kErrorCodeCount = AXP_ERR_COUNT;

// The classifier's verdict reason, shared with the XDP program's per-CPU counters.
enum class Reason : std::uint8_t {
  ok = AXON_OK,
  pass_not_axp = AXON_PASS_NOT_AXP,
  eth_truncated = AXON_DROP_ETH_TRUNCATED,
  ip_truncated = AXON_DROP_IP_TRUNCATED,
  ip_malformed = AXON_DROP_IP_MALFORMED,
  ip_fragment = AXON_DROP_IP_FRAGMENT,
  udp_truncated = AXON_DROP_UDP_TRUNCATED,
  udp_bad_length = AXON_DROP_UDP_BAD_LENGTH,
  axp_truncated = AXON_DROP_AXP_TRUNCATED,
  bad_magic = AXON_DROP_AXP_BAD_MAGIC,
  bad_version = AXON_DROP_AXP_BAD_VERSION,
  bad_header_len = AXON_DROP_AXP_BAD_HEADER_LEN,
  bad_length = AXON_DROP_AXP_BAD_LENGTH,
  bad_type = AXON_DROP_AXP_BAD_TYPE,
  bad_priority = AXON_DROP_AXP_BAD_PRIORITY,
  bad_segment = AXON_DROP_AXP_BAD_SEGMENT,
  too_large = AXON_DROP_AXP_TOO_LARGE,
  not_request = AXON_DROP_AXP_NOT_REQUEST,
  prefix_denied = AXON_DROP_PREFIX_DENIED,
  rate_limited = AXON_DROP_RATE_LIMITED,
  no_socket = AXON_DROP_NO_SOCKET,
  busy_no_credits = AXON_BUSY_NO_CREDITS,  // answered BUSY (tenant over its credits): not a drop
  reassembly_timeout = AXON_DROP_REASM_TIMEOUT,
  reassembly_memory = AXON_DROP_REASM_MEMORY,
  reassembly_tenant_memory = AXON_DROP_REASM_TENANT,
  segment_mismatch = AXON_DROP_SEGMENT_MISMATCH,
  segment_offset = AXON_DROP_SEGMENT_OFFSET,
  segment_duplicate = AXON_DROP_SEGMENT_DUPLICATE,
  reassembly_too_large = AXON_DROP_REASM_TOO_LARGE,
};
inline constexpr std::size_t kReasonCount = AXON_REASON_COUNT;
// Adding a C reason without a C++ name would leave counters unnamed: keep them in step.
static_assert(static_cast<std::size_t>(Reason::reassembly_too_large) + 1 == kReasonCount, "Reason is missing a value");

[[nodiscard]] constexpr bool is_drop(Reason r) noexcept {
  return r != Reason::ok && r != Reason::pass_not_axp && r != Reason::busy_no_credits;
}
// Reasons only the data plane's reassembly counts (docs/protocol.md §6): the XDP program never
// returns them, so its counters for them stay 0.
[[nodiscard]] constexpr bool is_reassembly(Reason r) noexcept {
  return r >= Reason::reassembly_timeout && r <= Reason::reassembly_too_large;
}
[[nodiscard]] constexpr Reason to_reason(axon_reason r) noexcept {
  return static_cast<Reason>(r);
}

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

// The fixed header in host order. Defaults describe a single-segment interactive REQUEST.
struct Header {
  MessageType type = MessageType::request;
  Priority priority = Priority::interactive;
  std::uint8_t trace_flags = 0;
  std::uint16_t header_len = kHeaderLen;
  std::uint16_t payload_len = 0;
  std::uint16_t segment_index = 0;
  std::uint16_t segment_count = 1;
  std::uint32_t tenant_id = 0;
  std::uint32_t agent_id = 0;
  std::uint64_t session_key = 0;
  std::uint64_t request_id = 0;
  TraceId trace_id{};
  SpanId span_id{};
  std::uint32_t deadline_us = 0;
  std::uint32_t message_len = 0;
  ErrorCode error_code = ErrorCode::none;
  std::uint32_t retry_after_us = 0;

  friend bool operator==(const Header&, const Header&) = default;
};

// Writes the 80-byte version-1 header (header_len is written as given; extensions beyond 80 bytes
// are the caller's). Returns kHeaderLen, or 0 when `out` is shorter than that.
[[nodiscard]] std::size_t encode_header(const Header& header, std::span<std::uint8_t> out) noexcept;

// Reads the version-1 fields of a datagram that validate() accepted; bytes between 80 and
// header_len (fields of later minor versions) are skipped. Requires datagram.size() >= kHeaderLen.
[[nodiscard]] Header decode_header(std::span<const std::uint8_t> datagram) noexcept;

// The rules of docs/protocol.md "Validation" applied to one UDP payload, by the same code the XDP
// program runs. Any message type is accepted; see validate_request() for the appliance side.
[[nodiscard]] inline Reason validate(std::span<const std::uint8_t> datagram) noexcept {
  if (datagram.size() > kMaxDatagramLen) return Reason::axp_truncated;  // cannot come from UDP
  const std::uint8_t* begin = datagram.data();
  return to_reason(axp_validate(begin, begin + datagram.size(), static_cast<std::uint32_t>(datagram.size())));
}

// validate() plus "must be a REQUEST": what a receiver on the appliance applies, and what the XDP
// program applies on ports configured with AXON_CFG_REQUESTS_ONLY.
[[nodiscard]] inline Reason validate_request(std::span<const std::uint8_t> datagram) noexcept {
  Reason r = validate(datagram);
  if (r == Reason::ok && datagram[5] != AXP_MSG_REQUEST) return Reason::not_request;
  return r;
}

// The payload bytes of a validated datagram.
[[nodiscard]] std::span<const std::uint8_t> payload_of(std::span<const std::uint8_t> datagram) noexcept;

// Writes a single-segment message: header (header_len, payload_len, segment 0 of 1 and
// message_len filled in from `payload`) followed by the payload. Returns the datagram length, or
// 0 when `out` is too small or the payload does not fit one datagram.
[[nodiscard]] std::size_t encode_datagram(Header header, std::span<const std::uint8_t> payload,
                                          std::span<std::uint8_t> out) noexcept;

// Reply rules (docs/protocol.md §5): tenant, agent, session key, request id, priority,
// trace id and trace flags are echoed; deadline is 0; lengths are left for encode_datagram().
// span_id carries `responder_span` (the responder's new span, child of the request's span_id)
// only when the request has trace context (has_trace_context); otherwise it is zero, so a
// request without trace context gets a reply without one.
[[nodiscard]] Header make_reply(const Header& request, MessageType type, const SpanId& responder_span) noexcept;
[[nodiscard]] Header make_error_reply(const Header& request, ErrorCode code, const SpanId& responder_span,
                                      std::uint32_t retry_after_us = 0) noexcept;
[[nodiscard]] Header make_busy_reply(const Header& request, std::uint32_t retry_after_us,
                                     const SpanId& responder_span) noexcept;

// Fresh random ids (never all zero, which W3C reserves for "invalid"). Not cryptographic:
// thread-local generators seeded once from the kernel.
[[nodiscard]] TraceId random_trace_id() noexcept;
[[nodiscard]] SpanId random_span_id() noexcept;
[[nodiscard]] bool is_valid_trace_id(const TraceId& id) noexcept;
// A request carries trace context when both its trace_id and its span_id (the parent of the
// responder's span) are non-zero; W3C calls either one all zero invalid.
[[nodiscard]] bool has_trace_context(const Header& request) noexcept;

// W3C traceparent text: "00-<trace id>-<span id>-<flags>", for logs and exporters.
[[nodiscard]] std::string to_traceparent(const TraceId& trace_id, const SpanId& span_id, std::uint8_t flags);

[[nodiscard]] const char* to_string(MessageType type) noexcept;
[[nodiscard]] const char* to_string(Priority priority) noexcept;
[[nodiscard]] const char* to_string(ErrorCode code) noexcept;
[[nodiscard]] const char* to_string(Reason reason) noexcept;

}  // namespace axon::protocol

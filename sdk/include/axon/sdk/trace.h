// W3C trace context of one request as the worker SDK hands it to a handler
// (docs/protocol.md §5): the caller's context (trace id, parent span, flags), the handler's
// own span that the SDK made for it, and their traceparent text. Nothing here allocates.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "axon/shm/layout.h"

namespace axon::sdk {

inline constexpr std::uint8_t kTraceFlagSampled = 0x01;
// "00-" 32 hex "-" 16 hex "-" 2 hex
inline constexpr std::size_t kTraceparentLength = 55;
// NUL-terminated traceparent text; all NULs (empty) when the request has no trace context.
using Traceparent = std::array<char, kTraceparentLength + 1>;

struct TraceContext {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> parent_span_id{};  // the caller's span: the handler's span's parent
  std::array<std::uint8_t, 8> span_id{};         // the handler's span (zero without trace context)
  std::uint8_t flags = 0;                        // W3C trace flags, as received

  // Trace id and parent span both non-zero (docs/protocol.md §5).
  [[nodiscard]] bool valid() const noexcept;
  [[nodiscard]] bool sampled() const noexcept { return (flags & kTraceFlagSampled) != 0; }
};

// A request descriptor carries trace context when its trace id and parent span are non-zero.
[[nodiscard]] bool has_trace_context(const shm::Descriptor& d) noexcept;
[[nodiscard]] TraceContext trace_context(const shm::Descriptor& d) noexcept;

// Writes "00-<trace id>-<span id>-<flags>" (lower-case hex) and a NUL: 56 bytes.
void format_traceparent(const std::uint8_t (&trace_id)[16], const std::uint8_t (&span_id)[8], std::uint8_t flags,
                        char* out) noexcept;
// The request's context as the caller sent it: 00-<trace id>-<parent span>-<flags>.
[[nodiscard]] Traceparent request_traceparent(const shm::Descriptor& d) noexcept;
// The handler's span in the same trace, for its own child spans and outgoing calls:
// 00-<trace id>-<handler span>-<flags>.
[[nodiscard]] Traceparent span_traceparent(const shm::Descriptor& d) noexcept;

// Parses a version-00 traceparent (exactly 55 characters, lower-case hex, non-zero trace id
// and span id) into trace_id, parent_span_id and flags. False, out untouched, otherwise.
[[nodiscard]] bool parse_traceparent(std::string_view text, TraceContext& out) noexcept;

}  // namespace axon::sdk

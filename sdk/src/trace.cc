// Trace context helpers of the worker SDK (trace.h).
#include "axon/sdk/trace.h"

#include <cstring>

namespace axon::sdk {

namespace {

constexpr char kHex[] = "0123456789abcdef";

template <std::size_t N>
bool all_zero(const std::uint8_t (&bytes)[N]) noexcept {
  for (std::uint8_t b : bytes)
    if (b != 0) return false;
  return true;
}

char* put_hex(const std::uint8_t* bytes, std::size_t n, char* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    *out++ = kHex[bytes[i] >> 4];
    *out++ = kHex[bytes[i] & 0xf];
  }
  return out;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool get_hex(std::string_view text, std::uint8_t* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = std::uint8_t(hi << 4 | lo);
  }
  return true;
}

}  // namespace

bool TraceContext::valid() const noexcept {
  return trace_id != decltype(trace_id){} && parent_span_id != decltype(parent_span_id){};
}

bool has_trace_context(const shm::Descriptor& d) noexcept {
  return !all_zero(d.trace_id) && !all_zero(d.parent_span_id);
}

TraceContext trace_context(const shm::Descriptor& d) noexcept {
  TraceContext t;
  std::memcpy(t.trace_id.data(), d.trace_id, sizeof d.trace_id);
  std::memcpy(t.parent_span_id.data(), d.parent_span_id, sizeof d.parent_span_id);
  std::memcpy(t.span_id.data(), d.span_id, sizeof d.span_id);
  t.flags = d.trace_flags;
  return t;
}

void format_traceparent(const std::uint8_t (&trace_id)[16], const std::uint8_t (&span_id)[8], std::uint8_t flags,
                        char* out) noexcept {
  *out++ = '0';
  *out++ = '0';
  *out++ = '-';
  out = put_hex(trace_id, sizeof trace_id, out);
  *out++ = '-';
  out = put_hex(span_id, sizeof span_id, out);
  *out++ = '-';
  out = put_hex(&flags, 1, out);
  *out = '\0';
}

Traceparent request_traceparent(const shm::Descriptor& d) noexcept {
  Traceparent text{};
  if (has_trace_context(d)) format_traceparent(d.trace_id, d.parent_span_id, d.trace_flags, text.data());
  return text;
}

Traceparent span_traceparent(const shm::Descriptor& d) noexcept {
  Traceparent text{};
  if (has_trace_context(d) && !all_zero(d.span_id))
    format_traceparent(d.trace_id, d.span_id, d.trace_flags, text.data());
  return text;
}

bool parse_traceparent(std::string_view text, TraceContext& out) noexcept {
  if (text.size() != kTraceparentLength || text.substr(0, 3) != "00-" || text[35] != '-' || text[52] != '-') {
    return false;
  }
  TraceContext parsed;
  if (!get_hex(text.substr(3, 32), parsed.trace_id.data(), 16) ||
      !get_hex(text.substr(36, 16), parsed.parent_span_id.data(), 8) ||
      !get_hex(text.substr(53, 2), &parsed.flags, 1)) {
    return false;
  }
  if (!parsed.valid()) return false;
  out = parsed;
  return true;
}

}  // namespace axon::sdk

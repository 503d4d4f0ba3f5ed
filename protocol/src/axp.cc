// AXP header encoding and decoding, reply construction and id generation.
#include "axon/protocol/axp.h"

#include <sys/random.h>

#include <cstring>
#include <ctime>

namespace axon::protocol {
namespace {

// Big-endian stores and loads through memcpy: the header sits at arbitrary alignment in a frame.
void store16(std::uint8_t* p, std::uint16_t v) noexcept {
  v = axon_htons(v);
  std::memcpy(p, &v, sizeof v);
}
void store32(std::uint8_t* p, std::uint32_t v) noexcept {
  v = axon_htonl(v);
  std::memcpy(p, &v, sizeof v);
}
void store64(std::uint8_t* p, std::uint64_t v) noexcept {
  v = axon_htonll(v);
  std::memcpy(p, &v, sizeof v);
}
std::uint16_t load16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return axon_ntohs(v);
}
std::uint32_t load32(const std::uint8_t* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return axon_ntohl(v);
}
std::uint64_t load64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return axon_ntohll(v);
}

// Field offsets come from the shared struct, so a layout change there moves them here too.
#define AXP_OFFSET(field) offsetof(struct axp_header, field)

// splitmix64: tiny, fast and statistically fine for ids that only need to be unique in practice.
class IdGenerator {
 public:
  IdGenerator() noexcept {
    if (getrandom(&state_, sizeof state_, 0) != static_cast<ssize_t>(sizeof state_)) {
      // No entropy source (very early boot, seccomp): time and address still differ per thread.
      timespec ts{};
      clock_gettime(CLOCK_MONOTONIC, &ts);
      state_ = static_cast<std::uint64_t>(ts.tv_nsec) ^ (static_cast<std::uint64_t>(ts.tv_sec) << 32) ^
               reinterpret_cast<std::uintptr_t>(this);
    }
  }
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_ = 0;
};

IdGenerator& generator() noexcept {
  thread_local IdGenerator gen;
  return gen;
}

// A fresh non-zero 64-bit value (zero ids are reserved to mean "absent").
std::uint64_t nonzero_random() noexcept {
  std::uint64_t v;
  do {
    v = generator().next();
  } while (v == 0);
  return v;
}

}  // namespace

std::size_t encode_header(const Header& h, std::span<std::uint8_t> out) noexcept {
  if (out.size() < kHeaderLen) return 0;
  std::uint8_t* p = out.data();
  store32(p + AXP_OFFSET(magic), kMagic);
  p[AXP_OFFSET(version)] = kVersion;
  p[AXP_OFFSET(type)] = static_cast<std::uint8_t>(h.type);
  p[AXP_OFFSET(priority)] = static_cast<std::uint8_t>(h.priority);
  p[AXP_OFFSET(trace_flags)] = h.trace_flags;
  store16(p + AXP_OFFSET(header_len), h.header_len);
  store16(p + AXP_OFFSET(payload_len), h.payload_len);
  store16(p + AXP_OFFSET(segment_index), h.segment_index);
  store16(p + AXP_OFFSET(segment_count), h.segment_count);
  store32(p + AXP_OFFSET(tenant_id), h.tenant_id);
  store32(p + AXP_OFFSET(agent_id), h.agent_id);
  store64(p + AXP_OFFSET(session_key), h.session_key);
  store64(p + AXP_OFFSET(request_id), h.request_id);
  std::memcpy(p + AXP_OFFSET(trace_id), h.trace_id.data(), h.trace_id.size());
  std::memcpy(p + AXP_OFFSET(span_id), h.span_id.data(), h.span_id.size());
  store32(p + AXP_OFFSET(deadline_us), h.deadline_us);
  store32(p + AXP_OFFSET(message_len), h.message_len);
  store16(p + AXP_OFFSET(error_code), static_cast<std::uint16_t>(h.error_code));
  store16(p + AXP_OFFSET(reserved), 0);
  store32(p + AXP_OFFSET(retry_after_us), h.retry_after_us);
  return kHeaderLen;
}

Header decode_header(std::span<const std::uint8_t> datagram) noexcept {
  Header h;
  if (datagram.size() < kHeaderLen) return h;
  const std::uint8_t* p = datagram.data();
  h.type = static_cast<MessageType>(p[AXP_OFFSET(type)]);
  h.priority = static_cast<Priority>(p[AXP_OFFSET(priority)]);
  h.trace_flags = p[AXP_OFFSET(trace_flags)];
  h.header_len = load16(p + AXP_OFFSET(header_len));
  h.payload_len = load16(p + AXP_OFFSET(payload_len));
  h.segment_index = load16(p + AXP_OFFSET(segment_index));
  h.segment_count = load16(p + AXP_OFFSET(segment_count));
  h.tenant_id = load32(p + AXP_OFFSET(tenant_id));
  h.agent_id = load32(p + AXP_OFFSET(agent_id));
  h.session_key = load64(p + AXP_OFFSET(session_key));
  h.request_id = load64(p + AXP_OFFSET(request_id));
  std::memcpy(h.trace_id.data(), p + AXP_OFFSET(trace_id), h.trace_id.size());
  std::memcpy(h.span_id.data(), p + AXP_OFFSET(span_id), h.span_id.size());
  h.deadline_us = load32(p + AXP_OFFSET(deadline_us));
  h.message_len = load32(p + AXP_OFFSET(message_len));
  h.error_code = static_cast<ErrorCode>(load16(p + AXP_OFFSET(error_code)));
  h.retry_after_us = load32(p + AXP_OFFSET(retry_after_us));
  return h;
}

std::span<const std::uint8_t> payload_of(std::span<const std::uint8_t> datagram) noexcept {
  if (datagram.size() < kHeaderLen) return {};
  std::size_t header_len = load16(datagram.data() + AXP_OFFSET(header_len));
  if (header_len > datagram.size()) return {};
  return datagram.subspan(header_len);
}

std::size_t encode_datagram(Header header, std::span<const std::uint8_t> payload,
                            std::span<std::uint8_t> out) noexcept {
  std::size_t total = kHeaderLen + payload.size();
  if (total > kMaxDatagramLen || total > out.size() || payload.size() > kMaxMessageLen) return 0;
  header.header_len = kHeaderLen;
  header.payload_len = static_cast<std::uint16_t>(payload.size());
  header.segment_index = 0;
  header.segment_count = 1;
  header.message_len = static_cast<std::uint32_t>(payload.size());
  if (encode_header(header, out) != kHeaderLen) return 0;
  if (!payload.empty()) std::memcpy(out.data() + kHeaderLen, payload.data(), payload.size());
  return total;
}

Header make_reply(const Header& request, MessageType type, const SpanId& responder_span) noexcept {
  Header reply;
  reply.type = type;
  reply.priority = request.priority;
  reply.trace_flags = request.trace_flags;
  reply.tenant_id = request.tenant_id;
  reply.agent_id = request.agent_id;
  reply.session_key = request.session_key;
  reply.request_id = request.request_id;
  reply.trace_id = request.trace_id;
  if (has_trace_context(request)) reply.span_id = responder_span;
  return reply;
}

Header make_error_reply(const Header& request, ErrorCode code, const SpanId& responder_span,
                        std::uint32_t retry_after_us) noexcept {
  Header reply = make_reply(request, MessageType::error, responder_span);
  reply.error_code = code;
  reply.retry_after_us = retry_after_us;
  return reply;
}

Header make_busy_reply(const Header& request, std::uint32_t retry_after_us, const SpanId& responder_span) noexcept {
  Header reply = make_reply(request, MessageType::busy, responder_span);
  reply.retry_after_us = retry_after_us;
  return reply;
}

TraceId random_trace_id() noexcept {
  TraceId id;
  std::uint64_t hi = nonzero_random();
  std::uint64_t lo = generator().next();
  std::memcpy(id.data(), &hi, sizeof hi);
  std::memcpy(id.data() + sizeof hi, &lo, sizeof lo);
  return id;
}

bool has_trace_context(const Header& request) noexcept {
  return is_valid_trace_id(request.trace_id) && request.span_id != SpanId{};
}

SpanId random_span_id() noexcept {
  SpanId id;
  std::uint64_t v = nonzero_random();
  std::memcpy(id.data(), &v, sizeof v);
  return id;
}

bool is_valid_trace_id(const TraceId& id) noexcept {
  for (std::uint8_t b : id)
    if (b != 0) return true;
  return false;
}

std::string to_traceparent(const TraceId& trace_id, const SpanId& span_id, std::uint8_t flags) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "00-";
  out.reserve(55);
  auto append = [&out](std::uint8_t b) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0F]);
  };
  for (std::uint8_t b : trace_id) append(b);
  out.push_back('-');
  for (std::uint8_t b : span_id) append(b);
  out.push_back('-');
  append(flags);
  return out;
}

const char* to_string(MessageType type) noexcept {
  switch (type) {
    case MessageType::request: return "request";
    case MessageType::response: return "response";
    case MessageType::busy: return "busy";
    case MessageType::error: return "error";
  }
  return "unknown";
}

const char* to_string(Priority priority) noexcept {
  switch (priority) {
    case Priority::interactive: return "interactive";
    case Priority::background: return "background";
  }
  return "unknown";
}

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::none: return "none";
    case ErrorCode::malformed: return "malformed";
    case ErrorCode::unsupported_version: return "unsupported_version";
    case ErrorCode::payload_too_large: return "payload_too_large";
    case ErrorCode::unknown_agent: return "unknown_agent";
    case ErrorCode::overloaded: return "overloaded";
    case ErrorCode::worker_failed: return "worker_failed";
    case ErrorCode::deadline_exceeded: return "deadline_exceeded";
    case ErrorCode::rate_limited: return "rate_limited";
    case ErrorCode::handler_error: return "handler_error";
    case ErrorCode::unknown_tenant: return "unknown_tenant";
    case ErrorCode::internal: return "internal";
    case ErrorCode::duplicate_reply_evicted: return "duplicate_reply_evicted";
  }
  return "unknown";
}

const char* to_string(Reason reason) noexcept {
  switch (reason) {
    case Reason::ok: return "ok";
    case Reason::pass_not_axp: return "pass_not_axp";
    case Reason::eth_truncated: return "eth_truncated";
    case Reason::ip_truncated: return "ip_truncated";
    case Reason::ip_malformed: return "ip_malformed";
    case Reason::ip_fragment: return "ip_fragment";
    case Reason::udp_truncated: return "udp_truncated";
    case Reason::udp_bad_length: return "udp_bad_length";
    case Reason::axp_truncated: return "axp_truncated";
    case Reason::bad_magic: return "bad_magic";
    case Reason::bad_version: return "bad_version";
    case Reason::bad_header_len: return "bad_header_len";
    case Reason::bad_length: return "bad_length";
    case Reason::bad_type: return "bad_type";
    case Reason::bad_priority: return "bad_priority";
    case Reason::bad_segment: return "bad_segment";
    case Reason::too_large: return "too_large";
    case Reason::not_request: return "not_request";
    case Reason::prefix_denied: return "prefix_denied";
    case Reason::rate_limited: return "rate_limited";
    case Reason::no_socket: return "no_socket";
    case Reason::busy_no_credits: return "busy_no_credits";
    case Reason::reassembly_timeout: return "reassembly_timeout";
    case Reason::reassembly_memory: return "reassembly_memory";
    case Reason::reassembly_tenant_memory: return "reassembly_tenant_memory";
    case Reason::segment_mismatch: return "segment_mismatch";
    case Reason::segment_offset: return "segment_offset";
    case Reason::segment_duplicate: return "segment_duplicate";
    case Reason::reassembly_too_large: return "reassembly_too_large";
  }
  return "unknown";
}

}  // namespace axon::protocol

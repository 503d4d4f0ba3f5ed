// The control plane's view of sampled traces (docs/observability.md, "Traces"): one
// TraceEntry per traced request the data plane recorded, with the spans made from it. The
// trace store (controlplane/src/trace_store.h) builds them; GET /v1/traces serves them and
// the OTLP exporter sends their spans on.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace axon::controlplane {

// OTLP's span kinds (the protobuf enum's values).
enum class SpanKind : int { internal = 1, server = 2 };

struct TraceSpan {
  std::string name;            // appliance, ingress, queue, return, egress, handler
  std::string span_id;         // 16 lowercase hex digits
  std::string parent_span_id;  // 16 lowercase hex digits
  SpanKind kind = SpanKind::internal;
  std::uint64_t start_unix_ns = 0;  // CLOCK_REALTIME
  std::uint64_t end_unix_ns = 0;
};

// The six hops of a traced request, by name, in order (rx .. tx).
inline constexpr std::array<const char*, 6> kTraceHopNames{"rx",          "enqueue",       "worker_dequeue",
                                                           "worker_done", "reply_dequeue", "tx"};
// The five stages between consecutive hops, in order.
inline constexpr std::array<const char*, 5> kTraceStageNames{"ingress", "queue", "handler", "return", "egress"};

struct TraceEntry {
  std::string trace_id;  // 32 lowercase hex digits
  std::uint64_t request_id = 0;
  std::uint32_t tenant_id = 0;
  std::string tenant;  // the registry's name; "" when unknown
  std::uint32_t agent_id = 0;
  std::string agent;  // the registry's name; "" when unknown
  std::uint16_t lcore = 0;
  std::string klass;       // interactive | background
  std::string sampled_by;  // flag | rate
  std::uint8_t trace_flags = 0;
  std::array<std::uint64_t, 6> hop_unix_ns{};  // kTraceHopNames
  std::vector<TraceSpan> spans;                // appliance first, then the stages, then handler

  [[nodiscard]] std::uint64_t total_ns() const noexcept { return hop_unix_ns[5] - hop_unix_ns[0]; }
  [[nodiscard]] std::uint64_t stage_ns(std::size_t stage) const noexcept {
    return hop_unix_ns[stage + 1] - hop_unix_ns[stage];
  }
};

// GET /v1/traces filters; every field already validated.
struct TraceQuery {
  std::optional<std::string> trace_id;
  std::optional<std::string> agent;   // agent name
  std::optional<std::string> tenant;  // tenant name
  std::size_t limit = 100;
};

}  // namespace axon::controlplane

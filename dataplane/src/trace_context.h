// The data plane's side of W3C trace context (docs/protocol.md §5): what a request's
// descriptor tells the handler, and which span the RESPONSE carries back.
//
// A request has trace context when trace_id and span_id are both non-zero, and none when both
// are zero. Exactly one of them zero is malformed: the handler gets a fresh context instead (a
// new random trace id, and a new random span id standing for the appliance's root span as its
// parent) and the lcore counts it. The reply to such a request still echoes what the client
// sent, with a zero span_id (make_reply), so the client matches it by request_id as always.
// Reserved trace_flags bits are not malformed: §2 says to ignore them on receipt.
//
// Hot path: no allocation, no lock.
#pragma once

#include <cstring>

#include "axon/dataplane/stats.h"
#include "axon/protocol/axp.h"
#include "axon/shm/layout.h"

namespace axon::dataplane {

// picked: head sampling chose this request (TraceRecorder::pick): the handler sees it sampled,
// and a request without trace context gets a fresh one (not counted: nothing was malformed).
inline void fill_trace_context(shm::Descriptor& meta, const protocol::Header& request, LcoreStats& stats,
                               bool picked) noexcept {
  meta.trace_flags = std::uint8_t(request.trace_flags | (picked ? protocol::kTraceSampled : 0u));
  const bool has_trace = protocol::is_valid_trace_id(request.trace_id);
  const bool has_span = request.span_id != protocol::SpanId{};
  if (has_trace == has_span && !(picked && !has_trace)) {
    std::memcpy(meta.trace_id, request.trace_id.data(), sizeof meta.trace_id);
    std::memcpy(meta.parent_span_id, request.span_id.data(), sizeof meta.parent_span_id);
    return;
  }
  if (has_trace != has_span) count(stats.trace_context_invalid);
  const protocol::TraceId trace = protocol::random_trace_id();
  const protocol::SpanId parent = protocol::random_span_id();
  std::memcpy(meta.trace_id, trace.data(), sizeof meta.trace_id);
  std::memcpy(meta.parent_span_id, parent.data(), sizeof meta.parent_span_id);
}

// The span a RESPONSE carries: the handler's, which the worker SDK made and the reply
// descriptor brings back; a fresh one if the worker left it zero. make_reply() puts it on the
// wire only when the request had trace context.
[[nodiscard]] inline protocol::SpanId handler_span(const shm::Descriptor& reply) noexcept {
  protocol::SpanId span;
  std::memcpy(span.data(), reply.span_id, span.size());
  return span != protocol::SpanId{} ? span : protocol::random_span_id();
}

}  // namespace axon::dataplane

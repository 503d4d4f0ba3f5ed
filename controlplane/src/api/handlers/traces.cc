// /v1/traces: the trace store's sampled traces (docs/observability.md, "Traces"), as JSON or,
// with ?format=perfetto, as Chrome trace-event JSON that ui.perfetto.dev and chrome://tracing load.
#include <algorithm>
#include <cctype>

#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {
namespace {

constexpr std::size_t kMaxLimit = 10000;

json span_json(const TraceSpan& s) {
  return json{{"name", s.name},
              {"span_id", s.span_id},
              {"parent_span_id", s.parent_span_id},
              {"kind", s.kind == SpanKind::server ? "server" : "internal"},
              {"start_unix_ns", s.start_unix_ns},
              {"end_unix_ns", s.end_unix_ns},
              {"duration_ns", s.end_unix_ns - s.start_unix_ns}};
}

json entry_json(const TraceEntry& e) {
  json hops = json::object();
  for (std::size_t h = 0; h < kTraceHopNames.size(); ++h) hops[kTraceHopNames[h]] = e.hop_unix_ns[h];
  json stages = json::object();
  for (std::size_t s = 0; s < kTraceStageNames.size(); ++s) stages[kTraceStageNames[s]] = e.stage_ns(s);
  json spans = json::array();
  for (const auto& s : e.spans) spans.push_back(span_json(s));
  return json{{"trace_id", e.trace_id},
              {"request_id", e.request_id},
              {"tenant_id", e.tenant_id},
              {"tenant", e.tenant},
              {"agent_id", e.agent_id},
              {"agent", e.agent},
              {"lcore", e.lcore},
              {"class", e.klass},
              {"sampled_by", e.sampled_by},
              {"trace_flags", e.trace_flags},
              {"start_unix_ns", e.hop_unix_ns[0]},
              {"duration_ns", e.total_ns()},
              {"stages_ns", std::move(stages)},
              {"hops_unix_ns", std::move(hops)},
              {"spans", std::move(spans)}};
}

// Chrome trace-event format: one complete ("X") event per span, ts and dur in µs from the
// earliest span (exact to the ns as fractions); one track (tid) per traced request, named by
// a thread_name metadata event, so concurrent requests never overlap on a track.
json perfetto_json(const std::vector<TraceEntry>& entries) {
  std::uint64_t t0 = UINT64_MAX;
  for (const auto& e : entries) t0 = std::min(t0, e.hop_unix_ns[0]);
  json events = json::array();
  events.push_back(json{{"ph", "M"}, {"name", "process_name"}, {"pid", 1}, {"tid", 0}, {"args", {{"name", "axon"}}}});
  int tid = 0;
  for (const auto& e : entries) {
    ++tid;
    events.push_back(json{{"ph", "M"},
                          {"name", "thread_name"},
                          {"pid", 1},
                          {"tid", tid},
                          {"args", {{"name", "request " + std::to_string(e.request_id) + " " + e.agent}}}});
    for (const auto& s : e.spans) {
      events.push_back(json{{"ph", "X"},
                            {"name", s.name},
                            {"cat", "axon"},
                            {"ts", double(s.start_unix_ns - t0) / 1000.0},
                            {"dur", double(s.end_unix_ns - s.start_unix_ns) / 1000.0},
                            {"pid", 1},
                            {"tid", tid},
                            {"args",
                             {{"trace_id", e.trace_id},
                              {"span_id", s.span_id},
                              {"parent_span_id", s.parent_span_id},
                              {"request_id", e.request_id},
                              {"agent", e.agent},
                              {"tenant", e.tenant}}}});
    }
  }
  return json{{"traceEvents", std::move(events)},
              {"displayTimeUnit", "ns"},
              {"otherData", {{"start_unix_ns", entries.empty() ? 0 : t0}}}};
}

bool matches(const std::string& text, std::size_t max, bool upper) {
  if (text.empty() || text.size() > max || !std::isalnum(static_cast<unsigned char>(text[0]))) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) {
    const auto u = static_cast<unsigned char>(c);
    return std::isdigit(u) || std::islower(u) || c == '_' || c == '-' || (upper && (std::isupper(u) || c == '.'));
  });
}

// A W3C trace-id: 32 hex digits, not all zero; returned in lowercase.
ApiResult<std::string> trace_id_of(const std::string& text) {
  std::string id = text;
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (id.size() != 32 || id.find_first_not_of("0123456789abcdef") != std::string::npos || id == std::string(32, '0')) {
    return api_error(ApiErrorCode::invalid_argument,
                     "trace_id '" + text + "' must be 32 hex digits, not all zero (a W3C trace-id)");
  }
  return id;
}

ApiResult<bool> perfetto_of(const Call& call) {
  const auto it = call.query.find("format");
  if (it == call.query.end() || it->second == "json") return false;
  if (it->second == "perfetto") return true;
  return api_error(ApiErrorCode::invalid_argument,
                   "format '" + it->second + "' is not known: use format=json (default) or format=perfetto");
}

ApiResult<TraceQuery> query_of(const Call& call) {
  TraceQuery q;
  if (const auto it = call.query.find("trace_id"); it != call.query.end()) {
    auto id = trace_id_of(it->second);
    if (!id) return id.error();
    q.trace_id = id.value();
  }
  if (const auto it = call.query.find("agent"); it != call.query.end()) {
    if (!matches(it->second, 32, false)) {
      return api_error(ApiErrorCode::invalid_argument,
                       "agent '" + it->second + "' is not an agent name ([a-z0-9][a-z0-9_-]{0,31})");
    }
    q.agent = it->second;
  }
  if (const auto it = call.query.find("tenant"); it != call.query.end()) {
    if (!matches(it->second, 63, true)) {
      return api_error(ApiErrorCode::invalid_argument,
                       "tenant '" + it->second + "' is not a tenant name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})");
    }
    q.tenant = it->second;
  }
  if (const auto it = call.query.find("limit"); it != call.query.end()) {
    const std::string& v = it->second;
    const bool digits = !v.empty() && v.size() <= 6 && v.find_first_not_of("0123456789") == std::string::npos;
    const std::size_t n = digits ? std::stoul(v) : 0;
    if (n < 1 || n > kMaxLimit) {
      return api_error(ApiErrorCode::invalid_argument,
                       "limit '" + v + "' must be an integer from 1 to " + std::to_string(kMaxLimit));
    }
    q.limit = n;
  }
  return q;
}

http::Response traces_response(const ApiResult<std::vector<TraceEntry>>& result, bool perfetto,
                               const std::optional<std::string>& trace_id) {
  if (!result) return error_response(result.error());
  if (perfetto) return json_response(200, perfetto_json(result.value()));
  json list = json::array();
  for (const auto& e : result.value()) list.push_back(entry_json(e));
  if (trace_id) return json_response(200, json{{"trace_id", *trace_id}, {"requests", std::move(list)}});
  return json_response(200, json{{"traces", std::move(list)}});
}

http::Response list(HandlerContext& ctx, const Call& call) {
  const auto perfetto = perfetto_of(call);
  if (!perfetto) return error_response(perfetto.error());
  const auto query = query_of(call);
  if (!query) return error_response(query.error());
  return traces_response(ctx.api.list_traces(query.value()), perfetto.value(), std::nullopt);
}

http::Response one(HandlerContext& ctx, const Call& call) {
  const auto perfetto = perfetto_of(call);
  if (!perfetto) return error_response(perfetto.error());
  const auto id = trace_id_of(call.params.at("trace_id"));
  if (!id) return error_response(id.error());
  return traces_response(ctx.api.get_trace(id.value()), perfetto.value(), id.value());
}

}  // namespace

void add_traces(Router& r) {
  r.add(RouteDef{"GET", "/v1/traces", {"trace_id", "agent", "tenant", "limit", "format"}, list});
  r.add(RouteDef{"GET", "/v1/traces/{trace_id}", {"format"}, one});
}

}  // namespace axon::controlplane::api::handlers

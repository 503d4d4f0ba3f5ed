// ControlPlane's trace calls (ControlApi::list_traces, get_trace) and the wiring of the trace
// store: it reads <run_dir>/dataplane.traces on its own thread, and names tenants and agents
// through the registry (docs/observability.md, "Traces").
#include "axon/common/log.h"

#include "control_plane.h"
#include "otlp_exporter.h"
#include "trace_store.h"

namespace axon::controlplane {

Result<Ok, DaemonError> ControlPlane::start_traces() {
  if (!config_.tracing.otlp_endpoint.empty()) {
    auto exporter = OtlpExporter::create(config_.tracing);
    if (!exporter) return make_error(DaemonError::io_error, exporter.message());
    exporter_ = std::move(exporter).value();
    exporter_->start();
    AXON_LOG_INFO("traces", "exporting spans to %s (OTLP/HTTP JSON)", config_.tracing.otlp_endpoint.c_str());
  }
  TraceStore::Options options;
  options.path = config_.dataplane.run_dir + "/dataplane.traces";
  options.capacity = config_.tracing.store_traces;
  // The store thread takes mutex_ only to name a record's tenant and agent, never while it
  // holds its own lock: the API threads take mutex_ and then the store's (metrics()).
  auto resolve = [this](TraceEntry& e) {
    std::lock_guard lock(mutex_);
    if (const auto t = registry_.tenants().find(e.tenant_id); t != registry_.tenants().end()) e.tenant = t->second.name;
    for (const auto& [name, spec] : registry_.agents()) {
      if (spec.id == e.agent_id) e.agent = name;
    }
  };
  traces_ = std::make_unique<TraceStore>(std::move(options), std::move(resolve), trace_sink());
  traces_->start();
  return Ok{};
}

// New traces go to the OTLP exporter too when one is configured (enqueue never blocks).
TraceStore::Sink ControlPlane::trace_sink() {
  if (!exporter_) return {};
  return [exporter = exporter_.get()](const TraceEntry& e) { exporter->enqueue(e); };
}

ApiResult<std::vector<TraceEntry>> ControlPlane::list_traces(const TraceQuery& query) {
  if (!traces_) return api_error(ApiErrorCode::unavailable, "the control plane is still starting");
  return traces_->recent(query);
}

ApiResult<std::vector<TraceEntry>> ControlPlane::get_trace(const std::string& trace_id) {
  if (!traces_) return api_error(ApiErrorCode::unavailable, "the control plane is still starting");
  auto found = traces_->find(trace_id);
  if (found.empty()) {
    return api_error(ApiErrorCode::not_found,
                     "no trace " + trace_id +
                         " in the trace store: only sampled requests are traced (the client's "
                         "sampled flag or [telemetry] trace_sample_rate), and the store keeps the last " +
                         std::to_string(config_.tracing.store_traces) + " ([tracing] store_traces)");
  }
  return found;
}

}  // namespace axon::controlplane

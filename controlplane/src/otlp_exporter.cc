// OtlpExporter: the bounded queue, the batching thread and the OTLP/HTTP JSON body (see
// otlp_exporter.h).
#include "otlp_exporter.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "axon/client/rest.h"
#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "otlp";
using nlohmann::json;

json string_attribute(const char* key, const std::string& value) {
  return json{{"key", key}, {"value", {{"stringValue", value}}}};
}

// OTLP's JSON mapping writes 64-bit integers as decimal strings.
json int_attribute(const char* key, std::uint64_t value) {
  return json{{"key", key}, {"value", {{"intValue", std::to_string(value)}}}};
}

json span_json(const ExportSpan& s) {
  json attributes = json::array({string_attribute("axon.agent", s.agent), string_attribute("axon.tenant", s.tenant),
                                 int_attribute("axon.request_id", s.request_id), int_attribute("axon.lcore", s.lcore),
                                 string_attribute("axon.class", s.klass)});
  return json{{"traceId", s.trace_id},
              {"spanId", s.span.span_id},
              {"parentSpanId", s.span.parent_span_id},
              {"name", s.span.name},
              {"kind", int(s.span.kind)},
              {"startTimeUnixNano", std::to_string(s.span.start_unix_ns)},
              {"endTimeUnixNano", std::to_string(s.span.end_unix_ns)},
              {"attributes", std::move(attributes)},
              {"status", {{"code", 0}}}};  // STATUS_CODE_UNSET: axon does not judge the handler
}

// The real sender: one POST per batch over a fresh connection, each step under the timeout.
OtlpExporter::Sender http_sender(std::shared_ptr<client::RestClient> rest, std::string target) {
  return [rest = std::move(rest), target = std::move(target)](const std::string& body, std::string& why) {
    auto response = rest->request("POST", target, body);
    if (!response) {
      why = response.message();
      return OtlpExporter::Outcome::retry;
    }
    const int status = response->status;
    if (status >= 200 && status < 300) return OtlpExporter::Outcome::sent;
    why = "the collector answered " + std::to_string(status) + " " + response->reason + ": " +
          response->body.substr(0, 200);
    const bool transient = status == 429 || status == 502 || status == 503 || status == 504;
    return transient ? OtlpExporter::Outcome::retry : OtlpExporter::Outcome::rejected;
  };
}

}  // namespace

std::string otlp_json(const std::vector<ExportSpan>& spans, const std::string& service_name) {
  json list = json::array();
  for (const auto& s : spans) list.push_back(span_json(s));
  json scope = {{"scope", {{"name", "axon.controlplane"}}}, {"spans", std::move(list)}};
  json resource = {{"attributes", json::array({string_attribute("service.name", service_name)})}};
  return json{{"resourceSpans",
               json::array({json{{"resource", std::move(resource)}, {"scopeSpans", json::array({std::move(scope)})}}})}}
      .dump();
}

Result<std::unique_ptr<OtlpExporter>, OtlpError> OtlpExporter::create(const TracingSettings& t) {
  const auto endpoint = parse_http_endpoint(t.otlp_endpoint);
  if (!endpoint)
    return make_error(OtlpError::invalid_config, "[tracing] otlp_endpoint '" + t.otlp_endpoint + "' is not a URL");
  client::RestOptions rest;
  const std::string host = endpoint->host.find(':') != std::string::npos ? "[" + endpoint->host + "]" : endpoint->host;
  rest.url = (endpoint->tls ? "https://" : "http://") + host + ":" + endpoint->port;
  rest.ca_file = t.otlp_ca_file;
  rest.timeout = t.otlp_timeout;
  rest.max_response_bytes = 1 << 20;
  rest.address_hint = "[tracing] otlp_endpoint";
  rest.server_name = "the OTLP collector";
  rest.user_agent = "axon-controlplane";  // a collector's logs name the exporter, not the CLI
  for (const auto& [name, value] : t.otlp_headers) rest.headers.emplace_back(name, value);
  auto client = client::RestClient::create(std::move(rest));
  if (!client) return make_error(OtlpError::invalid_config, "[tracing]: " + client.message());
  Options options;
  options.queue_spans = t.otlp_queue_spans;
  options.batch_spans = t.otlp_batch_spans;
  options.max_retries = t.otlp_max_retries;
  options.service_name = t.service_name;
  auto shared = std::make_shared<client::RestClient>(std::move(client).value());
  return std::make_unique<OtlpExporter>(options, http_sender(std::move(shared), endpoint->target));
}

OtlpExporter::OtlpExporter(Options options, Sender sender) : options_(std::move(options)), sender_(std::move(sender)) {
  options_.queue_spans = std::max<std::size_t>(options_.queue_spans, 1);
  options_.batch_spans = std::max<std::size_t>(options_.batch_spans, 1);
}

OtlpExporter::~OtlpExporter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OtlpExporter::start() {
  thread_ = std::thread([this] { run(); });
}

void OtlpExporter::enqueue(const TraceEntry& e) {
  {
    std::lock_guard lock(mutex_);
    for (const auto& span : e.spans) {
      if (queue_.size() >= options_.queue_spans) {
        queue_.pop_front();  // the oldest goes: recent traces are the ones operators look at
        ++counters_.dropped_queue_full;
      }
      queue_.push_back(ExportSpan{span, e.trace_id, e.request_id, e.agent, e.tenant, e.klass, e.lcore});
    }
  }
  cv_.notify_one();
}

void OtlpExporter::run() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    const std::size_t n = std::min(queue_.size(), options_.batch_spans);
    std::vector<ExportSpan> batch(std::make_move_iterator(queue_.begin()),
                                  std::make_move_iterator(queue_.begin() + std::ptrdiff_t(n)));
    queue_.erase(queue_.begin(), queue_.begin() + std::ptrdiff_t(n));
    lock.unlock();
    const std::string body = otlp_json(batch, options_.service_name);
    send_with_retries(body, n);
    lock.lock();
  }
}

// Called without mutex_; it takes it only to count and to wait out the backoff (stop ends it).
bool OtlpExporter::send_with_retries(const std::string& body, std::size_t spans) {
  auto backoff = options_.backoff_initial;
  for (std::uint32_t attempt = 0;; ++attempt) {
    std::string why;
    const Outcome outcome = sender_(body, why);
    std::unique_lock lock(mutex_);
    if (outcome == Outcome::sent) {
      counters_.sent += spans;
      if (!last_error_.empty()) AXON_LOG_INFO(kLog, "exporting spans again");
      last_error_.clear();
      return true;
    }
    ++counters_.failures;
    if (why != last_error_) AXON_LOG_WARN(kLog, "span export failed: %s", why.c_str());
    last_error_ = why;
    if (outcome == Outcome::rejected) {
      counters_.dropped_rejected += spans;
      return false;
    }
    if (attempt >= options_.max_retries || stop_) {
      counters_.dropped_retries += spans;
      return false;
    }
    cv_.wait_for(lock, backoff, [this] { return stop_; });
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

OtlpExporter::Counters OtlpExporter::counters() const {
  std::lock_guard lock(mutex_);
  Counters c = counters_;
  c.queued = queue_.size();
  return c;
}

std::string OtlpExporter::metrics() const {
  const Counters c = counters();
  MetricsWriter m;
  m.family("axon_trace_export_spans_total", "counter", "Spans the OTLP collector accepted ([tracing] otlp_endpoint).")
      .sample(double(c.sent));
  m.family("axon_trace_export_dropped_spans_total", "counter",
           "Spans given up, by reason: queue_full (the oldest, for newer ones; [tracing] otlp_queue_spans), "
           "retries_exhausted (the collector failed otlp_max_retries + 1 times), rejected (it refused the batch "
           "with a status other than 429, 502, 503 or 504).");
  m.sample({{"reason", "queue_full"}}, double(c.dropped_queue_full));
  m.sample({{"reason", "retries_exhausted"}}, double(c.dropped_retries));
  m.sample({{"reason", "rejected"}}, double(c.dropped_rejected));
  m.family("axon_trace_export_failures_total", "counter",
           "Export requests that failed (connection, timeout or an error status), retries included.")
      .sample(double(c.failures));
  m.family("axon_trace_export_queue_spans", "gauge", "Spans waiting for export.").sample(double(c.queued));
  return m.str();
}

}  // namespace axon::controlplane

// OtlpExporter: sends the trace store's spans to an OpenTelemetry collector as OTLP/HTTP JSON
// (POST <[tracing] otlp_endpoint>, the protobuf JSON mapping: docs/observability.md, "OTLP").
//
// One job, on its own thread: take spans from a bounded queue (full: the OLDEST are dropped and
// counted), send them in batches, retry a failed batch with backoff a bounded number of times,
// then drop it and count it. enqueue() only takes a short lock, so a slow, silent or absent
// collector never holds up the trace store, the REST API or the data plane.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "axon/common/result.h"
#include "axon/controlplane/config.h"
#include "axon/controlplane/traces.h"

namespace axon::controlplane {

enum class OtlpError { invalid_config };  // an endpoint or CA file the client cannot use

// One span waiting for export, with what the OTLP span needs besides the span itself.
struct ExportSpan {
  TraceSpan span;
  std::string trace_id;
  std::uint64_t request_id = 0;
  std::string agent, tenant, klass;
  std::uint16_t lcore = 0;
};

// The OTLP/HTTP JSON body (ExportTraceServiceRequest) for these spans.
std::string otlp_json(const std::vector<ExportSpan>& spans, const std::string& service_name);

class OtlpExporter {
 public:
  // What one POST came to: sent (2xx), retry (connection failure, timeout, 429, 502-504) or
  // rejected (any other status: the collector will never take this batch).
  enum class Outcome { sent, retry, rejected };
  using Sender = std::function<Outcome(const std::string& body, std::string& why)>;

  struct Options {
    std::size_t queue_spans = 8192;
    std::size_t batch_spans = 512;
    std::uint32_t max_retries = 3;
    std::string service_name = "axon";
    std::chrono::milliseconds backoff_initial{100};
    std::chrono::milliseconds backoff_max{2000};
  };

  // Sends over HTTP(S) to settings.otlp_endpoint (Boost.Beast through axon::rest_client).
  static Result<std::unique_ptr<OtlpExporter>, OtlpError> create(const TracingSettings& settings);
  OtlpExporter(Options options, Sender sender);  // tests give a fake sender
  ~OtlpExporter();                               // stops the thread (after at most one request)
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  void start();
  void enqueue(const TraceEntry& entry);  // never blocks on the network
  std::string metrics() const;            // axon_trace_export_* families

  struct Counters {
    std::uint64_t sent = 0, failures = 0, dropped_queue_full = 0, dropped_retries = 0, dropped_rejected = 0;
    std::size_t queued = 0;
  };
  Counters counters() const;

 private:
  void run();
  bool send_with_retries(const std::string& body, std::size_t spans);

  Options options_;
  Sender sender_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<ExportSpan> queue_;
  Counters counters_;
  std::string last_error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace axon::controlplane

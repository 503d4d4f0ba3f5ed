// The OTLP exporter (otlp_exporter.h): over real HTTP to a receiver run by the test, the body
// follows the OTLP protobuf JSON mapping field by field, with the configured headers; a refused
// port and a blackhole collector (accepts, never answers) cost failures and bounded retries,
// then the batch is dropped and counted, while enqueue never waits; a full queue drops the
// OLDEST spans (a fake sender holds the thread); a refused status is not retried. Over https
// the collector's certificate is verified against otlp_ca_file (refused without it).
#include "otlp_exporter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <set>

#include "otlp_receiver.h"
#include "test_tls_server.h"

namespace axon::controlplane {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TraceEntry entry(std::uint64_t request_id) {
  TraceEntry e;
  e.trace_id = "0af7651916cd43dd8448eb211c80319c";
  e.trace_id[31] = char('0' + request_id % 10);
  e.request_id = request_id;
  e.agent = "echo";
  e.tenant = "acme";
  e.klass = "interactive";
  e.lcore = 1;
  const std::uint64_t t0 = 1'700'000'000'000'000'000ull + request_id * 1000;
  e.spans.push_back({"appliance", "b7ad6b7169203331", "00f067aa0ba902b7", SpanKind::server, t0, t0 + 900});
  for (const char* stage : {"ingress", "queue", "return", "egress"}) {
    e.spans.push_back({stage, "1111111111111111", "b7ad6b7169203331", SpanKind::internal, t0 + 100, t0 + 200});
  }
  e.spans.push_back({"handler", "2222222222222222", "00f067aa0ba902b7", SpanKind::internal, t0 + 200, t0 + 700});
  return e;
}

template <typename F>
bool within(std::chrono::milliseconds limit, F&& done) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

TracingSettings settings(const std::string& endpoint) {
  TracingSettings t;
  t.otlp_endpoint = endpoint;
  t.otlp_headers = {{"x-api-key", "secret-1"}};
  t.otlp_timeout = 300ms;
  t.otlp_max_retries = 1;
  t.service_name = "axon-test";
  return t;
}

TEST(OtlpExporter, PostsTheProtobufJsonMappingToARealReceiver) {
  otlp_test::OtlpReceiver receiver;
  auto exporter = OtlpExporter::create(settings(receiver.url()));
  ASSERT_TRUE(exporter) << exporter.message();
  (*exporter)->start();
  (*exporter)->enqueue(entry(42));
  ASSERT_TRUE(within(5s, [&] { return (*exporter)->counters().sent == 6; })) << (*exporter)->metrics();
  const auto posts = receiver.posts();
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].request_line, "POST /v1/traces HTTP/1.1");
  EXPECT_EQ(posts[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(posts[0].headers.at("x-api-key"), "secret-1");
  const json body = json::parse(posts[0].body, nullptr, false);
  std::vector<std::string> problems;
  const auto spans = otlp_test::otlp_spans(body, "axon-test", problems);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems) << "\n" << posts[0].body;
  ASSERT_EQ(spans.size(), 6u);
  const json& appliance = spans[0];
  EXPECT_EQ(appliance["name"], "appliance");
  EXPECT_EQ(appliance["kind"], 2) << "SPAN_KIND_SERVER";
  EXPECT_EQ(appliance["traceId"], "0af7651916cd43dd8448eb211c803192");
  EXPECT_EQ(appliance["spanId"], "b7ad6b7169203331");
  EXPECT_EQ(appliance["parentSpanId"], "00f067aa0ba902b7");
  EXPECT_EQ(appliance["startTimeUnixNano"], "1700000000000042000");
  EXPECT_EQ(appliance["endTimeUnixNano"], "1700000000000042900");
  EXPECT_EQ(spans[1]["kind"], 1) << "SPAN_KIND_INTERNAL";
  std::map<std::string, json> attributes;
  for (const auto& a : appliance["attributes"]) attributes[a["key"]] = a["value"];
  EXPECT_EQ(attributes["axon.agent"], json({{"stringValue", "echo"}}));
  EXPECT_EQ(attributes["axon.request_id"], json({{"intValue", "42"}}));
  const auto c = (*exporter)->counters();
  EXPECT_EQ(c.failures, 0u);
  EXPECT_NE((*exporter)->metrics().find("axon_trace_export_spans_total 6\n"), std::string::npos);
}

TEST(OtlpExporter, RefusedPortCountsFailuresAndDropsAfterRetries) {
  std::uint16_t closed = 0;
  {
    otlp_test::OtlpReceiver probe;  // a port that was just free; closed once probe goes
    closed = probe.port();
  }
  auto exporter = OtlpExporter::create(settings("http://127.0.0.1:" + std::to_string(closed) + "/v1/traces"));
  ASSERT_TRUE(exporter) << exporter.message();
  (*exporter)->start();
  (*exporter)->enqueue(entry(1));
  ASSERT_TRUE(within(10s, [&] { return (*exporter)->counters().dropped_retries == 6; })) << (*exporter)->metrics();
  const auto c = (*exporter)->counters();
  EXPECT_EQ(c.failures, 2u) << "the first try and otlp_max_retries = 1 retry";
  EXPECT_EQ(c.sent, 0u);
  const std::string m = (*exporter)->metrics();
  EXPECT_NE(m.find("axon_trace_export_dropped_spans_total{reason=\"retries_exhausted\"} 6\n"), std::string::npos) << m;
  EXPECT_NE(m.find("axon_trace_export_failures_total 2\n"), std::string::npos) << m;
}

TEST(OtlpExporter, BlackholeCollectorNeverBlocksEnqueueAndDropsOldest) {
  otlp_test::OtlpReceiver blackhole(true);
  TracingSettings t = settings(blackhole.url());
  t.otlp_queue_spans = 12;
  t.otlp_batch_spans = 6;
  auto exporter = OtlpExporter::create(t);
  ASSERT_TRUE(exporter) << exporter.message();
  (*exporter)->start();
  (*exporter)->enqueue(entry(1));
  ASSERT_TRUE(within(5s, [&] { return blackhole.connections() >= 1; }));
  // The thread waits on the silent collector; enqueue still returns at once (it only queues).
  for (std::uint64_t i = 2; i <= 11; ++i) (*exporter)->enqueue(entry(i));
  auto c = (*exporter)->counters();
  EXPECT_EQ(c.queued, 12u);
  EXPECT_EQ(c.dropped_queue_full, 48u) << "10 entries of 6 spans into a 12-span queue";
  ASSERT_TRUE(within(10s, [&] { return (*exporter)->counters().failures >= 2; })) << (*exporter)->metrics();
  EXPECT_EQ((*exporter)->counters().sent, 0u);
}

// Drop-oldest, exactly: a fake sender holds the thread on the first batch.
TEST(OtlpExporter, FullQueueDropsTheOldestSpans) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> calls{0};
  std::vector<std::uint64_t> sent_ids;
  OtlpExporter::Options o;
  o.queue_spans = 12;
  o.batch_spans = 6;
  OtlpExporter exporter(o, [&](const std::string& body, std::string&) {
    ++calls;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    const json j = json::parse(body);
    for (const auto& a : j["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]) {
      if (a["key"] == "axon.request_id") sent_ids.push_back(std::stoull(a["value"]["intValue"].get<std::string>()));
    }
    return OtlpExporter::Outcome::sent;
  });
  exporter.start();
  exporter.enqueue(entry(1));
  ASSERT_TRUE(within(5s, [&] { return calls == 1; }));
  for (std::uint64_t i = 2; i <= 4; ++i) exporter.enqueue(entry(i));  // 18 spans, room for 12
  EXPECT_EQ(exporter.counters().dropped_queue_full, 6u);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(within(5s, [&] { return exporter.counters().sent == 18; })) << exporter.metrics();
  std::lock_guard lock(mu);
  EXPECT_EQ(sent_ids, (std::vector<std::uint64_t>{1, 3, 4})) << "entry 2's spans were the oldest queued";
}

TEST(OtlpExporter, RejectedBatchIsNotRetried) {
  std::atomic<int> calls{0};
  OtlpExporter::Options o;
  o.max_retries = 5;
  o.backoff_initial = 1ms;
  OtlpExporter exporter(o, [&](const std::string&, std::string& why) {
    ++calls;
    why = "the collector answered 400";
    return OtlpExporter::Outcome::rejected;
  });
  exporter.start();
  exporter.enqueue(entry(1));
  ASSERT_TRUE(within(5s, [&] { return exporter.counters().dropped_rejected == 6; }));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(exporter.counters().failures, 1u);
}

TEST(OtlpExporter, HttpsVerifiesTheCollectorAgainstTheCaFile) {
  char tmpl[] = "/tmp/axon-otlp-tls-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ASSERT_TRUE(axon::testing::generate_certificate(AXON_OPENSSL_BIN, dir, "collector", "IP:127.0.0.1"));
  axon::testing::TestHttpServer::Options so;
  so.cert_file = dir + "/collector.crt";
  so.key_file = dir + "/collector.key";
  auto server = axon::testing::TestHttpServer::start(so, [](const axon::testing::RecordedRequest&) {
    return axon::testing::TestHttpServer::response(200, "OK", "{}", "Content-Type: application/json\r\n");
  });
  ASSERT_TRUE(server);
  TracingSettings t = settings("https://127.0.0.1:" + std::to_string(server->port()) + "/v1/traces");
  t.otlp_ca_file = dir + "/collector.crt";
  auto trusted = OtlpExporter::create(t);
  ASSERT_TRUE(trusted) << trusted.message();
  (*trusted)->start();
  (*trusted)->enqueue(entry(7));
  ASSERT_TRUE(within(5s, [&] { return (*trusted)->counters().sent == 6; })) << (*trusted)->metrics();
  ASSERT_EQ(server->requests().size(), 1u);
  EXPECT_EQ(server->requests()[0].method, "POST");
  EXPECT_EQ(server->requests()[0].path, "/v1/traces");
  EXPECT_EQ(server->requests()[0].header("x-api-key"), "secret-1");
  // Regression: the exporter introduced itself as "axonctl" (the REST client's default).
  EXPECT_EQ(server->requests()[0].header("user-agent"), "axon-controlplane");
  std::vector<std::string> problems;
  EXPECT_EQ(otlp_test::otlp_spans(json::parse(server->requests()[0].body), "axon-test", problems).size(), 6u);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);

  // The system store does not know this self-signed collector: the handshake fails, counted.
  t.otlp_ca_file.clear();
  auto untrusted = OtlpExporter::create(t);
  ASSERT_TRUE(untrusted) << untrusted.message();
  (*untrusted)->start();
  (*untrusted)->enqueue(entry(8));
  ASSERT_TRUE(within(10s, [&] { return (*untrusted)->counters().dropped_retries == 6; })) << (*untrusted)->metrics();
  EXPECT_EQ((*untrusted)->counters().sent, 0u);
  EXPECT_EQ(server->requests().size(), 1u) << "nothing was sent to an unverified collector";
  std::filesystem::remove_all(dir);
}

TEST(OtlpExporter, BadCaFileIsRefusedAtCreate) {
  TracingSettings t = settings("https://127.0.0.1:4318/v1/traces");
  t.otlp_ca_file = "/nonexistent/ca.pem";
  auto exporter = OtlpExporter::create(t);
  ASSERT_FALSE(exporter);
  EXPECT_NE(exporter.message().find("/nonexistent/ca.pem"), std::string::npos) << exporter.message();
}

}  // namespace
}  // namespace axon::controlplane

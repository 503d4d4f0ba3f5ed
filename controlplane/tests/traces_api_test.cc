// Sampled traces through the real stack (issue 15): a request sent with a known trace id and
// the sampled flag through the real data plane on a veth pair of this test's own (prefix axtc)
// to a real echo worker appears in GET /v1/traces/{id} over real HTTPS with a real token, with
// every hop in order, the handler's span == the RESPONSE's span_id and the appliance's parent
// == the request's span_id; ?format=perfetto is Chrome trace-event JSON with those spans; bad
// filters are 400, an unknown trace 404, no or a wrong token 401; /metrics counts the store.
// With [tracing] otlp_endpoint the same spans reach a receiver run by the test as OTLP/HTTP
// JSON (checked against the protobuf JSON mapping); a blackhole collector leaves the API
// answering and counts failures and drops.
#include <gtest/gtest.h>

#include <string>

#include "daemon_fixture.h"
#include "otlp_receiver.h"

namespace axon::controlplane {
namespace {

using namespace daemon_it;

std::string hex(const std::uint8_t* bytes, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

class TracesApi : public ControlplaneDaemon {
 protected:
  TracesApi() { net_prefix_ = "axtc"; }

  // One sampled request with a known trace id; the RESPONSE's header (nullopt: none).
  std::optional<protocol::Header> traced_request(const protocol::Header& h) {
    AxpClient client(*net_, AF_INET);
    if (!client.ok()) return std::nullopt;
    const std::uint8_t payload[] = {'t', 'r', 'a', 'c', 'e'};
    if (!client.send(h, payload)) return std::nullopt;
    for (;;) {
      auto rx = client.receive(dataplane::it::kPatience);
      if (!rx) return std::nullopt;
      if (rx->header.request_id != h.request_id) continue;
      if (rx->header.type != protocol::MessageType::response) return std::nullopt;
      return rx->header;
    }
  }

  int axonctl(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv{
        AXONCTL_BIN, "--api", "https://127.0.0.1:" + std::to_string(port_), "--ca", cert_, "--token", reader_token_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, out);
  }
};

TEST_F(TracesApi, SampledRequestIsServedWithEveryHopAsJsonAndPerfetto) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  protocol::Header h = dataplane::it::request_header(1, 7);
  for (std::size_t i = 0; i < 16; ++i) h.trace_id[i] = std::uint8_t(0xc0 + i);
  h.trace_flags = protocol::kTraceSampled;
  const std::string trace_id = hex(h.trace_id.data(), 16);
  const std::string request_span = hex(h.span_id.data(), 8);
  const auto reply = traced_request(h);
  ASSERT_TRUE(reply) << dataplane_->log();
  const std::string reply_span = hex(reply->span_id.data(), 8);
  ASSERT_NE(reply_span, std::string(16, '0'));

  Http got;
  ASSERT_TRUE(eventually([&] {
    got = call("GET", "/v1/traces/" + trace_id);
    return got.status == 200;
  })) << got.status
      << " " << got.body << controlplane_->log();
  const json j = got.parsed();
  ASSERT_EQ(j.value("trace_id", ""), trace_id) << got.body;
  ASSERT_EQ(j["requests"].size(), 1u) << got.body;
  const json& e = j["requests"][0];
  EXPECT_EQ(e.value("request_id", std::uint64_t(0)), h.request_id);
  EXPECT_EQ(e.value("agent", ""), "echo");
  EXPECT_EQ(e.value("tenant", ""), "t1");
  EXPECT_EQ(e.value("sampled_by", ""), "flag");
  std::uint64_t previous = 0;
  for (const char* hop : {"rx", "enqueue", "worker_dequeue", "worker_done", "reply_dequeue", "tx"}) {
    const std::uint64_t t = e["hops_unix_ns"].value(hop, std::uint64_t(0));
    EXPECT_GE(t, previous) << hop << " before its predecessor: " << e.dump();
    EXPECT_GT(t, 0u) << hop;
    previous = t;
  }
  std::uint64_t sum = 0;
  for (const auto& [stage, ns] : e["stages_ns"].items()) sum += ns.get<std::uint64_t>();
  EXPECT_EQ(e["stages_ns"].size(), 5u);
  EXPECT_EQ(sum, e.value("duration_ns", std::uint64_t(1))) << "the stages add up to the total";
  std::map<std::string, json> spans;
  for (const auto& s : e["spans"]) spans[s.value("name", "")] = s;
  ASSERT_EQ(spans.size(), 6u) << e.dump();
  const std::string appliance = spans["appliance"].value("span_id", "");
  EXPECT_EQ(spans["appliance"].value("parent_span_id", ""), request_span) << "child of the request's span";
  EXPECT_EQ(spans["appliance"].value("kind", ""), "server");
  EXPECT_EQ(spans["handler"].value("span_id", ""), reply_span) << "the handler span is the RESPONSE's span_id";
  EXPECT_EQ(spans["handler"].value("parent_span_id", ""), request_span);
  for (const char* stage : {"ingress", "queue", "return", "egress"}) {
    EXPECT_EQ(spans[stage].value("parent_span_id", ""), appliance) << stage;
  }
  for (const auto& [name, s] : spans) {
    EXPECT_GE(s.value("end_unix_ns", std::uint64_t(0)), s.value("start_unix_ns", ~std::uint64_t(0))) << name;
  }

  // The list: newest first, filtered by agent and tenant names.
  const json listed = call("GET", "/v1/traces?agent=echo&tenant=t1&limit=5").parsed();
  ASSERT_TRUE(listed.contains("traces")) << listed.dump();
  ASSERT_GE(listed["traces"].size(), 1u);
  EXPECT_EQ(listed["traces"][0].value("trace_id", ""), trace_id);
  EXPECT_TRUE(call("GET", "/v1/traces?agent=nope").parsed()["traces"].empty());
  EXPECT_EQ(call("GET", "/v1/traces?trace_id=" + trace_id, "", &reader_token_).parsed()["traces"].size(), 1u);

  // Perfetto: Chrome trace-event JSON, one complete event per span.
  const Http perfetto = call("GET", "/v1/traces/" + trace_id + "?format=perfetto");
  ASSERT_EQ(perfetto.status, 200) << perfetto.body;
  const json p = perfetto.parsed();
  ASSERT_TRUE(p.contains("traceEvents")) << perfetto.body;
  std::set<std::string> names;
  for (const auto& ev : p["traceEvents"]) {
    if (ev.value("ph", "") != "X") continue;
    names.insert(ev.value("name", ""));
    EXPECT_TRUE(ev["ts"].is_number() && ev["dur"].is_number() && ev["pid"].is_number() && ev["tid"].is_number())
        << ev.dump();
    EXPECT_GE(ev["dur"].get<double>(), 0.0);
    EXPECT_EQ(ev["args"].value("trace_id", ""), trace_id);
  }
  EXPECT_EQ(names, (std::set<std::string>{"appliance", "ingress", "queue", "handler", "return", "egress"}));
  EXPECT_EQ(call("GET", "/v1/traces?format=perfetto&limit=1").parsed()["traceEvents"].size(), 8u)
      << "process and thread names, six spans";

  // axonctl: the table, the span tree, the Perfetto file.
  std::string out;
  ASSERT_EQ(axonctl({"traces", "--agent", "echo", "--limit", "5"}, &out), 0) << out;
  EXPECT_NE(out.find(trace_id), std::string::npos) << out;
  EXPECT_NE(out.find("HANDLER"), std::string::npos) << out;
  ASSERT_EQ(axonctl({"traces", "show", trace_id}, &out), 0) << out;
  EXPECT_NE(out.find(request_span + " (the client's span)"), std::string::npos) << out;
  EXPECT_NE(out.find("  appliance  " + appliance), std::string::npos) << out;
  EXPECT_NE(out.find("    queue"), std::string::npos) << "stages under the appliance span: " << out;
  EXPECT_NE(out.find("  handler    " + reply_span), std::string::npos) << out;
  const std::string file = tmp_.path() + "/trace.perfetto.json";
  ASSERT_EQ(axonctl({"traces", "export", trace_id, "--perfetto", file}, &out), 0) << out;
  EXPECT_EQ(json::parse(read_file(file), nullptr, false)["traceEvents"].size(), 8u) << read_file(file);
  EXPECT_NE(axonctl({"traces", "show", std::string(32, 'e')}, &out), 0) << out;
  EXPECT_NE(out.find("404"), std::string::npos) << out;

  // Errors.
  EXPECT_EQ(call("GET", "/v1/traces/" + std::string(32, 'e')).status, 404);
  const Http malformed = call("GET", "/v1/traces/xyz");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_NE(malformed.body.find("32 hex digits"), std::string::npos) << malformed.body;
  const Http limit = call("GET", "/v1/traces?limit=0");
  EXPECT_EQ(limit.status, 400);
  EXPECT_NE(limit.body.find("limit"), std::string::npos) << limit.body;
  EXPECT_EQ(call("GET", "/v1/traces?limit=abc").status, 400);
  EXPECT_EQ(call("GET", "/v1/traces?agent=Bad!").status, 400);
  EXPECT_EQ(call("GET", "/v1/traces?format=svg").status, 400);
  EXPECT_EQ(call("GET", "/v1/traces?colour=red").status, 400);
  const std::string none, wrong = "axon_wrong_token_0123456789";
  EXPECT_EQ(call("GET", "/v1/traces", "", &none).status, 401);
  EXPECT_EQ(call("GET", "/v1/traces/" + trace_id, "", &wrong).status, 401);

  const std::string metrics = call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("axon_traces_stored_total"), std::string::npos);
  EXPECT_NE(metrics.find("axon_trace_ring_dropped_total 0\n"), std::string::npos);
  EXPECT_NE(metrics.find("axon_trace_file_mapped 1\n"), std::string::npos);
}

TEST_F(TracesApi, SpansReachAnOtlpReceiverAndABlackholeNeverStallsTheApi) {
  otlp_test::OtlpReceiver receiver;
  start_controlplane(config_text("[tracing]\notlp_endpoint = \"" + receiver.url() +
                                 "\"\nservice_name = \"axon-it\"\notlp_timeout_ms = 2000\n"
                                 "[tracing.otlp_headers]\nx-api-key = \"k-1\"\n"));
  ASSERT_TRUE(wait_warm(2));
  protocol::Header h = dataplane::it::request_header(1, 7);
  h.trace_flags = protocol::kTraceSampled;
  const auto reply = traced_request(h);
  ASSERT_TRUE(reply) << dataplane_->log();
  const std::string trace_id = hex(h.trace_id.data(), 16);
  std::vector<json> spans;
  std::vector<std::string> problems;
  ASSERT_TRUE(eventually([&] {
    spans.clear();
    problems.clear();
    for (const auto& post : receiver.posts()) {
      for (auto& s : otlp_test::otlp_spans(json::parse(post.body, nullptr, false), "axon-it", problems)) {
        if (s.value("traceId", "") == trace_id) spans.push_back(s);
      }
    }
    return spans.size() == 6;
  })) << spans.size()
      << " spans; " << controlplane_->log();
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  EXPECT_EQ(receiver.posts()[0].headers["x-api-key"], "k-1");
  std::map<std::string, json> by_name;
  for (const auto& s : spans) by_name[s.value("name", "")] = s;
  EXPECT_EQ(by_name["appliance"]["kind"], 2);
  EXPECT_EQ(by_name["appliance"]["parentSpanId"], hex(h.span_id.data(), 8));
  EXPECT_EQ(by_name["handler"]["spanId"], hex(reply->span_id.data(), 8));
  EXPECT_EQ(by_name["queue"]["parentSpanId"], by_name["appliance"]["spanId"]);
  EXPECT_TRUE(eventually(
      [&] { return call("GET", "/metrics").body.find("axon_trace_export_spans_total 6\n") != std::string::npos; }));

  // A collector that accepts and never answers: the API keeps answering, spans are dropped
  // (queue_full: oldest first; retries_exhausted) and failures counted.
  controlplane_->signal(SIGTERM);
  ASSERT_TRUE(controlplane_->wait_exit(20s));
  otlp_test::OtlpReceiver blackhole(true);
  start_controlplane(config_text("[tracing]\notlp_endpoint = \"" + blackhole.url() +
                                 "\"\notlp_timeout_ms = 300\notlp_max_retries = 1\notlp_queue_spans = 6\n"
                                 "otlp_batch_spans = 6\n"));
  ASSERT_TRUE(wait_warm(2));
  for (int i = 0; i < 4; ++i) {
    protocol::Header more = dataplane::it::request_header(1, 7);
    more.trace_flags = protocol::kTraceSampled;
    ASSERT_TRUE(traced_request(more));
  }
  EXPECT_TRUE(eventually([&] { return blackhole.connections() >= 1; }));
  std::string metrics;
  ASSERT_TRUE(eventually([&] {
    const Http m = call("GET", "/metrics");
    metrics = m.body;
    return m.status == 200 && metrics.find("axon_trace_export_failures_total 0\n") == std::string::npos &&
           metrics.find("axon_trace_export_dropped_spans_total{reason=\"queue_full\"} 0\n") == std::string::npos;
  })) << metrics;
  EXPECT_NE(metrics.find("axon_trace_export_spans_total 0\n"), std::string::npos) << metrics;
  const Http listed = call("GET", "/v1/traces?limit=10");
  EXPECT_EQ(listed.status, 200) << "the API answers while the exporter waits on the collector";
  EXPECT_EQ(listed.parsed()["traces"].size(), 4u) << listed.body;
}

}  // namespace
}  // namespace axon::controlplane

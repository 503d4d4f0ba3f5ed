// The trace store on its own (trace_store.h) over a real trace file made by the data plane's
// writer (create_trace_file) and filled through its SPSC rings: records become entries with
// the six spans of docs/observability.md, the store is bounded (oldest evicted and counted),
// filters work, a replaced file (a restarted data plane) is reopened, ring drops are exported;
// and [tracing] in the control plane's TOML is checked with clear errors.
#include "trace_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "axon/controlplane/config.h"

namespace axon::controlplane {
namespace {

using dataplane::SpanRecord;

class TraceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/axon-trace-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/dataplane.traces";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  dataplane::TraceMapping make_file(std::uint32_t lcores, std::uint32_t capacity) {
    auto made = dataplane::create_trace_file(path_, lcores, capacity, 0);
    EXPECT_TRUE(made) << made.message();
    return std::move(made).value();
  }

  static SpanRecord record(std::uint64_t request_id, std::uint8_t trace_byte, std::uint32_t agent = 7) {
    SpanRecord r{};
    r.request_id = request_id;
    for (int i = 0; i < 16; ++i) r.trace_id[i] = std::uint8_t(trace_byte + i);
    for (int i = 0; i < 8; ++i) {
      r.parent_span_id[i] = std::uint8_t(0x10 + i);
      r.appliance_span_id[i] = std::uint8_t(0x20 + i);
      r.handler_span_id[i] = std::uint8_t(0x30 + i);
    }
    // A worker-stamped hop a little before its predecessor (another clock read): moved up.
    const std::uint64_t hops[] = {1000, 1500, 4000, 3990, 9000, 9400};
    for (int h = 0; h < 6; ++h) r.hop_ns[h] = 1'000'000'000ull + hops[h];
    r.tenant_id = 1;
    r.agent_id = agent;
    r.klass = 1;
    r.sampled_by = std::uint8_t(dataplane::SampledBy::flag);
    r.trace_flags = 1;
    return r;
  }

  static bool push(const dataplane::TraceMapping& m, std::uint32_t lcore, const SpanRecord& r) {
    shm::RingProducer<SpanRecord> ring(m.ring(lcore), m.records(lcore));
    return ring.try_push(r);
  }

  static void name_them(TraceEntry& e) {
    e.tenant = e.tenant_id == 1 ? "acme" : "";
    e.agent = e.agent_id == 7 ? "echo" : (e.agent_id == 8 ? "other" : "");
  }

  std::string dir_, path_;
};

TEST_F(TraceStoreTest, RecordBecomesTheSixSpansWithNamesAndRealtime) {
  auto file = make_file(2, 8);
  ASSERT_TRUE(push(file, 1, record(42, 0xa0)));
  std::vector<TraceEntry> sunk;
  TraceStore store({path_, 16, std::chrono::milliseconds(100)}, name_them,
                   [&](const TraceEntry& e) { sunk.push_back(e); });
  ASSERT_EQ(store.poll(), 1u);
  auto all = store.recent(TraceQuery{});
  ASSERT_EQ(all.size(), 1u);
  ASSERT_EQ(sunk.size(), 1u);
  const TraceEntry& e = all[0];
  EXPECT_EQ(e.trace_id, "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_EQ(e.request_id, 42u);
  EXPECT_EQ(e.tenant, "acme");
  EXPECT_EQ(e.agent, "echo");
  EXPECT_EQ(e.klass, "background");
  EXPECT_EQ(e.sampled_by, "flag");
  // CLOCK_MONOTONIC 1 s after boot, in realtime: near now minus uptime, so after 2001.
  EXPECT_GT(e.hop_unix_ns[0], 1'000'000'000ull * 1'000'000'000ull);
  EXPECT_EQ(e.total_ns(), 8400u);
  EXPECT_EQ(e.stage_ns(0), 500u);
  EXPECT_EQ(e.stage_ns(1), 2500u);
  EXPECT_EQ(e.stage_ns(2), 0u) << "worker done before its dequeue is moved up to it";
  EXPECT_EQ(e.stage_ns(3), 5000u);
  EXPECT_EQ(e.stage_ns(4), 400u);
  ASSERT_EQ(e.spans.size(), 6u);
  const std::string request_span = "1011121314151617", appliance = "2021222324252627";
  EXPECT_EQ(e.spans[0].name, "appliance");
  EXPECT_EQ(e.spans[0].span_id, appliance);
  EXPECT_EQ(e.spans[0].parent_span_id, request_span);
  EXPECT_EQ(e.spans[0].kind, SpanKind::server);
  EXPECT_EQ(e.spans[0].start_unix_ns, e.hop_unix_ns[0]);
  EXPECT_EQ(e.spans[0].end_unix_ns, e.hop_unix_ns[5]);
  const char* stages[] = {"ingress", "queue", "return", "egress"};
  for (int i = 0; i < 4; ++i) {
    const TraceSpan& s = e.spans[std::size_t(i) + 1];
    EXPECT_EQ(s.name, stages[i]);
    EXPECT_EQ(s.parent_span_id, appliance);
    EXPECT_EQ(s.kind, SpanKind::internal);
    EXPECT_EQ(s.span_id.size(), 16u);
    EXPECT_NE(s.span_id, std::string(16, '0'));
    EXPECT_LE(s.start_unix_ns, s.end_unix_ns);
  }
  EXPECT_EQ(e.spans[5].name, "handler");
  EXPECT_EQ(e.spans[5].span_id, "3031323334353637");
  EXPECT_EQ(e.spans[5].parent_span_id, request_span);
  EXPECT_EQ(e.spans[5].start_unix_ns, e.hop_unix_ns[2]);
  EXPECT_EQ(e.spans[5].end_unix_ns, e.hop_unix_ns[3]);
  EXPECT_EQ(store.poll(), 0u) << "a record is taken once";
}

TEST_F(TraceStoreTest, BoundedFilteredAndCounted) {
  auto file = make_file(1, 16);
  TraceStore store({path_, 4, std::chrono::milliseconds(100)}, name_them);
  for (std::uint64_t i = 1; i <= 6; ++i) ASSERT_TRUE(push(file, 0, record(i, std::uint8_t(i * 16), i % 2 ? 7 : 8)));
  ASSERT_EQ(store.poll(), 6u);
  auto all = store.recent(TraceQuery{});
  ASSERT_EQ(all.size(), 4u) << "store_traces bounds the store";
  EXPECT_EQ(all.front().request_id, 6u) << "newest first";
  EXPECT_EQ(all.back().request_id, 3u) << "the two oldest were evicted";
  TraceQuery q;
  q.agent = "echo";
  auto echo = store.recent(q);
  ASSERT_EQ(echo.size(), 2u);
  EXPECT_EQ(echo[0].request_id, 5u);
  q.limit = 1;
  EXPECT_EQ(store.recent(q).size(), 1u);
  TraceQuery by_id;
  by_id.trace_id = all[1].trace_id;
  ASSERT_EQ(store.recent(by_id).size(), 1u);
  EXPECT_EQ(store.find(all[1].trace_id).size(), 1u);
  EXPECT_TRUE(store.find(std::string(32, 'f')).empty());
  TraceQuery tenant;
  tenant.tenant = "nobody";
  EXPECT_TRUE(store.recent(tenant).empty());
  // A full ring drops what does not fit and counts it; the store exports the count.
  for (std::uint64_t i = 0; i < 20; ++i) (void)push(file, 0, record(100 + i, 1));
  ASSERT_EQ(store.poll(), 16u);
  const std::string m = store.metrics();
  EXPECT_NE(m.find("axon_trace_ring_dropped_total 4\n"), std::string::npos) << m;
  EXPECT_NE(m.find("axon_traces_stored_total 22\n"), std::string::npos) << m;
  EXPECT_NE(m.find("axon_trace_spans_stored_total 132\n"), std::string::npos) << m;
  EXPECT_NE(m.find("axon_traces_evicted_total 18\n"), std::string::npos) << m;
  EXPECT_NE(m.find("axon_traces_kept 4\n"), std::string::npos) << m;
}

TEST_F(TraceStoreTest, FileAppearingLaterAndReplacedIsFollowed) {
  TraceStore store({path_, 16, std::chrono::milliseconds(10)}, name_them);
  EXPECT_EQ(store.poll(), 0u);
  EXPECT_NE(store.metrics().find("axon_trace_file_mapped 0\n"), std::string::npos);
  {
    auto first = make_file(1, 4);
    for (int i = 0; i < 6; ++i) (void)push(first, 0, record(std::uint64_t(i + 1), 2));  // 2 dropped
    store.start();
    for (int i = 0; i < 200 && store.recent(TraceQuery{}).size() < 4; ++i) usleep(10'000);
    ASSERT_EQ(store.recent(TraceQuery{}).size(), 4u);
    // A restarted data plane: a new file under the same name; the old one had records left.
    (void)push(first, 0, record(50, 3));
    auto second = make_file(1, 4);
    (void)push(second, 0, record(60, 4));
    for (int i = 0; i < 200 && store.recent(TraceQuery{}).size() < 6; ++i) usleep(10'000);
  }
  auto all = store.recent(TraceQuery{});
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0].request_id, 60u) << "the new file's record";
  EXPECT_EQ(all[1].request_id, 50u) << "the old file's last record was not lost";
  const std::string m = store.metrics();
  EXPECT_NE(m.find("axon_trace_ring_dropped_total 2\n"), std::string::npos) << "drops of the old file kept: " << m;
  EXPECT_NE(m.find("axon_trace_file_mapped 1\n"), std::string::npos) << m;
}

TEST(TracingConfig, DefaultsAndValues) {
  const std::string base = "[api]\nlisten = \"\"\nunix_socket = \"/tmp/x.sock\"\n";
  auto defaults = parse_config(base, "test.toml");
  ASSERT_TRUE(defaults) << defaults.message();
  EXPECT_EQ(defaults->tracing.store_traces, 4096u);
  EXPECT_EQ(defaults->tracing.otlp_endpoint, "");
  auto set = parse_config(base +
                              "[tracing]\nstore_traces = 10\notlp_endpoint = \"https://[::1]:4318/v1/traces\"\n"
                              "otlp_timeout_ms = 500\notlp_queue_spans = 100\notlp_batch_spans = 10\n"
                              "otlp_max_retries = 0\nservice_name = \"edge\"\notlp_ca_file = \"/etc/ca.pem\"\n"
                              "[tracing.otlp_headers]\nauthorization = \"Bearer x\"\n",
                          "test.toml");
  ASSERT_TRUE(set) << set.message();
  EXPECT_EQ(set->tracing.store_traces, 10u);
  EXPECT_EQ(set->tracing.otlp_headers.at("authorization"), "Bearer x");
  EXPECT_EQ(set->tracing.otlp_timeout.count(), 500);
  EXPECT_EQ(set->tracing.service_name, "edge");
  auto e = parse_http_endpoint(set->tracing.otlp_endpoint);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->tls);
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->port, "4318");
  EXPECT_EQ(e->target, "/v1/traces");
  auto plain = parse_http_endpoint("http://collector");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port, "80");
  EXPECT_EQ(plain->target, "/");
}

TEST(TracingConfig, MistakesAreRefusedNamingTheKey) {
  const std::string base = "[api]\nlisten = \"\"\nunix_socket = \"/tmp/x.sock\"\n[tracing]\n";
  const struct {
    std::string text;
    const char* mentions;
  } cases[] = {
      {"otlp_endpoint = \"collector:4318\"", "[tracing] otlp_endpoint: must be an http:// or https:// URL"},
      {"otlp_endpoint = \"ftp://h/v1/traces\"", "otlp_endpoint: must be an http"},
      {"otlp_endpoint = \"http://h:99999/v1/traces\"", "otlp_endpoint: must be an http"},
      {"otlp_endpoint = \"http:///v1/traces\"", "otlp_endpoint: must be an http"},
      {"store_traces = -1", "store_traces must be an integer in [0,"},
      {"store_traces = 0", "store_traces: must be between 1 and"},
      {"otlp_queue_spans = -5", "otlp_queue_spans must be an integer in [0,"},
      {"otlp_batch_spans = 0", "otlp_batch_spans: must be between 1 and"},
      {"otlp_timeout_ms = 0", "otlp_timeout_ms: must be between 1 and"},
      {"service_name = \"\"", "service_name: must not be empty"},
      {"otlp_endpont = \"http://h\"", "unknown key 'otlp_endpont'"},
      {"[tracing.otlp_headers]\n\"bad header\" = \"x\"", "must be an HTTP header name"},
      {"[tracing.otlp_headers]\nx-key = 5", "must be a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto config = parse_config(base + c.text + "\n", "test.toml");
    ASSERT_FALSE(config);
    EXPECT_NE(config.message().find("test.toml:"), std::string::npos) << config.message();
    EXPECT_NE(config.message().find(c.mentions), std::string::npos) << config.message();
  }
}

}  // namespace
}  // namespace axon::controlplane

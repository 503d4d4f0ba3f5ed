// The control plane's components on their own: the registry (validation, persistence in
// state.json), the data plane link without a data plane, and the metrics exporter.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "axon/dataplane/stats.h"

#include "dataplane_link.h"
#include "metrics_exporter.h"
#include "registry.h"

namespace axon::controlplane {
namespace {

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/axon-cpcomp-XXXXXX";
    path_ = ::mkdtemp(tmpl) != nullptr ? tmpl : "";
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

ControlplaneConfig config_in(const std::string& dir) {
  ControlplaneConfig c;
  c.state_dir = dir;
  c.worker_user = "nobody";
  c.allowed_worker_commands = {"/bin/"};
  c.cgroups.profiles["default"] = {};
  TenantSpec t;
  t.id = 1;
  t.name = "t1";
  c.tenants.push_back(t);
  return c;
}

AgentSpec agent(const std::string& name, std::uint32_t id, std::uint32_t tenant = 1) {
  AgentSpec a;
  a.name = name;
  a.id = id;
  a.tenant = tenant;
  a.command = {"/bin/true"};
  return a;
}

TEST(Registry, SeedsFromTheConfigAndPersistsChanges) {
  ScratchDir dir;
  const auto config = config_in(dir.path());
  {
    Registry r(config);
    ASSERT_TRUE(r.load());
    EXPECT_EQ(r.tenants().size(), 1u);
    ASSERT_TRUE(r.validate_agent(agent("a", 7), nullptr));
    r.set_agent(agent("a", 7));
    ASSERT_TRUE(r.save());
    TenantSpec t2;
    t2.name = "t2";
    t2.prefixes = {"10.0.0.0/8"};
    ASSERT_TRUE(r.put_tenant(2, t2));
    EXPECT_EQ(r.next_table_version(), 1u);
    ASSERT_TRUE(r.save());
  }
  Registry again(config);
  ASSERT_TRUE(again.load());
  ASSERT_NE(again.agent("a"), nullptr);
  EXPECT_EQ(again.agent("a")->id, 7u);
  EXPECT_EQ(again.tenants().at(2).prefixes, std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(again.next_table_version(), 2u);  // versions are never reused across restarts
}

TEST(Registry, RefusesInvalidAndConflictingChanges) {
  ScratchDir dir;
  const auto config = config_in(dir.path());
  Registry r(config);
  ASSERT_TRUE(r.load());
  r.set_agent(agent("a", 7));
  EXPECT_EQ(r.validate_agent(agent("a", 8), nullptr).code(), ApiErrorCode::conflict);
  EXPECT_EQ(r.validate_agent(agent("b", 7), nullptr).code(), ApiErrorCode::conflict);
  const std::string self = "a";
  EXPECT_TRUE(r.validate_agent(agent("a", 7), &self));
  const auto no_tenant = r.validate_agent(agent("b", 8, 5), nullptr);
  ASSERT_FALSE(no_tenant);
  EXPECT_EQ(no_tenant.code(), ApiErrorCode::invalid_argument);
  EXPECT_NE(no_tenant.message().find("PUT /v1/tenants/5"), std::string::npos) << no_tenant.message();
  EXPECT_EQ(r.validate_agent(agent("Bad Name", 9), nullptr).code(), ApiErrorCode::invalid_argument);

  TenantSpec bad;
  bad.name = "x";
  bad.prefixes = {"10.0.0.1/8"};
  EXPECT_EQ(r.put_tenant(3, bad).code(), ApiErrorCode::invalid_argument);
  TenantSpec dup;
  dup.name = "t1";
  EXPECT_EQ(r.put_tenant(3, dup).code(), ApiErrorCode::conflict);
  EXPECT_EQ(r.delete_tenant(1).code(), ApiErrorCode::conflict);  // agent a uses it
  EXPECT_EQ(r.delete_tenant(9).code(), ApiErrorCode::not_found);
}

TEST(Registry, AnUnreadableStateFileFailsTheStartWithWhatToDo) {
  ScratchDir dir;
  const auto config = config_in(dir.path());
  std::ofstream(dir.path() + "/state.json") << R"({"tenants":[{"id":1,"name":"t","colour":1}],"agents":[]})";
  Registry r(config);
  const auto loaded = r.load();
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.code(), DaemonError::state);
  EXPECT_NE(loaded.message().find("unknown field 'colour'"), std::string::npos) << loaded.message();
  EXPECT_NE(loaded.message().find("move the file away"), std::string::npos) << loaded.message();
}

TEST(DataplaneLink, WithoutADataPlaneItStaysDownAndSaysSo) {
  ScratchDir dir;
  DataplaneLink link({dir.path(), std::chrono::milliseconds(10), 100});
  EXPECT_EQ(link.refresh(), DataplaneLink::Event::none);
  EXPECT_FALSE(link.connected());
  EXPECT_EQ(link.stats(), nullptr);
  DataplaneStatus status;
  status.ready = true;
  link.fill(status);
  EXPECT_FALSE(status.connected);
  dataplane::control::Tables tables;
  EXPECT_TRUE(link.needs_push(tables));  // nothing accepted yet
  EXPECT_EQ(link.push(tables), DataplaneLink::Push::lost);
}

TEST(MetricsExporter, WritesEveryFamilyOnceWithAgentLabels) {
  MetricsSnapshot s;
  s.version = "9.9";
  s.dataplane_up = true;
  s.spawn_failures = 3;
  AgentStatus a;
  a.spec = agent("echo", 7);
  a.workers = 2;
  a.breaker = BreakerState::open;
  s.agents.push_back(a);
  WorkerInfo w;
  w.id = "echo-0";
  w.agent = "echo";
  w.inflight = 5;
  s.workers.push_back(w);
  const std::string text = export_metrics(s);
  EXPECT_NE(text.find("axon_controlplane_info{version=\"9.9\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_up 1"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_worker_spawn_failures_total 3"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_agent_workers{agent=\"echo\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_agent_breaker_open{agent=\"echo\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_worker_inflight{agent=\"echo\",worker=\"echo-0\"} 5"), std::string::npos) << text;
  // No stats segment mapped: no data plane counters (rather than zeros that look real).
  EXPECT_EQ(text.find("axon_dataplane_requests_total"), std::string::npos) << text;
  EXPECT_EQ(text.find("# TYPE axon_agents gauge"), text.rfind("# TYPE axon_agents gauge"));
}

// Issue 13: the XDP program's per-class verdicts and the credit BUSY counts reach /metrics,
// labelled by class and by where the BUSY came from; busy_no_credits is not listed as a drop.
TEST(MetricsExporter, XdpClassVerdictsAndCreditBusyAreLabelled) {
  ScratchDir dir;
  const std::string path = dir.path() + "/dataplane.stats";
  auto file = dataplane::StatsFile::create(path, 1, 1);
  ASSERT_TRUE(file.ok()) << file.message();
  dataplane::StatsHeader& h = *file->view().header;
  const auto busy = std::size_t(protocol::Reason::busy_no_credits);
  h.xdp_packets[busy].store(7);
  h.xdp_class_packets[1][busy].store(7);
  h.xdp_class_packets[0][std::size_t(protocol::Reason::ok)].store(11);
  h.xdp_class_packets[1][std::size_t(protocol::Reason::rate_limited)].store(2);
  file->view().lcores[0].drops[busy].store(3);
  auto reader = dataplane::StatsReader::open(path);
  ASSERT_TRUE(reader.ok()) << reader.message();
  MetricsSnapshot s;
  s.stats = &reader.value();
  const std::string text = export_metrics(s);
  EXPECT_NE(text.find("axon_dataplane_credit_busy_total{where=\"xdp\"} 7"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_credit_busy_total{where=\"userspace\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_xdp_class_frames_total{class=\"background\",reason=\"busy_no_credits\"} 7"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("axon_xdp_class_frames_total{class=\"interactive\",reason=\"ok\"} 11"), std::string::npos)
      << text;
  EXPECT_NE(text.find("axon_xdp_class_frames_total{class=\"background\",reason=\"rate_limited\"} 2"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("axon_dataplane_drops_total{reason=\"busy_no_credits\""), std::string::npos)
      << "a BUSY is an answer, not a drop";
}

// Issue 14: reassembly drops by reason (userspace only), the reassembled and reply-segment
// counters and the per-lcore reassembly memory gauge.
TEST(MetricsExporter, ReassemblyReasonsCountersAndPerLcoreMemoryGauge) {
  ScratchDir dir;
  const std::string path = dir.path() + "/dataplane.stats";
  auto file = dataplane::StatsFile::create(path, 2, 1);
  ASSERT_TRUE(file.ok()) << file.message();
  auto& l0 = file->view().lcores[0];
  auto& l1 = file->view().lcores[1];
  l0.drops[std::size_t(protocol::Reason::reassembly_timeout)].store(4);
  l1.drops[std::size_t(protocol::Reason::segment_mismatch)].store(2);
  l0.reassembled.store(5);
  l1.reassembled.store(6);
  l0.reply_segments.store(47);
  l0.trace_context_invalid.store(3);  // issue 15: malformed trace context, summed over lcores
  l1.trace_context_invalid.store(4);
  l1.reassembly_bytes.store(65536);
  l1.reassembly_messages.store(1);
  auto reader = dataplane::StatsReader::open(path);
  ASSERT_TRUE(reader.ok()) << reader.message();
  MetricsSnapshot s;
  s.stats = &reader.value();
  const std::string text = export_metrics(s);
  EXPECT_NE(text.find("axon_dataplane_drops_total{reason=\"reassembly_timeout\",where=\"userspace\"} 4"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("axon_dataplane_drops_total{reason=\"segment_mismatch\",where=\"userspace\"} 2"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("axon_dataplane_drops_total{reason=\"reassembly_timeout\",where=\"xdp\"}"), std::string::npos)
      << "the XDP program never reassembles";
  EXPECT_NE(text.find("axon_dataplane_reassembled_total 11"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_reply_segments_total 47"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_trace_context_invalid_total 7"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_reassembly_bytes{lcore=\"0\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_reassembly_bytes{lcore=\"1\"} 65536"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_reassembly_messages{lcore=\"1\"} 1"), std::string::npos) << text;
}

// Issue 15: the per-stage histograms of two lcores are merged and exported in seconds, with
// cumulative buckets on the fixed edges, labelled by stage and class only.
TEST(MetricsExporter, StageLatencyHistogramsAreMergedCumulativeAndInSeconds) {
  ScratchDir dir;
  const std::string path = dir.path() + "/dataplane.stats";
  auto file = dataplane::StatsFile::create(path, 2, 1);
  ASSERT_TRUE(file.ok()) << file.message();
  const auto handler = std::size_t(dataplane::Stage::handler);
  dataplane::record(file->view().lcores[0].stage_latency[handler][0], 1000);     // 1 us
  dataplane::record(file->view().lcores[1].stage_latency[handler][0], 3000000);  // 3 ms
  auto reader = dataplane::StatsReader::open(path);
  ASSERT_TRUE(reader.ok()) << reader.message();
  MetricsSnapshot s;
  s.stats = &reader.value();
  const std::string text = export_metrics(s);
  const std::string labels = "stage=\"handler\",class=\"interactive\"";
  EXPECT_NE(text.find("# TYPE axon_dataplane_stage_latency_seconds histogram"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_stage_latency_seconds_count{" + labels + "} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_stage_latency_seconds_sum{" + labels + "} 0.003001"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_stage_latency_seconds_bucket{" + labels + ",le=\"1.024e-06\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("axon_dataplane_stage_latency_seconds_bucket{" + labels + ",le=\"0.004194304\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("axon_dataplane_stage_latency_seconds_bucket{" + labels + ",le=\"+Inf\"} 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("axon_dataplane_stage_latency_seconds_count{stage=\"total\",class=\"background\"} 0"),
            std::string::npos)
      << text;
}

// The drain rate gauge carries its unit (issue 15: it was axon_dataplane_slot_drain_rate).
TEST(MetricsExporter, SlotDrainRateIsInRequestsPerSecond) {
  ScratchDir dir;
  const std::string path = dir.path() + "/dataplane.stats";
  auto file = dataplane::StatsFile::create(path, 1, 1);
  ASSERT_TRUE(file.ok()) << file.message();
  dataplane::WorkerStats& w = file->view().workers[0];
  std::snprintf(w.name, sizeof w.name, "%s", "slot-0");
  w.state.store(std::uint32_t(dataplane::WorkerSlotState::alive));
  w.drain_rate.store(1234);
  auto reader = dataplane::StatsReader::open(path);
  ASSERT_TRUE(reader.ok()) << reader.message();
  MetricsSnapshot s;
  s.stats = &reader.value();
  const std::string text = export_metrics(s);
  EXPECT_NE(text.find("# TYPE axon_dataplane_slot_drain_rate_requests_per_second gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("axon_dataplane_slot_drain_rate_requests_per_second{slot=\"slot-0\"} 1234"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("axon_dataplane_slot_drain_rate{"), std::string::npos) << text;
}

}  // namespace
}  // namespace axon::controlplane

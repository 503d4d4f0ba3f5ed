// A real Prometheus server (Debian's `prometheus`) scrapes the real control plane (issue 15):
// over HTTPS, trusting the test's CA, with a reader token from a credentials file, every
// second, while requests run through the real data plane (XDP on the test's veth pair) to real
// echo workers. Prometheus' own HTTP API then says the target is up and answers a
// histogram_quantile over the per-stage latency histograms with a number for a stage label.
// This is the scrape configuration docs/observability.md tells operators to use.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "daemon_fixture.h"

namespace axon::controlplane {
namespace {

using namespace daemon_it;

class PrometheusScrape : public ControlplaneDaemon {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/prometheus", X_OK) != 0) {
      GTEST_SKIP() << "Debian's prometheus is not installed (deploy/test.sh installs it)";
    }
    net_prefix_ = "axpo";
    ControlplaneDaemon::SetUp();
  }

  void TearDown() override {
    if (prometheus_) {
      prometheus_->signal(SIGTERM);
      if (!prometheus_->wait_exit(10s)) prometheus_->kill_now();
      prometheus_.reset();
    }
    ControlplaneDaemon::TearDown();
  }

  // Writes the scrape configuration and starts Prometheus on a loopback port with its own
  // data directory.
  void start_prometheus() {
    const std::string token_file = tmp_.path() + "/prometheus.token";
    {
      std::ofstream out(token_file);
      out << reader_token_ << "\n";
    }
    chmod(token_file.c_str(), 0600);
    const std::string config = tmp_.path() + "/prometheus.yml";
    {
      std::ofstream out(config);
      out << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
          << "scrape_configs:\n  - job_name: axon\n    scheme: https\n    metrics_path: /metrics\n"
          << "    authorization:\n      type: Bearer\n      credentials_file: " << token_file << "\n"
          << "    tls_config:\n      ca_file: " << cert_ << "\n"
          << "    static_configs:\n      - targets: [\"127.0.0.1:" << port_ << "\"]\n";
    }
    std::string out;
    ASSERT_EQ(run_command({"promtool", "check", "config", config}, &out), 0) << out;
    prom_port_ = free_tcp_port();
    prometheus_ = std::make_unique<ChildProcess>();
    std::string error;
    ASSERT_TRUE(prometheus_->start(
        {"/usr/bin/prometheus", "--config.file=" + config, "--storage.tsdb.path=" + tmp_.path() + "/prometheus-data",
         "--web.listen-address=127.0.0.1:" + std::to_string(prom_port_), "--log.level=warn"},
        {}, tmp_.path() + "/prometheus.log", &error))
        << error;
  }

  // Prometheus' instant query API: the result vector, or an empty array (not up yet, a query
  // error, no data).
  json query(const std::string& promql) {
    const std::string body = tmp_.path() + "/query.json";
    std::string out;
    const int rc = run_command(
        {"curl", "-sS", "-o", body, "--max-time", "5", "-G",
         "http://127.0.0.1:" + std::to_string(prom_port_) + "/api/v1/query", "--data-urlencode", "query=" + promql},
        &out);
    if (rc != 0) return json::array();
    json j = json::parse(read_file(body), nullptr, false);
    if (!j.is_object() || j.value("status", "") != "success" || !j.contains("data")) return json::array();
    const json& data = j["data"];
    return data.contains("result") && data["result"].is_array() ? data["result"] : json::array();
  }

  // One sample's value as a number (Prometheus sends ["<time>", "<value>"]); NaN otherwise.
  static double value_of(const json& sample) {
    if (!sample.contains("value") || !sample["value"].is_array() || sample["value"].size() != 2) return NAN;
    const json& v = sample["value"][1];
    return v.is_string() ? std::strtod(v.get<std::string>().c_str(), nullptr) : NAN;
  }

  std::unique_ptr<ChildProcess> prometheus_;
  std::uint16_t prom_port_ = 0;
};

TEST_F(PrometheusScrape, ScrapesOverTlsWithABearerTokenAndAnswersAStageQuantile) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  start_prometheus();
  ASSERT_TRUE(eventually([&] {
    const json up = query("up{job=\"axon\"} == 1");
    return up.size() == 1 && value_of(up[0]) == 1.0;
  })) << prometheus_->log();

  // Requests keep flowing while Prometheus scrapes, until the rate of the stage buckets over
  // the last scrapes has a quantile (a window without new samples yields NaN, not a number).
  const std::string promql =
      "histogram_quantile(0.99, sum by (le, stage) (rate(axon_dataplane_stage_latency_seconds_bucket[10s])))";
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  std::uint64_t id = 0, answered = 0;
  double handler_p99 = NAN;
  json result;
  ASSERT_TRUE(eventually(
      [&] {
        for (int i = 0; i < 20; ++i) {
          protocol::Header h{};
          h.type = protocol::MessageType::request;
          h.tenant_id = 1;
          h.agent_id = 7;
          h.request_id = ++id;
          const std::uint8_t payload[] = {'p', 'r', 'o', 'm'};
          if (client.send(h, payload) && client.receive(2s)) ++answered;
        }
        result = query(promql);
        for (const json& sample : result) {
          if (sample.contains("metric") && sample["metric"].value("stage", "") == "handler") {
            handler_p99 = value_of(sample);
          }
        }
        return std::isfinite(handler_p99);
      },
      25s))
      << "answered " << answered << " of " << id << "; last result: " << result.dump() << "\n"
      << prometheus_->log();
  EXPECT_GT(handler_p99, 0.0);
  EXPECT_LT(handler_p99, 13.0);  // the last finite bucket edge is 12.9 s
  // Every stage label is there, and only the stage label survives the sum.
  std::set<std::string> stages;
  for (const json& sample : result) stages.insert(sample["metric"].value("stage", ""));
  EXPECT_EQ(stages, (std::set<std::string>{"ingress", "queue", "handler", "return", "egress", "total"}));
  // The target stayed up, scraped with the token (a refused scrape would make up 0).
  const json up = query("up{job=\"axon\"}");
  ASSERT_EQ(up.size(), 1u) << up.dump();
  EXPECT_EQ(value_of(up[0]), 1.0);
}

}  // namespace
}  // namespace axon::controlplane

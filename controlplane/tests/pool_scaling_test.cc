// Warm pools driven by queueing delay, end to end (issue 13): a pool of real slow workers
// (echo_worker --work-ns) behind the real data plane grows when the requests it is sent
// queue beyond the agent's delay target, and shrinks back to its minimum once they stop;
// each decision is visible, with its reason, in GET /v1/agents/{name}/scaling (real HTTPS,
// real tokens) and in /metrics.
#include <gtest/gtest.h>

#include <string>

#include "daemon_fixture.h"

namespace axon::controlplane {
namespace {

using namespace daemon_it;

// 1 ms of handler work per request: 16 outstanding requests queue for ~16 ms at one worker,
// far above the 2 ms target.
constexpr const char* kSlowAgent =
    "[[agents]]\nname = \"slow\"\nid = 11\ntenant = 1\n"
    "command = [\"" AXON_ECHO_WORKER_BIN
    "\", \"--work-ns\", \"1000000\", \"--spin-max\", \"64\"]\n"
    "min_workers = 1\nmax_workers = 3\n";

std::size_t count_decisions(const json& scaling, const std::string& direction, const std::string& reason) {
  std::size_t n = 0;
  if (!scaling.contains("decisions")) return 0;
  for (const auto& d : scaling["decisions"]) {
    n += d.value("direction", "") == direction && d.value("reason", "") == reason ? 1 : 0;
  }
  return n;
}

TEST_F(ControlplaneDaemon, APoolGrowsUnderLoadAndShrinksBackWhenItStops) {
  std::string config = config_text(kSlowAgent);
  const std::string pools = "[pools]\n";
  config.replace(config.find(pools), pools.size(),
                 pools +
                     "queue_delay_target_us = 2000\nscale_up_sustain_ms = 300\nscale_up_cooldown_ms = 300\n"
                     "scale_down_idle_ms = 1500\nscale_down_cooldown_ms = 500\n");
  start_controlplane(config);
  ASSERT_TRUE(wait_warm(1, "slow")) << workers("slow").dump() << controlplane_->log();
  Http before = call("GET", "/v1/agents/slow/scaling", "", &reader_token_);
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(before.parsed()["target"], 1) << before.body;
  EXPECT_EQ(before.parsed()["queue_delay_target_us"], 2000) << before.body;

  // Closed-loop load, bounded in rounds and time: 16 requests out, their replies back, until
  // the pool has grown (or 20 s pass).
  AxpClient client(*net_, AF_INET);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.widen_receive_buffer(1 << 20));
  const auto load_until = std::chrono::steady_clock::now() + 20s;
  std::uint64_t id = 1;
  std::size_t answered = 0, sent = 0;
  bool grew = false;
  for (int round = 0; round < 2000 && !grew && std::chrono::steady_clock::now() < load_until; ++round) {
    for (int i = 0; i < 16; ++i) {
      protocol::Header h{};
      h.type = protocol::MessageType::request;
      h.tenant_id = 1;
      h.agent_id = 11;
      h.request_id = id++;
      h.session_key = id;  // spread over the pool's workers
      const std::uint8_t payload[] = {'l', 'o', 'a', 'd'};
      sent += client.send(h, payload) ? 1 : 0;
    }
    answered += client.receive_n(16, 2s).size();
    if (round % 10 == 9) grew = call("GET", "/v1/agents/slow/scaling").parsed().value("target", 0) >= 2;
  }
  ASSERT_TRUE(grew) << "the pool did not grow under load: " << call("GET", "/v1/agents/slow/scaling").body << "\n"
                    << controlplane_->log();
  EXPECT_EQ(answered, sent) << "every request is answered (a response, or BUSY/ERROR)";
  ASSERT_TRUE(wait_warm(call("GET", "/v1/agents/slow/scaling").parsed().value("target", 0), "slow"))
      << workers("slow").dump();

  Http grown = call("GET", "/v1/agents/slow/scaling");
  const json g = grown.parsed();
  ASSERT_GE(count_decisions(g, "up", "queue_delay"), 1u) << grown.body;
  for (const auto& d : g["decisions"]) {
    if (d.value("reason", "") != "queue_delay") continue;
    EXPECT_GT(d.value("delay_us", 0), 2000) << "grew with the delay above the target: " << d.dump();
    EXPECT_EQ(d.value("target_us", 0), 2000);
    EXPECT_EQ(d.value("to", 0), d.value("from", 0) + 1);
    EXPECT_FALSE(d.value("message", "").empty());
  }

  // The load stops: the idle workers are drained back to the minimum.
  ASSERT_TRUE(eventually(
      [&] {
        const json s = call("GET", "/v1/agents/slow/scaling").parsed();
        return s.value("target", 0) == 1 && workers("slow").size() == 1;
      },
      30s))
      << call("GET", "/v1/agents/slow/scaling").body << "\n"
      << workers("slow").dump() << "\n"
      << controlplane_->log();
  const json shrunk = call("GET", "/v1/agents/slow/scaling").parsed();
  EXPECT_GE(count_decisions(shrunk, "down", "idle"), 1u) << shrunk.dump();
  for (const auto& d : shrunk["decisions"]) {
    if (d.value("reason", "") == "idle") {
      EXPECT_FALSE(d.value("worker", "").empty()) << d.dump();
    }
  }
  ASSERT_TRUE(wait_warm(1, "slow")) << workers("slow").dump();
  auto reply = request(11, 999'999);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);

  // The same decisions, counted in /metrics, and logged with their reason.
  const std::string metrics = call("GET", "/metrics", "", &reader_token_).body;
  EXPECT_NE(metrics.find("axon_pool_scale_events_total{agent=\"slow\",direction=\"up\",reason=\"queue_delay\"}"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("axon_pool_scale_events_total{agent=\"slow\",direction=\"down\",reason=\"idle\"}"),
            std::string::npos)
      << metrics;
  EXPECT_NE(controlplane_->log().find("agent slow: scaling up to 2 (queue_delay)"), std::string::npos)
      << controlplane_->log();
  // The echo pool (sequential pings only) never moved.
  EXPECT_EQ(count_decisions(call("GET", "/v1/agents/echo/scaling").parsed(), "up", "queue_delay"), 0u);
}

}  // namespace
}  // namespace axon::controlplane

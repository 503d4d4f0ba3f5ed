// The control plane's TOML loader: the annotated example parses, and every kind of mistake is
// refused with its file:line and a message that names the key and the fix.
#include "axon/controlplane/config.h"

#include <gtest/gtest.h>

#include <string>

namespace axon::controlplane {
namespace {

constexpr const char* kBase = R"(controlplane = { worker_user = "nobody", allowed_worker_commands = ["/bin/true"] }
[api]
listen = ""
unix_socket = "/tmp/x.sock"

[[tenants]]
id = 1
name = "acme"

[[agents]]
name = "echo"
id = 7
tenant = 1
command = ["/bin/true"]
min_workers = 2
max_workers = 3
)";

struct BadCase {
  const char* name;
  std::string text;
  ConfigError code;
  const char* line;      // "test.toml:<line>" expected in the message
  const char* mentions;  // and this text
};

TEST(ControlplaneConfig, AnnotatedExampleParses) {
  auto config = load_config(AXON_EXAMPLE_CP_CONFIG);
  ASSERT_TRUE(config) << config.message();
  EXPECT_EQ(config->agents.size(), 1u);
  EXPECT_EQ(config->agents[0].pool.min, 2u);
  EXPECT_EQ(config->agents[0].pool.max, 4u);
  EXPECT_EQ(config->cgroups.profiles.at("small").memory_max, 256ull << 20);
  EXPECT_EQ(config->cgroups.profiles.at("small").cpu_max_percent, 50u);
  EXPECT_EQ(config->cgroups.class_weight.at("realtime"), 1000u);
  EXPECT_EQ(config->pools.breaker_failures, 5u);
  EXPECT_EQ(config->pools.on_exit, "keep");
}

TEST(ControlplaneConfig, BaseParses) {
  auto config = parse_config(kBase, "test.toml");
  ASSERT_TRUE(config) << config.message();
  EXPECT_EQ(config->agents[0].command[0], "/bin/true");
  EXPECT_EQ(config->agents[0].priority, PriorityClass::standard);
  EXPECT_EQ(config->agents[0].cgroup_profile, "default");
}

TEST(ControlplaneConfig, MistakesAreRefusedWithLineAndFix) {
  const std::string base = kBase;
  const BadCase cases[] = {
      {"syntax", "[api\nlisten = 1\n", ConfigError::parse_error, "test.toml:1", ""},
      {"unknown top-level table", base + "\n[apix]\nx = 1\n", ConfigError::unknown_key, "test.toml:18",
       "unknown key 'apix'"},
      {"unknown key in api", "[api]\nlisten = \"\"\nunix_socket = \"/x\"\nthreds = 2\n", ConfigError::unknown_key,
       "test.toml:4", "unknown key 'threds' in [api]"},
      {"listen without certificate", "[api]\nlisten = \"127.0.0.1:1\"\n", ConfigError::invalid_value, "test.toml:2",
       "cert_file and key_file"},
      {"wrong type", "[pools]\nscale_interval_ms = \"8\"\n", ConfigError::invalid_value, "test.toml:2",
       "scale_interval_ms must be an integer"},
      {"replaced scale_up_queue", "[pools]\nscale_up_queue = 8\n", ConfigError::invalid_value, "test.toml:2",
       "replaced by queue_delay_target_us"},
      {"zero delay target", "[pools]\nqueue_delay_target_us = 0\n", ConfigError::invalid_value, "test.toml:2",
       "queue_delay_target_us: must be between 1 and"},
      {"shrink ratio at 1", "[pools]\nscale_down_delay_ratio = 1.0\n", ConfigError::invalid_value, "test.toml:2",
       "scale_down_delay_ratio: must be at least 0 and below 1"},
      {"bad on_exit", "[pools]\non_exit = \"sometimes\"\n", ConfigError::invalid_value, "test.toml:2", "on_exit"},
      {"backoff max below initial", "[pools]\nbackoff_initial_ms = 500\nbackoff_max_ms = 100\n",
       ConfigError::invalid_value, "test.toml:3", "backoff_max_ms"},
      {"bad size", "[cgroup_profiles.x]\nmemory_max = \"12Q\"\n", ConfigError::invalid_value, "test.toml:2", "512M"},
      {"cpu weight range", "[cgroup_profiles.x]\ncpu_weight = 0\n", ConfigError::invalid_value, "test.toml:2",
       "between 1 and 10000"},
      {"bad cgroup mode", "[cgroups]\nmode = \"v3\"\n", ConfigError::invalid_value, "test.toml:2", "\"auto\""},
      {"relative dataplane command", "[dataplane]\ncommand = [\"axon-dataplane\"]\n", ConfigError::invalid_value,
       "test.toml:2", "absolute path"},
      {"agent with unknown tenant", "[[agents]]\nname = \"a\"\nid = 1\ntenant = 9\ncommand = [\"/bin/true\"]\n",
       ConfigError::invalid_value, "test.toml:4", "tenant 9 is not defined"},
      {"agent min above max",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\nmin_workers = 3\nmax_workers = 2\n",
       ConfigError::invalid_value, "test.toml:5", "min (3) is above max (2)"},
      {"agent relative command",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = [\"true\"]\n",
       ConfigError::invalid_value, "test.toml:5", "absolute path"},
      {"agent bad priority",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\npriority = \"urgent\"\n"
       "command = [\"/bin/true\"]\n",
       ConfigError::invalid_value, "test.toml:8", "realtime"},
      {"agent unknown profile",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\ncgroup_profile = \"huge\"\n",
       ConfigError::invalid_value, "test.toml:5", "unknown cgroup_profile 'huge'"},
      {"agent missing command", "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\n",
       ConfigError::missing_field, "test.toml:4", "needs 'command'"},
      {"duplicate agent", base + "\n[[agents]]\nname = \"echo\"\nid = 8\ntenant = 1\ncommand = [\"/bin/true\"]\n",
       ConfigError::invalid_value, "test.toml:19", "defined twice"},
      {"tenant bad prefix", "[[tenants]]\nid = 1\nname = \"t\"\nprefixes = [\"10.0.0.0/33\"]\n",
       ConfigError::invalid_value, "test.toml:2", "10.0.0.0/33"},
      {"agent unknown dispatch policy",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\ndispatch = \"fastest\"\n",
       ConfigError::invalid_value, "test.toml:9", "unknown dispatch policy 'fastest'; use \"sticky\""},
      {"agent reserves more than its max",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\nmax_workers = 2\nreserved_interactive = 3\n",
       ConfigError::invalid_value, "test.toml:5", "reserved_interactive (3) is more than the pool's max (2)"},
      {"agent dedup window too long",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\ndedup_window_ms = 700000\n",
       ConfigError::invalid_value, "test.toml:5", "dedup_window_ms: at most 600000"},
      {"agent unknown reply cache eviction",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\nreply_cache_eviction = \"lfu\"\n",
       ConfigError::invalid_value, "test.toml:9", "unknown reply cache eviction 'lfu'; use \"lru\" or \"fifo\""},
      {"agent high water above 1",
       "[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = "
       "[\"/bin/true\"]\nhigh_water = 1.5\n",
       ConfigError::invalid_value, "test.toml:5", "high_water"},
      {"tenant class rate without burst", "[[tenants]]\nid = 1\nname = \"t\"\ninteractive_rate_pps = 100\n",
       ConfigError::invalid_value, "test.toml:2", "interactive_rate_pps needs interactive_burst"},
      {"tenant credits min above max", "[[tenants]]\nid = 1\nname = \"t\"\ncredits_max = 2\ncredits_min = 3\n",
       ConfigError::invalid_value, "test.toml:2", "credits_min (3) must not exceed credits_max (2)"},
      {"tenant unknown limit key", "[[tenants]]\nid = 1\nname = \"t\"\ninteractive_rate = 100\n",
       ConfigError::unknown_key, "test.toml:4", "unknown key 'interactive_rate'"},
      {"tenant rate without burst", "[[tenants]]\nid = 1\nname = \"t\"\nrate_pps = 10\n", ConfigError::invalid_value,
       "test.toml:2", "no burst"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto config = parse_config(c.text, "test.toml");
    ASSERT_FALSE(config) << "accepted: " << c.name;
    EXPECT_EQ(config.code(), c.code) << config.message();
    EXPECT_NE(config.message().find(c.line), std::string::npos) << config.message();
    EXPECT_NE(config.message().find(c.mentions), std::string::npos) << config.message();
  }
}

TEST(ControlplaneConfig, AutoscalerKnobsParseWithDefaults) {
  auto defaults = parse_config(kBase, "test.toml");
  ASSERT_TRUE(defaults) << defaults.message();
  EXPECT_EQ(defaults->pools.queue_delay_target_us, 1000u);
  EXPECT_EQ(defaults->pools.scale_up_sustain.count(), 1000);
  EXPECT_EQ(defaults->pools.scale_up_cooldown.count(), 2000);
  EXPECT_EQ(defaults->pools.scale_down_idle.count(), 30000);
  EXPECT_EQ(defaults->pools.scale_down_cooldown.count(), 10000);
  EXPECT_DOUBLE_EQ(defaults->pools.scale_down_delay_ratio, 0.5);
  auto set = parse_config(std::string(kBase) +
                              "[pools]\nqueue_delay_target_us = 250\nscale_up_sustain_ms = 300\n"
                              "scale_up_cooldown_ms = 400\nscale_down_idle_ms = 1500\nscale_down_cooldown_ms = 600\n"
                              "scale_down_delay_ratio = 0.25\n",
                          "test.toml");
  ASSERT_TRUE(set) << set.message();
  EXPECT_EQ(set->pools.queue_delay_target_us, 250u);
  EXPECT_EQ(set->pools.scale_up_sustain.count(), 300);
  EXPECT_EQ(set->pools.scale_up_cooldown.count(), 400);
  EXPECT_EQ(set->pools.scale_down_idle.count(), 1500);
  EXPECT_EQ(set->pools.scale_down_cooldown.count(), 600);
  EXPECT_DOUBLE_EQ(set->pools.scale_down_delay_ratio, 0.25);
}

TEST(ControlplaneConfig, AgentSchedulingKeysParse) {
  auto config = parse_config(std::string(kBase) +
                                 "dispatch = \"p2c\"\nclass_scheduling = false\nreserved_interactive = 1\n"
                                 "reserved_interactive_share = 0.25\nqueue_delay_target_us = 750\nhigh_water = 0.8\n"
                                 "dedup_window_ms = 3000\nreply_cache_entries = 99\nreply_cache_eviction = \"fifo\"\n",
                             "test.toml");
  ASSERT_TRUE(config) << config.message();
  const model::Scheduling& s = config->agents[0].scheduling;
  EXPECT_EQ(s.dispatch, model::Dispatch::p2c);
  EXPECT_FALSE(s.class_scheduling);
  EXPECT_EQ(s.reserved_interactive, 1u);
  EXPECT_DOUBLE_EQ(s.reserved_interactive_share, 0.25);
  EXPECT_EQ(s.queue_delay_target_us, 750u);
  EXPECT_DOUBLE_EQ(s.high_water, 0.8);
  EXPECT_EQ(s.dedup_window_ms, 3000u);
  EXPECT_EQ(s.reply_cache_entries, 99u);
  EXPECT_EQ(s.reply_cache_eviction, model::ReplyCacheEviction::fifo);
  EXPECT_EQ(config->agents[0].agent().scheduling, s) << "what the data plane is pushed";
}

TEST(ControlplaneConfig, TenantClassLimitsAndCreditsParse) {
  auto config = parse_config(std::string(kBase) +
                                 "[[tenants]]\nid = 2\nname = \"bulk\"\ninteractive_rate_pps = 800\n"
                                 "interactive_burst = 80\nbackground_rate_pps = 200\nbackground_burst = 20\n"
                                 "credits_max = 64\ncredits_min = 4\ncredit_delay_target_us = 500\n",
                             "test.toml");
  ASSERT_TRUE(config) << config.message();
  ASSERT_EQ(config->tenants.size(), 2u);
  const TenantSpec& t = config->tenants[1];
  EXPECT_EQ(t.interactive_rate_pps, 800u);
  EXPECT_EQ(t.interactive_burst, 80u);
  EXPECT_EQ(t.background_rate_pps, 200u);
  EXPECT_EQ(t.background_burst, 20u);
  EXPECT_EQ(t.credits_max, 64u);
  EXPECT_EQ(t.credits_min, 4u);
  EXPECT_EQ(t.credit_delay_target_us, 500u);
  EXPECT_EQ(config->tenants[0].credits_min, 1u) << "the model's default";
}

TEST(ControlplaneConfig, FleetSectionParsesAndIsOffByDefault) {
  auto none = parse_config(kBase, "test.toml");
  ASSERT_TRUE(none) << none.message();
  EXPECT_FALSE(none->fleet.enabled());
  auto config = parse_config(std::string(kBase) +
                                 "[fleet]\netcd_endpoints = [\"http://10.0.0.5:2379\", \"http://[fd00::5]:2379\"]\n"
                                 "appliance_id = \"axon-1\"\nadvertise = [\"10.0.0.1:7400\", \"[fd00::1]:7400\"]\n"
                                 "lease_ttl_s = 5\nprefix = \"/prod/\"\nrequest_timeout_ms = 800\n",
                             "test.toml");
  ASSERT_TRUE(config) << config.message();
  EXPECT_TRUE(config->fleet.enabled());
  EXPECT_EQ(config->fleet.etcd_endpoints.size(), 2u);
  EXPECT_EQ(config->fleet.appliance_id, "axon-1");
  EXPECT_EQ(config->fleet.advertise.at(1), "[fd00::1]:7400");
  EXPECT_EQ(config->fleet.lease_ttl_s, 5u);
  EXPECT_EQ(config->fleet.prefix, "/prod/");
  EXPECT_EQ(config->fleet.request_timeout.count(), 800);
}

TEST(ControlplaneConfig, FleetMistakesAreRefusedWithTheFix) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"etcd_endpoints = [\"10.0.0.5:2379\"]", "must be http://host:port"},
      {"etcd_endpoints = [\"https://10.0.0.5:2379\"]", "must be http://host:port"},
      {"advertise = [\"10.0.0.1\"]", "must be address:port"},
      {"advertise = [\"fd00::1:7400\"]", "IPv6 in brackets"},
      {"lease_ttl_s = 1", "2..3600"},
      {"prefix = \"axon\"", "start and end with '/'"},
      {"appliance_id = \"a/b\"", "must not contain '/'"},
      {"etcd = 1", "unknown key 'etcd'"},
  };
  for (const auto& [line, mentions] : cases) {
    SCOPED_TRACE(line);
    auto config = parse_config(std::string(kBase) + "[fleet]\n" + line + "\n", "test.toml");
    ASSERT_FALSE(config) << "accepted: " << line;
    EXPECT_NE(config.message().find("test.toml:"), std::string::npos) << config.message();
    EXPECT_NE(config.message().find(mentions), std::string::npos) << config.message();
  }
}

TEST(ControlplaneConfig, MissingFileSaysWhatToDo) {
  auto config = load_config("/nonexistent/axon-controlplane.toml");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.code(), ConfigError::io_error);
  EXPECT_NE(config.message().find("--config"), std::string::npos) << config.message();
}

TEST(ControlplaneConfig, AgentChecksShared) {
  ControlplaneConfig config;
  config.worker_user = "nobody";
  config.allowed_worker_commands = {"/bin/"};
  AgentSpec spec;
  spec.name = "echo";
  spec.id = 7;
  spec.tenant = 1;
  spec.command = {"/bin/true"};
  EXPECT_EQ(check_agent(spec, config), "");
  spec.env["AXON_WORKER_SOCKET"] = "/x";
  EXPECT_NE(check_agent(spec, config).find("reserved"), std::string::npos);
  spec.env.clear();
  spec.name = "Echo!";
  EXPECT_NE(check_agent(spec, config).find("must match"), std::string::npos);
  spec.name = "echo";
  spec.pool.max = 0;
  EXPECT_NE(check_agent(spec, config).find("max must be >= 1"), std::string::npos);
}

}  // namespace
}  // namespace axon::controlplane

// parse_config / load_config: a complete valid file, defaults, and every error kind, each
// with the file name and the line of the offending entry in its message.
#include "axon/dataplane/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace axon::dataplane {
namespace {

constexpr const char* kName = "test.toml";

const char* kValid = R"(# a complete configuration
[dataplane]
interface = "eth9"
backend = "xdp"
queues = [0, 1]
cores = [2, 3]
numa_node = "auto"
ports = [7400, 7401]
run_dir = "/tmp/axon-run"
drain_timeout_ms = 1500
busy_retry_after_us = 250
housekeeping_us = 100

[xdp]
zero_copy = "off"
frame_size = 2048
frames = 512
busy_poll = false
enforce_allowlist = true
enforce_rate = true

[shm]
request_capacity = 256
reply_capacity = 128
loan_capacity = 32
small_buffer_size = 1024
small_buffer_count = 512
large_buffer_size = 65536
large_buffer_count = 8

[[tenants]]
id = 1
name = "acme"
rate_pps = 1000
burst = 100
prefixes = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]

[[tenants]]
id = 2

[[workers]]
name = "echo-0"

[[workers]]
name = "echo.1_x"

[[agents]]
id = 7
tenant = 1
name = "echo"
workers = ["echo-0", "echo.1_x"]

[[agents]]
id = 8
tenant = 2
workers = ["echo.1_x"]
)";

// The minimal file: [dataplane] interface, one worker.
std::string minimal(const std::string& dataplane_extra = "", const std::string& rest = "") {
  return "[dataplane]\ninterface = \"eth0\"\n" + dataplane_extra + "\n[[workers]]\nname = \"w\"\n" + rest;
}

// Expects a failure of `code` whose message starts with "test.toml:<line>:".
void expect_error_at(const std::string& text, ConfigError code, int line, const std::string& fragment = "") {
  auto result = parse_config(text, kName);
  ASSERT_FALSE(result.ok()) << "accepted:\n" << text;
  EXPECT_EQ(result.code(), code) << result.message();
  const std::string prefix = std::string(kName) + ":" + std::to_string(line) + ":";
  EXPECT_EQ(result.message().rfind(prefix, 0), 0u) << "expected '" << prefix << "...', got: " << result.message();
  if (!fragment.empty()) {
    EXPECT_NE(result.message().find(fragment), std::string::npos) << result.message();
  }
}

TEST(DataplaneConfig, CompleteFileParsesEveryField) {
  auto result = parse_config(kValid, kName);
  ASSERT_TRUE(result.ok()) << result.message();
  const DataplaneConfig& c = result.value();
  EXPECT_EQ(c.source_path, kName);
  EXPECT_EQ(c.interface, "eth9");
  EXPECT_EQ(c.backend, "xdp");
  EXPECT_EQ(c.queues, (std::vector<std::uint32_t>{0, 1}));
  EXPECT_EQ(c.cores, (std::vector<int>{2, 3}));
  EXPECT_EQ(c.numa_node, -1);
  EXPECT_EQ(c.ports, (std::vector<std::uint16_t>{7400, 7401}));
  EXPECT_EQ(c.run_dir, "/tmp/axon-run");
  EXPECT_EQ(c.drain_timeout_ms, 1500u);
  EXPECT_EQ(c.busy_retry_after_us, 250u);
  EXPECT_EQ(c.housekeeping_us, 100u);
  EXPECT_EQ(c.xdp.zero_copy, ZeroCopy::disabled);
  EXPECT_EQ(c.xdp.frame_size, 2048u);
  EXPECT_EQ(c.xdp.frames, 512u);
  EXPECT_FALSE(c.xdp.busy_poll);
  EXPECT_TRUE(c.xdp.enforce_allowlist);
  EXPECT_TRUE(c.xdp.enforce_rate);
  EXPECT_EQ(c.geometry.request_capacity, 256u);
  EXPECT_EQ(c.geometry.reply_capacity, 128u);
  EXPECT_EQ(c.geometry.loan_capacity, 32u);
  EXPECT_EQ(c.geometry.small_buffer_size, 1024u);
  EXPECT_EQ(c.geometry.small_buffer_count, 512u);
  EXPECT_EQ(c.geometry.large_buffer_size, 65536u);
  EXPECT_EQ(c.geometry.large_buffer_count, 8u);
  ASSERT_EQ(c.tenants.size(), 2u);
  EXPECT_EQ(c.tenants[0].id, 1u);
  EXPECT_EQ(c.tenants[0].name, "acme");
  EXPECT_EQ(c.tenants[0].rate_pps, 1000u);
  EXPECT_EQ(c.tenants[0].burst, 100u);
  EXPECT_EQ(c.tenants[0].prefixes, (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"}));
  EXPECT_EQ(c.tenants[1].rate_pps, 0u);
  ASSERT_EQ(c.workers.size(), 2u);
  EXPECT_EQ(c.workers[1].name, "echo.1_x");
  ASSERT_EQ(c.agents.size(), 2u);
  EXPECT_EQ(c.agents[0].id, 7u);
  EXPECT_EQ(c.agents[0].tenant, 1u);
  EXPECT_EQ(c.agents[0].name, "echo");
  EXPECT_EQ(c.agents[0].workers, (std::vector<std::string>{"echo-0", "echo.1_x"}));
  EXPECT_EQ(c.agents[1].workers, (std::vector<std::string>{"echo.1_x"}));
}

TEST(DataplaneConfig, BackendAndUringSectionParse) {
  for (const char* backend : {"auto", "xdp", "uring"}) {
    auto r = parse_config(minimal(std::string("backend = \"") + backend + "\"\n"), kName);
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r.value().backend, backend);
  }
  auto r = parse_config(minimal("backend = \"uring\"\n",
                                "[uring]\nbind_address = \"::1\"\nbind_to_device = false\nbuffers = 256\n"
                                "buffer_size = 4096\ntx_frames = 128\nframe_size = 1024\nring_entries = 128\n"
                                "socket_buffer = 65536\n"),
                        kName);
  ASSERT_TRUE(r.ok()) << r.message();
  const UringSettings& u = r.value().uring;
  EXPECT_EQ(u.bind_address, "::1");
  EXPECT_FALSE(u.bind_to_device);
  EXPECT_EQ(u.buffers, 256u);
  EXPECT_EQ(u.buffer_size, 4096u);
  EXPECT_EQ(u.tx_frames, 128u);
  EXPECT_EQ(u.frame_size, 1024u);
  EXPECT_EQ(u.ring_entries, 128u);
  EXPECT_EQ(u.socket_buffer, 65536u);
  // The default is automatic selection.
  auto d = parse_config(minimal(), kName);
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_EQ(d.value().backend, "auto");
}

TEST(DataplaneConfig, MinimalFileTakesTheDefaults) {
  auto result = parse_config(minimal(), kName);
  ASSERT_TRUE(result.ok()) << result.message();
  const DataplaneConfig& c = result.value();
  const DataplaneConfig d;
  EXPECT_EQ(c.interface, "eth0");
  EXPECT_EQ(c.queues, d.queues);
  EXPECT_EQ(c.cores, d.cores);
  EXPECT_EQ(c.ports, (std::vector<std::uint16_t>{7400}));
  EXPECT_EQ(c.run_dir, d.run_dir);
  EXPECT_EQ(c.xdp.zero_copy, ZeroCopy::automatic);
  EXPECT_EQ(c.xdp.frame_size, d.xdp.frame_size);
  EXPECT_FALSE(c.xdp.enforce_allowlist);
  EXPECT_FALSE(c.xdp.enforce_rate);
  EXPECT_EQ(c.geometry.request_capacity, d.geometry.request_capacity);
  EXPECT_TRUE(c.tenants.empty());
  EXPECT_TRUE(c.agents.empty());
  ASSERT_EQ(c.workers.size(), 1u);
}

// Issue 14: the [reassembly] knobs, their defaults and their bounds.
TEST(DataplaneConfig, ReassemblyLimitsParseWithDefaultsAndBounds) {
  auto r = parse_config(minimal("",
                                "[reassembly]\ntimeout_ms = 250\nmemory_per_lcore = 1048576\n"
                                "memory_per_tenant = 262144\nmessages = 64\n"),
                        kName);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->reassembly.timeout_ms, 250u);
  EXPECT_EQ(r->reassembly.memory_per_lcore, 1048576u);
  EXPECT_EQ(r->reassembly.memory_per_tenant, 262144u);
  EXPECT_EQ(r->reassembly.messages, 64u);
  auto defaults = parse_config(minimal("", ""), kName);
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  EXPECT_EQ(defaults->reassembly.timeout_ms, 500u);
  EXPECT_EQ(defaults->reassembly.memory_per_lcore, 8u << 20);
  EXPECT_EQ(defaults->reassembly.memory_per_tenant, 2u << 20);
  EXPECT_EQ(defaults->reassembly.messages, 1024u);
  expect_error_at(minimal("", "[reassembly]\ntimeout_ms = 0\n"), ConfigError::invalid_value, 7, "timeout_ms");
  expect_error_at(minimal("", "[reassembly]\nmemory_per_lcore = 4096\n"), ConfigError::invalid_value, 7,
                  "memory_per_lcore");
  expect_error_at(minimal("", "[reassembly]\nmemory_per_lcore = 65536\nmemory_per_tenant = 131072\n"),
                  ConfigError::invalid_value, 8, "memory_per_tenant");
  expect_error_at(minimal("", "[reassembly]\nmessages = 0\n"), ConfigError::invalid_value, 7, "messages");
  expect_error_at(minimal("", "[reassembly]\ntimeout = 5\n"), ConfigError::unknown_key, 7, "unknown key 'timeout'");
}

// Issue 14: the [dedup] table and arena per lcore, and an agent's dedup keys, with defaults and bounds.
TEST(DataplaneConfig, DedupKeysParseWithDefaultsAndBounds) {
  const std::string agents =
      "[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\ndedup_window_ms = 5000\nreply_cache_entries = 32\n"
      "reply_cache_eviction = \"fifo\"\n\n[[agents]]\nid = 2\ntenant = 0\nworkers = [\"w\"]\n"
      "\n[dedup]\nentries = 1024\narena_bytes = 1048576\n";
  auto r = parse_config(minimal("", agents), kName);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->dedup.entries, 1024u);
  EXPECT_EQ(r->dedup.arena_bytes, 1048576u);
  EXPECT_EQ(r->agents[0].scheduling.dedup_window_ms, 5000u);
  EXPECT_EQ(r->agents[0].scheduling.reply_cache_entries, 32u);
  EXPECT_EQ(r->agents[0].scheduling.reply_cache_eviction, model::ReplyCacheEviction::fifo);
  EXPECT_EQ(r->agents[1].scheduling.dedup_window_ms, 0u) << "dedup is off unless an agent asks for it";
  EXPECT_EQ(r->agents[1].scheduling.reply_cache_entries, 256u);
  EXPECT_EQ(r->agents[1].scheduling.reply_cache_eviction, model::ReplyCacheEviction::lru);
  auto defaults = parse_config(minimal("", ""), kName);
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  EXPECT_EQ(defaults->dedup.entries, 8192u);
  EXPECT_EQ(defaults->dedup.arena_bytes, 4u << 20);
  const std::string head = "[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\n";  // lines 6-9
  expect_error_at(minimal("", head + "dedup_window_ms = 600001\n"), ConfigError::invalid_value, 10,
                  "dedup_window_ms: at most 600000");
  expect_error_at(minimal("", head + "reply_cache_entries = 0\n"), ConfigError::invalid_value, 10,
                  "reply_cache_entries: use 1 to 65536");
  expect_error_at(minimal("", head + "reply_cache_eviction = \"random\"\n"), ConfigError::invalid_value, 10,
                  "unknown reply cache eviction 'random'; use \"lru\" or \"fifo\"");
  expect_error_at(minimal("", "[dedup]\nentries = 8\n"), ConfigError::invalid_value, 7, "entries: use 16 to");
  expect_error_at(minimal("", "[dedup]\narena_bytes = 4096\n"), ConfigError::invalid_value, 7, "arena_bytes");
  expect_error_at(minimal("", "[dedup]\nwindow_ms = 5\n"), ConfigError::unknown_key, 7, "unknown key 'window_ms'");
}

// Issue 15: [telemetry] stage_latency switches the per-stage histograms; on by default.
TEST(DataplaneConfig, TelemetryStageLatencySwitch) {
  auto on = parse_config(minimal(), kName);
  ASSERT_TRUE(on.ok()) << on.message();
  EXPECT_TRUE(on->telemetry.stage_latency);
  auto off = parse_config(minimal("", "[telemetry]\nstage_latency = false\n"), kName);
  ASSERT_TRUE(off.ok()) << off.message();
  EXPECT_FALSE(off->telemetry.stage_latency);
  auto bad = parse_config(minimal("", "[telemetry]\nstage_latency = 1\n"), kName);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("stage_latency"), std::string::npos) << bad.message();
  auto unknown = parse_config(minimal("", "[telemetry]\ntraces = true\n"), kName);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.message().find("traces"), std::string::npos) << unknown.message();
}

// Issue 15: [telemetry] trace_sample_rate, the head-sampling share, 0 to 1; 0 by default.
TEST(DataplaneConfig, TelemetryTraceSampleRate) {
  auto none = parse_config(minimal(), kName);
  ASSERT_TRUE(none.ok()) << none.message();
  EXPECT_EQ(none->telemetry.trace_sample_rate, 0.0);
  auto quarter = parse_config(minimal("", "[telemetry]\ntrace_sample_rate = 0.25\n"), kName);
  ASSERT_TRUE(quarter.ok()) << quarter.message();
  EXPECT_EQ(quarter->telemetry.trace_sample_rate, 0.25);
  auto all = parse_config(minimal("", "[telemetry]\ntrace_sample_rate = 1\n"), kName);
  ASSERT_TRUE(all.ok()) << all.message();
  EXPECT_EQ(all->telemetry.trace_sample_rate, 1.0);
  for (const char* bad : {"1.5", "-0.1", "nan", "inf"}) {
    expect_error_at(minimal("", std::string("[telemetry]\ntrace_sample_rate = ") + bad + "\n"),
                    ConfigError::invalid_value, 7, "trace_sample_rate");
  }
  auto text = parse_config(minimal("", "[telemetry]\ntrace_sample_rate = \"all\"\n"), kName);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.message().find("trace_sample_rate"), std::string::npos) << text.message();
}

// Issue 13: per-class rates and credits in [[tenants]], and the [credits] knobs.
TEST(DataplaneConfig, TenantClassLimitsAndCreditsParse) {
  auto r = parse_config(minimal("",
                                "[credits]\nrefresh_us = 5000\ntarget_delay_us = 300\nincrease_permille = 20\n"
                                "decrease_permille = 800\n\n[[tenants]]\nid = 4\n"
                                "interactive_rate_pps = 500\ninteractive_burst = 20\n"
                                "background_rate_pps = 100\nbackground_burst = 4\ncredits_max = 64\n"
                                "credits_min = 2\ncredit_delay_target_us = 250\n"),
                        kName);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->tenants.size(), 1u);
  const TenantConfig& t = r->tenants[0];
  EXPECT_EQ(t.interactive_rate_pps, 500u);
  EXPECT_EQ(t.interactive_burst, 20u);
  EXPECT_EQ(t.background_rate_pps, 100u);
  EXPECT_EQ(t.background_burst, 4u);
  EXPECT_EQ(t.credits_max, 64u);
  EXPECT_EQ(t.credits_min, 2u);
  EXPECT_EQ(t.credit_delay_target_us, 250u);
  EXPECT_EQ(r->credits.refresh_us, 5000u);
  EXPECT_EQ(r->credits.target_delay_us, 300u);
  EXPECT_EQ(r->credits.increase_permille, 20u);
  EXPECT_EQ(r->credits.decrease_permille, 800u);

  auto defaults = parse_config(minimal("", "[[tenants]]\nid = 4\n"), kName);
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  const TenantConfig& d = defaults->tenants[0];
  EXPECT_EQ(d.interactive_rate_pps, 0u);
  EXPECT_EQ(d.background_rate_pps, 0u);
  EXPECT_EQ(d.credits_max, 0u);  // credits off: unlimited
  EXPECT_TRUE(defaults->xdp.enforce_credits);
  EXPECT_EQ(defaults->credits.refresh_us, CreditSettings{}.refresh_us);

  // minimal() puts `rest` at line 6: a blank line, [[tenants]] (7), id (8), the next key (9)
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\ninteractive_rate_pps = 10\n"), ConfigError::invalid_value, 9,
                  "needs interactive_burst");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\nbackground_rate_pps = 10\n"), ConfigError::invalid_value, 9,
                  "needs background_burst");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\ncredits_max = 4\ncredits_min = 5\n"), ConfigError::invalid_value,
                  10, "must not exceed credits_max");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\ncredits_max = -1\n"), ConfigError::invalid_value, 9,
                  "credits_max must be an integer");
  expect_error_at(minimal("", "[credits]\nrefresh_us = 10\n"), ConfigError::invalid_value, 7, "refresh_us");
  expect_error_at(minimal("", "[credits]\ntarget_delay_us = 0\n"), ConfigError::invalid_value, 7, "target_delay_us");
  expect_error_at(minimal("", "[credits]\nincrease_permille = 1001\n"), ConfigError::invalid_value, 7,
                  "increase_permille");
  expect_error_at(minimal("", "[credits]\ndecrease_permille = 0\n"), ConfigError::invalid_value, 7,
                  "decrease_permille");
  expect_error_at(minimal("", "[credits]\nrefresh = 10\n"), ConfigError::unknown_key, 7, "unknown key 'refresh'");
}

TEST(DataplaneConfig, NumaNodeTakesANumberOrAuto) {
  auto numbered = parse_config(minimal("numa_node = 1\n"), kName);
  ASSERT_TRUE(numbered.ok()) << numbered.message();
  EXPECT_EQ(numbered->numa_node, 1);
  expect_error_at(minimal("numa_node = \"near\"\n"), ConfigError::invalid_value, 3, "numa_node");
}

TEST(DataplaneConfig, ZeroCopyModes) {
  for (auto [text, mode] : {std::pair{"auto", ZeroCopy::automatic}, std::pair{"on", ZeroCopy::required},
                            std::pair{"off", ZeroCopy::disabled}}) {
    auto r = parse_config(minimal("", std::string("[xdp]\nzero_copy = \"") + text + "\"\n"), kName);
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r->xdp.zero_copy, mode) << text;
  }
  // line 6: [dataplane], interface, (blank), [[workers]], name, then [xdp] is line 6, zero_copy line 7
  expect_error_at(minimal("", "[xdp]\nzero_copy = \"sometimes\"\n"), ConfigError::invalid_value, 7, "zero_copy");
}

TEST(DataplaneConfig, SyntaxErrorNamesLineAndColumn) {
  expect_error_at("[dataplane]\ninterface = \"eth0\"\nqueues = [0,\n", ConfigError::parse_error, 3);
  expect_error_at("[dataplane]\ninterface = \"eth0\nqueues = [0]\n", ConfigError::parse_error, 2);
  expect_error_at("[dataplane]\ninterface = \"eth0\"\ninterface = \"eth1\"\n", ConfigError::parse_error, 3);
}

TEST(DataplaneConfig, UnknownSectionAndUnknownKeysAreErrors) {
  expect_error_at(minimal("", "\n[extra]\nx = 1\n"), ConfigError::unknown_key, 7, "unknown section 'extra'");
  expect_error_at(minimal("intreface = \"eth1\"\n"), ConfigError::unknown_key, 3, "unknown key 'intreface'");
  expect_error_at(minimal("", "[xdp]\nframes = 1024\nzerocopy = \"on\"\n"), ConfigError::unknown_key, 8,
                  "unknown key 'zerocopy' in [xdp]");
  expect_error_at(minimal("", "[shm]\nrequest_capacity = 64\nring_size = 64\n"), ConfigError::unknown_key, 8,
                  "'ring_size' in [shm]");
  expect_error_at(minimal("", "[[tenants]]\nid = 1\nrate = 5\n"), ConfigError::unknown_key, 8, "'rate' in [tenants]");
  expect_error_at(minimal("", "[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\nweight = 2\n"),
                  ConfigError::unknown_key, 10, "'weight' in [agents]");
}

TEST(DataplaneConfig, MissingFieldsAreNamed) {
  {
    auto r = parse_config("[xdp]\nframes = 1024\n", kName);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), ConfigError::missing_field);
    EXPECT_NE(r.message().find(kName), std::string::npos);
    EXPECT_NE(r.message().find("[dataplane]"), std::string::npos) << r.message();
  }
  // The [dataplane] table is on line 2.
  expect_error_at("# no interface\n[dataplane]\nqueues = [0]\n\n[[workers]]\nname = \"w\"\n",
                  ConfigError::missing_field, 2, "needs 'interface'");
  {
    auto r = parse_config("[dataplane]\ninterface = \"eth0\"\n", kName);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), ConfigError::missing_field);
    EXPECT_NE(r.message().find("[[workers]]"), std::string::npos) << r.message();
  }
  expect_error_at(minimal("", "\n[[tenants]]\nname = \"x\"\n"), ConfigError::missing_field, 7, "needs 'id'");
  expect_error_at(minimal("", "\n[[workers]]\n\n"), ConfigError::missing_field, 7, "needs 'name'");
  expect_error_at(minimal("", "\n[[agents]]\nid = 3\ntenant = 1\n"), ConfigError::missing_field, 7, "needs 'workers'");
}

TEST(DataplaneConfig, InvalidValuesNameTheirLine) {
  expect_error_at(minimal("backend = \"netmap\"\n"), ConfigError::invalid_value, 3, "\"auto\", \"xdp\", \"uring\"");
  expect_error_at(minimal("", "[uring]\nbuffers = 1000\n"), ConfigError::invalid_value, 7, "power of two");
  expect_error_at(minimal("", "[uring]\nring_entries = 32\n"), ConfigError::invalid_value, 7, "ring_entries");
  expect_error_at(minimal("", "[uring]\nframe_size = 9000\n"), ConfigError::invalid_value, 7, "frame_size");
  expect_error_at(minimal("", "[uring]\nbind_address = \"localhost\"\n"), ConfigError::invalid_value, 7,
                  "bind_address");
  expect_error_at(minimal("", "[uring]\nbind_to_device = \"yes\"\n"), ConfigError::invalid_value, 7, "true or false");
  expect_error_at(minimal("", "[uring]\nbufers = 64\n"), ConfigError::unknown_key, 7, "unknown key 'bufers'");
  expect_error_at(minimal("queues = []\n"), ConfigError::invalid_value, 3, "queues");
  expect_error_at(minimal("queues = [0, 1]\ncores = [1]\n"), ConfigError::invalid_value, 4, "one core per queue");
  expect_error_at(minimal("ports = [0]\n"), ConfigError::invalid_value, 3, "port 0");
  expect_error_at(minimal("ports = [1, 2, 3, 4, 5]\n"), ConfigError::invalid_value, 3, "1 to 4");
  expect_error_at(minimal("ports = [70000]\n"), ConfigError::invalid_value, 3, "ports");
  expect_error_at(minimal("housekeeping_us = 0\n"), ConfigError::invalid_value, 3, "housekeeping_us");
  expect_error_at(minimal("drain_timeout_ms = -5\n"), ConfigError::invalid_value, 3, "drain_timeout_ms");
  expect_error_at(minimal("drain_timeout_ms = \"soon\"\n"), ConfigError::invalid_value, 3, "an integer");
  expect_error_at("[dataplane]\ninterface = \"an-interface-name-too-long\"\n\n[[workers]]\nname = \"w\"\n",
                  ConfigError::invalid_value, 2, "1-15 characters");
  expect_error_at(minimal("", "[xdp]\nframe_size = 1000\n"), ConfigError::invalid_value, 7, "2048 or 4096");
  expect_error_at(minimal("", "[xdp]\nframes = 1000\n"), ConfigError::invalid_value, 7, "power of two");
  // Types are exact: no integer-as-boolean, boolean-as-integer or float-as-integer.
  expect_error_at(minimal("", "[xdp]\nbusy_poll = 1\n"), ConfigError::invalid_value, 7, "true or false");
  expect_error_at(minimal("drain_timeout_ms = true\n"), ConfigError::invalid_value, 3, "an integer");
  expect_error_at(minimal("", "[xdp]\nframes = 1024.0\n"), ConfigError::invalid_value, 7, "an integer");
  expect_error_at(minimal("ports = [7400.0]\n"), ConfigError::invalid_value, 3, "integers");
  expect_error_at(minimal("run_dir = 5\n"), ConfigError::invalid_value, 3, "a string");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\nrate_pps = 10\n"), ConfigError::invalid_value, 7, "set a burst");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\nprefixes = [\"10.0.0.0/33\"]\n"), ConfigError::invalid_value, 9,
                  "'10.0.0.0/33' is not an IP prefix");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\nprefixes = [\"example.com\"]\n"), ConfigError::invalid_value, 9,
                  "'example.com' is not an IP prefix");
  // The shared strict parse: host bits beyond the prefix are a typo, not a rule.
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\nprefixes = [\"10.1.2.3/8\"]\n"), ConfigError::invalid_value, 9,
                  "'10.1.2.3/8' is not an IP prefix");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\n\n[[tenants]]\nid = 1\n"), ConfigError::invalid_value, 11,
                  "unique");
  expect_error_at(minimal("", "\n[[workers]]\nname = \"w\"\n"), ConfigError::invalid_value, 8, "unique");
  expect_error_at(minimal("", "\n[[workers]]\nname = \"a b\"\n"), ConfigError::invalid_value, 8, "[A-Za-z0-9._-]");
  expect_error_at(minimal(
                      "", "\n[[agents]]\nid = 1\ntenant = 0\nworkers = [" +
                              [] {
                                std::string list;
                                for (int i = 0; i < 65; ++i) list += std::string(i == 0 ? "" : ", ") + "\"w\"";
                                return list;
                              }() +
                              "]\n"),
                  ConfigError::invalid_value, 10, "at most 64 workers");
  expect_error_at(
      minimal("",
              "\n[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\n\n[[agents]]\nid = 1\ntenant = 0\nworkers = "
              "[\"w\"]\n"),
      ConfigError::invalid_value, 13, "unique");
  expect_error_at(minimal("", "\n[[tenants]]\nid = 1\n\n[[agents]]\nid = 1\ntenant = 2\nworkers = [\"w\"]\n"),
                  ConfigError::invalid_value, 12, "tenant 2 is not declared");
  // [shm] geometry is checked as a whole, reported at the table.
  expect_error_at(minimal("", "[shm]\nrequest_capacity = 3\n"), ConfigError::invalid_value, 6, "powers of two");
  // A section that must be an array of tables.
  expect_error_at(minimal("", "\n[agents]\nid = 1\n"), ConfigError::invalid_value, 7, "[[agents]]");
}

// worker_slots = N adds generic slots after the named ones; [[workers]] becomes optional.
TEST(DataplaneConfig, WorkerSlotsAddGenericSlotsAfterNamedWorkers) {
  auto both = parse_config(minimal("worker_slots = 3\ncontrol_uids = [1000, 65534]\n"), "test.toml");
  ASSERT_TRUE(both.ok()) << both.message();
  ASSERT_EQ(both->workers.size(), 4u);
  EXPECT_EQ(both->workers[0].name, "w");
  EXPECT_EQ(both->workers[1].name, "slot-0");
  EXPECT_EQ(both->workers[3].name, "slot-2");
  EXPECT_EQ(both->control_uids, (std::vector<std::uint32_t>{1000, 65534}));

  auto only = parse_config(
      "[dataplane]\ninterface = \"eth0\"\nworker_slots = 2\n\n[[agents]]\nid = 1\ntenant = 0\nworkers = "
      "[\"slot-1\"]\n\n[[agents]]\nid = 2\ntenant = 0\nworkers = []\n",
      "test.toml");
  ASSERT_TRUE(only.ok()) << only.message();
  EXPECT_EQ(only->workers.size(), 2u);
  EXPECT_TRUE(only->agents[1].workers.empty()) << "an agent without workers is valid (answered worker_failed)";

  auto none = parse_config("[dataplane]\ninterface = \"eth0\"\n", "test.toml");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.message().find("worker_slots"), std::string::npos) << none.message();

  auto clash = parse_config("[dataplane]\ninterface = \"eth0\"\nworker_slots = 2\n\n[[workers]]\nname = \"slot-1\"\n",
                            "test.toml");
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.message().find("'slot-1'"), std::string::npos) << clash.message();

  auto too_many = parse_config(minimal("worker_slots = 4096\n"), "test.toml");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.message().find("at most 4096"), std::string::npos) << too_many.message();
  expect_error_at(minimal("worker_slots = 5000\n"), ConfigError::invalid_value, 3, "at most 4096");
  expect_error_at(minimal("control_uids = [-1]\n"), ConfigError::invalid_value, 3, "integers");
}

// An agent's scheduling knobs (issue 13): each parses, absent ones take the model's
// defaults, and each bad value is refused at its own line with the fix.
TEST(DataplaneConfig, AgentSchedulingKnobsParseWithDefaults) {
  const std::string agents =
      "[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\ndispatch = \"jsq\"\nclass_scheduling = false\n"
      "reserved_interactive = 2\nreserved_interactive_share = 0.25\nqueue_delay_target_us = 500\n"
      "high_water = 0.75\n\n[[agents]]\nid = 2\ntenant = 0\nworkers = [\"w\"]\nhigh_water = 1\n";
  auto result = parse_config(minimal("", agents), kName);
  ASSERT_TRUE(result.ok()) << result.message();
  const model::Scheduling& s = result->agents[0].scheduling;
  EXPECT_EQ(s.dispatch, model::Dispatch::jsq);
  EXPECT_FALSE(s.class_scheduling);
  EXPECT_EQ(s.reserved_interactive, 2u);
  EXPECT_DOUBLE_EQ(s.reserved_interactive_share, 0.25);
  EXPECT_EQ(s.queue_delay_target_us, 500u);
  EXPECT_DOUBLE_EQ(s.high_water, 0.75);
  EXPECT_EQ(result->agents[1].scheduling, model::Scheduling{});
  EXPECT_EQ(result->agents[1].scheduling.dispatch, model::Dispatch::sticky);
  EXPECT_TRUE(result->agents[1].scheduling.class_scheduling);
}

TEST(DataplaneConfig, BadSchedulingKnobsAreRefusedAtTheirLine) {
  const std::string head = "[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\n";  // lines 6-9
  expect_error_at(minimal("", head + "dispatch = \"least_loaded\"\n"), ConfigError::invalid_value, 10,
                  "unknown dispatch policy 'least_loaded'; use \"sticky\", \"p2c\", \"jsq\" or \"round_robin\"");
  expect_error_at(minimal("", head + "dispatch = 3\n"), ConfigError::invalid_value, 10, "dispatch must be a string");
  expect_error_at(minimal("", head + "reserved_interactive_share = 1.5\n"), ConfigError::invalid_value, 10,
                  "reserved_interactive_share: use a share of the pool between 0 and 1");
  expect_error_at(minimal("", head + "reserved_interactive_share = -0.1\n"), ConfigError::invalid_value, 10,
                  "reserved_interactive_share");
  expect_error_at(minimal("", head + "reserved_interactive = 65\n"), ConfigError::invalid_value, 10,
                  "reserved_interactive: at most 64");
  expect_error_at(minimal("", head + "high_water = 0\n"), ConfigError::invalid_value, 10, "high_water: use a fraction");
  expect_error_at(minimal("", head + "high_water = 1.01\n"), ConfigError::invalid_value, 10, "high_water");
  expect_error_at(minimal("", head + "high_water = \"half\"\n"), ConfigError::invalid_value, 10, "a number");
  expect_error_at(minimal("", head + "queue_delay_target_us = 60000001\n"), ConfigError::invalid_value, 10,
                  "queue_delay_target_us: at most 60000000");
  expect_error_at(minimal("", head + "class_scheduling = 1\n"), ConfigError::invalid_value, 10, "true or false");
}

TEST(DataplaneConfig, CheckTablesRefusesBadScheduling) {
  std::vector<WorkerConfig> workers{{"w"}};
  AgentConfig agent{3, 0, "a", {"w"}, {}};
  EXPECT_TRUE(check_tables({}, {agent}, workers).ok());
  agent.scheduling.high_water = 2.0;
  auto bad = check_tables({}, {agent}, workers);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), ConfigError::invalid_value);
  EXPECT_NE(bad.message().find("agent 3: high_water"), std::string::npos) << bad.message();
}

TEST(DataplaneConfig, AgentNamingAnUndeclaredWorkerIsAnUnknownReference) {
  expect_error_at(minimal("", "\n[[agents]]\nid = 4\ntenant = 0\nworkers = [\"w\", \"ghost\"]\n"),
                  ConfigError::unknown_reference, 7, "worker 'ghost'");
}

TEST(DataplaneConfig, LoadConfigReadsAFileAndNamesIt) {
  char path[] = "/tmp/axon-config-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << minimal("queues = [0]\ncores = [0]\nbogus = 1\n");
  }
  auto bad = load_config(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), ConfigError::unknown_key);
  EXPECT_EQ(bad.message().rfind(std::string(path) + ":5:", 0), 0u) << bad.message();
  {
    std::ofstream out(path);
    out << kValid;
  }
  auto good = load_config(path);
  ASSERT_TRUE(good.ok()) << good.message();
  EXPECT_EQ(good->source_path, path);
  std::remove(path);

  auto missing = load_config("/nonexistent/axon.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.code(), ConfigError::io_error);
  EXPECT_NE(missing.message().find("/nonexistent/axon.toml"), std::string::npos) << missing.message();
}

// The annotated example in deploy/ is the documentation of this schema: it must stay valid.
TEST(DataplaneConfig, TheAnnotatedExampleParses) {
  std::ifstream probe(AXON_EXAMPLE_CONFIG);
  if (!probe) GTEST_SKIP() << AXON_EXAMPLE_CONFIG << " not present";
  auto result = load_config(AXON_EXAMPLE_CONFIG);
  ASSERT_TRUE(result.ok()) << result.message();
  EXPECT_FALSE(result->workers.empty());
  EXPECT_FALSE(result->agents.empty());
}

}  // namespace
}  // namespace axon::dataplane

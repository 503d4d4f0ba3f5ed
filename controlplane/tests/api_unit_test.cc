// Unit tests of the REST layer's pure parts: strict JSON for every model struct, query
// strings, the tokens file and the Prometheus writer.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "axon/controlplane/api_server.h"

#include "api/http.h"
#include "api/json.h"

namespace axon::controlplane {
namespace {

using json_io::json;

template <typename T>
std::string bad_request_message(const ApiResult<T>& result) {
  if (result) {
    ADD_FAILURE() << "no ApiError returned";
    return "";
  }
  EXPECT_EQ(result.code(), ApiErrorCode::invalid_argument);
  return result.message();
}

TEST(ApiJson, AgentSpecRoundTripsWithEnumsAsStrings) {
  AgentSpec spec;
  spec.name = "echo";
  spec.id = 4294967295u;
  spec.tenant = 3;
  spec.priority = PriorityClass::batch;
  spec.command = {"/bin/echo", "hi"};
  spec.env = {{"A", "1"}};
  spec.user = "nobody";
  spec.pool = {2, 5};
  spec.cgroup_profile = "big";
  const json j = json_io::to_json(spec);
  EXPECT_EQ(j["priority"], "batch");
  const AgentSpec back = json_io::agent_spec_from_json(json::parse(j.dump())).value();
  EXPECT_EQ(back.name, spec.name);
  EXPECT_EQ(back.id, spec.id);
  EXPECT_EQ(back.priority, spec.priority);
  EXPECT_EQ(back.command, spec.command);
  EXPECT_EQ(back.env, spec.env);
  EXPECT_EQ(back.user, spec.user);
  EXPECT_EQ(back.pool.max, 5u);
  EXPECT_EQ(back.cgroup_profile, "big");
}

TEST(ApiJson, EveryResponseStructRoundTrips) {
  AgentStatus status;
  status.spec.name = "a";
  status.spec.command = {"/x"};
  status.breaker = BreakerState::half_open;
  status.breaker_retry_in_ms = 1500;
  status.restarts = 1ull << 40;
  status.last_exit = "killed by signal 9";
  const AgentStatus s2 = json_io::agent_status_from_json(json_io::to_json(status)).value();
  EXPECT_EQ(json_io::to_json(s2), json_io::to_json(status));
  EXPECT_EQ(json_io::to_json(status)["breaker"], "half_open");
  status.breaker_retry_in_ms.reset();
  EXPECT_FALSE(json_io::to_json(status).contains("breaker_retry_in_ms"));

  WorkerInfo w;
  w.id = "a-1";
  w.agent = "a";
  w.state = WorkerState::draining;
  w.pid = -1;
  w.started_at_ms = -5;
  EXPECT_EQ(json_io::to_json(json_io::worker_info_from_json(json_io::to_json(w)).value()), json_io::to_json(w));
  EXPECT_EQ(json_io::to_json(w)["state"], "draining");
  EXPECT_FALSE(json_io::to_json(w).contains("retry_in_ms"));
  w.state = WorkerState::backoff;
  w.last_exit = "killed by signal 9 (SIGKILL)";
  w.crash_streak = 2;
  w.last_respawn_delay_ms = 100;
  w.retry_in_ms = 40;
  EXPECT_EQ(json_io::to_json(json_io::worker_info_from_json(json_io::to_json(w)).value()), json_io::to_json(w));
  EXPECT_EQ(json_io::to_json(w)["retry_in_ms"], 40);
  EXPECT_EQ(json_io::to_json(w)["crash_streak"], 2);

  TenantSpec t{9, "acme", 10, 20, {"10.0.0.0/8", "2001:db8::/32"}};
  EXPECT_EQ(json_io::to_json(json_io::tenant_spec_from_json(json_io::to_json(t)).value()), json_io::to_json(t));
  t.interactive_rate_pps = 800;
  t.interactive_burst = 80;
  t.background_rate_pps = 200;
  t.background_burst = 20;
  t.credits_max = 64;
  t.credits_min = 4;
  t.credit_delay_target_us = 500;
  EXPECT_EQ(json_io::tenant_spec_from_json(json_io::to_json(t)).value(), t) << "every field survives the REST body";
  EXPECT_EQ(json_io::to_json(t)["credit_delay_target_us"], 500);

  RouteInfo r{1, 2, "a", {"s0", "s1"}};
  EXPECT_EQ(json_io::to_json(json_io::route_info_from_json(json_io::to_json(r)).value()), json_io::to_json(r));

  SystemStatus sys;
  sys.version = "1.0";
  sys.dataplane.backend = "uring";
  sys.dataplane.heartbeat_age_ms = -1;
  sys.dataplane.drops = 99;
  EXPECT_EQ(json_io::to_json(json_io::system_status_from_json(json_io::to_json(sys)).value()), json_io::to_json(sys));

  ScaleRequest scale;
  scale.max = 3;
  EXPECT_EQ(json_io::to_json(scale), json({{"max", 3}}));
  const ScaleRequest scale2 = json_io::scale_request_from_json(json_io::to_json(scale)).value();
  EXPECT_FALSE(scale2.min);
  EXPECT_EQ(scale2.max, 3u);

  const PoolSize pool = json_io::pool_size_from_json(json{{"min", 0}}).value();
  EXPECT_EQ(pool.min, 0u);
  EXPECT_EQ(pool.max, 1u);  // default kept
}

TEST(ApiJson, ErrorsNameTheField) {
  const json base = json::parse(R"({"name":"a","id":1,"tenant":1,"command":["/x"]})");
  auto with = [&](const char* key, json value) {
    json j = base;
    j[key] = std::move(value);
    return j;
  };
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("colour", "red"))),
            "unknown field 'colour' in agent");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("id", -1))),
            "field 'id' in agent must be an unsigned integer below 2^32");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("id", 4294967296ull))),
            "field 'id' in agent must be an unsigned integer below 2^32");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("id", 1.5))),
            "field 'id' in agent must be an unsigned integer below 2^32");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("priority", "urgent"))),
            "field 'priority' in agent must be one of \"realtime\", \"standard\", \"batch\"");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("command", json::array({"/x", 3})))),
            "field 'command[1]' in agent must be a string");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("env", json{{"K", 1}}))),
            "field 'env.K' in agent must be a string");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("pool", json{{"min", "1"}}))),
            "field 'pool.min' in agent must be an unsigned integer below 2^32");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(with("pool", 3))),
            "field 'pool' in agent must be an object");
  json missing = base;
  missing.erase("command");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(missing)), "missing required field 'command' in agent");
  EXPECT_EQ(bad_request_message(json_io::agent_spec_from_json(json::array())), "agent must be a JSON object");
  EXPECT_NE(bad_request_message(json_io::agent_spec_from_json(base, std::string("b"))).find("path names 'b'"),
            std::string::npos);
  EXPECT_NE(
      bad_request_message(json_io::tenant_spec_from_json(json{{"id", 2}, {"name", "x"}}, 3u)).find("path names 3"),
      std::string::npos);
  EXPECT_EQ(bad_request_message(json_io::scale_request_from_json(json::object())),
            "scale request needs 'min', 'max' or both");
  EXPECT_EQ(bad_request_message(json_io::worker_info_from_json(json{{"id", "x"}, {"agent", "a"}, {"state", "zombie"}})),
            "field 'state' in worker must be one of \"starting\", \"warm\", \"busy\", \"draining\", \"backoff\", "
            "\"stopped\"");
}

TEST(ApiJson, MalformedBodiesReportThePosition) {
  const auto msg = bad_request_message(json_io::parse_body(R"({"a": tru})"));
  EXPECT_EQ(msg.rfind("malformed JSON at byte ", 0), 0u) << msg;
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
  EXPECT_NE(bad_request_message(json_io::parse_body("")).find("malformed JSON"), std::string::npos);
  const std::string deep(100000, '[');
  EXPECT_NE(bad_request_message(json_io::parse_body(deep)).find("nesting deeper than 64"), std::string::npos);
  // Brackets inside strings do not count as nesting.
  EXPECT_TRUE(json_io::parse_body("{\"a\":\"" + std::string(100, '[') + "\\\"\"}").ok());
}

// Request heads are parsed by Boost.Beast in the server; the heads these tests refused are
// now sent to a real server in api_survival_test (MalformedRequestLinesAreRefused).
TEST(ApiHttp, QueryStringsAndPercentDecoding) {
  std::map<std::string, std::string> q;
  ASSERT_TRUE(http::parse_query("agent=echo%2Dx&b=1", q));
  EXPECT_EQ(q["agent"], "echo-x");
  EXPECT_EQ(q["b"], "1");
  EXPECT_FALSE(http::parse_query("a=%zz", q));
  std::string out;
  EXPECT_FALSE(http::percent_decode("%4", out, false));
  EXPECT_FALSE(http::percent_decode("%zz", out, false));
  EXPECT_TRUE(http::percent_decode("a%20b+c", out, false));
  EXPECT_EQ(out, "a b+c");
  EXPECT_TRUE(http::percent_decode("a%20b+c", out, true));
  EXPECT_EQ(out, "a b c");
}

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("axon-api-tokens-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    file_ = (dir_ / "tokens").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string file_;
};

TEST_F(TokenStoreTest, CreateLoadLookup) {
  auto admin = TokenStore::create(file_, "alice", Role::admin);
  auto reader = TokenStore::create(file_, "bob", Role::reader);
  ASSERT_TRUE(admin.ok()) << admin.message();
  ASSERT_TRUE(reader.ok()) << reader.message();
  EXPECT_NE(admin.value(), reader.value());
  EXPECT_EQ(admin.value().find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    std::ifstream in(file_);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find(admin.value()), std::string::npos);
    EXPECT_EQ(text.find(reader.value()), std::string::npos);
  }
  auto dup = TokenStore::create(file_, "alice", Role::reader);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.code(), ApiServerError::invalid_argument);
  EXPECT_FALSE(TokenStore::create(file_, "has space", Role::reader).ok());
  EXPECT_FALSE(TokenStore::create(file_, "uid:0", Role::admin).ok());

  std::ofstream(file_, std::ios::app) << "# a comment\n\n";
  auto store = TokenStore::load(file_);
  ASSERT_TRUE(store.ok()) << store.message();
  EXPECT_EQ(store->size(), 2u);
  const auto a = store->lookup(admin.value());
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "alice");
  EXPECT_EQ(a->role, Role::admin);
  const auto b = store->lookup(reader.value());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->role, Role::reader);
  EXPECT_FALSE(store->lookup(""));
  EXPECT_FALSE(store->lookup(admin.value() + "x"));
  EXPECT_FALSE(store->lookup(admin.value().substr(1)));
}

TEST_F(TokenStoreTest, LoadReportsTheBadLine) {
  std::ofstream(file_) << "ok admin sha256:" << std::string(64, 'a') << "\nbroken reader sha256:xyz\n";
  auto store = TokenStore::load(file_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.code(), ApiServerError::tokens_error);
  EXPECT_NE(store.message().find(":2:"), std::string::npos) << store.message();
  std::ofstream(file_) << "x superuser sha256:" << std::string(64, 'a') << "\n";
  EXPECT_FALSE(TokenStore::load(file_).ok());
  EXPECT_FALSE(TokenStore::load((dir_ / "missing").string()).ok());
}

TEST(ApiMetricsWriter, EscapesAndFormats) {
  MetricsWriter w;
  w.family("x_total", "counter", "Help with \\ and\nnewline.");
  w.sample({{"a", "q\"b\\c\nd"}, {"b", "plain"}}, 3);
  w.sample(0.25);
  EXPECT_EQ(w.str(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n"
            "# TYPE x_total counter\n"
            "x_total{a=\"q\\\"b\\\\c\\nd\",b=\"plain\"} 3\n"
            "x_total 0.25\n");
}

}  // namespace
}  // namespace axon::controlplane

// axonctl's REST commands without a server: each command line goes through the real CLI11
// parser, and a recording transport shows the request it maps to and feeds back a scripted
// response; plus the table renderers on the API's JSON shapes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

struct CliRun {
  int exit_code = -1;
  std::string out, err;
  std::vector<ApiRequest> requests;
};

// Runs axonctl with `args`; the transport answers the i-th request with responses[i] (or
// 500 when the script runs out).
CliRun run(std::vector<std::string> args, std::vector<client::RestResponse> responses = {}) {
  CliRun result;
  GlobalOptions global;
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  std::size_t out_len = 0, err_len = 0;
  global.out = open_memstream(&out_buf, &out_len);
  global.err = open_memstream(&err_buf, &err_len);
  std::size_t next = 0;
  global.transport = [&](const ApiRequest& request) -> Result<client::RestResponse, client::RestError> {
    result.requests.push_back(request);
    if (next < responses.size()) return responses[next++];
    client::RestResponse r;
    r.status = 500;
    r.body = R"({"error":"script ran out"})";
    return r;
  };
  std::vector<const char*> argv{"axonctl"};
  for (const auto& a : args) argv.push_back(a.c_str());
  result.exit_code = run_axonctl(int(argv.size()), argv.data(), global);
  std::fclose(global.out);
  std::fclose(global.err);
  result.out.assign(out_buf, out_len);
  result.err.assign(err_buf, err_len);
  std::free(out_buf);
  std::free(err_buf);
  return result;
}

client::RestResponse reply(int status, const json& body,
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
  client::RestResponse r;
  r.status = status;
  r.body = body.is_null() ? "" : body.dump();
  r.headers = std::move(headers);
  return r;
}

json agent_json(const std::string& name, std::uint32_t id, std::uint32_t warm, const char* breaker) {
  return json{{"spec",
               {{"name", name},
                {"id", id},
                {"tenant", 1},
                {"priority", "standard"},
                {"command", {"/usr/local/bin/echo_worker", "--slot", name}},
                {"env", json::object()},
                {"user", "axon-worker"},
                {"pool", {{"min", 1}, {"max", 4}}},
                {"cgroup_profile", "default"}}},
              {"workers", warm},
              {"warm", warm},
              {"breaker", breaker},
              {"restarts", 3},
              {"crashes_in_window", 0},
              {"last_exit", "killed by signal 9"}};
}

json status_json() {
  return json{{"version", "0.1.0"},
              {"uptime_ms", 3723000},
              {"cgroup_mode", "v1"},
              {"dataplane",
               {{"connected", true},
                {"pid", 4242},
                {"backend", "xdp"},
                {"mode", "copy"},
                {"interface", "veth0"},
                {"ready", true},
                {"heartbeat_age_ms", 40},
                {"table_version", 3},
                {"rx_frames", 1000},
                {"requests", 990},
                {"responses", 990},
                {"drops", 10},
                {"errors_sent", 0},
                {"busy_sent", 0}}},
              {"agents", 2},
              {"workers", 3},
              {"warm", 2},
              {"breakers_open", 1},
              {"tenants", 1}};
}

TEST(Tables, AlignsColumnsWithoutTrailingSpaces) {
  Table t({"A", "LONGER", "C"});
  t.add_row({"xxxx", "y", ""});
  t.add_row({"z", "", "w"});
  EXPECT_EQ(t.str(),
            "A     LONGER  C\n"
            "xxxx  y       -\n"
            "z     -       w\n");
  EXPECT_EQ(render_key_values({{"a", "1"}, {"long key", ""}}), "a         1\nlong key  -\n");
}

TEST(Tables, Durations) {
  EXPECT_EQ(format_duration_ms(42), "42ms");
  EXPECT_EQ(format_duration_ms(1500), "1.5s");
  EXPECT_EQ(format_duration_ms(3723000), "1h 2m 3s");
  EXPECT_EQ(format_duration_ms(125000), "2m 5s");
  EXPECT_EQ(format_duration_ms(90061000), "1d 1h 1m");
  EXPECT_EQ(format_duration_ms(-1), "-");
}

TEST(Tables, StatusBlock) {
  EXPECT_EQ(render_status(status_json()),
            "version    0.1.0\n"
            "uptime     1h 2m 3s\n"
            "cgroups    v1\n"
            "dataplane  connected, pid 4242, xdp copy on veth0, ready, heartbeat 40ms ago, tables v3\n"
            "traffic    1000 rx frames, 990 requests, 990 responses, 10 drops, 0 errors, 0 busy\n"
            "agents     2 (1 breaker open)\n"
            "workers    3 (2 warm)\n"
            "tenants    1\n");
  json down = status_json();
  down["dataplane"]["connected"] = false;
  EXPECT_NE(render_status(down).find("dataplane  not connected\n"), std::string::npos);
}

TEST(Tables, AgentsWorkersTenantsRoutes) {
  json open = agent_json("search", 8, 0, "open");
  open["breaker_retry_in_ms"] = 12000;
  EXPECT_EQ(render_agents(json{{"agents", {agent_json("echo", 7, 2, "closed"), open}}}),
            "NAME    ID  TENANT  PRIO      WARM/MIN/MAX  BREAKER                RESTARTS\n"
            "echo    7   1       standard  2/1/4         closed                 3\n"
            "search  8   1       standard  0/1/4         open (retry in 12.0s)  3\n");
  EXPECT_EQ(render_agents(json{{"agents", json::array()}}), "no agents\n");

  json workers = {{"workers",
                   {{{"id", "echo-1"},
                     {"agent", "echo"},
                     {"slot", "echo-0"},
                     {"pid", 1234},
                     {"state", "busy"},
                     {"inflight", 5},
                     {"restarts", 0}},
                    {{"id", "echo-2"},
                     {"agent", "echo"},
                     {"slot", "echo-1"},
                     {"pid", 0},
                     {"state", "backoff"},
                     {"inflight", 0},
                     {"restarts", 7}}}}};
  EXPECT_EQ(render_workers(workers),
            "ID      AGENT  SLOT    PID   STATE    INFLIGHT  RESTARTS\n"
            "echo-1  echo   echo-0  1234  busy     5         0\n"
            "echo-2  echo   echo-1  -     backoff  0         7\n");

  json tenants = {
      {"tenants",
       {{{"id", 1}, {"name", "acme"}, {"rate_pps", 1000}, {"burst", 200}, {"prefixes", {"10.0.0.0/8", "::1/128"}}},
        {{"id", 2}, {"name", "free"}, {"rate_pps", 0}, {"burst", 0}, {"prefixes", json::array()}}}}};
  EXPECT_EQ(render_tenants(tenants),
            "ID  NAME  RATE       BURST  PREFIXES\n"
            "1   acme  1000/s     200    10.0.0.0/8,::1/128\n"
            "2   free  unlimited  0      -\n");

  json routes = {{"routes", {{{"agent_id", 7}, {"agent", "echo"}, {"tenant", 1}, {"slots", {"echo-0", "echo-1"}}}}}};
  EXPECT_EQ(render_routes(routes), "AGENT_ID  AGENT  TENANT  SLOTS\n7         echo   1       echo-0,echo-1\n");
}

TEST(Tables, ScalingShowsTheDelayAndEachDecision) {
  json scaling{{"agent", "echo"},
               {"target", 3},
               {"min", 1},
               {"max", 4},
               {"queue_delay_target_us", 1000},
               {"queue_delay_us", 5400},
               {"delay_source", "estimated"},
               {"decisions",
                {{{"at_ms", 1700000000000},
                  {"from", 2},
                  {"to", 3},
                  {"direction", "up"},
                  {"reason", "queue_delay"},
                  {"delay_us", 5400},
                  {"target_us", 1000},
                  {"source", "estimated"},
                  {"worker", ""},
                  {"message", "grew"}}}}};
  const std::string out = render_scaling(scaling);
  EXPECT_NE(out.find("3 (min 1, max 4)"), std::string::npos) << out;
  EXPECT_NE(out.find("5400 us (estimated), target 1000 us"), std::string::npos) << out;
  EXPECT_NE(out.find("AT_MS          FROM  TO  REASON       DELAY_US  TARGET_US  MESSAGE"), std::string::npos) << out;
  EXPECT_NE(out.find("1700000000000  2     3   queue_delay  5400      1000       grew"), std::string::npos) << out;
  scaling.erase("queue_delay_us");
  scaling["decisions"] = json::array();
  const std::string empty = render_scaling(scaling);
  EXPECT_NE(empty.find("not measured yet"), std::string::npos) << empty;
  EXPECT_NE(empty.find("no scaling decisions yet"), std::string::npos) << empty;
  EXPECT_NO_THROW(render_scaling(json::array()));
}

TEST(Tables, UnexpectedShapesDoNotThrow) {
  for (const json& j : {json(), json(5), json("x"), json::array(), json{{"agents", 3}}, json{{"spec", "no"}}}) {
    EXPECT_NO_THROW(render_status(j));
    EXPECT_NO_THROW(render_agents(j));
    EXPECT_NO_THROW(render_agent(j));
    EXPECT_NO_THROW(render_workers(j));
    EXPECT_NO_THROW(render_tenants(j));
    EXPECT_NO_THROW(render_routes(j));
  }
}

TEST(Commands, ReadOnlyCommandsMapToGets) {
  struct Case {
    std::vector<std::string> args;
    std::string path;
  };
  for (const Case& c : std::vector<Case>{{{"status"}, "/v1/status"},
                                         {{"agents", "list"}, "/v1/agents"},
                                         {{"agents", "get", "echo"}, "/v1/agents/echo"},
                                         {{"agents", "scaling", "echo"}, "/v1/agents/echo/scaling"},
                                         {{"workers", "list"}, "/v1/workers"},
                                         {{"workers", "list", "--agent", "echo"}, "/v1/workers?agent=echo"},
                                         {{"tenants", "list"}, "/v1/tenants"},
                                         {{"routes"}, "/v1/routes"}}) {
    CliRun r = run(c.args, {reply(200, json::object())});
    EXPECT_EQ(r.exit_code, 0) << c.path << ": " << r.err;
    ASSERT_EQ(r.requests.size(), 1u) << c.path;
    EXPECT_EQ(r.requests[0].method, "GET");
    EXPECT_EQ(r.requests[0].path, c.path);
    EXPECT_EQ(r.requests[0].body, "");
  }
}

TEST(Commands, StatusPrintsTheTableOrPrettyJson) {
  CliRun table = run({"status"}, {reply(200, status_json())});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_EQ(table.out, render_status(status_json()));
  CliRun as_json = run({"status", "--json"}, {reply(200, status_json())});
  EXPECT_EQ(as_json.exit_code, 0);
  EXPECT_EQ(as_json.out, status_json().dump(2) + "\n");
  CliRun before = run({"--json", "agents", "list"}, {reply(200, json{{"agents", json::array()}})});
  EXPECT_EQ(before.out, "{\n  \"agents\": []\n}\n");
}

TEST(Commands, MutationsMapToTheirRequests) {
  CliRun create =
      run({"agents",   "create",          "--name", "echo",  "--id", "7",      "--tenant",    "1",     "--priority",
           "realtime", "--min",           "2",      "--max", "4",    "--user", "axon-worker", "--env", "A=1",
           "--",       "/usr/bin/worker", "--fast"},
          {reply(201, agent_json("echo", 7, 0, "closed"))});
  EXPECT_EQ(create.exit_code, 0) << create.err;
  ASSERT_EQ(create.requests.size(), 1u);
  EXPECT_EQ(create.requests[0].method, "POST");
  EXPECT_EQ(create.requests[0].path, "/v1/agents");
  EXPECT_EQ(json::parse(create.requests[0].body), (json{{"name", "echo"},
                                                        {"id", 7},
                                                        {"tenant", 1},
                                                        {"priority", "realtime"},
                                                        {"command", {"/usr/bin/worker", "--fast"}},
                                                        {"env", {{"A", "1"}}},
                                                        {"pool", {{"min", 2}, {"max", 4}}},
                                                        {"user", "axon-worker"}}));
  EXPECT_EQ(create.out.rfind("created agent echo\n", 0), 0u) << create.out;

  CliRun del = run({"agents", "delete", "echo"}, {reply(204, nullptr)});
  EXPECT_EQ(del.exit_code, 0);
  ASSERT_EQ(del.requests.size(), 1u);
  EXPECT_EQ(del.requests[0].method, "DELETE");
  EXPECT_EQ(del.requests[0].path, "/v1/agents/echo");
  EXPECT_EQ(del.out, "deleted agent echo\n");

  CliRun scale = run({"agents", "scale", "echo", "--max", "8"}, {reply(200, agent_json("echo", 7, 1, "closed"))});
  EXPECT_EQ(scale.exit_code, 0);
  EXPECT_EQ(scale.requests[0].path, "/v1/agents/echo/scale");
  EXPECT_EQ(json::parse(scale.requests[0].body), (json{{"max", 8}}));

  CliRun reset = run({"agents", "reset-breaker", "echo"}, {reply(200, agent_json("echo", 7, 1, "closed"))});
  EXPECT_EQ(reset.requests[0].method, "POST");
  EXPECT_EQ(reset.requests[0].path, "/v1/agents/echo/breaker/reset");

  json worker = {{"id", "echo-1"}, {"agent", "echo"}, {"state", "draining"}};
  CliRun drain = run({"workers", "drain", "echo-1"}, {reply(200, worker)});
  EXPECT_EQ(drain.requests[0].method, "POST");
  EXPECT_EQ(drain.requests[0].path, "/v1/workers/echo-1/drain");
  EXPECT_EQ(drain.out, "draining worker echo-1 (now draining)\n");
  CliRun kill = run({"workers", "kill", "echo-1"}, {reply(200, worker)});
  EXPECT_EQ(kill.requests[0].path, "/v1/workers/echo-1/kill");

  CliRun del_tenant = run({"tenants", "delete", "5"}, {reply(204, nullptr)});
  EXPECT_EQ(del_tenant.requests[0].method, "DELETE");
  EXPECT_EQ(del_tenant.requests[0].path, "/v1/tenants/5");

  // Odd characters in names are percent-encoded, never spliced into the path.
  CliRun odd = run({"agents", "get", "a/../b c"}, {reply(404, json{{"error", "no agent"}})});
  EXPECT_EQ(odd.requests[0].path, "/v1/agents/a%2F..%2Fb%20c");
}

TEST(Commands, AgentCreateFromFileWithFlagsOnTop) {
  std::string path = "/tmp/axon-ops-agent-" + std::to_string(getpid()) + ".json";
  {
    std::ofstream f(path);
    f << R"({"name":"file-agent","id":9,"tenant":2,"command":["/bin/w"],"pool":{"min":1,"max":2}})";
  }
  CliRun r =
      run({"agents", "create", "--file", path, "--max", "6"}, {reply(201, agent_json("file-agent", 9, 0, "closed"))});
  std::remove(path.c_str());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(json::parse(r.requests[0].body), (json{{"name", "file-agent"},
                                                   {"id", 9},
                                                   {"tenant", 2},
                                                   {"command", {"/bin/w"}},
                                                   {"pool", {{"min", 1}, {"max", 6}}}}));
}

TEST(Commands, AgentCreateSendsTheSchedulingFlagsGiven) {
  CliRun r = run({"agents",
                  "create",
                  "--name",
                  "bulk",
                  "--id",
                  "9",
                  "--tenant",
                  "1",
                  "--dispatch",
                  "p2c",
                  "--class-scheduling",
                  "off",
                  "--reserved-interactive",
                  "2",
                  "--queue-delay-target-us",
                  "800",
                  "--high-water",
                  "0.75",
                  "--",
                  "/usr/bin/echo_worker"},
                 {reply(201, agent_json("bulk", 9, 0, "closed"))});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.requests.size(), 1u);
  const json sent = json::parse(r.requests[0].body);
  EXPECT_EQ(sent["dispatch"], "p2c");
  EXPECT_EQ(sent["class_scheduling"], false);
  EXPECT_EQ(sent["reserved_interactive"], 2);
  EXPECT_EQ(sent["queue_delay_target_us"], 800);
  EXPECT_DOUBLE_EQ(sent["high_water"].get<double>(), 0.75);
  EXPECT_FALSE(sent.contains("reserved_interactive_share")) << "only the flags given";
  CliRun bad = run({"agents", "create", "--name", "x", "--dispatch", "fastest", "--", "/bin/true"});
  EXPECT_EQ(bad.exit_code, kExitUsage) << bad.err;
  EXPECT_TRUE(bad.requests.empty());
}

TEST(Commands, TenantSetUpdatesOnlyGivenFields) {
  json existing = {{"id", 5}, {"name", "acme"}, {"rate_pps", 100}, {"burst", 10}, {"prefixes", {"10.0.0.0/8"}}};
  json updated = existing;
  updated["rate_pps"] = 500;
  CliRun r = run({"tenants", "set", "5", "--rate", "500"}, {reply(200, existing), reply(200, updated)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.requests.size(), 2u);
  EXPECT_EQ(r.requests[0].method, "GET");
  EXPECT_EQ(r.requests[0].path, "/v1/tenants/5");
  EXPECT_EQ(r.requests[1].method, "PUT");
  EXPECT_EQ(r.requests[1].path, "/v1/tenants/5");
  EXPECT_EQ(json::parse(r.requests[1].body), updated);
  EXPECT_EQ(r.out.rfind("updated tenant\n", 0), 0u) << r.out;

  CliRun create = run({"tenants", "set", "6", "--name", "new", "--prefix", "10.1.0.0/16", "192.168.0.0/24"},
                      {reply(404, json{{"error", "no tenant 6"}}), reply(200, json{{"id", 6}, {"name", "new"}})});
  EXPECT_EQ(create.exit_code, 0) << create.err;
  ASSERT_EQ(create.requests.size(), 2u);
  EXPECT_EQ(json::parse(create.requests[1].body),
            (json{{"id", 6}, {"name", "new"}, {"prefixes", {"10.1.0.0/16", "192.168.0.0/24"}}}));

  // The per-class limits and credits: only the given ones are sent.
  CliRun classes = run({"tenants", "set", "5", "--interactive-rate", "800", "--interactive-burst", "80",
                        "--credits-max", "64", "--credit-delay-target-us", "500"},
                       {reply(200, existing), reply(200, existing)});
  EXPECT_EQ(classes.exit_code, 0) << classes.err;
  ASSERT_EQ(classes.requests.size(), 2u);
  json sent = json::parse(classes.requests[1].body);
  EXPECT_EQ(sent["interactive_rate_pps"], 800);
  EXPECT_EQ(sent["interactive_burst"], 80);
  EXPECT_EQ(sent["credits_max"], 64);
  EXPECT_EQ(sent["credit_delay_target_us"], 500);
  EXPECT_FALSE(sent.contains("background_rate_pps"));
  EXPECT_FALSE(sent.contains("credits_min"));
  json limited = existing;
  limited.update(json{{"interactive_rate_pps", 800},
                      {"interactive_burst", 80},
                      {"credits_max", 64},
                      {"credits_min", 2},
                      {"credit_delay_target_us", 0}});
  const std::string shown = render_tenant(limited);
  EXPECT_NE(shown.find("800/s, burst 80"), std::string::npos) << shown;
  EXPECT_NE(shown.find("2..64, delay target the data plane's"), std::string::npos) << shown;

  CliRun nameless = run({"tenants", "set", "7", "--rate", "1"}, {reply(404, json{{"error", "no tenant 7"}})});
  EXPECT_EQ(nameless.exit_code, kExitUsage);
  EXPECT_EQ(nameless.requests.size(), 1u) << "nothing was written";
  EXPECT_EQ(nameless.err, "axonctl: tenants set: tenant 7 does not exist yet: give --name\n");
}

// Conditional writes (docs/api/openapi.yaml, "Revisions"): `tenants set` keeps the revision it
// read in the body, so the PUT is refused (409) if someone changed the tenant in between;
// --if-match names a revision instead, as an If-Match header, as on delete and scale.
TEST(Commands, IfMatchMakesWritesConditional) {
  json existing = {{"id", 5}, {"name", "acme"}, {"rate_pps", 100}, {"revision", 12}};
  CliRun read = run({"tenants", "set", "5", "--rate", "7"}, {reply(200, existing), reply(200, existing)});
  ASSERT_EQ(read.requests.size(), 2u) << read.err;
  EXPECT_EQ(json::parse(read.requests[1].body).value("revision", 0), 12);
  EXPECT_TRUE(read.requests[1].headers.empty());

  CliRun named =
      run({"tenants", "set", "5", "--rate", "7", "--if-match", "9"}, {reply(200, existing), reply(200, existing)});
  ASSERT_EQ(named.requests.size(), 2u) << named.err;
  EXPECT_FALSE(json::parse(named.requests[1].body).contains("revision"));
  EXPECT_EQ(named.requests[1].headers, (std::vector<std::pair<std::string, std::string>>{{"If-Match", "\"9\""}}));

  CliRun del = run({"agents", "delete", "echo", "--if-match", "4"}, {reply(204, json())});
  ASSERT_EQ(del.requests.size(), 1u) << del.err;
  EXPECT_EQ(del.requests[0].headers, (std::vector<std::pair<std::string, std::string>>{{"If-Match", "\"4\""}}));
  CliRun scale = run({"agents", "scale", "echo", "--max", "3", "--if-match", "5"},
                     {reply(409, json{{"error", "agent 'echo' was changed meanwhile"}})});
  ASSERT_EQ(scale.requests.size(), 1u);
  EXPECT_EQ(scale.requests[0].headers, (std::vector<std::pair<std::string, std::string>>{{"If-Match", "\"5\""}}));
  EXPECT_EQ(scale.exit_code, 1);
  EXPECT_NE(scale.err.find("409 conflict"), std::string::npos) << scale.err;
  EXPECT_EQ(run({"agents", "delete", "echo", "--if-match", "-1"}).exit_code, kExitUsage);

  CliRun get = run({"tenants", "get", "5"}, {reply(200, existing)});
  EXPECT_EQ(get.requests.at(0).path, "/v1/tenants/5");
  EXPECT_NE(get.out.find("revision"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("12"), std::string::npos) << get.out;
}

TEST(Commands, ApiErrorsAreOneLineAndExitOne) {
  CliRun forbidden =
      run({"agents", "delete", "echo"}, {reply(403, json{{"error", "role reader cannot DELETE /v1/agents/echo"}})});
  EXPECT_EQ(forbidden.exit_code, 1);
  EXPECT_EQ(forbidden.err, "axonctl: 403 forbidden: role reader cannot DELETE /v1/agents/echo\n");
  EXPECT_EQ(forbidden.out, "");

  CliRun limited = run({"status"}, {reply(429, json{{"error", "rate limit exceeded"}}, {{"Retry-After", "2"}})});
  EXPECT_EQ(limited.exit_code, 1);
  EXPECT_EQ(limited.err, "axonctl: 429 too many requests: rate limit exceeded (retry after 2 s)\n");

  CliRun unauth = run({"status"}, {reply(401, json{{"error", "missing bearer token"}})});
  EXPECT_NE(unauth.err.find("401 unauthorized: missing bearer token (give a token"), std::string::npos) << unauth.err;

  client::RestResponse html;
  html.status = 502;
  html.body = "<html>bad gateway</html>";
  CliRun proxy = run({"status"}, {html});
  EXPECT_EQ(proxy.exit_code, 1);
  EXPECT_EQ(proxy.err, "axonctl: HTTP 502: <html>bad gateway</html>\n");
}

TEST(Commands, ConnectionErrorsExitThreeAndUsageErrorsTwo) {
  GlobalOptions global;
  char* buf = nullptr;
  std::size_t len = 0;
  global.err = open_memstream(&buf, &len);
  global.transport = [](const ApiRequest&) -> Result<client::RestResponse, client::RestError> {
    return make_error(client::RestError::connect_failed, "cannot connect to https://127.0.0.1:1: Connection refused");
  };
  const char* argv[] = {"axonctl", "status"};
  EXPECT_EQ(run_axonctl(2, argv, global), kExitConnection);
  std::fclose(global.err);
  EXPECT_EQ(std::string(buf, len), "axonctl: cannot connect to https://127.0.0.1:1: Connection refused\n");
  std::free(buf);

  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"agents"},
                                             {"agents", "frobnicate"},
                                             {"agents", "get"},
                                             {"agents", "scale", "echo"},
                                             {"agents", "create", "--id", "3"},
                                             {"agents", "create", "--name", "x", "--priority", "urgent"},
                                             {"agents", "create", "--name", "x", "--env", "novalue"},
                                             {"tenants", "set", "0", "--name", "zero"},
                                             {"tenants", "set", "abc"},
                                             {"workers", "drain"},
                                             {"status", "--api-timeout-ms", "0"}}) {
    CliRun r = run(args);
    EXPECT_EQ(r.exit_code, kExitUsage) << args.back() << ": " << r.err;
    EXPECT_TRUE(r.requests.empty()) << args.back();
    EXPECT_EQ(r.err.rfind("axonctl: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(Commands, OptionsFromTheEnvironment) {
  setenv("AXON_API", "https://10.1.2.3:9999", 1);
  setenv("AXON_TOKEN", "from-env", 1);
  unsetenv("AXON_API_SOCKET");
  GlobalOptions g;
  auto o = resolve_rest_options(g);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->url, "https://10.1.2.3:9999");
  EXPECT_EQ(o->token, "from-env");
  EXPECT_TRUE(o->unix_socket.empty());

  setenv("AXON_API_SOCKET", "/run/axon/api.sock", 1);
  o = resolve_rest_options(g);
  EXPECT_EQ(o->unix_socket, "/run/axon/api.sock");
  g.api = "https://127.0.0.1:1";  // an explicit --api beats the socket from the environment
  o = resolve_rest_options(g);
  EXPECT_TRUE(o->unix_socket.empty());
  EXPECT_EQ(o->url, "https://127.0.0.1:1");

  std::string token_path = "/tmp/axon-ops-token-" + std::to_string(getpid());
  {
    std::ofstream f(token_path);
    f << "file-token\n";
  }
  unsetenv("AXON_TOKEN");
  g.token_file = token_path;
  o = resolve_rest_options(g);
  EXPECT_EQ(o->token, "file-token");
  g.token = "flag-token";
  o = resolve_rest_options(g);
  EXPECT_EQ(o->token, "flag-token");
  std::remove(token_path.c_str());
  g.token.clear();
  o = resolve_rest_options(g);
  EXPECT_FALSE(o.ok());
  EXPECT_NE(o.message().find(token_path), std::string::npos);
  unsetenv("AXON_API");
  unsetenv("AXON_API_SOCKET");
}

TEST(Commands, TracesListShowAndExport) {
  const std::string id = "0af7651916cd43dd8448eb211c80319c";
  const json span_a = {{"name", "appliance"},
                       {"span_id", "b7ad6b7169203331"},
                       {"parent_span_id", "00f067aa0ba902b7"},
                       {"start_unix_ns", 1000},
                       {"duration_ns", 9000}};
  const json span_q = {{"name", "queue"},
                       {"span_id", "1111111111111111"},
                       {"parent_span_id", "b7ad6b7169203331"},
                       {"start_unix_ns", 1500},
                       {"duration_ns", 2500}};
  const json span_h = {{"name", "handler"},
                       {"span_id", "2222222222222222"},
                       {"parent_span_id", "00f067aa0ba902b7"},
                       {"start_unix_ns", 4000},
                       {"duration_ns", 3000}};
  const json entry = {
      {"trace_id", id},
      {"request_id", 42},
      {"agent", "echo"},
      {"tenant", "t1"},
      {"start_unix_ns", 1000},
      {"duration_ns", 9000},
      {"stages_ns", {{"ingress", 500}, {"queue", 2500}, {"handler", 3000}, {"return", 2500}, {"egress", 500}}},
      {"spans", json::array({span_a, span_q, span_h})}};
  CliRun list = run({"traces", "--agent", "echo", "--tenant", "t1", "--limit", "3"},
                    {reply(200, json{{"traces", json::array({entry})}})});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  ASSERT_EQ(list.requests.size(), 1u);
  EXPECT_EQ(list.requests[0].path, "/v1/traces?limit=3&agent=echo&tenant=t1");
  EXPECT_NE(list.out.find("TRACE ID"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(id + "  42"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("9.0us"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("2.5us"), std::string::npos) << list.out;

  CliRun show = run({"traces", "show", id}, {reply(200, json{{"trace_id", id}, {"requests", json::array({entry})}})});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  ASSERT_EQ(show.requests.size(), 1u);
  EXPECT_EQ(show.requests[0].path, "/v1/traces/" + id);
  EXPECT_NE(show.out.find("00f067aa0ba902b7 (the client's span)\n  appliance  b7ad6b7169203331  +0.0us"),
            std::string::npos)
      << show.out;
  EXPECT_NE(show.out.find("\n    queue      1111111111111111  +0.5us"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("\n  handler    2222222222222222  +3.0us"), std::string::npos) << show.out;
  EXPECT_EQ(show.out.find("(the client's span)"), show.out.rfind("(the client's span)")) << "one root: " << show.out;

  char tmpl[] = "/tmp/axonctl-perfetto-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  const json perfetto = {{"traceEvents", json::array({json{{"ph", "X"}, {"name", "appliance"}}})}};
  CliRun exported = run({"traces", "export", id, "--perfetto", tmpl}, {reply(200, perfetto)});
  EXPECT_EQ(exported.exit_code, 0) << exported.err;
  ASSERT_EQ(exported.requests.size(), 1u);
  EXPECT_EQ(exported.requests[0].path, "/v1/traces/" + id + "?format=perfetto");
  std::ifstream written(tmpl);
  std::stringstream text;
  text << written.rdbuf();
  EXPECT_EQ(json::parse(text.str(), nullptr, false), perfetto);
  EXPECT_NE(exported.out.find("wrote 1 trace events"), std::string::npos) << exported.out;
  std::remove(tmpl);

  CliRun bad = run({"traces", "--limit", "0"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(bad.requests.empty());
  CliRun unknown = run({"traces", "show", id}, {reply(404, json{{"error", "no trace " + id}})});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("404"), std::string::npos) << unknown.err;
}

}  // namespace
}  // namespace axon::ctl

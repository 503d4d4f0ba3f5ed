// The fleet through real etcd (docs/fleet.md): a three-member etcd cluster (each member in a
// namespace of its own, axon::etcd_cluster), appliance "a" = the real control plane and data
// plane of the daemon fixture (veth, XDP, workers, HTTPS, tokens), and appliances "b" and "c"
// = further real control planes on the same etcd without a data plane of their own (two
// cores do not fit three data planes with workers in the time of a CI test; they register
// as "degraded", which is what a control plane without its data plane is).
//
// Membership: all three register; `kill -9` of b's control plane removes its member key once
// its lease (2 s) expires. etcd down: a keeps serving AXP, /v1/fleet and the metrics say etcd
// is unreachable; etcd back: a is registered again.
#include <strings.h>

#include "axon/fleet/etcd.h"

#include "daemon_fixture.h"
#include "etcd_cluster.h"

namespace axon::controlplane::daemon_it {
namespace {

using fleet::testing::EtcdCluster;

class FleetDaemon : public ControlplaneDaemon {
 protected:
  FleetDaemon() { net_prefix_ = "axfl"; }

  void SetUp() override {
    ControlplaneDaemon::SetUp();
    if (IsSkipped() || HasFatalFailure() || !with_etcd_) return;
    std::string error;
    etcd_ = EtcdCluster::start(3, error);
    ASSERT_NE(etcd_, nullptr) << error;
  }

  void TearDown() override {
    for (auto& [id, light] : lights_) {
      if (light.process && light.process->running()) {
        light.process->signal(SIGTERM);
        light.process->wait_exit(10s);
      }
    }
    lights_.clear();
    ControlplaneDaemon::TearDown();
    etcd_.reset();
  }

  std::string fleet_section(const std::string& id, const std::string& advertise) const {
    std::string endpoints;
    for (const auto& e : etcd_->endpoints()) endpoints += (endpoints.empty() ? "\"" : ", \"") + e + "\"";
    return "[fleet]\netcd_endpoints = [" + endpoints + "]\nappliance_id = \"" + id + "\"\nadvertise = [\"" + advertise +
           "\"]\nlease_ttl_s = 2\nrequest_timeout_ms = 500\n";
  }

  void start_a() { start_controlplane(config_text() + fleet_section("a", net_->root_ip4 + ":7400")); }

  // A control plane of its own (no data plane, no cgroups) in the fleet.
  struct Light {
    std::unique_ptr<ChildProcess> process;
    std::uint16_t port = 0;
  };
  void start_light(const std::string& id, const std::string& extra = "") {
    const std::string dir = tmp_.path() + "/" + id;
    std::filesystem::create_directories(dir + "/run");
    Light light;
    light.port = free_tcp_port();
    std::ofstream(dir + "/controlplane.toml")
        << "[controlplane]\nstate_dir = \"" << dir << "/state\"\nlog_dir = \"" << dir << "/log\"\n"
        << "[api]\nlisten = \"127.0.0.1:" << light.port << "\"\ncert_file = \"" << cert_ << "\"\nkey_file = \"" << key_
        << "\"\ntokens_file = \"" << tokens_ << "\"\naudit_log = \"" << dir << "/audit.log\"\n"
        << "unix_socket = \"" << dir << "/api.sock\"\n[cgroups]\nenabled = false\n"
        << "[dataplane]\nrun_dir = \"" << dir << "/run\"\n"
        << extra << fleet_section(id, "192.0.2." + std::to_string(lights_.size() + 10) + ":7400");
    light.process = std::make_unique<ChildProcess>();
    std::string error;
    ASSERT_TRUE(light.process->start({AXON_CONTROLPLANE_BIN, "--config", dir + "/controlplane.toml"}, {},
                                     dir + "/controlplane.log", &error))
        << error;
    lights_[id] = std::move(light);
  }

  json fleet_view() {
    Http r = call("GET", "/v1/fleet");
    return r.status == 200 ? r.parsed() : json::object();
  }

  static std::set<std::string> member_ids(const json& view) {
    std::set<std::string> ids;
    for (const auto& m : view.value("members", json::array())) ids.insert(m.value("id", ""));
    return ids;
  }

  std::string metrics() { return call("GET", "/metrics").body; }

  // One REST call to the appliance on `port` with its own response file (safe on threads);
  // `headers` are sent ("If-Match: 5"), the response's ETag is kept in `etag`.
  Http call_at(std::uint16_t port, const std::string& method, const std::string& path, const std::string& body = "",
               const std::vector<std::string>& headers = {}, std::string* etag = nullptr) {
    static std::atomic<int> serial{0};
    const std::string body_file = tmp_.path() + "/response-" + std::to_string(serial) + ".body";
    const std::string head_file = tmp_.path() + "/response-" + std::to_string(serial++) + ".head";
    std::vector<std::string> argv{"curl",
                                  "-sS",
                                  "-o",
                                  body_file,
                                  "-w",
                                  "%{http_code}",
                                  "-X",
                                  method,
                                  "--max-time",
                                  "10",
                                  "--cacert",
                                  cert_,
                                  "https://127.0.0.1:" + std::to_string(port) + path,
                                  "-H",
                                  "Authorization: Bearer " + admin_token_,
                                  "-D",
                                  head_file};
    for (const auto& h : headers) argv.insert(argv.end(), {"-H", h});
    if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    std::string out;
    Http r;
    if (run_command(argv, &out) != 0) {
      r.body = out;
      return r;
    }
    r.status = std::atoi(out.c_str());
    r.body = read_file(body_file);
    if (etag != nullptr) {
      etag->clear();
      std::istringstream head(read_file(head_file));
      for (std::string line; std::getline(head, line);) {
        if (line.size() > 6 && strncasecmp(line.c_str(), "etag: ", 6) == 0) *etag = line.substr(6, line.find('\r') - 6);
      }
    }
    return r;
  }

  // The revision of a tenant as the appliance on `port` shows it (0: none).
  std::int64_t tenant_revision(std::uint16_t port, std::uint32_t id) {
    const json j = call_at(port, "GET", "/v1/tenants/" + std::to_string(id)).parsed();
    return j.is_object() ? j.value("revision", std::int64_t(0)) : 0;
  }

  std::set<std::uint32_t> tenant_ids(std::uint16_t port) {
    std::set<std::uint32_t> ids;
    const json j = call_at(port, "GET", "/v1/tenants").parsed();
    if (!j.is_object()) return ids;
    for (const auto& t : j.value("tenants", json::array())) ids.insert(t.value("id", 0u));
    return ids;
  }

  std::unique_ptr<EtcdCluster> etcd_;
  bool with_etcd_ = true;  // false: a test of an appliance without a fleet
  std::map<std::string, Light> lights_;
};

TEST_F(FleetDaemon, MembersRegisterAndAKilledControlPlaneLeavesWhenItsLeaseExpires) {
  start_a();
  start_light("b");
  start_light("c");
  json view;
  ASSERT_TRUE(eventually([&] {
    view = fleet_view();
    return member_ids(view) == std::set<std::string>{"a", "b", "c"};
  })) << view.dump(2)
      << "\n"
      << lights_["b"].process->log();
  EXPECT_TRUE(view["registered"].get<bool>());
  EXPECT_TRUE(view["etcd"]["reachable"].get<bool>());
  EXPECT_EQ(view["appliance_id"], "a");
  for (const auto& m : view["members"]) {
    if (m["id"] == "a") {
      // a's data plane is up: healthy, with its lcores and warm workers.
      EXPECT_TRUE(eventually([&] {
        const json now = fleet_view();  // not a temporary: the loop keeps a reference into it
        for (const auto& n : now.value("members", json::array())) {
          if (n["id"] == "a") return n["health"] == "ok" && n["capacity"]["workers"].get<int>() == 2;
        }
        return false;
      })) << fleet_view().dump(2);
      EXPECT_EQ(m["axp"][0]["address"], net_->root_ip4);
      EXPECT_EQ(m["axp"][0]["port"], 7400);
      EXPECT_EQ(m["api"], "https://127.0.0.1:" + std::to_string(port_));
    } else {
      EXPECT_EQ(m["health"], "degraded") << "no data plane: " << m.dump();
      EXPECT_GT(m["started_unix_ms"].get<std::int64_t>(), 0);
    }
  }
  // axonctl shows the same.
  std::string out;
  ASSERT_EQ(run_command({AXONCTL_BIN, "--api", "https://127.0.0.1:" + std::to_string(port_), "--ca", cert_, "--token",
                         admin_token_, "fleet", "list"},
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("192.0.2.10:7400"), std::string::npos) << out;
  EXPECT_NE(out.find("degraded"), std::string::npos) << out;
  EXPECT_NE(out.find("etcd: reachable"), std::string::npos) << out;

  // kill -9: no goodbye; the key goes with its lease (TTL 2 s).
  const auto killed_at = std::chrono::steady_clock::now();
  lights_["b"].process->signal(SIGKILL);
  lights_["b"].process->wait_exit(5s);
  ASSERT_TRUE(eventually(
      [&] {
        return member_ids(fleet_view()) == std::set<std::string>{"a", "c"};
      },
      15s))
      << fleet_view().dump(2);
  EXPECT_GE(std::chrono::steady_clock::now() - killed_at, 1s) << "the key must outlive the process by its lease";
  const std::string m = metrics();
  EXPECT_NE(m.find("axon_fleet_etcd_up 1"), std::string::npos) << m;
  EXPECT_NE(m.find("axon_fleet_registered 1"), std::string::npos) << m;

  // A clean SIGTERM with on_exit = "stop" (appliance a's config) removes the key at once.
  ASSERT_TRUE(eventually([&] {
    auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{etcd_->endpoints(), 1000ms});
    return etcd && etcd->get("/axon/members/a") && !etcd->get("/axon/members/a")->kvs.empty();
  }));
  controlplane_->signal(SIGTERM);
  ASSERT_TRUE(controlplane_->wait_exit(20s));
  controlplane_.reset();
  auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{etcd_->endpoints(), 1000ms});
  ASSERT_TRUE(etcd);
  auto gone = etcd->get("/axon/members/a");
  ASSERT_TRUE(gone) << gone.message();
  EXPECT_TRUE(gone->kvs.empty()) << "on_exit = stop: the member key is revoked, not left to expire";
}

TEST_F(FleetDaemon, EtcdDownKeepsServingAndSaysSoThenRegistersAgain) {
  start_a();
  ASSERT_TRUE(wait_warm(2));
  ASSERT_TRUE(eventually([&] { return member_ids(fleet_view()) == std::set<std::string>{"a"}; }));

  for (unsigned i = 0; i < etcd_->size(); ++i) etcd_->stop(i, true);
  json view;
  ASSERT_TRUE(eventually([&] {
    view = fleet_view();
    return view.contains("etcd") && !view["etcd"]["reachable"].get<bool>();
  })) << view.dump(2);
  EXPECT_TRUE(view.contains("members_error")) << view.dump(2);
  EXPECT_TRUE(view["members"].empty());
  EXPECT_FALSE(view["etcd"]["last_error"].get<std::string>().empty());
  const std::string m = metrics();
  EXPECT_NE(m.find("axon_fleet_etcd_up 0"), std::string::npos) << m;
  EXPECT_EQ(m.find("axon_fleet_etcd_errors_total{op=\"list_members\"} 0"), std::string::npos) << m;
  // The appliance serves on with what it has.
  for (std::uint64_t id = 1; id <= 5; ++id) {
    auto reply = request(7, id);
    ASSERT_TRUE(reply) << "AXP request " << id << " unanswered while etcd is down";
    EXPECT_EQ(reply->header.type, protocol::MessageType::response);
  }

  // Configuration writes need etcd: refused with the reason, nothing changes here.
  Http refused = call("PUT", "/v1/tenants/8", R"({"name":"t8"})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("etcd is unreachable"), std::string::npos) << refused.body;
  EXPECT_FALSE(tenant_ids(port_).contains(8));

  std::string error;
  ASSERT_TRUE(etcd_->restart_all(error)) << error;
  ASSERT_TRUE(eventually(
      [&] {
        view = fleet_view();
        return view.contains("etcd") && view["etcd"]["reachable"].get<bool>() && view["registered"].get<bool>() &&
               member_ids(view) == std::set<std::string>{"a"};
      },
      20s))
      << view.dump(2);
  EXPECT_NE(metrics().find("axon_fleet_etcd_up 1"), std::string::npos);
  // A change made after etcd came back reaches a through its new watch.
  auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{etcd_->endpoints(), 1000ms});
  ASSERT_TRUE(etcd);
  auto put = etcd->put("/axon/config/tenants/12", R"({"id":12,"name":"t12"})");
  ASSERT_TRUE(put) << put.message();
  EXPECT_TRUE(eventually([&] { return tenant_ids(port_).contains(12); })) << fleet_view().dump(2);
  EXPECT_TRUE(eventually([&] { return fleet_view().value("config_revision", std::int64_t(0)) >= *put; }));
}

TEST_F(FleetDaemon, ConfigWrittenThroughAnyApplianceIsAppliedOnAllAndConflictsGet409) {
  start_a();
  start_light("b");
  start_light("c");
  ASSERT_TRUE(eventually([&] {
    return member_ids(fleet_view()) == std::set<std::string>{"a", "b", "c"};
  })) << fleet_view().dump(2);
  // a was first: its tenant 1 is the fleet's now, and b and c applied it.
  ASSERT_TRUE(eventually(
      [&] { return tenant_ids(lights_["b"].port).contains(1) && tenant_ids(lights_["c"].port).contains(1); }));

  Http put = call("PUT", "/v1/tenants/5", R"({"name":"t5","rate_pps":1000,"burst":100})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.parsed()["id"], 5);
  // Through another appliance too.
  Http put_c = call_at(lights_["c"].port, "PUT", "/v1/tenants/6", R"({"name":"t6"})");
  ASSERT_EQ(put_c.status, 200) << put_c.body;
  EXPECT_TRUE(tenant_ids(port_).contains(6)) << "a write returns once it is applied here, not before";
  for (const auto port : {port_, lights_["b"].port, lights_["c"].port}) {
    EXPECT_TRUE(eventually([&] {
      const auto ids = tenant_ids(port);
      return ids.contains(5) && ids.contains(6);
    })) << "appliance on port "
        << port << " did not apply tenants 5 and 6";
  }
  // Every member reports the same applied revision.
  json view;
  ASSERT_TRUE(eventually([&] {
    view = fleet_view();
    std::set<std::int64_t> revisions;
    for (const auto& m : view["members"]) revisions.insert(m["config_revision"].get<std::int64_t>());
    return view["members"].size() == 3 && revisions.size() == 1 && *revisions.begin() > 0 &&
           *revisions.begin() == view["config_revision"].get<std::int64_t>();
  })) << view.dump(2);
  EXPECT_NE(metrics().find("axon_fleet_config_revision " + std::to_string(view["config_revision"].get<std::int64_t>())),
            std::string::npos);

  // Two creates of one agent at once: one wins, the other is told so.
  auto body = [](int id) {
    return json{{"name", "dup"},
                {"id", id},
                {"tenant", 1},
                {"command", json::array({AXON_ECHO_WORKER_BIN})},
                {"pool", {{"min", 1}, {"max", 1}}}}
        .dump();
  };
  Http first, second;
  std::thread t1([&] { first = call_at(port_, "POST", "/v1/agents", body(20)); });
  std::thread t2([&] { second = call_at(port_, "POST", "/v1/agents", body(21)); });
  t1.join();
  t2.join();
  std::multiset<int> statuses{first.status, second.status};
  EXPECT_EQ(statuses, (std::multiset<int>{201, 409})) << first.body << "\n" << second.body;
  const Http& lost = first.status == 409 ? first : second;
  EXPECT_NE(lost.body.find("dup"), std::string::npos) << lost.body;

  // The layout (docs/fleet.md): the tenant is in etcd as its REST body.
  auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{etcd_->endpoints(), 1000ms});
  ASSERT_TRUE(etcd);
  auto current = etcd->get("/axon/config/tenants/5");
  ASSERT_TRUE(current && current->kvs.size() == 1);
  EXPECT_NE(current->kvs[0].value.find("\"t5\""), std::string::npos) << current->kvs[0].value;
}

// Conditional writes (docs/fleet.md, "Conditional writes"): the compare is against the revision
// the client read, not the one the appliance applied. Client A writes through a, client B
// through b after b applied A's change: B's write based on the old revision gets 409 (with
// the old rule, b would have compared with what it applied and overwritten A's change).
// Conditional writes and the tuning profile (issue 18's fleetwrite part): its own network prefix.
class FleetWrites : public FleetDaemon {
 protected:
  FleetWrites() { net_prefix_ = "axfw"; }
};

TEST_F(FleetWrites, WritesWithIfMatchCompareWithTheClientsRevision) {
  start_a();
  start_light("b");
  const std::uint16_t b = lights_["b"].port;
  ASSERT_TRUE(eventually([&] { return tenant_ids(b).contains(1); })) << fleet_view().dump(2);
  Http created = call_at(port_, "PUT", "/v1/tenants/5", R"({"name":"t5"})");
  ASSERT_EQ(created.status, 200) << created.body;
  const std::int64_t r = created.parsed().value("revision", std::int64_t(0));
  ASSERT_GT(r, 0) << created.body;
  // Both clients read revision r (a GET carries it as ETag too).
  std::string etag;
  Http read_a = call_at(port_, "GET", "/v1/tenants/5", "", {}, &etag);
  EXPECT_EQ(etag, "\"" + std::to_string(r) + "\"") << read_a.body;
  ASSERT_TRUE(eventually([&] { return tenant_revision(b, 5) == r; }));

  Http a_writes = call_at(port_, "PUT", "/v1/tenants/5", R"({"name":"t5","rate_pps":100,"burst":10})",
                          {"If-Match: \"" + std::to_string(r) + "\""}, &etag);
  ASSERT_EQ(a_writes.status, 200) << a_writes.body;
  const std::int64_t r2 = a_writes.parsed().value("revision", std::int64_t(0));
  EXPECT_GT(r2, r);
  EXPECT_EQ(etag, "\"" + std::to_string(r2) + "\"");
  ASSERT_TRUE(eventually([&] { return tenant_revision(b, 5) == r2; })) << "b applies A's change";
  Http b_writes = call_at(b, "PUT", "/v1/tenants/5", R"({"name":"t5","rate_pps":999,"burst":10})",
                          {"If-Match: " + std::to_string(r)});
  EXPECT_EQ(b_writes.status, 409) << b_writes.body;
  EXPECT_NE(b_writes.body.find("its etcd revision is " + std::to_string(r2) + ", the request expected " +
                               std::to_string(r) + "): read it again and retry"),
            std::string::npos)
      << b_writes.body;
  EXPECT_EQ(call_at(port_, "GET", "/v1/tenants/5").parsed().value("rate_pps", 0), 100) << "A's change stands";
  // B reads again and writes with the revision it read (as a body field this time).
  Http b_again =
      call_at(b, "PUT", "/v1/tenants/5",
              json{{"name", "t5"}, {"rate_pps", 999}, {"burst", 10}, {"revision", tenant_revision(b, 5)}}.dump());
  ASSERT_EQ(b_again.status, 200) << b_again.body;
  const std::int64_t r3 = b_again.parsed().value("revision", std::int64_t(0));
  EXPECT_GT(r3, r2);
  ASSERT_TRUE(eventually([&] { return tenant_revision(port_, 5) == r3; }));

  // Malformed If-Match: 400 saying the form; nothing written.
  for (const std::string bad : {"If-Match: abc", "If-Match: W/\"5\"", "If-Match: \"1\", \"2\"", "If-Match: -3"}) {
    Http refused = call_at(port_, "PUT", "/v1/tenants/5", R"({"name":"t5","rate_pps":1,"burst":10})", {bad});
    EXPECT_EQ(refused.status, 400) << bad << ": " << refused.body;
    EXPECT_NE(refused.body.find("If-Match: \\\"<revision>\\\""), std::string::npos) << refused.body;
  }
  EXPECT_EQ(call_at(port_, "PUT", "/v1/tenants/5", R"({"name":"t5","revision":"x"})").status, 400);
  EXPECT_EQ(tenant_revision(port_, 5), r3);
  // If-Match: * means "must exist"; a stale delete is refused, a current one done.
  EXPECT_EQ(call_at(port_, "PUT", "/v1/tenants/77", R"({"name":"t77"})", {"If-Match: *"}).status, 409);
  EXPECT_FALSE(tenant_ids(port_).contains(77));
  EXPECT_EQ(call_at(port_, "DELETE", "/v1/tenants/5", "", {"If-Match: " + std::to_string(r2)}).status, 409);
  EXPECT_EQ(call_at(port_, "DELETE", "/v1/tenants/5", "", {"If-Match: " + std::to_string(r3)}).status, 204);

  // Agents: listed with their revision; scale conditional on it, also through axonctl.
  const json agents = call_at(port_, "GET", "/v1/agents").parsed();
  ASSERT_TRUE(agents.is_object() && !agents["agents"].empty()) << agents.dump();
  const std::int64_t ra = agents["agents"][0].value("revision", std::int64_t(0));
  ASSERT_GT(ra, 0) << agents.dump();
  auto axonctl = [&](std::vector<std::string> args, std::string& out) {
    std::vector<std::string> argv{AXONCTL_BIN, "--api",     "https://127.0.0.1:" + std::to_string(port_), "--ca", cert_,
                                  "--token",   admin_token_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, &out);
  };
  std::string out;
  ASSERT_EQ(axonctl({"agents", "get", "echo"}, out), 0) << out;
  EXPECT_NE(out.find("revision"), std::string::npos) << out;
  EXPECT_NE(out.find(std::to_string(ra)), std::string::npos) << out;
  EXPECT_NE(axonctl({"agents", "scale", "echo", "--max", "5", "--if-match", std::to_string(ra - 1)}, out), 0);
  EXPECT_NE(out.find("409 conflict"), std::string::npos) << out;
  EXPECT_EQ(axonctl({"agents", "scale", "echo", "--max", "5", "--if-match", std::to_string(ra)}, out), 0) << out;
  EXPECT_EQ(call_at(port_, "GET", "/v1/agents/echo").parsed()["spec"]["pool"].value("max", 0), 5);
}

// Without a fleet the registry numbers its writes: the same ETag / If-Match rules, and the
// revisions survive in state.json.
// The fleet's tuning profile: applied through each appliance's tuning service. Each tuning
// service works on a root-prefix sandbox of its own (as tests/tuning does): the host is
// never touched. An unknown profile in etcd is refused, logged and counted.
TEST_F(FleetWrites, TuningProfileWrittenThroughOneApplianceIsAppliedOnEach) {
  const std::string profiles = tmp_.path() + "/profiles";
  std::filesystem::create_directories(profiles);
  std::ofstream(profiles + "/fleetsmall.toml") << "[profile]\ndescription = \"fleet test\"\n"
                                               << "[sysctl]\n\"net.core.somaxconn\" = 4096\n";
  auto sandbox = [&](const std::string& id) {
    const std::string root = tmp_.path() + "/tune-" + id;
    std::filesystem::create_directories(root + "/root/proc/sys/net/core");
    std::ofstream(root + "/root/proc/sys/net/core/somaxconn") << "128\n";
    return "[tuning]\nroot = \"" + root + "/root\"\nstate_dir = \"" + root + "/state\"\nprofile_dirs = [\"" + profiles +
           "\"]\nverify_interval_ms = 0\n";
  };
  auto somaxconn = [&](const std::string& id) {
    std::string v = read_file(tmp_.path() + "/tune-" + id + "/root/proc/sys/net/core/somaxconn");
    while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
    return v;
  };
  start_controlplane(config_text() + sandbox("a") + fleet_section("a", net_->root_ip4 + ":7400"));
  start_light("b", sandbox("b"));
  ASSERT_TRUE(eventually([&] { return member_ids(fleet_view()) == std::set<std::string>{"a", "b"}; }));

  // Unknown profiles are refused before they reach etcd.
  EXPECT_EQ(call_at(port_, "POST", "/v1/tuning/apply", R"({"profile":"nosuch"})").status, 404);
  Http applied = call_at(port_, "POST", "/v1/tuning/apply", R"({"profile":"fleetsmall"})");
  ASSERT_EQ(applied.status, 200) << applied.body << controlplane_->log();
  EXPECT_EQ(somaxconn("a"), "4096") << "applied on a before the reply";
  EXPECT_TRUE(eventually([&] { return somaxconn("b") == "4096"; })) << lights_["b"].process->log();
  json view = fleet_view();
  ASSERT_TRUE(view.contains("tuning")) << view.dump(2);
  EXPECT_EQ(view["tuning"]["profile"], "fleetsmall");
  EXPECT_TRUE(view["tuning"]["applied"].get<bool>());
  const std::int64_t r = view["tuning"]["revision"].get<std::int64_t>();
  EXPECT_GT(r, 0);
  EXPECT_EQ(call_at(port_, "GET", "/v1/tuning").parsed().value("applied", ""), "fleetsmall");
  auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{etcd_->endpoints(), 1000ms});
  ASSERT_TRUE(etcd);
  auto key = etcd->get("/axon/config/tuning/profile");
  ASSERT_TRUE(key && key->kvs.size() == 1);
  EXPECT_EQ(json::parse(key->kvs[0].value), (json{{"name", "fleetsmall"}}));
  // The same compare-and-swap as tenants and agents: a stale If-Match is refused.
  EXPECT_EQ(
      call_at(port_, "POST", "/v1/tuning/apply", R"({"profile":"fleetsmall"})", {"If-Match: " + std::to_string(r - 1)})
          .status,
      409);
  EXPECT_EQ(
      call_at(port_, "POST", "/v1/tuning/apply", R"({"profile":"fleetsmall","revision":)" + std::to_string(r) + "}")
          .status,
      200);

  // A profile no appliance has, written to etcd directly: refused and counted, nothing changes.
  ASSERT_TRUE(etcd->put("/axon/config/tuning/profile", R"({"name":"nosuch"})"));
  ASSERT_TRUE(eventually([&] {
    return metrics().find("axon_fleet_config_apply_failures_total 1") != std::string::npos;
  })) << metrics();
  view = fleet_view();
  EXPECT_FALSE(view["tuning"]["applied"].get<bool>()) << view.dump(2);
  EXPECT_NE(view["tuning"].value("error", "").find("nosuch"), std::string::npos) << view.dump(2);
  EXPECT_NE(controlplane_->log().find("nosuch"), std::string::npos);
  EXPECT_EQ(somaxconn("a"), "4096");
}

class FleetWritesWithoutFleet : public FleetWrites {
 protected:
  FleetWritesWithoutFleet() { with_etcd_ = false; }
};

TEST_F(FleetWritesWithoutFleet, RevisionsComeFromTheRegistry) {
  start_controlplane(config_text());
  std::string etag;
  Http read = call_at(port_, "GET", "/v1/tenants/1", "", {}, &etag);
  ASSERT_EQ(read.status, 200) << read.body;
  const std::int64_t r = read.parsed().value("revision", std::int64_t(0));
  ASSERT_GT(r, 0) << read.body;
  EXPECT_EQ(etag, "\"" + std::to_string(r) + "\"");
  Http first = call_at(port_, "PUT", "/v1/tenants/1", R"({"name":"t1","rate_pps":50,"burst":10})",
                       {"If-Match: " + std::to_string(r)});
  ASSERT_EQ(first.status, 200) << first.body;
  const std::int64_t r2 = first.parsed().value("revision", std::int64_t(0));
  EXPECT_GT(r2, r);
  Http second = call_at(port_, "PUT", "/v1/tenants/1", R"({"name":"t1","rate_pps":60,"burst":10})",
                        {"If-Match: " + std::to_string(r)});
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_NE(second.body.find("its revision is " + std::to_string(r2)), std::string::npos) << second.body;
  EXPECT_EQ(call_at(port_, "PUT", "/v1/tenants/1", R"({"name":"t1"})", {"If-Match: x1"}).status, 400);
  EXPECT_EQ(call_at(port_, "PUT", "/v1/tenants/9", R"({"name":"t9"})", {"If-Match: *"}).status, 409);
  EXPECT_EQ(call_at(port_, "POST", "/v1/agents", R"({"name":"x","id":9,"tenant":1,"command":["/bin/false"]})",
                    {"If-Match: *"})
                .status,
            400)
      << "a create takes no If-Match";
  const json list = call_at(port_, "GET", "/v1/tenants").parsed();
  ASSERT_TRUE(list.is_object()) << list.dump();
  EXPECT_EQ(list["tenants"][0].value("revision", std::int64_t(0)), r2) << list.dump();
  const json state = json::parse(read_file(state_dir_ + "/state.json"), nullptr, false);
  ASSERT_TRUE(state.is_object());
  EXPECT_EQ(state["revisions"]["tenants"].value("1", std::int64_t(0)), r2) << state.dump(2);
  EXPECT_GE(state.value("revision", std::int64_t(0)), r2);
}

TEST_F(FleetDaemon, WithoutFleetConfiguredTheRouteSaysHowToJoin) {
  start_controlplane(config_text());
  Http r = call("GET", "/v1/fleet");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(r.body.find("etcd_endpoints"), std::string::npos) << r.body;
  EXPECT_EQ(metrics().find("axon_fleet_"), std::string::npos);
}

}  // namespace
}  // namespace axon::controlplane::daemon_it

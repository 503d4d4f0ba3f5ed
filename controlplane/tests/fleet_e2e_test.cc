// The whole fleet on one machine (issue 18, "Tests"; docs/fleet.md): a three-member etcd
// cluster (axon::etcd_cluster, each member in a namespace of its own) and THREE FULL
// appliances. Each appliance is a real axon-dataplane (XDP backend, copy mode, one lcore)
// running in a network namespace of its own (`ip netns exec`) on its own veth pair, a real
// axon-controlplane linked to it (HTTPS with real tokens, cgroups, [fleet] with a 2 s lease)
// and the echo workers that control plane spawns (spinning at most 64 pauses before they sleep
// on their futex: three appliances share two cores). The other end of each veth is in one
// client namespace, where a C++ FleetClient fed from etcd (it watches the members prefix)
// sends its sessions.
//
// The test: all three register (ok, data plane linked); a tenant and an agent pushed through
// ONE appliance's API are applied on all three (same config_revision, a warm worker each);
// the sessions spread over the three; `kill -9` of one whole appliance (its control plane and
// its data plane; its workers leave on their own when their data plane is gone) while
// requests run: its member key goes when its lease expires, only its sessions move, and every
// request gets a RESPONSE or an explicit error. Then etcd stops: the appliances serve AXP on;
// etcd restarts: they are registered again and a change made now steps config_revision on both.
// Nothing asserts on time.
#include <sys/stat.h>

#include <iostream>
#include <map>
#include <stdexcept>

#include "axon/client/fleet.h"
#include "axon/fleet/etcd.h"

#include "daemon_fixture.h"
#include "etcd_cluster.h"

namespace axon::controlplane::daemon_it {
namespace {

using fleet::testing::EtcdCluster;
namespace ac = axon::client;
namespace p = axon::protocol;

constexpr std::uint64_t kFfSessions = 60;
constexpr std::uint32_t kFfTenant = 2;
constexpr std::uint32_t kFfAgent = 7;

// iproute2's `ip` by its path: ChildProcess execs without a PATH lookup.
std::string ff_ip_binary() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "ip";
}

// One call's outcome, as the load thread saw it.
struct FfOutcome {
  std::uint64_t session = 0;
  bool response = false;  // a RESPONSE (else: an explicit error, with `why`)
  std::string member;
  unsigned tried = 0;
  std::string why;
};

class FleetE2E : public ControlplaneDaemon {
 protected:
  struct Appliance {
    std::string id;
    std::unique_ptr<TestNetwork> net;  // root_ns: the appliance's namespace; ns_if: moved to the clients'
    std::string dir, cgroup;
    std::uint16_t api_port = 0;
    std::unique_ptr<ChildProcess> dataplane, controlplane;
  };

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (netns, veth, cgroups)";
    TestNetwork::remove_leftovers("axff");
    chmod(tmp_.path().c_str(), 0755);  // workers run as nobody
    cert_ = tmp_.path() + "/server.crt";
    key_ = tmp_.path() + "/server.key";
    std::string out;
    ASSERT_EQ(run_command({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", key_, "-out", cert_, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                           "subjectAltName=IP:127.0.0.1"},
                          &out),
              0)
        << out;
    tokens_ = tmp_.path() + "/tokens";
    auto admin = TokenStore::create(tokens_, "test-admin", Role::admin);
    ASSERT_TRUE(admin) << admin.message();
    admin_token_ = admin.value();
    std::string error;
    etcd_ = EtcdCluster::start(3, error);
    ASSERT_NE(etcd_, nullptr) << error;
  }

  void TearDown() override {
    for (auto& a : apps_) {
      if (a.controlplane && a.controlplane->running()) {
        a.controlplane->signal(SIGTERM);
        a.controlplane->wait_exit(20s);
      }
      if (a.dataplane && a.dataplane->running()) {
        a.dataplane->signal(SIGTERM);
        a.dataplane->wait_exit(20s);
      }
      if (HasFailure()) {
        if (a.controlplane) std::cerr << "---- control plane " << a.id << ":\n" << a.controlplane->log() << "----\n";
        if (a.dataplane) std::cerr << "---- data plane " << a.id << ":\n" << a.dataplane->log() << "----\n";
      }
      cgroup_name_ = a.cgroup;
      kill_cgroup_leftovers();  // what a killed control plane left in its cgroups
    }
    apps_.clear();  // the networks go with them
    etcd_.reset();
  }

  std::string fleet_section(const Appliance& a) const {
    std::string endpoints;
    for (const auto& e : etcd_->endpoints()) endpoints += (endpoints.empty() ? "\"" : ", \"") + e + "\"";
    return "[fleet]\netcd_endpoints = [" + endpoints + "]\nappliance_id = \"" + a.id + "\"\nadvertise = [\"" +
           a.net->root_ip4 + ":7400\"]\nlease_ttl_s = 2\nrequest_timeout_ms = 500\n";
  }

  std::string controlplane_config(const Appliance& a) const {
    std::ostringstream c;
    c << "[controlplane]\nstate_dir = \"" << a.dir << "/state\"\nlog_dir = \"" << a.dir
      << "/log\"\nworker_user = \"nobody\"\nallowed_worker_commands = [\"" << AXON_ECHO_WORKER_BIN << "\"]\n"
      << "[api]\nlisten = \"127.0.0.1:" << a.api_port << "\"\ncert_file = \"" << cert_ << "\"\nkey_file = \"" << key_
      << "\"\ntokens_file = \"" << tokens_ << "\"\naudit_log = \"" << a.dir << "/audit.log\"\nunix_socket = \"" << a.dir
      << "/api.sock\"\nrate_per_second = 200\nrate_burst = 400\n"
      << "[cgroups]\nname = \"" << a.cgroup << "\"\n[cgroup_profiles.default]\nmemory_max = \"256M\"\npids_max = 64\n"
      << "[pools]\nscale_interval_ms = 100\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\non_exit = \"stop\"\n"
      << "drain_timeout_ms = 2000\nstop_grace_ms = 1000\n"
      << "[dataplane]\nrun_dir = \"" << a.dir << "/run\"\nreconnect_interval_ms = 50\n"
      << "[[tenants]]\nid = 1\nname = \"t1\"\n"
      << fleet_section(a);
    return c.str();
  }

  // Appliance `id`: its veth pair (the appliance's end in a namespace of its own), its data
  // plane there, its control plane here (it reaches etcd and serves HTTPS on loopback).
  void start_appliance(const std::string& id) {
    Appliance& a = apps_.emplace_back();
    a.id = id;
    axon::testing::NetworkSpec spec;
    spec.prefix = "axff";
    spec.topology = axon::testing::Topology::two_namespaces;
    spec.ipv6 = false;
    std::string error;
    a.net = TestNetwork::create(spec, error);
    ASSERT_TRUE(a.net) << error;
    a.dir = tmp_.path() + "/" + id;
    a.cgroup = "axon-axff-" + std::to_string(getpid()) + "-" + id;
    a.api_port = free_tcp_port();
    std::filesystem::create_directories(a.dir + "/run");
    chmod(a.dir.c_str(), 0755);
    chmod((a.dir + "/run").c_str(), 0755);

    dataplane::it::ConfigSpec dp;
    dp.backend = "xdp";  // copy mode (veth)
    dp.workers = {};
    dp.core = int(apps_.size() - 1);  // one lcore each, spread over the cpus (modulo their count)
    dp.dataplane_extra = "worker_slots = 4\n";
    dp.tables = "[[tenants]]\nid = 1\nname = \"t1\"\n";
    const std::string dp_config = a.dir + "/dataplane.toml";
    std::ofstream(dp_config) << dataplane::it::make_config(*a.net, a.dir + "/run", dp);
    a.dataplane = std::make_unique<ChildProcess>();
    ASSERT_TRUE(
        a.dataplane->start({ff_ip_binary(), "netns", "exec", a.net->root_ns, AXON_DATAPLANE_BIN, "--config", dp_config},
                           {}, a.dir + "/dataplane.log", &error))
        << error;
    std::ofstream(a.dir + "/controlplane.toml") << controlplane_config(a);
    a.controlplane = std::make_unique<ChildProcess>();
    ASSERT_TRUE(a.controlplane->start({AXON_CONTROLPLANE_BIN, "--config", a.dir + "/controlplane.toml"}, {},
                                      a.dir + "/controlplane.log", &error))
        << error;
  }

  // Moves each appliance's client end into the first appliance's client namespace, which
  // then reaches every appliance over that appliance's own veth.
  void gather_client_ends() {
    client_ns_ = apps_[0].net->ns;
    for (std::size_t i = 1; i < apps_.size(); ++i) {
      const TestNetwork& n = *apps_[i].net;
      std::string out;
      ASSERT_EQ(run_command({"ip", "-n", n.ns, "link", "set", n.ns_if, "netns", client_ns_}, &out), 0) << out;
      ASSERT_EQ(run_command({"ip", "-n", client_ns_, "addr", "add", n.ns_ip4 + "/30", "dev", n.ns_if}, &out), 0) << out;
      ASSERT_EQ(run_command({"ip", "-n", client_ns_, "link", "set", n.ns_if, "up"}, &out), 0) << out;
    }
  }

  Appliance& app(const std::string& id) {
    for (auto& a : apps_) {
      if (a.id == id) return a;
    }
    throw std::runtime_error("no appliance " + id);
  }

  // One REST call to appliance `id` over HTTPS with the admin token (curl; safe on threads).
  Http rest(const std::string& id, const std::string& method, const std::string& path, const std::string& body = "") {
    static std::atomic<int> serial{0};
    const std::string body_file = tmp_.path() + "/ff-response-" + std::to_string(serial++) + ".body";
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
                                  "https://127.0.0.1:" + std::to_string(app(id).api_port) + path,
                                  "-H",
                                  "Authorization: Bearer " + admin_token_};
    if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    std::string out;
    Http r;
    if (run_command(argv, &out) != 0) {
      r.body = out;
      return r;
    }
    r.status = std::atoi(out.c_str());
    r.body = read_file(body_file);
    std::filesystem::remove(body_file);
    return r;
  }

  json fleet_view(const std::string& id) {
    Http r = rest(id, "GET", "/v1/fleet");
    json j = r.status == 200 ? r.parsed() : json::object();
    return j.is_object() ? j : json::object();
  }

  // The members appliance `id` sees in etcd, by id.
  std::map<std::string, json> members_seen_by(const std::string& id) {
    std::map<std::string, json> out;
    for (const auto& m : fleet_view(id).value("members", json::array())) out[m.value("id", "")] = m;
    return out;
  }

  bool has_tenant(const std::string& id, std::uint32_t tenant) {
    const json j = rest(id, "GET", "/v1/tenants").parsed();
    if (!j.is_object()) return false;
    for (const auto& t : j.value("tenants", json::array())) {
      if (t.value("id", 0u) == tenant) return true;
    }
    return false;
  }

  // GET /v1/agents lists {"spec": {...}, "warm": N, ...} per agent.
  bool has_agent(const std::string& id, const std::string& name) {
    const json j = rest(id, "GET", "/v1/agents").parsed();
    if (!j.is_object()) return false;
    for (const auto& a : j.value("agents", json::array())) {
      if (a.value("spec", json::object()).value("name", "") == name) return true;
    }
    return false;
  }

  std::vector<pid_t> warm_worker_pids(const std::string& id) {
    std::vector<pid_t> pids;
    const json j = rest(id, "GET", "/v1/workers?agent=echo").parsed();
    if (!j.is_object()) return pids;
    for (const auto& w : j.value("workers", json::array())) {
      const std::string state = w.value("state", "");
      if (state == "warm" || state == "busy") pids.push_back(pid_of(w));
    }
    return pids;
  }

  // Every session once from the client namespace; the outcomes in session order.
  std::vector<FfOutcome> call_all(ac::FleetClient& fleet, std::uint8_t round) {
    std::vector<FfOutcome> out;
    std::string why;
    const bool entered = axon::testing::in_netns(
        client_ns_,
        [&] {
          for (std::uint64_t s = 1; s <= kFfSessions; ++s) out.push_back(call_one(fleet, s, round));
        },
        &why);
    EXPECT_TRUE(entered) << why;
    return out;
  }

  static ac::RequestOptions session(std::uint64_t key) {
    ac::RequestOptions r;
    r.tenant = kFfTenant;
    r.agent = kFfAgent;
    r.session_key = key;
    return r;
  }

  static FfOutcome call_one(ac::FleetClient& fleet, std::uint64_t s, std::uint8_t round) {
    ac::CallOptions co;
    co.timeout = 10s;
    co.busy_retries = 50;  // a worker still coming up to speed answers BUSY
    const std::vector<std::uint8_t> payload = {std::uint8_t(s), round, 0xa5};
    FfOutcome o;
    o.session = s;
    auto r = fleet.call(session(s), payload, co);
    if (!r) {
      o.why = r.message();
      return o;
    }
    o.member = r->member;
    o.tried = r->members_tried;
    o.response = r->reply.type == p::MessageType::response && r->reply.payload == payload;
    if (!o.response) o.why = std::string(p::to_string(r->reply.error_code)) + " from " + r->member;
    return o;
  }

  // Where session s goes among the `alive` members: the first of them in its rendezvous order.
  static std::string next_member(std::uint64_t s, const std::vector<std::string>& alive) {
    return alive[ac::rendezvous_order(alive, ac::fleet_key(kFfTenant, kFfAgent, s)).front()];
  }

  static std::vector<std::string> sorted_ids(ac::FleetClient& fleet) {
    (void)fleet.placement(session(1));  // applies what the etcd source handed over
    auto ids = fleet.member_ids();
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  // Each appliance in `ids` sees exactly `ids` in etcd, each healthy (its data plane linked).
  void expect_members_ok(const std::vector<std::string>& ids) {
    for (const auto& viewer : ids) {
      std::map<std::string, json> seen;
      EXPECT_TRUE(eventually(
          [&] {
            seen = members_seen_by(viewer);
            if (seen.size() != ids.size()) return false;
            for (const auto& id : ids) {
              if (!seen.contains(id) || seen[id].value("health", "") != "ok") return false;
            }
            return true;
          },
          30s))
          << viewer << " sees " << json(seen).dump(2);
    }
  }

  // Tenant 2 and agent "echo" through appliance a only; all three apply them.
  void push_config_through_a() {
    Http t = rest("a", "PUT", "/v1/tenants/" + std::to_string(kFfTenant), R"({"name":"t2"})");
    ASSERT_EQ(t.status, 200) << t.body;
    const json agent{{"name", "echo"},
                     {"id", kFfAgent},
                     {"tenant", kFfTenant},
                     {"command", json::array({AXON_ECHO_WORKER_BIN, "--spin-max", "64"})},
                     {"pool", {{"min", 1}, {"max", 1}}}};
    Http ag = rest("a", "POST", "/v1/agents", agent.dump());
    ASSERT_EQ(ag.status, 201) << ag.body;
    for (const auto& a : apps_) {
      EXPECT_TRUE(eventually([&] { return has_tenant(a.id, kFfTenant) && has_agent(a.id, "echo"); }))
          << a.id << " did not apply tenant 2 and agent echo: " << rest(a.id, "GET", "/v1/tenants").body
          << rest(a.id, "GET", "/v1/agents").body;
      EXPECT_TRUE(eventually([&] { return warm_worker_pids(a.id).size() == 1; }, 30s))
          << a.id << " has no warm worker: " << rest(a.id, "GET", "/v1/workers?agent=echo").body;
    }
    // Every member applied the same revision and publishes it; each has its worker and lcore.
    json view;
    EXPECT_TRUE(eventually([&] {
      view = fleet_view("a");
      std::set<std::int64_t> revisions;
      for (const auto& m : view.value("members", json::array())) {
        const json capacity = m.value("capacity", json::object());
        if (capacity.value("workers", -1) != 1 || capacity.value("lcores", -1) != 1) return false;
        revisions.insert(m.value("config_revision", std::int64_t(0)));
      }
      for (const auto& a : apps_) revisions.insert(fleet_view(a.id).value("config_revision", std::int64_t(-1)));
      return view.value("members", json::array()).size() == 3 && revisions.size() == 1 && *revisions.begin() > 0;
    })) << view.dump(2);
  }

  // The whole appliance `id` dies at once: its control plane and its data plane, by pid.
  void kill_appliance(const std::string& id) {
    Appliance& a = app(id);
    ASSERT_TRUE(a.controlplane->signal(SIGKILL));
    ASSERT_TRUE(a.dataplane->signal(SIGKILL));
    ASSERT_TRUE(a.controlplane->wait_exit(10s).has_value());
    ASSERT_TRUE(a.dataplane->wait_exit(10s).has_value());
  }

  static bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
  }

  void kill_b_under_load(ac::FleetClient& fleet, const std::map<std::uint64_t, std::string>& home);
  void etcd_down_and_back(ac::FleetClient& fleet, const std::map<std::uint64_t, std::string>& home);

  std::unique_ptr<EtcdCluster> etcd_;
  std::vector<Appliance> apps_;
  std::string client_ns_;
};

// Sessions run from a thread in the client namespace while appliance b dies whole; they go on
// until its member key has gone with its lease and every session was sent once more.
void FleetE2E::kill_b_under_load(ac::FleetClient& fleet, const std::map<std::uint64_t, std::string>& home) {
  const std::vector<pid_t> b_workers = warm_worker_pids("b");
  ASSERT_EQ(b_workers.size(), 1u);
  auto etcd = axon::fleet::EtcdClient::create(axon::fleet::EtcdOptions{etcd_->endpoints(), 1000ms});
  ASSERT_TRUE(etcd) << etcd.message();
  // From here to load.join(), no ASSERT: the load thread must be joined.
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> sent{0};
  std::vector<FfOutcome> during;
  std::thread load([&] {
    axon::testing::in_netns(client_ns_, [&] {
      const auto give_up = std::chrono::steady_clock::now() + 45s;  // bounded in time and count
      for (std::uint64_t n = 0; !stop && n < 5000 && std::chrono::steady_clock::now() < give_up; ++n) {
        during.push_back(call_one(fleet, n % kFfSessions + 1, 2));
        sent = during.size();
      }
    });
  });
  EXPECT_TRUE(eventually([&] { return sent >= kFfSessions; }, 20s));
  kill_appliance("b");  // its ASSERTs end kill_appliance only
  // b's workers leave on their own: they watch their data plane and exit when it is gone.
  EXPECT_TRUE(eventually([&] { return process_gone(b_workers[0]); })) << "b's worker " << b_workers[0] << " lives on";
  EXPECT_TRUE(eventually(
      [&] {
        auto key = etcd->get("/axon/members/b");
        return key && key->kvs.empty();
      },
      20s))
      << "b's member key outlived its lease";
  for (const char* viewer : {"a", "c"}) {
    EXPECT_TRUE(eventually([&] { return members_seen_by(viewer).size() == 2; })) << fleet_view(viewer).dump(2);
  }
  const std::size_t at_expiry = sent;
  EXPECT_TRUE(eventually([&] { return sent >= at_expiry + kFfSessions; }, 30s));
  stop = true;
  load.join();

  const std::vector<std::string> alive{"a", "c"};
  std::size_t lost = 0, moved = 0;
  for (const auto& o : during) {
    if (!o.response) {
      ++lost;
      ADD_FAILURE() << "session " << o.session << " during the kill: " << o.why;
      continue;
    }
    const std::string& was = home.at(o.session);
    if (was != "b") {
      EXPECT_EQ(o.member, was) << "session " << o.session << " moved though its appliance lives";
    } else if (o.member != "b") {
      EXPECT_EQ(o.member, next_member(o.session, alive)) << "session " << o.session;
      ++moved;
    }
  }
  EXPECT_EQ(lost, 0u) << "of " << during.size() << " requests during the kill";
  EXPECT_GT(moved, 0u) << "no request of b's sessions ran after b died";
  std::cout << "[ fleet    ] during the kill: " << during.size() << " requests, " << moved
            << " of b's answered by their next member, " << fleet.counters().failovers << " failovers, "
            << fleet.counters().member_down << " member(s) marked down, " << lost << " lost\n";
  // The client saw b leave through its watch; now b's sessions go straight to their next member.
  EXPECT_TRUE(eventually([&] { return sorted_ids(fleet) == alive; }));
  for (const auto& o : call_all(fleet, 3)) {
    ASSERT_TRUE(o.response) << "session " << o.session << ": " << o.why;
    const std::string& was = home.at(o.session);
    EXPECT_EQ(o.member, was == "b" ? next_member(o.session, alive) : was) << "session " << o.session;
    EXPECT_EQ(o.tried, 1u) << "b is no member any more: nothing to fail over from";
  }
}

// etcd stopped: a and c serve on (and the client keeps its members); etcd back: both are
// registered again and a change made through c steps config_revision on both alike.
void FleetE2E::etcd_down_and_back(ac::FleetClient& fleet, const std::map<std::uint64_t, std::string>& home) {
  const std::vector<std::string> alive{"a", "c"};
  const std::int64_t revision_before = fleet_view("a").value("config_revision", std::int64_t(0));
  for (unsigned i = 0; i < etcd_->size(); ++i) etcd_->stop(i, true);
  for (const auto& id : alive) {
    EXPECT_TRUE(eventually([&] {
      const json v = fleet_view(id);
      return v.contains("etcd") && !v["etcd"].value("reachable", true);
    })) << fleet_view(id).dump(2);
  }
  for (const auto& o : call_all(fleet, 4)) {
    EXPECT_TRUE(o.response) << "session " << o.session << " while etcd is down: " << o.why;
    const std::string& was = home.at(o.session);
    EXPECT_EQ(o.member, was == "b" ? next_member(o.session, alive) : was);
  }
  std::string error;
  ASSERT_TRUE(etcd_->restart_all(error)) << error;
  for (const auto& id : alive) {
    EXPECT_TRUE(eventually(
        [&] {
          const json v = fleet_view(id);
          return v.value("registered", false) && v.contains("etcd") && v["etcd"].value("reachable", false) &&
                 members_seen_by(id).size() == 2;
        },
        30s))
        << fleet_view(id).dump(2);
  }
  Http put = rest("c", "PUT", "/v1/tenants/3", R"({"name":"t3"})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_TRUE(eventually([&] {
    const std::int64_t ra = fleet_view("a").value("config_revision", std::int64_t(0));
    const std::int64_t rc = fleet_view("c").value("config_revision", std::int64_t(0));
    return ra > revision_before && ra == rc && has_tenant("a", 3) && has_tenant("c", 3);
  })) << fleet_view("a").dump(2);
  // The client's watch broke with etcd; it listed again after its poll interval.
  EXPECT_GE(fleet.counters().etcd_errors, 1u);
  EXPECT_TRUE(eventually([&] { return sorted_ids(fleet) == alive; }));
  for (const auto& o : call_all(fleet, 5)) EXPECT_TRUE(o.response) << "session " << o.session << ": " << o.why;
}

TEST_F(FleetE2E, ThreeFullAppliancesOneKilledAndEtcdDownAndBack) {
  apps_.reserve(3);
  for (const char* id : {"a", "b", "c"}) ASSERT_NO_FATAL_FAILURE(start_appliance(id));
  ASSERT_NO_FATAL_FAILURE(gather_client_ends());
  // All three register, healthy: each control plane linked its own data plane.
  ASSERT_NO_FATAL_FAILURE(expect_members_ok({"a", "b", "c"}));
  ASSERT_FALSE(HasFailure());
  ASSERT_NO_FATAL_FAILURE(push_config_through_a());
  ASSERT_FALSE(HasFailure());

  // A FleetClient fed from etcd (made here: etcd is reachable from this namespace; its
  // sockets are made in the client namespace by the calls).
  ac::EtcdSourceOptions source;
  source.endpoints = etcd_->endpoints();
  source.request_timeout = 1000ms;
  ac::FleetOptions options;
  options.member_timeout = 1s;  // above any live appliance's latency on a loaded machine
  options.client.max_datagram_bytes = 1472;
  auto fleet = ac::FleetClient::open_etcd(source, options);
  ASSERT_TRUE(fleet) << fleet.message();
  ASSERT_EQ(sorted_ids(*fleet), (std::vector<std::string>{"a", "b", "c"}));

  std::map<std::uint64_t, std::string> home;
  std::map<std::string, int> load;
  for (const auto& o : call_all(*fleet, 1)) {
    ASSERT_TRUE(o.response) << "session " << o.session << ": " << o.why;
    EXPECT_EQ(o.tried, 1u);
    home[o.session] = o.member;
    ++load[o.member];
  }
  for (const char* id : {"a", "b", "c"}) EXPECT_GE(load[id], 5) << id << " got few of the sessions";
  ASSERT_NO_FATAL_FAILURE(kill_b_under_load(*fleet, home));
  ASSERT_NO_FATAL_FAILURE(etcd_down_and_back(*fleet, home));
}

}  // namespace
}  // namespace axon::controlplane::daemon_it

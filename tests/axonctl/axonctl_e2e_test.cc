// The real axonctl binary against the control plane's real ApiServer: HTTPS with a
// certificate made by the openssl CLI, bearer tokens with reader/admin roles from a real
// tokens file, and the root-only unix socket. A small in-memory ControlApi stands behind
// the server; everything between axonctl and it is the production code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "axon/controlplane/api_server.h"
#include "axon/controlplane/model.h"
#include "axon/testing/fake_control_api.h"

namespace axon::controlplane {
namespace {

using nlohmann::json;

// The tests' one fake of the control API, with axonctl's starting point: tenant 1 "acme".
class MemoryControlApi : public testing::FakeControlApi {
 public:
  MemoryControlApi() : FakeControlApi("0.1.0-test") {
    TenantSpec t;
    t.id = 1;
    t.name = "acme";
    t.rate_pps = 1000;
    t.burst = 100;
    t.prefixes = {"10.0.0.0/8"};
    seed_tenant(t);
  }
};

struct Output {
  int exit_code = -1;
  std::string out, err;
};

// Runs axonctl with a clean environment (no AXON_* from the caller) and collects its output.
Output axonctl(const std::vector<std::string>& args) {
  int out_pipe[2], err_pipe[2];
  EXPECT_EQ(pipe2(out_pipe, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(err_pipe, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<std::string> all{AXONCTL_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string path = "PATH=/usr/bin:/bin";
  char* envp[] = {path.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, AXONCTL_BIN, &actions, nullptr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  Output o;
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn " << AXONCTL_BIN << ": " << rc;
    close(out_pipe[0]);
    close(err_pipe[0]);
    return o;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buffer[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, 30000) <= 0) break;  // axonctl's own timeouts are far shorter
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? o.out : o.err).append(buffer, std::size_t(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return o;
}

class AxonctlE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/axon-ops-e2e-" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    std::string cmd = std::string(AXON_OPENSSL_BIN) +
                      " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=axon-e2e "
                      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
                      dir_ + "/server.key -out " + dir_ + "/server.crt >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto admin = TokenStore::create(dir_ + "/tokens", "ops-admin", Role::admin);
    auto reader = TokenStore::create(dir_ + "/tokens", "ops-reader", Role::reader);
    ASSERT_TRUE(admin.ok()) << admin.message();
    ASSERT_TRUE(reader.ok()) << reader.message();
    admin_token_ = admin.value();
    reader_token_ = reader.value();
    {
      std::ofstream f(dir_ + "/admin.token");
      f << admin_token_ << "\n";
    }
    ApiServerOptions o;
    o.listen = "127.0.0.1:0";
    o.cert_file = dir_ + "/server.crt";
    o.key_file = dir_ + "/server.key";
    o.tokens_file = dir_ + "/tokens";
    o.audit_log = dir_ + "/audit.log";
    if (geteuid() == 0) o.unix_socket = dir_ + "/api.sock";
    o.threads = 2;
    o.rate_per_second = 1000;
    o.rate_burst = 1000;
    auto server = ApiServer::start(o, api_);
    ASSERT_TRUE(server.ok()) << server.message();
    server_ = std::move(server).value();
    url_ = "https://127.0.0.1:" + std::to_string(server_->tcp_port());
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // axonctl with --api/--ca and the admin token, then `args`.
  Output admin(std::vector<std::string> args) {
    std::vector<std::string> all{"--api", url_, "--ca", dir_ + "/server.crt", "--token-file", dir_ + "/admin.token"};
    all.insert(all.end(), args.begin(), args.end());
    return axonctl(all);
  }
  Output reader(std::vector<std::string> args) {
    std::vector<std::string> all{"--api", url_, "--ca", dir_ + "/server.crt", "--token", reader_token_};
    all.insert(all.end(), args.begin(), args.end());
    return axonctl(all);
  }

  std::string dir_;
  std::string url_;
  std::string admin_token_, reader_token_;
  MemoryControlApi api_;
  std::unique_ptr<ApiServer> server_;
};

TEST_F(AxonctlE2E, StatusTableAndJson) {
  Output table = admin({"status"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.err, "");
  EXPECT_NE(table.out.find("version    0.1.0-test\n"), std::string::npos) << table.out;
  EXPECT_NE(
      table.out.find("dataplane  connected, pid 4242, xdp copy on veth-test, ready, heartbeat 40ms ago, tables v3\n"),
      std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("tenants    1\n"), std::string::npos) << table.out;

  Output as_json = admin({"status", "--json"});
  EXPECT_EQ(as_json.exit_code, 0) << as_json.err;
  json j = json::parse(as_json.out);
  EXPECT_EQ(j["version"], "0.1.0-test");
  EXPECT_EQ(j["dataplane"]["backend"], "xdp");
  EXPECT_NE(as_json.out.find("\n  \"agents\": 0"), std::string::npos) << "pretty-printed";
}

TEST_F(AxonctlE2E, AgentLifecycleThroughTheCli) {
  Output created = admin({"agents", "create", "--name", "echo", "--id", "7", "--tenant", "1", "--min", "2", "--max",
                          "4", "--", "/usr/local/bin/echo_worker", "--verbose"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.out.rfind("created agent echo\n", 0), 0u) << created.out;
  EXPECT_NE(created.out.find("command         /usr/local/bin/echo_worker --verbose\n"), std::string::npos)
      << created.out;

  Output list = admin({"agents", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out,
            "NAME  ID  TENANT  PRIO      WARM/MIN/MAX  BREAKER  RESTARTS\n"
            "echo  7   1       standard  2/2/4         closed   0\n");

  Output again = admin({"agents", "create", "--name", "echo", "--id", "8", "--tenant", "1", "--", "/bin/x"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err, "axonctl: 409 conflict: agent 'echo' exists\n");

  Output workers = admin({"workers", "list", "--agent", "echo"});
  EXPECT_EQ(workers.exit_code, 0) << workers.err;
  EXPECT_EQ(workers.out,
            "ID      AGENT  SLOT        PID   STATE  INFLIGHT  RESTARTS\n"
            "echo-0  echo   echo-slot0  5000  warm   0         0\n"
            "echo-1  echo   echo-slot1  5001  warm   0         0\n");

  Output drained = admin({"workers", "drain", "echo-0"});
  EXPECT_EQ(drained.exit_code, 0) << drained.err;
  EXPECT_EQ(drained.out, "draining worker echo-0 (now draining)\n");
  Output killed = admin({"workers", "kill", "echo-1", "--json"});
  EXPECT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_EQ(json::parse(killed.out)["state"], "backoff");
  Output missing = admin({"workers", "kill", "nope-9"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "axonctl: 404 not found: no worker 'nope-9'\n");

  Output scaled = admin({"agents", "scale", "echo", "--max", "6"});
  EXPECT_EQ(scaled.exit_code, 0) << scaled.err;
  EXPECT_NE(scaled.out.find("pool            min 2, max 6\n"), std::string::npos) << scaled.out;
  Output bad_scale = admin({"agents", "scale", "echo", "--min", "9"});
  EXPECT_EQ(bad_scale.exit_code, 1);
  EXPECT_EQ(bad_scale.err, "axonctl: 400 bad request: min > max\n");

  Output reset = admin({"agents", "reset-breaker", "echo"});
  EXPECT_EQ(reset.exit_code, 0) << reset.err;

  Output routes = admin({"routes"});
  EXPECT_EQ(routes.exit_code, 0) << routes.err;
  EXPECT_EQ(routes.out, "AGENT_ID  AGENT  TENANT  SLOTS\n7         echo   1       echo-slot0,echo-slot1\n");

  Output in_use = admin({"tenants", "delete", "1"});
  EXPECT_EQ(in_use.exit_code, 1);
  EXPECT_EQ(in_use.err, "axonctl: 409 conflict: tenant 1 is used by agent echo\n");

  Output deleted = admin({"agents", "delete", "echo"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(deleted.out, "deleted agent echo\n");
  Output gone = admin({"agents", "get", "echo"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_EQ(gone.err, "axonctl: 404 not found: no agent named 'echo'\n");
}

TEST_F(AxonctlE2E, TenantsSetUpdatesAndCreates) {
  Output updated = admin({"tenants", "set", "1", "--rate", "5000"});
  EXPECT_EQ(updated.exit_code, 0) << updated.err;
  Output list = admin({"tenants", "list"});
  EXPECT_EQ(list.out,
            "ID  NAME  RATE    BURST  PREFIXES\n"
            "1   acme  5000/s  100    10.0.0.0/8\n");
  Output created = admin({"tenants", "set", "2", "--name", "beta", "--prefix", "192.168.0.0/16"});
  EXPECT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.out.rfind("created tenant\n", 0), 0u) << created.out;
  Output deleted = admin({"tenants", "delete", "2"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(deleted.out, "deleted tenant 2\n");
}

TEST_F(AxonctlE2E, RolesAndTokens) {
  Output read = reader({"agents", "list"});
  EXPECT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(read.out, "no agents\n");

  Output write = reader({"agents", "create", "--name", "x", "--id", "3", "--tenant", "1", "--", "/bin/true"});
  EXPECT_EQ(write.exit_code, 1);
  EXPECT_EQ(write.err.rfind("axonctl: 403 forbidden: ", 0), 0u) << write.err;
  EXPECT_EQ(std::count(write.err.begin(), write.err.end(), '\n'), 1) << write.err;

  Output anonymous = axonctl({"--api", url_, "--ca", dir_ + "/server.crt", "--token", "not-a-token", "status"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_EQ(anonymous.err.rfind("axonctl: 401 unauthorized: ", 0), 0u) << anonymous.err;
}

TEST_F(AxonctlE2E, TlsFailuresAreConnectionErrors) {
  // No --ca: the self-signed certificate is not in the system store.
  Output untrusted = axonctl({"--api", url_, "--token", admin_token_, "status"});
  EXPECT_EQ(untrusted.exit_code, 3);
  EXPECT_NE(untrusted.err.find("certificate verification failed"), std::string::npos) << untrusted.err;
  EXPECT_EQ(untrusted.out, "");

  Output insecure = axonctl({"--api", url_, "--token", admin_token_, "--insecure", "status"});
  EXPECT_EQ(insecure.exit_code, 0) << insecure.err;
  EXPECT_EQ(insecure.err, "axonctl: warning: --insecure: the server's certificate is not verified\n");
  EXPECT_NE(insecure.out.find("version    0.1.0-test"), std::string::npos);

  std::string port = std::to_string(server_->tcp_port());
  server_.reset();
  Output refused = axonctl({"--api", url_, "--ca", dir_ + "/server.crt", "status"});
  EXPECT_EQ(refused.exit_code, 3);
  EXPECT_EQ(refused.err, "axonctl: cannot connect to https://127.0.0.1:" + port +
                             ": Connection refused; is axon-controlplane running? (see --api)\n");
}

TEST_F(AxonctlE2E, UnixSocketNeedsNoToken) {
  if (geteuid() != 0) GTEST_SKIP() << "the API's unix socket serves root only";
  Output status = axonctl({"--unix", dir_ + "/api.sock", "agents", "create", "--name", "local", "--id", "11",
                           "--tenant", "1", "--", "/bin/true"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  Output list = axonctl({"--unix", dir_ + "/api.sock", "agents", "list", "--json"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(json::parse(list.out)["agents"][0]["spec"]["name"], "local");
}

}  // namespace
}  // namespace axon::controlplane

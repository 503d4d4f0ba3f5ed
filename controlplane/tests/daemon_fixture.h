// The fixture of the control plane daemon tests (daemon_test.cc, scheduling_api_test.cc): the real
// axon-controlplane and axon-dataplane on a veth pair in a namespace the test creates, real
// cgroups, a NOTIFY_SOCKET the test listens on, and the REST API over real HTTPS with real
// tokens (curl) and its unix socket.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "axon/controlplane/api_server.h"
#include "axon/testing/it_support.h"

namespace axon::controlplane::daemon_it {

using namespace std::chrono_literals;
using dataplane::it::AxpClient;
using dataplane::it::ChildProcess;
using dataplane::it::eventually;
using dataplane::it::run_command;
using dataplane::it::TempDir;
using dataplane::it::TestNetwork;
using nlohmann::json;

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::uint16_t free_tcp_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A NOTIFY_SOCKET of the test's own: collects what the daemon tells "systemd". It drains the
// socket continuously, as systemd does: the kernel queues only net.unix.max_dgram_qlen (10 by
// default) datagrams, and a daemon whose watchdog pings found the queue full blocked in
// sd_notify, which stopped its supervision loop (killed workers were never respawned).
class NotifyListener {
 public:
  explicit NotifyListener(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    unlink(path_.c_str());
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    reader_ = std::thread([this] { read_until_stopped(); });
  }
  ~NotifyListener() {
    stop_ = true;
    reader_.join();
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // Everything received so far, one datagram per entry.
  std::vector<std::string> messages() {
    std::lock_guard lock(mutex_);
    drain_locked();
    return messages_;
  }
  bool saw(const std::string& needle) {
    for (const auto& m : messages()) {
      if (m.find(needle) != std::string::npos) return true;
    }
    return false;
  }

 private:
  void drain_locked() {
    char buffer[4096];
    for (ssize_t n; (n = recv(fd_, buffer, sizeof buffer, 0)) > 0;) messages_.emplace_back(buffer, std::size_t(n));
  }
  void read_until_stopped() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        std::lock_guard lock(mutex_);
        drain_locked();
      }
    }
  }

  std::string path_;
  int fd_ = -1;
  std::mutex mutex_;
  std::vector<std::string> messages_;
  std::atomic<bool> stop_{false};
  std::thread reader_;
};

struct Http {
  int status = 0;
  std::string body;
  json parsed() const { return json::parse(body, nullptr, false); }
};

inline pid_t pid_of(const json& worker) {
  return worker.value("pid", 0);
}

class ControlplaneDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (netns, XDP, cgroups)";
    TestNetwork::remove_leftovers(net_prefix_);
    std::string error;
    axon::testing::NetworkSpec net_spec;
    net_spec.prefix = net_prefix_;
    net_ = TestNetwork::create(net_spec, error);
    ASSERT_TRUE(net_) << error;
    run_dir_ = tmp_.path() + "/run";
    state_dir_ = tmp_.path() + "/state";
    std::filesystem::create_directories(run_dir_);
    // Workers run as nobody: they must be able to reach their slot sockets.
    chmod(tmp_.path().c_str(), 0755);
    chmod(run_dir_.c_str(), 0755);
    cgroup_name_ = "axon-cpit-" + std::to_string(getpid());
    ASSERT_TRUE(start_dataplane());
    // A real certificate for 127.0.0.1, and real tokens.
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
    auto reader = TokenStore::create(tokens_, "test-reader", Role::reader);
    ASSERT_TRUE(reader) << reader.message();
    reader_token_ = reader.value();
    port_ = free_tcp_port();
    notify_ = std::make_unique<NotifyListener>(tmp_.path() + "/notify.sock");
  }

  void TearDown() override {
    if (controlplane_) {
      controlplane_->signal(SIGTERM);
      controlplane_->wait_exit(20s);
      controlplane_.reset();
    }
    if (dataplane_) dataplane_->stop();
    // Whatever a failed test left in our cgroups (workers of a killed control plane).
    kill_cgroup_leftovers();
  }

  bool start_dataplane(const std::string& extra = "") {
    dataplane::it::ConfigSpec spec;
    spec.workers = {};
    spec.dataplane_extra = "worker_slots = 6\n" + extra;
    spec.tables = "[[tenants]]\nid = 1\nname = \"t1\"\n";
    dataplane_ = std::make_unique<dataplane::it::Daemon>(run_dir_);
    std::string error;
    if (!dataplane_->start(dataplane::it::make_config(*net_, run_dir_, spec), &error) ||
        !dataplane_->wait_ready(dataplane::it::kPatience, &error)) {
      ADD_FAILURE() << error << "\n" << dataplane_->log();
      return false;
    }
    return true;
  }

  std::string config_text(const std::string& extra_agents = "", int breaker_failures = 4) const {
    std::ostringstream c;
    c << "[controlplane]\nstate_dir = \"" << state_dir_ << "\"\nlog_dir = \"" << tmp_.path()
      << "/log\"\nworker_user = \"nobody\"\n"
      << "allowed_worker_commands = [\"" << AXON_ECHO_WORKER_BIN << "\", \"/bin/false\"]\n"
      << controlplane_extra_ << "[api]\nlisten = \"127.0.0.1:" << port_ << "\"\ncert_file = \"" << cert_
      << "\"\nkey_file = \"" << key_ << "\"\ntokens_file = \"" << tokens_ << "\"\naudit_log = \"" << tmp_.path()
      << "/audit.log\"\n"
      << "unix_socket = \"" << run_dir_ << "/api.sock\"\nrate_per_second = 200\nrate_burst = 400\n"
      << "[cgroups]\nname = \"" << cgroup_name_ << "\"\n"
      << "[cgroup_profiles.default]\nmemory_max = \"256M\"\npids_max = 64\n"
      << "[pools]\nscale_interval_ms = 100\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\nstable_after_ms = 2000\n"
      << "breaker_failures = " << breaker_failures
      << "\nbreaker_window_ms = 10000\nbreaker_cooldown_ms = 60000\non_exit = \"stop\"\n"
      << "drain_timeout_ms = 2000\nstop_grace_ms = 1000\n"
      << "[dataplane]\nrun_dir = \"" << run_dir_ << "\"\nreconnect_interval_ms = 50\n"
      << "[[tenants]]\nid = 1\nname = \"t1\"\n"
      << "[[agents]]\nname = \"echo\"\nid = 7\ntenant = 1\ncommand = [\"" << AXON_ECHO_WORKER_BIN << "\"]\n"
      << "min_workers = 2\nmax_workers = 4\n"
      << extra_agents;
    return c.str();
  }

  void start_controlplane(const std::string& config, bool wait_ready = true) {
    config_path_ = tmp_.path() + "/controlplane.toml";
    {
      std::ofstream out(config_path_);
      out << config;
    }
    controlplane_ = std::make_unique<ChildProcess>();
    std::string error;
    static int serial = 0;
    std::vector<std::string> argv = launch_prefix_;
    for (const char* a : {AXON_CONTROLPLANE_BIN, "--config"}) argv.emplace_back(a);
    argv.push_back(config_path_);
    ASSERT_TRUE(controlplane_->start(argv, {"NOTIFY_SOCKET=" + notify_->path(), "WATCHDOG_USEC=400000"},
                                     tmp_.path() + "/controlplane-" + std::to_string(serial++) + ".log", &error))
        << error;
    if (wait_ready) {
      ASSERT_TRUE(eventually([&] { return notify_->saw("READY=1") || !controlplane_->running(); }))
          << controlplane_->log();
      ASSERT_TRUE(controlplane_->running()) << controlplane_->log();
    }
  }

  Http call(const std::string& method, const std::string& path, const std::string& body = "",
            const std::string* token = nullptr, bool unix_socket = false) {
    std::string body_file = tmp_.path() + "/response.body";
    std::vector<std::string> argv{"curl",         "-sS", "-o",   body_file,    "-w",
                                  "%{http_code}", "-X",  method, "--max-time", "10"};
    if (unix_socket) {
      argv.insert(argv.end(), {"--unix-socket", run_dir_ + "/api.sock", "http://localhost" + path});
    } else {
      argv.insert(argv.end(), {"--cacert", cert_, "https://127.0.0.1:" + std::to_string(port_) + path});
      const std::string& t = token != nullptr ? *token : admin_token_;
      if (!t.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + t});
    }
    if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    std::string out;
    Http r;
    if (run_command(argv, &out) != 0) {
      r.body = out;
      return r;
    }
    r.status = std::atoi(out.c_str());
    r.body = read_file(body_file);
    return r;
  }

  json workers(const std::string& agent = "echo") {
    Http r = call("GET", "/v1/workers?agent=" + agent);
    json j = r.parsed();
    return j.is_object() && j.contains("workers") ? j["workers"] : json::array();
  }

  // Worker entries of `agent` that are attached and serving.
  std::vector<json> warm_workers(const std::string& agent = "echo") {
    std::vector<json> out;
    for (const auto& w : workers(agent)) {
      std::string state = w.value("state", "");
      if (state == "warm" || state == "busy") out.push_back(w);
    }
    return out;
  }

  // The warm workers' pids through the root unix socket, in process: a curl per poll costs
  // tens of milliseconds, which would blur a respawn time measured in hundreds.
  std::string unix_api_status_;  // the status line of the last answer, for failure messages
  std::optional<std::vector<pid_t>> warm_pids_via_unix_socket(const std::string& agent = "echo") {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::nullopt;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = run_dir_ + "/api.sock";
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    std::string raw;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      const std::string req =
          "GET /v1/workers?agent=" + agent + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
      if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size())) {
        char buf[8192];
        for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, std::size_t(n));
      }
    }
    ::close(fd);
    const auto body_at = raw.find("\r\n\r\n");
    unix_api_status_ = raw.substr(0, raw.find("\r\n"));
    if (raw.rfind("HTTP/1.1 200", 0) != 0 || body_at == std::string::npos) return std::nullopt;
    json j = json::parse(raw.substr(body_at + 4), nullptr, false);
    if (!j.is_object() || !j.contains("workers")) return std::nullopt;
    std::vector<pid_t> pids;
    for (const auto& w : j["workers"]) {
      const std::string state = w.value("state", "");
      if (state == "warm" || state == "busy") pids.push_back(pid_of(w));
    }
    return pids;
  }

  bool wait_warm(std::size_t count, const std::string& agent = "echo",
                 std::chrono::milliseconds timeout = dataplane::it::kPatience) {
    return eventually(
        [&] {
          auto all = workers(agent);
          return warm_workers(agent).size() == count && all.size() == count;
        },
        timeout);
  }

  // One AXP request from the namespace; the reply's kind (RESPONSE/ERROR/BUSY) or nullopt.
  std::optional<dataplane::it::Received> request(std::uint32_t agent, std::uint64_t id,
                                                 std::chrono::milliseconds timeout = 3s) {
    AxpClient client(*net_, AF_INET);
    if (!client.ok()) return std::nullopt;
    protocol::Header h{};
    h.type = protocol::MessageType::request;
    h.tenant_id = 1;
    h.agent_id = agent;
    h.request_id = id;
    const std::uint8_t payload[] = {'p', 'i', 'n', 'g'};
    if (!client.send(h, payload)) return std::nullopt;
    return client.receive(timeout);
  }

  // Each pid with its state and command line, for failure messages.
  static std::string describe_pids(const std::vector<pid_t>& pids) {
    std::string out;
    for (pid_t pid : pids) {
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      std::getline(stat, line);
      out += "[" + line + "] ";
    }
    return out;
  }

  std::vector<pid_t> cgroup_pids() const {
    std::vector<pid_t> pids;
    std::string leaf = "/sys/fs/cgroup/pids/" + cgroup_name_ + "/standard/t1/echo/cgroup.procs";
    std::ifstream in(leaf);
    pid_t pid = 0;
    while (in >> pid) pids.push_back(pid);
    return pids;
  }

  // Every hierarchy mounted under /sys/fs/cgroup, not a fixed list: the names differ between
  // hosts (cpu and cpuacct apart or co-mounted), and a list that missed "cpu" here left one
  // group per test run behind. Symlinks (cpu -> cpu,cpuacct) are the same hierarchy.
  void kill_cgroup_leftovers() {
    for (const auto& mount : std::filesystem::directory_iterator("/sys/fs/cgroup")) {
      if (mount.is_symlink() || !mount.is_directory()) continue;
      std::string root = mount.path().string() + "/" + cgroup_name_;
      if (!std::filesystem::exists(root)) continue;
      std::vector<std::string> dirs;
      for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        if (entry.is_directory()) dirs.push_back(entry.path());
      }
      dirs.push_back(root);
      std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
      for (const auto& dir : dirs) {
        std::ifstream procs(dir + "/cgroup.procs");
        pid_t pid = 0;
        while (procs >> pid) ::kill(pid, SIGKILL);
      }
      EXPECT_TRUE(eventually([&] {
        for (const auto& dir : dirs) rmdir(dir.c_str());
        return !std::filesystem::exists(root);
      })) << "the test's cgroup "
          << root << " could not be removed";
    }
  }

  TempDir tmp_;
  std::unique_ptr<TestNetwork> net_;
  std::unique_ptr<dataplane::it::Daemon> dataplane_;
  std::unique_ptr<ChildProcess> controlplane_;
  std::unique_ptr<NotifyListener> notify_;
  std::string run_dir_, state_dir_, cgroup_name_, cert_, key_, tokens_, config_path_;
  std::string admin_token_, reader_token_;
  std::string controlplane_extra_;          // more [controlplane] keys for config_text()
  std::vector<std::string> launch_prefix_;  // runs the control plane under this (e.g. setpriv)
  std::uint16_t port_ = 0;
  std::string net_prefix_ = "axit";  // the test network's names (a derived fixture may set its own)
};

}  // namespace axon::controlplane::daemon_it

// EtcdCluster: real etcd members in namespaces of the test's own (see etcd_cluster.h).
#include "etcd_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "axon/fleet/etcd.h"
#include "axon/testing/test_network.h"

namespace axon::fleet::testing {
namespace {

using axon::testing::run_command;
std::atomic<unsigned> instances{0};

std::string member_ip(unsigned subnet, unsigned member) {
  return "10.197." + std::to_string(subnet) + "." + std::to_string(member + 1);
}

bool step(const std::vector<std::string>& argv, std::string& error) {
  std::string out;
  if (run_command(argv, &out) == 0) return true;
  error = "";
  for (const auto& a : argv) error += a + " ";
  error += "failed: " + out;
  return false;
}

}  // namespace

std::string EtcdCluster::ns(unsigned member) const {
  return tag_ + "-m" + std::to_string(member);
}

std::string EtcdCluster::endpoint(unsigned member) const {
  return "http://" + member_ip(subnet_, member) + ":2379";
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (unsigned i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

bool EtcdCluster::setup_network(std::string& error) {
  const std::string hub = tag_ + "-hub";
  const std::string link_tag = "axf" + std::to_string(getpid() % 100000) + std::to_string(subnet_ % 10);
  namespaces_.push_back(hub);
  if (!step({"ip", "netns", "add", hub}, error)) return false;
  if (!step({"ip", "-n", hub, "link", "add", "br0", "type", "bridge"}, error)) return false;
  if (!step({"ip", "-n", hub, "link", "set", "br0", "up"}, error)) return false;
  // This process's end: .100 in the members' subnet.
  root_link_ = link_tag + "r";
  if (!step({"ip", "link", "add", root_link_, "type", "veth", "peer", "name", "p", "netns", hub}, error)) return false;
  if (!step({"ip", "-n", hub, "link", "set", "p", "master", "br0", "up"}, error)) return false;
  if (!step({"ip", "addr", "add", "10.197." + std::to_string(subnet_) + ".100/24", "dev", root_link_}, error)) {
    return false;
  }
  if (!step({"ip", "link", "set", root_link_, "up"}, error)) return false;
  for (unsigned i = 0; i < pids_.size(); ++i) {
    const std::string name = ns(i);
    const std::string hub_end = "m" + std::to_string(i);
    namespaces_.push_back(name);
    if (!step({"ip", "netns", "add", name}, error)) return false;
    if (!step({"ip", "-n", name, "link", "set", "lo", "up"}, error)) return false;
    if (!step({"ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", hub_end, "netns", hub},
              error)) {
      return false;
    }
    if (!step({"ip", "-n", hub, "link", "set", hub_end, "master", "br0", "up"}, error)) return false;
    if (!step({"ip", "-n", name, "addr", "add", member_ip(subnet_, i) + "/24", "dev", "eth0"}, error)) return false;
    if (!step({"ip", "-n", name, "link", "set", "eth0", "up"}, error)) return false;
  }
  return true;
}

bool EtcdCluster::spawn(unsigned member, std::string& error) {
  std::string cluster;
  for (unsigned i = 0; i < pids_.size(); ++i) {
    cluster += (i ? "," : "") + std::string("m") + std::to_string(i) + "=http://" + member_ip(subnet_, i) + ":2380";
  }
  const std::string ip = member_ip(subnet_, member);
  const std::string data = dir_ + "/m" + std::to_string(member);
  std::vector<std::string> argv{
      "ip", "netns", "exec", ns(member), "etcd", "--name=m" + std::to_string(member), "--data-dir=" + data,
      "--listen-client-urls=http://" + ip + ":2379", "--advertise-client-urls=http://" + ip + ":2379",
      "--listen-peer-urls=http://" + ip + ":2380", "--initial-advertise-peer-urls=http://" + ip + ":2380",
      "--initial-cluster=" + cluster, "--initial-cluster-state=new", "--initial-cluster-token=" + tag_,
      // Fast elections: a stopped leader is replaced within about a second.
      "--heartbeat-interval=50", "--election-timeout=500", "--logger=zap", "--log-level=warn", "--log-outputs=stderr"};
  const std::string log = dir_ + "/m" + std::to_string(member) + ".log";
  std::vector<char*> args;  // built before fork: the child only calls async-signal-safe functions
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    error = "fork failed";
    return false;
  }
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a killed test leaves no etcd behind
    execvp(args[0], args.data());
    _exit(127);
  }
  pids_[member] = pid;  // `ip netns exec` execs etcd: this pid is etcd's
  return true;
}

bool EtcdCluster::wait_ready(const std::vector<std::string>& endpoints, std::string& error) {
  EtcdOptions options;
  options.endpoints = endpoints;
  options.timeout = std::chrono::milliseconds(500);
  auto client = EtcdClient::create(options);
  if (!client) {
    error = client.message();
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = client->get("/axfl-ready");
    if (r) return true;
    error = r.message();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::unique_ptr<EtcdCluster> EtcdCluster::start(unsigned members, std::string& error) {
  if (run_command({"etcd", "--version"}) != 0) {
    error = "etcd is not installed: apt-get install etcd-server etcd-client (deploy/lib/common.sh lists them)";
    return nullptr;
  }
  axon::testing::TestNetwork::remove_leftovers("axfl");
  std::unique_ptr<EtcdCluster> c(new EtcdCluster());
  const unsigned n = instances.fetch_add(1);
  c->tag_ = "axfl-" + std::to_string(getpid()) + "-" + std::to_string(n);
  c->subnet_ = (unsigned(getpid()) + n * 37) % 250 + 1;
  c->pids_.assign(members, 0);
  char tmpl[] = "/tmp/axfl-etcd-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    error = "mkdtemp failed";
    return nullptr;
  }
  c->dir_ = tmpl;
  if (!c->setup_network(error)) return nullptr;
  for (unsigned i = 0; i < members; ++i) {
    if (!c->spawn(i, error)) return nullptr;
  }
  if (!wait_ready(c->endpoints(), error)) {
    error = "etcd did not come up in 15 s (logs in " + c->dir_ + "): " + error;
    return nullptr;
  }
  return c;
}

void EtcdCluster::stop(unsigned member, bool hard) {
  const pid_t pid = pids_[member];
  if (pid <= 0) return;
  kill(pid, hard ? SIGKILL : SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  pids_[member] = 0;
}

bool EtcdCluster::restart(unsigned member, std::string& error) {
  if (pids_[member] > 0) return true;
  if (!spawn(member, error)) return false;
  return wait_ready({endpoint(member)}, error);
}

bool EtcdCluster::restart_all(std::string& error) {
  for (unsigned i = 0; i < size(); ++i) {
    if (pids_[i] <= 0 && !spawn(i, error)) return false;
  }
  return wait_ready(endpoints(), error);
}

EtcdCluster::~EtcdCluster() {
  for (unsigned i = 0; i < pids_.size(); ++i) stop(i, true);
  // Deleting the namespaces removes their veths, and with the hub's also this process's end.
  for (const auto& name : namespaces_) run_command({"ip", "netns", "del", name});
  if (!dir_.empty() && std::getenv("AXON_KEEP_ETCD") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

}  // namespace axon::fleet::testing

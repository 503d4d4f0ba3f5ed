// axon-bench-respawn: kill -9 of a worker -> its pool back at its minimum, measured.
//
// The real axon-dataplane (XDP on a veth pair in a namespace of its own, axon::it_support) and
// the real axon-controlplane (cgroups, a pool of echo_worker processes, min = max = 2). Each
// round SIGKILLs one warm worker and measures, from the kill:
//   attached: the data plane's stats segment shows the worker's slot alive with a new pid (the
//             replacement has exec'd, connected, received its segment: it takes requests);
//   warm:     the control plane's API (GET /v1/workers on its unix socket) lists the pool at
//             its minimum again, every worker warm, the victim gone;
//   served:   an AXP request sent through the data plane got its RESPONSE after `warm`.
// Rounds are spaced by more than stable_after_ms, so every kill is a first crash (respawned
// after backoff_initial_ms); a crash loop (backed off) is not what this measures. Prints one line per round and
// the medians; --json FILE writes them. Needs root (netns, XDP, cgroups), like the daemon tests.
//
//   axon-bench-respawn [--kills 10] [--json FILE]
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "axon/controlplane/api_server.h"
#include "axon/testing/it_support.h"

namespace {

using namespace std::chrono_literals;
using axon::dataplane::it::AxpClient;
using axon::dataplane::it::ChildProcess;
using axon::dataplane::it::TempDir;
using axon::dataplane::it::TestNetwork;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kMin = 2;
constexpr int kStableAfterMs = 300;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// GET on the API's unix socket (root: no token), in process: a curl per poll would cost more
// than what is measured.
std::optional<json> get_unix(const std::string& socket_path, const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  std::string raw;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size())) {
      char buf[8192];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, std::size_t(n));
    }
  }
  ::close(fd);
  const auto body = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) return std::nullopt;
  json j = json::parse(raw.substr(body + 4), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

struct Warm {
  std::vector<pid_t> pids;
  std::vector<std::string> slots;
};

// The pool's workers when every one of them is warm (or busy); nullopt otherwise.
std::optional<Warm> warm_pool(const std::string& api_socket) {
  auto j = get_unix(api_socket, "/v1/workers?agent=echo");
  if (!j || !j->contains("workers")) return std::nullopt;
  Warm w;
  for (const auto& worker : (*j)["workers"]) {
    const std::string state = worker.value("state", "");
    if (state != "warm" && state != "busy") return std::nullopt;
    w.pids.push_back(worker.value("pid", 0));
    w.slots.push_back(worker.value("slot", ""));
  }
  return w;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::string controlplane_config(const std::string& dir, const std::string& run_dir, const std::string& cgroup) {
  std::ostringstream c;
  c << "[controlplane]\nstate_dir = \"" << dir << "/state\"\nlog_dir = \"" << dir
    << "/log\"\nworker_user = \"nobody\"\nallowed_worker_commands = [\"" << AXON_ECHO_WORKER_BIN << "\"]\n"
    << "[api]\nlisten = \"\"\ntokens_file = \"" << dir << "/tokens\"\naudit_log = \"" << dir << "/audit.log\"\n"
    << "unix_socket = \"" << run_dir << "/api.sock\"\nrate_per_second = 100000\nrate_burst = 100000\n"
    << "[cgroups]\nname = \"" << cgroup << "\"\n"
    << "[pools]\nbackoff_initial_ms = 100\nbackoff_max_ms = 2000\nstable_after_ms = " << kStableAfterMs
    << "\nbreaker_failures = 1000\non_exit = \"stop\"\ndrain_timeout_ms = 1000\nstop_grace_ms = 1000\n"
    << "[dataplane]\nrun_dir = \"" << run_dir << "\"\nreconnect_interval_ms = 50\n"
    << "[[tenants]]\nid = 1\nname = \"t1\"\n"
    << "[[agents]]\nname = \"echo\"\nid = 7\ntenant = 1\ncommand = [\"" << AXON_ECHO_WORKER_BIN << "\"]\n"
    << "min_workers = " << kMin << "\nmax_workers = " << kMin << "\n";
  return c.str();
}

// The data plane's slot `slot` is alive with a pid other than `victim`.
bool slot_replaced(axon::dataplane::StatsReader& stats, const std::string& slot, pid_t victim) {
  for (std::uint32_t i = 0; i < stats.worker_count(); ++i) {
    const auto& w = stats.worker(i);
    if (slot != w.name) continue;
    const pid_t pid = w.pid.load(std::memory_order_relaxed);
    return stats.worker_state(i) == axon::dataplane::WorkerSlotState::alive && pid != 0 && pid != victim;
  }
  return false;
}

template <typename Pred>
bool poll_until(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int kills = 10;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--kills" && i + 1 < argc) {
      kills = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--kills N] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "axon-bench-respawn: needs root (netns, XDP, cgroups)\n");
    return 2;
  }
  TestNetwork::remove_leftovers();
  std::string error;
  auto net = TestNetwork::create(error);
  if (!net) {
    std::fprintf(stderr, "axon-bench-respawn: %s\n", error.c_str());
    return 1;
  }
  TempDir tmp;
  const std::string run_dir = tmp.path() + "/run";
  std::filesystem::create_directories(run_dir);
  ::chmod(tmp.path().c_str(), 0755);
  ::chmod(run_dir.c_str(), 0755);
  axon::dataplane::it::ConfigSpec spec;
  spec.workers = {};
  spec.dataplane_extra = "worker_slots = 4\n";
  spec.tables = "[[tenants]]\nid = 1\nname = \"t1\"\n";
  axon::dataplane::it::Daemon dataplane(run_dir);
  if (!dataplane.start(axon::dataplane::it::make_config(*net, run_dir, spec), &error) ||
      !dataplane.wait_ready(axon::dataplane::it::kPatience, &error)) {
    std::fprintf(stderr, "axon-bench-respawn: data plane: %s\n%s", error.c_str(), dataplane.log().c_str());
    return 1;
  }
  auto token = axon::controlplane::TokenStore::create(tmp.path() + "/tokens", "bench", axon::controlplane::Role::admin);
  if (!token) {
    std::fprintf(stderr, "axon-bench-respawn: tokens: %s\n", token.message().c_str());
    return 1;
  }
  const std::string cgroup = "axon-bench-respawn-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp.path() + "/controlplane.toml");
    out << controlplane_config(tmp.path(), run_dir, cgroup);
  }
  ChildProcess controlplane;
  if (!controlplane.start({AXON_CONTROLPLANE_BIN, "--config", tmp.path() + "/controlplane.toml"}, {},
                          tmp.path() + "/controlplane.log", &error)) {
    std::fprintf(stderr, "axon-bench-respawn: control plane: %s\n", error.c_str());
    return 1;
  }
  const std::string api = run_dir + "/api.sock";
  int status = 0;
  std::vector<double> attached_ms, warm_ms, served_ms;
  if (!poll_until(
          [&] {
            auto w = warm_pool(api);
            return w && w->pids.size() == kMin;
          },
          30s)) {
    std::fprintf(stderr, "axon-bench-respawn: the pool never came up warm\n%s", controlplane.log().c_str());
    status = 1;
  }
  AxpClient client(*net, AF_INET);
  for (int round = 0; status == 0 && round < kills; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kStableAfterMs + 200));  // a first crash
    const auto before = warm_pool(api);
    if (!before || before->pids.size() != kMin) {
      status = 1;
      break;
    }
    const std::size_t v = std::size_t(round) % before->pids.size();
    const pid_t victim = before->pids[v];
    const std::string slot = before->slots[v];
    const auto t0 = Clock::now();
    ::kill(victim, SIGKILL);
    if (!poll_until([&] { return slot_replaced(dataplane.stats(), slot, victim); }, 10s)) {
      std::fprintf(stderr, "round %d: slot %s not re-attached within 10 s\n", round, slot.c_str());
      status = 1;
      break;
    }
    attached_ms.push_back(ms_since(t0));
    if (!poll_until(
            [&] {
              auto w = warm_pool(api);
              return w && w->pids.size() == kMin && std::find(w->pids.begin(), w->pids.end(), victim) == w->pids.end();
            },
            10s)) {
      std::fprintf(stderr, "round %d: pool not back at %d warm within 10 s\n", round, kMin);
      status = 1;
      break;
    }
    warm_ms.push_back(ms_since(t0));
    axon::protocol::Header h{};
    h.type = axon::protocol::MessageType::request;
    h.tenant_id = 1;
    h.agent_id = 7;
    h.request_id = std::uint64_t(round) + 1;
    const std::uint8_t payload[] = {'p', 'i', 'n', 'g'};
    client.send(h, payload);
    auto reply = client.receive(2s);
    if (!reply || reply->header.type != axon::protocol::MessageType::response) {
      std::fprintf(stderr, "round %d: no RESPONSE after the respawn\n", round);
      status = 1;
      break;
    }
    served_ms.push_back(ms_since(t0));
    std::printf("round %2d: killed %d (slot %s): attached %.1f ms, pool warm %.1f ms, served %.1f ms\n", round,
                int(victim), slot.c_str(), attached_ms.back(), warm_ms.back(), served_ms.back());
  }
  if (status == 0) {
    std::printf(
        "kill -9 -> pool back at min (%d), first crashes, median of %d: attached %.1f ms, warm %.1f ms, "
        "served %.1f ms (max warm %.1f ms)\n",
        kMin, kills, median(attached_ms), median(warm_ms), median(served_ms),
        *std::max_element(warm_ms.begin(), warm_ms.end()));
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << json{{"kills", kills},
                  {"pool_min", kMin},
                  {"attached_ms", attached_ms},
                  {"warm_ms", warm_ms},
                  {"served_ms", served_ms},
                  {"median_attached_ms", median(attached_ms)},
                  {"median_warm_ms", median(warm_ms)},
                  {"median_served_ms", median(served_ms)}}
                 .dump(2)
          << "\n";
    }
  }
  controlplane.signal(SIGTERM);  // on_exit = "stop": drains the workers, removes its cgroups
  if (!controlplane.wait_exit(20s)) controlplane.kill_now();
  dataplane.stop();
  return status;
}

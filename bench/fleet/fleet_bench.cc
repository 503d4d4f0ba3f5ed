// axon-fleet-bench: closed-loop load through FleetClient over a fleet, for bench/fleet/run.sh.
// --threads threads, each with its own FleetClient over the same members, call random session
// keys (1..--sessions) for --duration seconds and count the RESPONSEs (aggregate throughput).
// With --kill-pid, the tool itself sends --kill-signal (SIGKILL: a dead process, whose port the
// kernel answers with ICMP unreachable; SIGSTOP: a hung one, which answers nothing) to that
// pid at --kill-after seconds, and reports, from the clients' view, the time from the signal
// to the first RESPONSE from another member for a session whose member was --kill-member.
// Prints one JSON object. Every load loop is bounded by --duration.
#include "axon/client/fleet.h"

#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "axon/common/clock.h"

namespace ac = axon::client;
using namespace std::chrono_literals;

namespace {

struct Totals {
  std::atomic<std::uint64_t> ok{0}, errors{0}, failovers{0}, ok_after_kill{0}, errors_after_kill{0};
  std::atomic<std::uint64_t> first_reroute_ns{0};  // CLOCK_MONOTONIC of the first rerouted RESPONSE
  // Members the clients had already marked down when the signal went out (a member that answered
  // later than member_timeout under load): then the reroute time measures nothing.
  std::atomic<std::uint64_t> down_before_kill{0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"axon-fleet-bench: closed-loop FleetClient load, optional kill of one member"};
  std::vector<std::string> member_args;
  unsigned threads = 2, sessions = 1000, timeout_ms = 2000, member_timeout_ms = 300;
  double duration_s = 3, kill_after_s = 1;
  int kill_pid = 0;
  std::string kill_member, kill_signal = "KILL";
  std::size_t payload_bytes = 64;
  app.add_option("--member", member_args, "ID=HOST:PORT of a member (repeat)")->required();
  app.add_option("--threads", threads, "client threads, one FleetClient each");
  app.add_option("--sessions", sessions, "session keys 1..N, chosen at random per request");
  app.add_option("--duration", duration_s, "seconds of load");
  app.add_option("--payload", payload_bytes, "request payload bytes");
  app.add_option("--timeout-ms", timeout_ms, "each call's budget, failover included");
  app.add_option("--member-timeout-ms", member_timeout_ms, "FleetOptions::member_timeout");
  app.add_option("--kill-pid", kill_pid, "pid to signal at --kill-after (0: none)");
  app.add_option("--kill-member", kill_member, "the member id that pid serves");
  app.add_option("--kill-after", kill_after_s, "seconds into the run");
  app.add_option("--kill-signal", kill_signal, "KILL or STOP")->check(CLI::IsMember({"KILL", "STOP"}));
  CLI11_PARSE(app, argc, argv);

  std::vector<ac::FleetMember> members;
  for (const auto& m : member_args) {
    const auto eq = m.find('=');
    auto hp = ac::parse_host_port(eq == std::string::npos ? m : m.substr(eq + 1), 7400);
    if (!hp) {
      std::cerr << "axon-fleet-bench: --member " << m << ": " << hp.message() << "\n";
      return 2;
    }
    members.push_back({eq == std::string::npos ? m : m.substr(0, eq), hp->host, hp->port});
  }
  std::vector<std::string> ids;
  for (const auto& m : members) ids.push_back(m.id);

  Totals totals;
  std::atomic<std::uint64_t> kill_ns{0};
  const std::uint64_t start = axon::monotonic_ns();
  const std::uint64_t end = start + static_cast<std::uint64_t>(duration_s * 1e9);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ac::FleetOptions fo;
      fo.member_timeout = std::chrono::milliseconds(member_timeout_ms);
      auto fleet = ac::FleetClient::open(members, fo);
      if (!fleet) return;
      std::mt19937_64 rng(t + 1);
      std::vector<std::uint8_t> payload(payload_bytes, std::uint8_t('a' + t));
      ac::CallOptions co;
      co.timeout = std::chrono::milliseconds(timeout_ms);
      co.busy_retries = 3;
      bool seen_kill = false;
      while (axon::monotonic_ns() < end) {
        ac::RequestOptions req;
        req.tenant = 1;
        req.agent = 7;
        req.session_key = 1 + rng() % sessions;
        auto r = fleet->call(req, payload, co);
        const std::uint64_t killed = kill_ns.load(std::memory_order_acquire);
        if (killed != 0 && !seen_kill) {
          seen_kill = true;
          totals.down_before_kill.fetch_add(fleet->members_down());
        }
        const bool ok = r && r->reply.ok();
        (ok ? totals.ok : totals.errors).fetch_add(1, std::memory_order_relaxed);
        if (killed != 0) (ok ? totals.ok_after_kill : totals.errors_after_kill).fetch_add(1);
        if (ok && killed != 0 && r->member != kill_member &&
            ids[ac::rendezvous_order(ids, ac::fleet_key(1, 7, req.session_key)).front()] == kill_member) {
          std::uint64_t none = 0;
          totals.first_reroute_ns.compare_exchange_strong(none, axon::monotonic_ns());
        }
      }
      totals.failovers.fetch_add(fleet->counters().failovers);
    });
  }
  if (kill_pid > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kill_after_s));
    kill_ns.store(axon::monotonic_ns(), std::memory_order_release);
    if (kill(kill_pid, kill_signal == "KILL" ? SIGKILL : SIGSTOP) != 0) std::perror("axon-fleet-bench: kill");
  }
  for (auto& th : pool) th.join();
  const double seconds = double(axon::monotonic_ns() - start) / 1e9;

  nlohmann::json out;
  out["members"] = ids;
  out["threads"] = threads;
  out["sessions"] = sessions;
  out["payload_bytes"] = payload_bytes;
  out["duration_s"] = seconds;
  out["member_timeout_ms"] = member_timeout_ms;
  out["responses"] = totals.ok.load();
  out["errors"] = totals.errors.load();
  out["failovers"] = totals.failovers.load();
  out["responses_per_s"] = double(totals.ok.load()) / seconds;
  if (kill_pid > 0) {
    out["kill_signal"] = "SIG" + kill_signal;
    out["kill_member"] = kill_member;
    out["responses_after_kill"] = totals.ok_after_kill.load();
    out["errors_after_kill"] = totals.errors_after_kill.load();
    out["members_down_before_kill"] = totals.down_before_kill.load();
    const std::uint64_t rerouted = totals.first_reroute_ns.load();
    if (rerouted != 0) {
      out["reroute_ms"] = double(rerouted - kill_ns.load()) / 1e6;
    } else {
      out["reroute_ms"] = nullptr;
    }
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// DataplaneLink: the control plane's one connection to the data plane.
//
// One job: keep a view of the running data plane — its control socket (hello: pid, backend,
// worker slots), the tables it accepted, and its stats segment read through
// axon::dataplane_stats — and push tables to it. It knows nothing of agents or pools: the
// daemon builds the tables and decides what a restart means. Links only
// axon::dataplane_control and axon::dataplane_stats (no engine, libxdp, libbpf or DPDK).
// Not thread-safe; the daemon serialises calls.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "axon/controlplane/model.h"
#include "axon/dataplane/control.h"
#include "axon/dataplane/stats_reader.h"

namespace axon::controlplane {

class DataplaneLink {
 public:
  struct Options {
    std::string run_dir;  // the data plane's: control.sock and dataplane.stats live there
    std::chrono::milliseconds reconnect_interval{1000};
    int call_timeout_ms = 1000;
  };

  explicit DataplaneLink(Options options) : options_(std::move(options)) {}

  // What refresh() saw: nothing new, a first connection, or a data plane with a new pid.
  enum class Event { none, connected, restarted };
  // Connects when due (every reconnect_interval while down) and asks hello: pid and slots.
  // On a new data plane it maps its stats segment and forgets the tables the old one had.
  Event refresh();

  bool connected() const { return connected_; }
  const dataplane::control::Hello& hello() const { return hello_; }
  const std::map<std::string, dataplane::control::SlotInfo>& slots() const { return slots_; }
  const dataplane::control::SlotInfo* slot(const std::string& name) const;
  // The data plane's stats segment while mapped; nullptr before the first connection.
  const dataplane::StatsReader* stats() const { return stats_ ? &*stats_ : nullptr; }

  // Whether `tables` (version ignored) differ from what the data plane last accepted, or
  // it has accepted none yet.
  bool needs_push(const dataplane::control::Tables& tables) const;
  enum class Push { applied, rejected, lost };
  // applied; rejected (the data plane refused them: logged and counted, not retried until
  // the tables change); lost (the link dropped: retried after reconnecting).
  Push push(const dataplane::control::Tables& tables);

  // Names the one process that may claim `slot` (0 = none yet; issue 11 item 16). False
  // when not connected or refused (logged); a dropped link re-grants after reconnecting.
  bool grant(const std::string& slot, pid_t pid);
  // Drops the response-cache entries of agent `agent_id` (0: of every agent). The data plane's
  // message when it refused, or why the link could not ask it; empty on success.
  std::string invalidate_cache(std::uint32_t agent_id);
  // The status fields the link knows (connected, pid, backend, readiness, counters).
  void fill(DataplaneStatus& status) const;

  std::uint64_t restarts_seen() const { return restarts_seen_; }
  std::uint64_t rejected_pushes() const { return rejected_pushes_; }

 private:
  void drop(const std::string& why);
  void map_stats();

  Options options_;
  std::optional<dataplane::control::ControlClient> client_;
  bool connected_ = false;
  std::int32_t pid_ = 0;  // of the last data plane seen, to notice a restart
  dataplane::control::Hello hello_;
  std::map<std::string, dataplane::control::SlotInfo> slots_;
  std::optional<dataplane::StatsReader> stats_;
  std::optional<dataplane::control::Tables> applied_;  // what the current data plane accepted
  std::chrono::steady_clock::time_point next_attempt_{};
  std::string last_error_;
  std::uint64_t restarts_seen_ = 0;
  std::uint64_t rejected_pushes_ = 0;
};

}  // namespace axon::controlplane

// MetricsExporter: the control plane's Prometheus families for GET /metrics.
//
// One job: turn a snapshot of the daemon (registry, pools, data plane link and its stats
// segment) into the text exposition format. It reads nothing itself, so it is tested with
// a hand-made snapshot; the daemon takes the snapshot under its lock. The API server
// appends its own families after these.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "axon/controlplane/model.h"
#include "axon/dataplane/stats_reader.h"

namespace axon::controlplane {

struct MetricsSnapshot {
  std::string version;
  double uptime_seconds = 0;
  bool dataplane_up = false;
  std::uint64_t dataplane_restarts_seen = 0;
  std::uint64_t table_pushes_rejected = 0;
  std::uint64_t spawn_failures = 0;
  std::uint64_t workers_adopted = 0;
  std::map<std::string, std::uint64_t> worker_replacements;  // by reason: "stalled", "requested"
  std::uint64_t tenants = 0;
  std::vector<AgentStatus> agents;
  std::vector<ScalingStatus> scaling;  // per agent
  // Autoscaler decisions applied, by (agent, direction, reason).
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> scale_events;
  std::vector<WorkerInfo> workers;
  const dataplane::StatsReader* stats = nullptr;  // the data plane's families only when mapped
};

std::string export_metrics(const MetricsSnapshot& snapshot);

}  // namespace axon::controlplane

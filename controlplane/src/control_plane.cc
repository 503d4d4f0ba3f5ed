// ControlPlane: wires the registry, the pools and the data plane link, runs the control
// loop and decides readiness (see control_plane.h). Pools: pools.cc; ControlApi: control_api.cc.
#include "control_plane.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

#include "api/json.h"
#include "files.h"
#include "metrics_exporter.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "controlplane";
constexpr const char* kDataplaneMember = "axon-dataplane";
namespace dpc = dataplane::control;

std::string escape_log(const std::string& text) {
  return text.empty() ? "-" : text;
}

}  // namespace

ControlPlane::ControlPlane(ControlplaneConfig config)
    : config_(std::move(config)),
      registry_(config_),
      link_(DataplaneLink::Options{config_.dataplane.run_dir, config_.dataplane.reconnect_interval, 1000}),
      autoscaler_(autoscaler_policy(config_.pools)) {}

ControlPlane::~ControlPlane() = default;

Result<Ok, DaemonError> ControlPlane::start() {
  std::lock_guard lock(mutex_);
  if (!make_dirs(config_.state_dir, 0750)) {
    return make_error(DaemonError::io_error, "cannot create state_dir " + config_.state_dir + ": " +
                                                 std::strerror(errno) + "; set [controlplane] state_dir");
  }
  if (!make_dirs(config_.log_dir + "/workers", 0750)) {
    return make_error(DaemonError::io_error, "cannot create " + config_.log_dir + "/workers: " + std::strerror(errno) +
                                                 "; set [controlplane] log_dir");
  }
  if (config_.cgroups.enabled) {
    CgroupOptions options;
    options.name = config_.cgroups.name;
    options.mode = config_.cgroups.mode;
    options.v2_root = config_.cgroups.v2_root;
    auto opened = CgroupDriver::open(options);
    if (!opened) {
      return make_error(DaemonError::cgroups,
                        opened.message() + " (or set [cgroups] enabled = false to run workers without cgroups)");
    }
    cgroups_.emplace(std::move(opened).value());
    AXON_LOG_INFO(kLog, "cgroups: %s", cgroups_->describe().c_str());
  } else {
    AXON_LOG_WARN(kLog, "cgroups disabled ([cgroups] enabled = false): workers share the daemon's cgroup");
  }
  BackoffPolicy backoff;
  backoff.initial = config_.pools.backoff_initial;
  backoff.max = config_.pools.backoff_max;
  backoff.stable_after = config_.pools.stable_after;
  BreakerPolicy breaker;
  breaker.failures = config_.pools.breaker_failures;
  breaker.window = config_.pools.breaker_window;
  breaker.cooldown = config_.pools.breaker_cooldown;
  auto supervisor = Supervisor::create(cgroups_ ? &*cgroups_ : nullptr, backoff, breaker);
  if (!supervisor) return make_error(DaemonError::io_error, supervisor.message());
  supervisor_ = std::move(supervisor).value();
  supervisor_->on_event = [this](const MemberEvent& event) { on_member_event(event); };

  start_tuning();
  if (auto loaded = registry_.load(); !loaded) return loaded;
  for (const auto& [name, spec] : registry_.agents()) pools_[name].target = spec.pool.min;
  link_dataplane();
  if (!config_.dataplane.command.empty()) supervise_dataplane();
  take_over();
  if (auto traced = start_traces(); !traced) return traced;
  return start_fleet();
}

// [dataplane] command: this control plane runs axon-dataplane itself (hosts without
// systemd). It is supervised like a worker (backoff, breaker) but keeps its privileges,
// and it is adopted, not restarted, when a control plane restarts: traffic never stops
// for a control-plane restart.
void ControlPlane::supervise_dataplane() {
  SpawnSpec spec;
  spec.argv = config_.dataplane.command;
  spec.keep_privileges = true;
  spec.log_path = config_.log_dir + "/dataplane.log";
  if (link_.connected() && link_.hello().pid > 0) {
    auto adopted = supervisor_->adopt(kDataplaneMember, kDataplaneMember, link_.hello().pid, spec);
    if (adopted) {
      AXON_LOG_INFO(kLog, "supervising the running data plane (pid %d)", link_.hello().pid);
      return;
    }
    AXON_LOG_WARN(kLog, "cannot adopt the data plane (pid %d): %s", link_.hello().pid, adopted.message().c_str());
    return;
  }
  auto started = supervisor_->start(kDataplaneMember, kDataplaneMember, spec);
  if (!started) {
    AXON_LOG_ERROR(kLog, "cannot start the data plane (%s): %s", config_.dataplane.command[0].c_str(),
                   started.message().c_str());
    return;
  }
  AXON_LOG_INFO(kLog, "started the data plane: pid %d, log %s", started->pid, spec.log_path.c_str());
}

// ---- data plane link -----------------------------------------------------------------------

// Tells the data plane which process may claim `slot` (0 = none yet). Without a link the
// grant is sent on the next connect (link_dataplane re-grants every slot we hold).
void ControlPlane::send_grant(const std::string& slot, pid_t pid) {
  link_.grant(slot, pid);
}

// What a new data plane means for the pools: it has none of our tables, and its slot
// sockets are new (root-owned); after a restart, the exits it caused are not the agents'.
void ControlPlane::link_dataplane() {
  const auto event = link_.refresh();
  if (event == DataplaneLink::Event::none) return;
  tables_dirty_ = true;
  if (fleet_) fleet_->poke();  // the member's health follows the data plane
  if (event == DataplaneLink::Event::restarted) {
    // Workers exit when their data plane does, and respawns fail until it is back: those
    // exits are not the agents' fault, so they must not keep a breaker open.
    for (const auto& [name, spec] : registry_.agents()) supervisor_->reset_breaker(name);
  }
  // A new data plane has no grants: name every slot's live worker again (or none yet).
  for (const auto& [id, w] : workers_) {
    const auto* agent = registry_.agent(w.agent);
    if (agent == nullptr) continue;
    auto member = supervisor_->member(id);
    send_grant(w.slot, member && member->pid > 0 ? member->pid : 0);
    grant_slot(w.slot, *agent);
  }
}

// The data plane makes each slot socket root-owned with mode 0600. It is handed to the
// uid the slot's worker runs as right before the spawn (and again whenever the data plane
// recreates it), and stays 0600: with a uid per slot (worker_uids), no other worker can
// connect to it.
void ControlPlane::grant_slot(const std::string& slot, const AgentSpec& agent) const {
  auto identity = identity_for(agent, worker_policy(config_), slot_position(slot));
  if (!identity) return;  // start_worker said why
  auto owner = owner_of(identity.value());
  if (!owner) {
    AXON_LOG_WARN(kLog, "cannot hand slot %s to its worker: %s", slot.c_str(), owner.message().c_str());
    return;
  }
  if (owner->uid == 0) return;
  std::string path = config_.dataplane.run_dir + "/workers/" + slot + ".sock";
  if (chown(path.c_str(), owner->uid, owner->gid) != 0 || chmod(path.c_str(), 0600) != 0) {
    AXON_LOG_WARN(kLog, "cannot hand %s to uid %u: %s; the worker will not be able to attach", path.c_str(),
                  unsigned(owner->uid), std::strerror(errno));
  }
}

void ControlPlane::refresh_slots() {
  link_dataplane();
}

dpc::Tables ControlPlane::build_tables() const {
  dpc::Tables tables;
  for (const auto& [id, t] : registry_.tenants()) tables.tenants.push_back(t);
  for (const auto& [name, a] : registry_.agents()) {
    auto pool = pools_.find(name);
    if (pool != pools_.end() && pool->second.deleting) continue;
    dpc::AgentEntry entry{a.id, a.tenant, a.name, {}, a.scheduling};
    // Every non-draining worker's slot, attached or not yet: the data plane skips slots
    // without a live worker, and answers ERROR when none is live (e.g. breaker open).
    for (const auto& [id, w] : workers_) {
      if (w.agent == name && !w.draining) entry.workers.push_back(w.slot);
    }
    tables.agents.push_back(std::move(entry));
  }
  return tables;
}

void ControlPlane::push_tables(bool force) {
  if (!link_.connected()) return;
  dpc::Tables tables = build_tables();
  if (!force && !link_.needs_push(tables)) {
    tables_dirty_ = false;
    return;
  }
  tables.version = registry_.next_table_version();
  // Refused tables are not retried until they change; a lost link retries on reconnect.
  if (link_.push(tables) != DataplaneLink::Push::lost) tables_dirty_ = false;
}

// Host tuning is not the pools' business: a failed apply or verify is logged and kept in
// /v1/tuning and the metrics, and the control plane serves on.
void ControlPlane::start_tuning() {
  tuning::ServiceConfig tc;
  tc.profile = config_.tuning.profile;
  tc.apply_at_start = config_.tuning.apply_at_start;
  tc.verify_interval = config_.tuning.verify_interval;
  tc.options.state_dir = config_.tuning.state_dir;
  tc.options.dataplane_config = config_.tuning.dataplane_config;
  tc.options.root = config_.tuning.root.empty() ? "/" : config_.tuning.root;
  if (!config_.tuning.profile_dirs.empty()) tc.options.profile_dirs = config_.tuning.profile_dirs;
  tuning_ = std::make_unique<tuning::TuningService>(std::move(tc));
  if (config_.tuning.profile.empty()) return;
  auto report = tuning_->start();
  if (!report) {
    AXON_LOG_WARN(kLog, "tuning profile %s: %s", config_.tuning.profile.c_str(), report.message().c_str());
    return;
  }
  const auto state = tuning_->state();
  AXON_LOG_INFO(kLog, "tuning profile %s: %s (%zu knob(s) drifted, %zu skipped)", config_.tuning.profile.c_str(),
                state.in_force ? "in force" : "not in force", state.drift, state.skipped);
}

ApiResult<ControlApi::TuningReply> ControlPlane::tuning(const std::string& method, const std::string& path,
                                                        const std::string& query, const std::string& body) {
  if (!tuning_) return api_error(ApiErrorCode::unavailable, "the control plane is still starting");
  // The REST layer already let only admins through to the mutating methods.
  auto reply = tuning_->handle(method, path, query, body, method != "GET");
  return TuningReply{reply.status, std::move(reply.body)};
}

void ControlPlane::tick() {
  if (tuning_) tuning_->tick(std::chrono::steady_clock::now());
  std::lock_guard lock(mutex_);
  supervisor_->process();
  refresh_slots();
  grant_reclaimed_slots();
  replace_stalled();
  scale_pools();
  reconcile_pools();
  if (tables_dirty_) push_tables(false);
  progress_drains();
  if (runtime_dirty_) save_runtime();
}

int ControlPlane::wait_fd() const {
  return supervisor_->fd();
}

std::chrono::milliseconds ControlPlane::next_timeout() const {
  std::lock_guard lock(mutex_);
  // The link and slot view refresh at least every 200 ms, and every 10 ms while a spawned
  // worker has not attached yet: a respawn after a crash should count as warm as soon as it
  // serves, not up to a refresh period later (the pool's recovery time is what operators see).
  const auto refresh =
      link_.connected() && worker_starting() ? std::chrono::milliseconds(10) : std::chrono::milliseconds(200);
  return std::min(supervisor_->next_timeout(), refresh);
}

void ControlPlane::shutdown() {
  // Outside mutex_: the fleet thread takes it. With on_exit = "stop" the appliance stops
  // serving, so its member key goes now; with "keep" the data plane serves on and the key
  // stays until its lease expires or the next control plane takes it over.
  if (fleet_config_) fleet_config_->stop();
  if (fleet_) fleet_->stop(config_.pools.on_exit == "stop");
  std::unique_lock lock(mutex_);
  if (config_.pools.on_exit != "stop") {
    save_runtime();
    AXON_LOG_INFO(kLog, "leaving %zu worker(s) running for the next control plane ([pools] on_exit = \"keep\")",
                  workers_.size());
    return;
  }
  for (auto& [id, w] : workers_) begin_drain(w);
  for (auto& [name, pool] : pools_) pool.target = 0;
  push_tables(false);
  auto deadline = Clock::now() + config_.pools.drain_timeout + config_.pools.stop_grace + std::chrono::seconds(1);
  while (!workers_.empty() && Clock::now() < deadline) {
    supervisor_->process();
    link_dataplane();
    progress_drains();
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    lock.lock();
  }
  if (!workers_.empty()) AXON_LOG_WARN(kLog, "%zu worker(s) did not stop in time", workers_.size());
  if (!config_.dataplane.command.empty() && supervisor_->member(kDataplaneMember)) {
    supervisor_->stop(kDataplaneMember, config_.pools.drain_timeout + config_.pools.stop_grace);
    auto stop_deadline =
        Clock::now() + config_.pools.drain_timeout + config_.pools.stop_grace + std::chrono::seconds(1);
    while (supervisor_->member(kDataplaneMember) && Clock::now() < stop_deadline) {
      supervisor_->process();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (cgroups_) (void)cgroups_->remove_all_empty();
  save_runtime();
}

ControlPlane::Readiness ControlPlane::readiness() {
  std::lock_guard lock(mutex_);
  if (!link_.connected()) return {false, "", "waiting for the data plane (" + config_.dataplane.run_dir + ")"};
  for (const auto& [name, spec] : registry_.agents()) {
    const auto pool = pools_.find(name);
    if (pool != pools_.end() && pool->second.deleting) continue;
    const AgentStatus status = agent_status(spec);
    if (status.breaker == BreakerState::open) {
      return {false,
              "agent " + name + " cannot start its workers (" + (status.last_exit.empty() ? "?" : status.last_exit) +
                  "); its circuit breaker opened. See " + config_.log_dir + "/workers/ and fix the agent",
              ""};
    }
    if (status.warm < spec.pool.min) {
      return {false, "",
              "waiting for agent " + name + ": " + std::to_string(status.warm) + "/" + std::to_string(spec.pool.min) +
                  " worker(s) warm"};
    }
  }
  return {true, "", ""};
}

std::string ControlPlane::status_line() {
  const SystemStatus s = system_status();
  std::string line = std::to_string(s.agents) + " agent(s), " + std::to_string(s.warm) + "/" +
                     std::to_string(s.workers) + " worker(s) warm";
  if (s.breakers_open > 0) line += ", " + std::to_string(s.breakers_open) + " breaker(s) open";
  line += s.dataplane.connected
              ? ", data plane pid " + std::to_string(s.dataplane.pid) + " (" + s.dataplane.backend + ")"
              : ", data plane not connected";
  return escape_log(line);
}

}  // namespace axon::controlplane

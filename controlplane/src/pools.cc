// ControlPlane's pools: spawning, supervision events, takeover, scaling, drains and the
// views of agents and workers built from them (see control_plane.h).
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

#include "axon/common/json_reader.h"
#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

#include "api/json.h"
#include "control_plane.h"
#include "files.h"
#include "metrics_exporter.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "controlplane";
constexpr const char* kDataplaneMember = "axon-dataplane";
namespace dpc = dataplane::control;

// The process start time (clock ticks since boot, /proc/<pid>/stat field 22): with the pid
// it identifies a process across pid reuse.
std::uint64_t process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(line.substr(close_paren + 2));
  std::string field;
  // Fields after "(comm)" start at 3 (state); starttime is field 22.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

WorkerState state_from(const MemberStatus* member, const dpc::SlotInfo* slot, bool draining) {
  if (member == nullptr) return WorkerState::stopped;
  switch (member->phase) {
    case MemberPhase::backoff:
    case MemberPhase::blocked: return WorkerState::backoff;
    case MemberPhase::stopping: return WorkerState::draining;
    case MemberPhase::stopped: return WorkerState::stopped;
    case MemberPhase::starting:
    case MemberPhase::running: break;
  }
  if (draining) return WorkerState::draining;
  bool attached = slot != nullptr && slot->state == "alive" && slot->pid == member->pid && member->pid != 0;
  if (!attached) return WorkerState::starting;
  return slot->inflight > 0 || slot->depth > 0 ? WorkerState::busy : WorkerState::warm;
}

}  // namespace

// <run_dir>/controlplane-workers.json: who runs where, so a restarted control plane can
// adopt the workers instead of duplicating them. run_dir is a tmpfs: a reboot forgets it,
// as it should.
void ControlPlane::save_runtime() {
  nlohmann::json runtime = nlohmann::json::array();
  for (const auto& [id, w] : workers_) {
    auto member = supervisor_->member(id);
    nlohmann::json entry{{"id", id}, {"agent", w.agent}, {"slot", w.slot}, {"draining", w.draining}};
    if (member && member->pid > 0) {
      entry["pid"] = member->pid;
      entry["start_time"] = process_start_time(member->pid);
    }
    runtime.push_back(entry);
  }
  std::string path = config_.dataplane.run_dir + "/controlplane-workers.json";
  if (!write_atomically(path, runtime.dump() + "\n", 0640)) {
    AXON_LOG_WARN(kLog, "cannot write %s: %s; a control-plane restart could not adopt the running workers",
                  path.c_str(), std::strerror(errno));
  }
  runtime_dirty_ = false;
}

void ControlPlane::take_over() {
  std::string path = config_.dataplane.run_dir + "/controlplane-workers.json";
  std::set<pid_t> adopted_pids;
  std::ifstream in(path);
  if (in) {
    nlohmann::json runtime = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!runtime.is_array()) {
      AXON_LOG_WARN(kLog, "ignoring unreadable %s: not a JSON array", path.c_str());
      runtime = nlohmann::json::array();
    }
    for (const auto& entry : runtime) {
      std::string id, agent, slot;
      pid_t pid = 0;
      std::uint64_t start_time = 0;
      bool draining = false;
      JsonReader r(entry, path + " entry");
      r.required("id", id);
      r.required("agent", agent);
      r.required("slot", slot);
      r.optional("pid", pid);
      r.optional("start_time", start_time);
      r.optional("draining", draining);
      r.finish();
      if (r.error()) {
        AXON_LOG_WARN(kLog, "ignoring a worker entry: %s", r.error()->c_str());
        continue;
      }
      auto spec = registry_.agents().find(agent);
      bool alive = pid > 0 && start_time != 0 && process_start_time(pid) == start_time;
      if (!alive) continue;
      if (spec == registry_.agents().end() || draining) {
        // Its agent is gone (or it was being drained): stop it rather than keep a stray.
        AXON_LOG_INFO(kLog, "stopping worker %s (pid %d) left by the previous control plane: %s", id.c_str(), pid,
                      spec == registry_.agents().end() ? "its agent no longer exists" : "it was draining");
        ::kill(pid, SIGTERM);
        ++strays_stopped_;
        continue;
      }
      auto respawn = spawn_spec(spec->second, id, slot);
      if (!respawn) {
        AXON_LOG_WARN(kLog, "cannot adopt worker %s (pid %d): %s", id.c_str(), pid, respawn.message().c_str());
        continue;
      }
      auto adopted = supervisor_->adopt(id, agent, pid, std::move(respawn).value());
      if (!adopted) {
        AXON_LOG_WARN(kLog, "cannot adopt worker %s (pid %d): %s", id.c_str(), pid, adopted.message().c_str());
        continue;
      }
      Worker w;
      w.id = id;
      w.agent = agent;
      w.slot = slot;
      workers_[id] = w;
      adopted_pids.insert(pid);
      ++adopted_;
      Pool& pool = pools_[agent];
      auto dash = id.rfind('-');
      if (dash != std::string::npos) {
        pool.next_index = std::max<std::uint32_t>(pool.next_index, std::uint32_t(std::stoul(id.substr(dash + 1))) + 1);
      }
      AXON_LOG_INFO(kLog, "adopted worker %s (pid %d, agent %s, slot %s)", id.c_str(), pid, agent.c_str(),
                    slot.c_str());
    }
  }
  // Anything else in our cgroups is a stray (e.g. spawned just before a crash, before the
  // runtime file was written): stop it, so a takeover never leaves duplicates.
  if (cgroups_) {
    for (const auto& [name, spec] : registry_.agents()) {
      for (pid_t pid : cgroups_->pids(cgroup_of(spec))) {
        if (adopted_pids.contains(pid)) continue;
        AXON_LOG_INFO(kLog, "stopping stray pid %d in %s (not a worker this control plane knows)", pid,
                      cgroups_->path_of(cgroup_of(spec)).c_str());
        ::kill(pid, SIGKILL);
        ++strays_stopped_;
      }
    }
  }
  for (auto& [name, pool] : pools_) {
    std::uint32_t running = 0;
    for (const auto& [id, w] : workers_) running += w.agent == name ? 1 : 0;
    pool.target = std::clamp(std::max(pool.target, running), registry_.agents().at(name).pool.min,
                             registry_.agents().at(name).pool.max);
  }
  save_runtime();
}

// ---- spawning ----------------------------------------------------------------------------

std::string ControlPlane::cgroup_of(const AgentSpec& agent) const {
  auto tenant = registry_.tenants().find(agent.tenant);
  std::string tenant_name =
      tenant != registry_.tenants().end() ? tenant->second.name : "tenant-" + std::to_string(agent.tenant);
  return std::string(priority_name(agent.priority)) + "/" + tenant_name + "/" + agent.name;
}

Result<Ok, CgroupError> ControlPlane::ensure_cgroup(const AgentSpec& agent) {
  if (!cgroups_) return Ok{};
  std::string class_group = priority_name(agent.priority);
  CgroupLimits class_limits;
  auto weight = config_.cgroups.class_weight.find(class_group);
  if (weight != config_.cgroups.class_weight.end()) class_limits.cpu_weight = weight->second;
  if (auto ok = cgroups_->ensure(class_group, class_limits); !ok) return ok;
  const CgroupProfile& profile = config_.cgroups.profiles.at(agent.cgroup_profile);
  CgroupLimits limits;
  limits.cpu_weight = profile.cpu_weight;
  limits.cpu_max_percent = profile.cpu_max_percent;
  limits.cpuset_cpus = profile.cpuset_cpus;
  limits.cpuset_mems = profile.cpuset_mems;
  limits.memory_max = profile.memory_max;
  limits.memory_high = profile.memory_high;
  limits.pids_max = profile.pids_max;
  return cgroups_->ensure(cgroup_of(agent), limits);
}

// The slot's position in the data plane's slot list: which uid of worker_uids it gets.
std::size_t ControlPlane::slot_position(const std::string& slot) const {
  const auto& slots = link_.hello().slots;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].name == slot) return i;
  }
  return ~std::size_t(0);  // not known (yet): identity_for refuses it
}

Result<SpawnSpec, IdentityError> ControlPlane::spawn_spec(const AgentSpec& agent, const std::string& worker_id,
                                                          const std::string& slot) const {
  auto identity = identity_for(agent, worker_policy(config_), slot_position(slot));
  if (!identity) return identity.error();
  SpawnSpec spec;
  spec.argv = agent.command;
  spec.env = agent.env;
  spec.env["AXON_WORKER_SOCKET"] = config_.dataplane.run_dir + "/workers/" + slot + ".sock";
  spec.env["AXON_AGENT"] = agent.name;
  spec.env["AXON_WORKER_ID"] = worker_id;
  spec.env["AXON_TENANT"] = std::to_string(agent.tenant);
  spec.user = identity->user;
  spec.uid = identity->uid;
  spec.cgroup = cgroups_ ? cgroup_of(agent) : std::string();
  spec.log_path = config_.log_dir + "/workers/" + worker_id + ".log";
  return spec;
}

std::optional<std::string> ControlPlane::free_slot() const {
  std::set<std::string> used;
  for (const auto& [id, w] : workers_) used.insert(w.slot);
  for (const auto& [name, slot] : link_.slots()) {
    // Only vacant slots nobody of ours holds: a live slot belongs to someone (perhaps a
    // worker started by hand), a dying one is still being reclaimed.
    if (!used.contains(name) && slot.state == "vacant") return name;
  }
  return std::nullopt;
}

void ControlPlane::start_worker(const AgentSpec& agent, Pool& pool) {
  auto slot = free_slot();
  if (!slot) {
    std::string key = std::to_string(link_.slots().size());
    if (pool.no_slot_warned != key) {
      AXON_LOG_WARN(kLog,
                    "agent %s wants %u worker(s) but the data plane has no free worker slot (%zu slot(s)); raise "
                    "[dataplane] worker_slots in the data plane's config",
                    agent.name.c_str(), pool.target, link_.slots().size());
      pool.no_slot_warned = key;
    }
    return;
  }
  if (auto cgroup = ensure_cgroup(agent); !cgroup) {
    ++spawn_failures_;
    AXON_LOG_ERROR(kLog, "agent %s: %s", agent.name.c_str(), cgroup.message().c_str());
    return;
  }
  // Registry entries from before an allowlist was tightened are refused here too.
  if (auto why = check_worker_identity(agent, worker_policy(config_)); !why.empty()) {
    ++spawn_failures_;
    AXON_LOG_ERROR(kLog, "%s", why.c_str());
    return;
  }
  std::string id = agent.name + "-" + std::to_string(pool.next_index);
  auto spec = spawn_spec(agent, id, *slot);
  if (!spec) {
    ++spawn_failures_;
    AXON_LOG_ERROR(kLog, "agent %s: %s", agent.name.c_str(), spec.message().c_str());
    return;
  }
  ++pool.next_index;
  send_grant(*slot, 0);  // managed from now on: nobody may claim it until our worker does
  grant_slot(*slot, agent);
  auto started = supervisor_->start(id, agent.name, std::move(spec).value());
  if (!started) {
    ++spawn_failures_;
    AXON_LOG_ERROR(kLog, "agent %s: cannot start worker %s: %s", agent.name.c_str(), id.c_str(),
                   started.message().c_str());
    return;
  }
  send_grant(*slot, started->pid);
  Worker w;
  w.id = id;
  w.agent = agent.name;
  w.slot = *slot;
  workers_[id] = w;
  runtime_dirty_ = true;
  tables_dirty_ = true;
  AXON_LOG_INFO(kLog, "started worker %s (pid %d) for agent %s on slot %s", id.c_str(), started->pid,
                agent.name.c_str(), slot->c_str());
}

void ControlPlane::begin_drain(Worker& worker) {
  if (worker.draining) return;
  worker.draining = true;
  worker.drain_started = Clock::now();
  tables_dirty_ = true;  // the next push leaves its slot out: no new requests
  runtime_dirty_ = true;
  AXON_LOG_INFO(kLog, "draining worker %s (slot %s)", worker.id.c_str(), worker.slot.c_str());
}

void ControlPlane::on_member_event(const MemberEvent& event) {
  if (event.group == kDataplaneMember) {
    if (event.kind == MemberEvent::Kind::exited) {
      AXON_LOG_ERROR(kLog, "the data plane (pid %d) %s; restarting it", event.pid, event.detail.c_str());
    } else if (event.kind == MemberEvent::Kind::breaker_opened) {
      AXON_LOG_ERROR(kLog, "the data plane keeps crashing (%s); see %s/dataplane.log", event.detail.c_str(),
                     config_.log_dir.c_str());
    }
    return;
  }
  switch (event.kind) {
    case MemberEvent::Kind::spawned: {
      // A respawn: only this process may claim the slot. A first crash is respawned in the
      // same iteration that saw the death, usually before the data plane has reclaimed the
      // dead worker's slot; the grant then waits for that (grant_reclaimed_slots), so the
      // new worker never attaches while its predecessor's death is still being processed.
      auto it = workers_.find(event.id);
      if (it != workers_.end()) {
        const auto* slot = link_.slot(it->second.slot);
        if (slot != nullptr && slot->state != "vacant" && slot->pid != event.pid) {
          it->second.grant_pending = event.pid;
        } else {
          it->second.grant_pending = 0;
          send_grant(it->second.slot, event.pid);
        }
      }
      runtime_dirty_ = true;
      break;
    }
    case MemberEvent::Kind::exited: {
      // An exit we asked for (drain, scale-down, stop) is routine; anything else is a crash.
      auto it = workers_.find(event.id);
      if (it != workers_.end() && it->second.draining) {
        AXON_LOG_INFO(kLog, "worker %s (pid %d) %s after draining", event.id.c_str(), event.pid, event.detail.c_str());
      } else {
        AXON_LOG_WARN(kLog, "worker %s (pid %d) %s", event.id.c_str(), event.pid, event.detail.c_str());
      }
      runtime_dirty_ = true;
      break;
    }
    case MemberEvent::Kind::stopped: {
      auto it = workers_.find(event.id);
      if (it != workers_.end()) {
        AXON_LOG_INFO(kLog, "worker %s stopped; slot %s released", event.id.c_str(), it->second.slot.c_str());
        // Back to root: the user that held the slot must not attach to it again.
        send_grant(it->second.slot, 0);
        std::string path = config_.dataplane.run_dir + "/workers/" + it->second.slot + ".sock";
        if (chown(path.c_str(), 0, 0) != 0 && errno != ENOENT) {
          AXON_LOG_WARN(kLog, "cannot take %s back from the worker's user: %s", path.c_str(), std::strerror(errno));
        }
        workers_.erase(it);
      }
      runtime_dirty_ = true;
      tables_dirty_ = true;
      break;
    }
    case MemberEvent::Kind::breaker_opened:
      AXON_LOG_ERROR(kLog, "agent %s: crash loop, circuit breaker open (%s); its requests get ERROR until it closes",
                     event.group.c_str(), event.detail.c_str());
      break;
    case MemberEvent::Kind::breaker_half_open:
      AXON_LOG_INFO(kLog, "agent %s: breaker half-open, trying one worker", event.group.c_str());
      break;
    case MemberEvent::Kind::breaker_closed: AXON_LOG_INFO(kLog, "agent %s: breaker closed", event.group.c_str()); break;
    case MemberEvent::Kind::spawn_failed:
      ++spawn_failures_;
      AXON_LOG_ERROR(kLog, "worker %s: %s", event.id.c_str(), event.detail.c_str());
      break;
    case MemberEvent::Kind::respawn_scheduled: break;
  }
}

// ---- pools ---------------------------------------------------------------------------------

void ControlPlane::reconcile_pools() {
  // Spawning needs the data plane's slots; without a link the pools wait (and the data
  // plane, if it is up, keeps serving the workers it has).
  if (!link_.connected()) return;
  for (auto& [name, pool] : pools_) {
    auto agent = registry_.agents().find(name);
    if (agent == registry_.agents().end() || pool.deleting) continue;
    std::vector<Worker*> active;
    for (auto& [id, w] : workers_) {
      if (w.agent == name && !w.draining) active.push_back(&w);
    }
    if (active.size() < pool.target) {
      for (std::size_t n = active.size(); n < pool.target; ++n) start_worker(agent->second, pool);
    } else if (active.size() > pool.target) {
      // Drain the newest first: the oldest have warm caches.
      std::sort(active.begin(), active.end(), [](const Worker* a, const Worker* b) { return a->id > b->id; });
      for (std::size_t n = pool.target; n < active.size(); ++n) begin_drain(*active[n - pool.target]);
    }
  }
}

// Issue 11 item 13: a worker that stops taking requests (SIGSTOP, a deadlock) is reported
// "stalled" by the data plane, which routes around it and answers what it held. The worker
// cannot be trusted to recover, so it is killed; the pool respawns it into the same slot.
void ControlPlane::replace_stalled() {
  for (auto& [id, w] : workers_) {
    if (w.draining) continue;
    const auto* slot = link_.slot(w.slot);
    if (slot == nullptr || slot->state != "stalled" || slot->pid <= 0) continue;
    const auto member = supervisor_->member(id);
    if (!member || member->pid != slot->pid || w.replaced_pid == member->pid) continue;
    w.replaced_pid = member->pid;
    if (supervisor_->kill(id)) {
      ++replacements_["stalled"];
      AXON_LOG_WARN(kLog, "worker %s (pid %d) stalled with requests queued; killed, the pool replaces it", id.c_str(),
                    member->pid);
    }
  }
}

void ControlPlane::grant_reclaimed_slots() {
  for (auto& [id, w] : workers_) {
    if (w.grant_pending == 0) continue;
    const auto member = supervisor_->member(id);
    if (!member || member->pid != w.grant_pending) {
      w.grant_pending = 0;  // that process is gone already; its successor has its own grant
      continue;
    }
    const auto* slot = link_.slot(w.slot);
    if (slot != nullptr && slot->state != "vacant") continue;
    send_grant(w.slot, w.grant_pending);
    w.grant_pending = 0;
  }
}

void ControlPlane::progress_drains() {
  auto now = Clock::now();
  // Stopping a worker that has no process (backoff, e.g. behind an open breaker) reports
  // `stopped` at once, and on_member_event then erases it from workers_: so stop only after
  // the walk over workers_ (issue 11 item 7).
  std::vector<std::string> to_stop;
  for (auto& [id, w] : workers_) {
    if (!w.draining || w.stop_requested) continue;
    // The drain starts once the data plane has tables without this slot.
    if (tables_dirty_) continue;
    auto slot = link_.slots().find(w.slot);
    bool idle = slot == link_.slots().end() || slot->second.state != "alive" ||
                (slot->second.inflight == 0 && slot->second.depth == 0);
    bool timed_out = now - w.drain_started >= config_.pools.drain_timeout;
    if (idle || timed_out || !link_.connected()) {
      if (timed_out && !idle) {
        AXON_LOG_WARN(kLog, "worker %s: drain timeout with %llu request(s) in flight; the data plane answers them",
                      id.c_str(), static_cast<unsigned long long>(slot->second.inflight));
      }
      w.stop_requested = true;
      to_stop.push_back(id);
    }
  }
  for (const auto& id : to_stop) supervisor_->stop(id, config_.pools.stop_grace);
  // Deleted agents: forget them once their last worker is gone.
  for (auto it = pools_.begin(); it != pools_.end();) {
    bool has_workers = false;
    for (const auto& [id, w] : workers_) has_workers |= w.agent == it->first;
    if (it->second.deleting && !has_workers) {
      supervisor_->forget_group(it->first);
      autoscaler_.forget(it->first);
      if (cgroups_ && !it->second.cgroup.empty()) {
        if (auto removed = cgroups_->remove_if_empty(it->second.cgroup); !removed) {
          AXON_LOG_WARN(kLog, "agent %s deleted but its cgroup stays: %s", it->first.c_str(),
                        removed.message().c_str());
        }
      }
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
}

bool ControlPlane::worker_starting() const {
  // Only recent spawns: a worker that never attaches must not keep the loop at 100 Hz.
  const std::int64_t recent_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() -
      5000;
  for (const auto& [id, w] : workers_) {
    auto member = supervisor_->member(id);
    if (!member || member->started_at_ms < recent_ms) continue;
    auto slot = link_.slots().find(w.slot);
    if (state_from(&*member, slot != link_.slots().end() ? &slot->second : nullptr, w.draining) ==
        WorkerState::starting) {
      return true;
    }
  }
  return false;
}

// ---- views ---------------------------------------------------------------------------------

AgentStatus ControlPlane::agent_status(const AgentSpec& spec) const {
  AgentStatus status;
  status.spec = spec;
  for (const auto& [id, w] : workers_) {
    if (w.agent != spec.name) continue;
    auto member = supervisor_->member(id);
    if (member && member->pid > 0) ++status.workers;
    auto slot = link_.slots().find(w.slot);
    WorkerState state =
        state_from(member ? &*member : nullptr, slot != link_.slots().end() ? &slot->second : nullptr, w.draining);
    if (state == WorkerState::warm || state == WorkerState::busy) ++status.warm;
  }
  GroupStatus group = supervisor_->group(spec.name);
  status.breaker = group.breaker;
  status.restarts = group.restarts;
  status.crashes_in_window = group.crashes_in_window;
  status.breaker_retry_in_ms = group.retry_in_ms;
  status.last_exit = group.last_exit;
  return status;
}

WorkerInfo ControlPlane::worker_info(const Worker& w) const {
  WorkerInfo info;
  info.id = w.id;
  info.agent = w.agent;
  info.slot = w.slot;
  auto member = supervisor_->member(w.id);
  auto slot = link_.slots().find(w.slot);
  const dpc::SlotInfo* slot_info = slot != link_.slots().end() ? &slot->second : nullptr;
  info.state = state_from(member ? &*member : nullptr, slot_info, w.draining);
  if (member) {
    info.pid = member->pid;
    info.started_at_ms = member->started_at_ms;
    info.restarts = member->restarts;
    info.last_exit = member->last_exit;
    info.crash_streak = member->crash_streak;
    info.last_respawn_delay_ms = member->last_respawn_delay_ms;
    info.retry_in_ms = member->retry_in_ms;
  }
  auto agent = registry_.agents().find(w.agent);
  if (cgroups_ && agent != registry_.agents().end()) info.cgroup = cgroups_->name() + "/" + cgroup_of(agent->second);
  if (slot_info != nullptr && slot_info->pid == info.pid && info.pid != 0) {
    info.inflight = slot_info->inflight;
    info.ring_depth = slot_info->depth;
    info.ring_depth_interactive = slot_info->depth_interactive;
    info.ring_depth_background = slot_info->depth_background;
    info.completed = slot_info->completed;
  }
  return info;
}

ApiResult<const AgentSpec*> ControlPlane::find_agent(const std::string& name) const {
  auto it = registry_.agents().find(name);
  auto pool = pools_.find(name);
  if (it == registry_.agents().end() || (pool != pools_.end() && pool->second.deleting)) {
    return api_error(ApiErrorCode::not_found, "no agent named '" + name + "'");
  }
  return &it->second;
}

ApiResult<ControlPlane::Worker*> ControlPlane::find_worker(const std::string& id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return api_error(ApiErrorCode::not_found, "no worker with id '" + id + "'");
  return &it->second;
}

}  // namespace axon::controlplane

// Supervisor's read-only view: members and groups as MemberStatus / GroupStatus for the
// REST API and the metrics.
#include <string>
#include <vector>

#include "axon/controlplane/supervisor.h"

#include "supervisor_members.h"

namespace axon::controlplane {

MemberStatus Supervisor::status_of(const Member& m) const {
  MemberStatus s;
  s.id = m.id;
  s.group = m.group;
  s.pid = m.pid;
  s.phase = m.phase;
  s.restarts = m.restarts;
  s.started_at_ms = m.started_at_ms;
  s.last_exit = m.last_exit;
  s.adopted = m.adopted;
  if (m.phase == MemberPhase::backoff && m.due) s.retry_in_ms = ms_until(*m.due, now());
  s.crash_streak = m.backoff.streak();
  s.last_respawn_delay_ms = m.last_delay.count();
  return s;
}

std::optional<MemberStatus> Supervisor::member(const std::string& id) const {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return status_of(*it->second);
}

std::vector<MemberStatus> Supervisor::members() const {
  std::vector<MemberStatus> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(status_of(*m));
  return out;
}

GroupStatus Supervisor::group(const std::string& group) const {
  GroupStatus s;
  s.group = group;
  auto it = groups_.find(group);
  if (it == groups_.end()) return s;
  const Group& g = *it->second;
  SteadyTime t = now();
  s.breaker = g.breaker.state();
  s.crashes_in_window = g.breaker.crashes_in_window(t);
  if (auto at = g.breaker.half_open_at()) s.retry_in_ms = ms_until(*at, t);
  s.restarts = g.restarts;
  s.last_exit = g.last_exit;
  return s;
}

}  // namespace axon::controlplane

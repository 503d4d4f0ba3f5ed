// A plan: a profile placed on this host. Every section of the profile becomes knobs with
// wanted values (one per CPU, NUMA node, IRQ, interface or group it covers), or an item
// already known to be skipped with its reason (no cpufreq, no data plane cores known...).
#pragma once

#include <string>
#include <vector>

#include "axon/tuning/tuning.h"

#include "knobs.h"
#include "profile.h"

namespace axon::tuning {

struct PlanItem {
  Knob knob;
  Want want;
  std::string skip;  // non-empty: not applicable on this host, and why
};

struct Plan {
  Profile profile;
  HostFacts host;
  std::vector<PlanItem> items;
  std::vector<CmdlineParam> cmdline;
  std::string cmdline_fix;
  std::vector<std::string> notes;
};

TResult<Plan> make_plan(const std::string& profile, const Options& options);

// What to write so that `live` meets `want`; nullopt when it already does. Sets `why`
// (and returns nullopt) when the live value cannot be compared (">N" on a non-number).
std::optional<std::string> target_value(const Knob& knob, const Want& want, const std::string& live, std::string& why);

}  // namespace axon::tuning

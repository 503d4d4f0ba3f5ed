// The five verbs (see tuning.h). check/verify/diff only read. apply and rollback hold the
// state lock and follow one rule: the snapshot on disk always names every knob that may
// differ from its original value, before that knob is written.
#include <dirent.h>

#include <algorithm>
#include <set>

#include "axon/tuning/tuning.h"

#include "host.h"
#include "plan.h"
#include "snapshot.h"

namespace axon::tuning {
namespace {

Item base_item(const PlanItem& p) {
  Item item;
  item.section = p.knob.section;
  item.knob = p.knob.label;
  item.group = p.knob.group;
  item.where = p.knob.where();
  item.want = p.want.display();
  return item;
}

Report base_report(Verb verb, const Plan& plan) {
  Report r;
  r.verb = verb;
  r.profile = plan.profile.name;
  r.includes = plan.profile.includes;
  r.description = plan.profile.description;
  r.host = plan.host;
  r.cmdline = plan.cmdline;
  r.cmdline_fix = plan.cmdline_fix;
  r.notes = plan.notes;
  return r;
}

// Reads one planned knob and compares it: ok, a needed change (`target`), or skipped.
struct Assessment {
  Item item;
  std::optional<std::string> target;
};

Assessment assess(const Options& options, const PlanItem& p) {
  Assessment a{base_item(p), std::nullopt};
  if (!p.skip.empty()) {
    a.item.status = Status::skipped;
    a.item.reason = p.skip;
    return a;
  }
  std::string why;
  auto live = read_knob(options.root, p.knob, why);
  if (!live) {
    a.item.status = Status::skipped;
    a.item.reason = why;
    return a;
  }
  a.item.live = live.value();
  a.target = target_value(p.knob, p.want, a.item.live, why);
  if (!why.empty()) {
    a.item.status = Status::skipped;
    a.item.reason = why;
  }
  return a;
}

TResult<Ok> check_namespace(const Snapshot& s) {
  if (s.has_netns_entries() && !s.netns.empty() && s.netns != current_netns()) {
    return make_error(TuningError::wrong_namespace,
                      "the snapshot was taken in network namespace " + s.netns + " and this is " + current_netns() +
                          "; run the same command in that namespace (ip netns exec NAME ...)");
  }
  return Ok{};
}

TResult<Ok> check_root(const Snapshot& s, const Options& options) {
  if (s.root != options.root) {
    return make_error(TuningError::invalid_input, "the snapshot in " + options.state_dir + " was taken under root " +
                                                      s.root + ", not " + options.root + "; pass --root " + s.root);
  }
  return Ok{};
}

// Writes `value` and reads it back into `item`; false (item skipped) if it cannot.
bool write_and_read_back(const Options& options, const Knob& knob, const std::string& value, Item& item) {
  std::string why;
  auto w = write_knob(options.root, knob, value, why);
  if (!w) {
    item.reason = why;
    return false;
  }
  auto back = read_knob(options.root, knob, why);
  item.now = back ? back.value() : value;
  return true;
}

TResult<Report> read_only_verb(Verb verb, const std::string& profile, const Options& options) {
  auto plan = make_plan(profile, options);
  if (!plan) return plan.error();
  Report report = base_report(verb, plan.value());
  for (const auto& p : plan.value().items) {
    Assessment a = assess(options, p);
    if (a.item.status != Status::skipped) {
      if (a.target) {
        a.item.status = verb == Verb::check ? Status::change : Status::drift;
        if (verb == Verb::check) a.item.now = *a.target;
      } else {
        a.item.status = Status::ok;
      }
    }
    if (verb == Verb::diff && a.item.status != Status::drift) continue;
    report.items.push_back(std::move(a.item));
  }
  if (verb == Verb::diff) {
    std::vector<CmdlineParam> missing;
    for (const auto& c : report.cmdline) {
      if (!c.ok) missing.push_back(c);
    }
    report.cmdline = missing;
  }
  auto snap = load_snapshot(options);
  if (snap && snap.value()) {
    const Snapshot& s = *snap.value();
    report.snapshot = snapshot_path(options);
    report.notes.push_back("profile " + s.profile + " is applied (" + s.state + " " + s.updated + ", " +
                           std::to_string(s.entries.size()) + " original values in " + report.snapshot + ")");
  }
  return report;
}

}  // namespace

std::size_t Report::count(Status status) const {
  return std::size_t(std::count_if(items.begin(), items.end(), [&](const Item& i) { return i.status == status; }));
}

bool Report::in_force() const {
  return count(Status::drift) == 0 &&
         std::all_of(cmdline.begin(), cmdline.end(), [](const CmdlineParam& c) { return c.ok; });
}

TResult<Report> check(const std::string& profile, const Options& options) {
  return read_only_verb(Verb::check, profile, options);
}

TResult<Report> verify(const std::string& profile, const Options& options) {
  return read_only_verb(Verb::verify, profile, options);
}

TResult<Report> diff(const std::string& profile, const Options& options) {
  return read_only_verb(Verb::diff, profile, options);
}

TResult<Report> apply(const std::string& profile, const Options& options, const Progress& progress) {
  auto lock = StateLock::acquire(options);
  if (!lock) return lock.error();
  auto plan_r = make_plan(profile, options);
  if (!plan_r) return plan_r.error();
  const Plan& plan = plan_r.value();
  Report report = base_report(Verb::apply, plan);
  report.snapshot = snapshot_path(options);

  auto loaded = load_snapshot(options);
  if (!loaded) return loaded.error();
  Snapshot snap;
  if (loaded.value()) {
    snap = *loaded.value();
    if (auto r = check_root(snap, options); !r) return r.error();
    if (auto r = check_namespace(snap); !r) return r.error();
  }
  snap.root = options.root;
  snap.netns = current_netns();

  // 1. Read everything and decide; record the original of every knob about to change.
  std::vector<Assessment> assessed;
  std::set<std::string> planned_keys;
  std::set<std::string> added_keys;
  for (const auto& p : plan.items) {
    assessed.push_back(assess(options, p));
    if (p.skip.empty()) planned_keys.insert(p.knob.key());
    const Assessment& a = assessed.back();
    if (a.item.status != Status::skipped && a.target && snap.find(p.knob.key()) == nullptr) {
      std::string why;
      auto original = read_original(options.root, p.knob, why);
      if (!original) {
        assessed.back().item.status = Status::skipped;
        assessed.back().item.reason = why;
        continue;
      }
      snap.entries.push_back(SnapshotEntry{p.knob, original.value()});
      added_keys.insert(p.knob.key());
    }
  }
  snap.profile = plan.profile.name;
  snap.state = "applying";
  if (auto r = save_snapshot(options, snap); !r) return r.error();

  // 2. A profile switch: knobs the previous profile changed and this one does not set go
  // back to their originals (they stay in the snapshot until that worked).
  std::set<std::string> restored_keys;
  for (auto it = snap.entries.rbegin(); it != snap.entries.rend(); ++it) {
    if (planned_keys.contains(it->knob.key())) continue;
    Item item;
    item.section = it->knob.section;
    item.knob = it->knob.label;
    item.group = it->knob.group;
    item.where = it->knob.where();
    item.want = it->original;
    std::string why;
    auto live = read_knob(options.root, it->knob, why);
    item.live = live ? live.value() : "";
    if (write_and_read_back(options, it->knob, it->original, item)) {
      item.status = Status::restored;
      item.reason = "not in profile " + plan.profile.name + ": original restored";
      restored_keys.insert(it->knob.key());
    } else if (!live && live.code() == KnobError::missing) {
      item.status = Status::restored;
      item.reason = "gone from this host: nothing to restore";
      restored_keys.insert(it->knob.key());
    } else {
      item.status = Status::failed;
    }
    if (progress) progress(item);
    report.items.push_back(std::move(item));
  }

  // 3. Apply.
  std::set<std::string> unchanged_new;
  for (std::size_t i = 0; i < assessed.size(); ++i) {
    Assessment& a = assessed[i];
    const PlanItem& p = plan.items[i];
    if (a.item.status == Status::skipped || !a.target) {
      if (a.item.status != Status::skipped) a.item.status = Status::ok;
      report.items.push_back(std::move(a.item));
      continue;
    }
    if (write_and_read_back(options, p.knob, *a.target, a.item)) {
      a.item.status = Status::changed;
      std::string why;
      if (target_value(p.knob, p.want, a.item.now, why)) {
        // Written but not taken in full: hugepages on fragmented memory, a clamped value.
        a.item.reason = "the kernel kept " + a.item.now + " after " + *a.target + " was written";
      }
    } else {
      a.item.status = Status::skipped;
      if (added_keys.contains(p.knob.key())) unchanged_new.insert(p.knob.key());
    }
    if (progress) progress(a.item);
    report.items.push_back(std::move(a.item));
  }

  // 4. The final snapshot: without what was restored, and without knobs this apply
  // recorded but could not change (their live value is still the original).
  std::vector<SnapshotEntry> kept;
  for (auto& e : snap.entries) {
    const std::string key = e.knob.key();
    if (restored_keys.contains(key) || unchanged_new.contains(key)) continue;
    kept.push_back(std::move(e));
  }
  snap.entries = std::move(kept);
  snap.state = "applied";
  if (auto r = save_snapshot(options, snap); !r) return r.error();
  return report;
}

TResult<Report> rollback(const Options& options, const Progress& progress) {
  auto lock = StateLock::acquire(options);
  if (!lock) return lock.error();
  Report report;
  report.verb = Verb::rollback;
  // Facts for the report header only: a broken data plane config must not stop a rollback.
  Options facts_options = options;
  facts_options.dataplane_config.clear();
  if (auto host = read_host(facts_options)) report.host = host.value();
  auto loaded = load_snapshot(options);
  if (!loaded) return loaded.error();
  if (!loaded.value()) {
    report.notes.push_back("nothing to roll back: no snapshot in " + options.state_dir);
    return report;
  }
  Snapshot snap = *loaded.value();
  if (auto r = check_root(snap, options); !r) return r.error();
  if (auto r = check_namespace(snap); !r) return r.error();
  report.profile = snap.profile;
  report.snapshot = snapshot_path(options);
  if (snap.state != "applied") {
    report.notes.push_back("the last apply of " + snap.profile + " did not finish (state " + snap.state +
                           "): restoring every value it recorded");
  }

  std::vector<SnapshotEntry> failed;
  for (auto it = snap.entries.rbegin(); it != snap.entries.rend(); ++it) {
    Item item;
    item.section = it->knob.section;
    item.knob = it->knob.label;
    item.group = it->knob.group;
    item.where = it->knob.where();
    item.want = it->original;
    std::string why;
    auto live = read_knob(options.root, it->knob, why);
    item.live = live ? live.value() : "";
    if (!live && live.code() == KnobError::missing) {
      item.status = Status::skipped;
      item.reason = why + "; nothing to restore";
    } else if (write_and_read_back(options, it->knob, it->original, item)) {
      item.status = Status::restored;
      if (!same_value(it->knob, item.now, it->original)) {
        item.reason = "the kernel kept " + item.now + " after " + it->original + " was written";
      }
    } else {
      item.status = Status::failed;
      failed.push_back(*it);
    }
    if (progress) progress(item);
    report.items.push_back(std::move(item));
  }
  if (failed.empty()) {
    if (auto r = remove_snapshot(options); !r) return r.error();
    report.notes.push_back("snapshot removed: the host is back to its values from before " + snap.profile);
  } else {
    std::reverse(failed.begin(), failed.end());
    snap.entries = failed;
    snap.state = "rollback-incomplete";
    if (auto r = save_snapshot(options, snap); !r) return r.error();
    report.notes.push_back(std::to_string(failed.size()) + " value(s) could not be restored and stay in " +
                           report.snapshot + "; fix the cause shown and run rollback again");
  }
  return report;
}

TResult<std::vector<ProfileInfo>> list_profiles(const Options& options) {
  std::vector<ProfileInfo> out;
  std::set<std::string> seen;
  for (const auto& dir : options.profile_dirs) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() > 5 && name.ends_with(".toml")) names.push_back(name.substr(0, name.size() - 5));
      }
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      if (!seen.insert(name).second) continue;
      ProfileInfo info;
      info.name = name;
      info.path = dir + "/" + name + ".toml";
      auto p = load_profile(info.path, {dir});
      if (p) {
        info.description = p.value().description;
        info.includes = p.value().includes;
      } else {
        info.description = "(invalid: " + p.message() + ")";
      }
      out.push_back(std::move(info));
    }
  }
  return out;
}

TResult<std::optional<std::string>> applied_profile(const Options& options) {
  auto snap = load_snapshot(options);
  if (!snap) return snap.error();
  if (!snap.value()) return std::optional<std::string>{};
  return std::optional<std::string>(snap.value()->profile);
}

const char* to_string(Verb verb) noexcept {
  switch (verb) {
    case Verb::check: return "check";
    case Verb::apply: return "apply";
    case Verb::verify: return "verify";
    case Verb::diff: return "diff";
    case Verb::rollback: return "rollback";
  }
  return "?";
}

const char* to_string(Status status) noexcept {
  switch (status) {
    case Status::ok: return "ok";
    case Status::change: return "change";
    case Status::changed: return "changed";
    case Status::skipped: return "skipped";
    case Status::drift: return "drift";
    case Status::restored: return "restored";
    case Status::failed: return "failed";
  }
  return "?";
}

const char* to_string(TuningError error) noexcept {
  switch (error) {
    case TuningError::profile_not_found: return "profile_not_found";
    case TuningError::invalid_profile: return "invalid_profile";
    case TuningError::invalid_input: return "invalid_input";
    case TuningError::io_error: return "io_error";
    case TuningError::snapshot_corrupt: return "snapshot_corrupt";
    case TuningError::locked: return "locked";
    case TuningError::wrong_namespace: return "wrong_namespace";
    case TuningError::not_netns: return "not_netns";
  }
  return "?";
}

}  // namespace axon::tuning

// Reports as text (axonctl, logs) and JSON (the REST API, axonctl --json).
#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "axon/tuning/tuning.h"

#include "cpus.h"

namespace axon::tuning {
namespace {

std::string cpus_or_dash(const std::vector<int>& cpus) {
  return cpus.empty() ? "-" : format_cpulist(cpus);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string clip(const std::string& s, std::size_t width) {
  if (s.size() <= width) return s;
  return s.substr(0, width - 3) + "...";
}

std::string result_text(const Item& item) {
  switch (item.status) {
    case Status::ok: return "ok";
    case Status::change: return "change to " + item.now;
    case Status::changed: return "changed to " + item.now;
    case Status::skipped: return "skipped";
    case Status::drift: return "DRIFT";
    case Status::restored: return "restored " + item.now;
    case Status::failed: return "FAILED";
  }
  return "?";
}

struct Line {
  const Item* item;
  std::size_t more;  // items collapsed into this line
};

bool same_outcome(const Item& a, const Item& b) {
  return a.section == b.section && a.group == b.group && a.status == b.status && a.live == b.live && a.want == b.want &&
         a.now == b.now && a.reason == b.reason;
}

}  // namespace

std::string render_text(const Report& r, bool verbose) {
  std::ostringstream out;
  out << "axon tuning " << to_string(r.verb);
  if (!r.profile.empty()) out << ": profile " << r.profile;
  if (!r.includes.empty()) out << " (includes " << join(r.includes, ", ") << ")";
  out << "\n";
  if (!r.description.empty()) out << "  " << r.description << "\n";
  const HostFacts& h = r.host;
  out << "host: CPUs " << cpus_or_dash(h.online_cpus) << ", NUMA nodes " << cpus_or_dash(h.numa_nodes)
      << ", data plane cores " << cpus_or_dash(h.dataplane_cpus);
  if (!h.cores_from.empty()) out << " (from " << h.cores_from << ")";
  out << ", housekeeping " << (h.dataplane_cpus.empty() ? "-" : cpus_or_dash(h.housekeeping_cpus)) << ", interfaces "
      << (h.interfaces.empty() ? "-" : join(h.interfaces, ",")) << ", cgroups "
      << (h.cgroup_mode.empty() ? "-" : h.cgroup_mode) << "\n";

  // Collapse runs of one group with one outcome (per-CPU, per-IRQ knobs) unless verbose.
  std::vector<Line> lines;
  for (const auto& item : r.items) {
    if (!verbose && !lines.empty() && same_outcome(*lines.back().item, item)) {
      ++lines.back().more;
      continue;
    }
    lines.push_back(Line{&item, 0});
  }
  if (!lines.empty()) {
    std::size_t wk = 4, wn = 3, ww = 4;
    std::vector<std::string> labels;
    for (const auto& l : lines) {
      std::string label = l.item->knob;
      if (l.more > 0) label += " (+" + std::to_string(l.more) + " like it)";
      labels.push_back(label);
      wk = std::max(wk, std::min<std::size_t>(label.size(), 58));
      wn = std::max(wn, std::min<std::size_t>(l.item->live.size(), 24));
      ww = std::max(ww, std::min<std::size_t>(l.item->want.size(), 24));
    }
    out << "\n";
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%-8s %-*s %-*s %-*s %s\n", "SECTION", int(wk), "KNOB", int(wn), "NOW", int(ww),
                  "WANT", "RESULT");
    out << buf;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const Item& it = *lines[i].item;
      std::snprintf(buf, sizeof(buf), "%-8s %-*s %-*s %-*s %s\n", it.section.c_str(), int(wk),
                    clip(labels[i], wk).c_str(), int(wn), clip(it.live.empty() ? "-" : it.live, wn).c_str(), int(ww),
                    clip(it.want, ww).c_str(), result_text(it).c_str());
      out << buf;
      if (!it.reason.empty())
        out << "         " << (it.status == Status::skipped ? "why: " : "note: ") << it.reason << "\n";
    }
  }

  if (!r.cmdline.empty()) {
    out << "\nkernel command line (takes effect only at boot; never changed at run time):\n";
    for (const auto& c : r.cmdline) {
      out << "  " << (c.ok ? "ok       " : c.unknown ? "UNKNOWN  " : "MISSING  ") << c.want;
      if (!c.ok && !c.unknown) out << "  (now: " << (c.present.empty() ? "absent" : c.present) << ")";
      out << "\n";
    }
    if (!r.cmdline_fix.empty()) {
      out << "  to add them, append this to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, and reboot:\n"
          << "    " << r.cmdline_fix << "\n";
    }
  }
  if (!r.notes.empty()) {
    out << "\n";
    for (const auto& n : r.notes) out << "note: " << n << "\n";
  }

  out << "\nsummary: ";
  std::vector<std::string> parts;
  auto part = [&](Status s, const char* what) {
    if (const std::size_t n = r.count(s)) parts.push_back(std::to_string(n) + " " + what);
  };
  part(Status::change, "to change");
  part(Status::changed, "changed");
  part(Status::restored, "restored");
  part(Status::drift, "drifted");
  part(Status::failed, "FAILED");
  part(Status::ok, "already set");
  part(Status::skipped, "skipped");
  const auto missing = std::count_if(r.cmdline.begin(), r.cmdline.end(), [](const CmdlineParam& c) { return !c.ok; });
  if (missing > 0) parts.push_back(std::to_string(missing) + " kernel parameter(s) missing");
  if (parts.empty()) parts.push_back("nothing to do");
  out << join(parts, ", ");
  if (r.verb == Verb::verify) out << (r.in_force() ? "; profile in force" : "; profile NOT in force");
  out << "\n";
  return out.str();
}

std::string render_json(const Report& r) {
  using nlohmann::json;
  json items = json::array();
  for (const auto& i : r.items) {
    items.push_back({{"section", i.section},
                     {"knob", i.knob},
                     {"group", i.group},
                     {"where", i.where},
                     {"live", i.live},
                     {"want", i.want},
                     {"now", i.now},
                     {"status", to_string(i.status)},
                     {"reason", i.reason}});
  }
  json cmdline = json::array();
  for (const auto& c : r.cmdline) {
    cmdline.push_back({{"want", c.want}, {"present", c.present}, {"ok", c.ok}, {"unknown", c.unknown}});
  }
  json summary = json::object();
  for (Status s : {Status::ok, Status::change, Status::changed, Status::skipped, Status::drift, Status::restored,
                   Status::failed}) {
    summary[to_string(s)] = r.count(s);
  }
  const HostFacts& h = r.host;
  json j = {{"verb", to_string(r.verb)},
            {"profile", r.profile},
            {"includes", r.includes},
            {"description", r.description},
            {"host",
             {{"online_cpus", format_cpulist(h.online_cpus)},
              {"numa_nodes", format_cpulist(h.numa_nodes)},
              {"dataplane_cpus", format_cpulist(h.dataplane_cpus)},
              {"housekeeping_cpus", format_cpulist(h.housekeeping_cpus)},
              {"cores_from", h.cores_from},
              {"interfaces", h.interfaces},
              {"cgroup_mode", h.cgroup_mode}}},
            {"items", items},
            {"cmdline", cmdline},
            {"cmdline_fix", r.cmdline_fix},
            {"snapshot", r.snapshot},
            {"notes", r.notes},
            {"summary", summary},
            {"in_force", r.in_force()}};
  return j.dump(2);
}

TResult<Report> report_from_json(const std::string& text) {
  using nlohmann::json;
  const json j = json::parse(text, nullptr, false);
  auto bad = [](const std::string& what) {
    return make_error(TuningError::invalid_input, "not a tuning report: " + what);
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  Report r;
  try {
    const std::string verb = j.at("verb").get<std::string>();
    bool known = false;
    for (Verb v : {Verb::check, Verb::apply, Verb::verify, Verb::diff, Verb::rollback}) {
      if (verb == to_string(v)) {
        r.verb = v;
        known = true;
      }
    }
    if (!known) return bad("verb '" + verb + "'");
    r.profile = j.value("profile", "");
    r.includes = j.value("includes", std::vector<std::string>{});
    r.description = j.value("description", "");
    const json& h = j.at("host");
    auto cpus = [&](const char* key) { return parse_cpulist(h.value(key, "")).value_or(CpuSet{}); };
    r.host.online_cpus = cpus("online_cpus");
    r.host.numa_nodes = cpus("numa_nodes");
    r.host.dataplane_cpus = cpus("dataplane_cpus");
    r.host.housekeeping_cpus = cpus("housekeeping_cpus");
    r.host.cores_from = h.value("cores_from", "");
    r.host.interfaces = h.value("interfaces", std::vector<std::string>{});
    r.host.cgroup_mode = h.value("cgroup_mode", "");
    for (const auto& i : j.at("items")) {
      Item item;
      item.section = i.value("section", "");
      item.knob = i.value("knob", "");
      item.group = i.value("group", "");
      item.where = i.value("where", "");
      item.live = i.value("live", "");
      item.want = i.value("want", "");
      item.now = i.value("now", "");
      item.reason = i.value("reason", "");
      const std::string status = i.value("status", "");
      bool ok = false;
      for (Status st : {Status::ok, Status::change, Status::changed, Status::skipped, Status::drift, Status::restored,
                        Status::failed}) {
        if (status == to_string(st)) {
          item.status = st;
          ok = true;
        }
      }
      if (!ok) return bad("item status '" + status + "'");
      r.items.push_back(std::move(item));
    }
    for (const auto& c : j.at("cmdline")) {
      r.cmdline.push_back(
          CmdlineParam{c.value("want", ""), c.value("present", ""), c.value("ok", false), c.value("unknown", false)});
    }
    r.cmdline_fix = j.value("cmdline_fix", "");
    r.snapshot = j.value("snapshot", "");
    r.notes = j.value("notes", std::vector<std::string>{});
  } catch (const json::exception& e) {
    return bad(e.what());
  }
  return r;
}

}  // namespace axon::tuning

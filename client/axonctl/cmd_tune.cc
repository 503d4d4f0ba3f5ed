// axonctl tune: host tuning profiles on this host (axon::tuning), like tuned-adm:
//   axonctl tune list
//   axonctl tune check|apply|verify|diff --profile NAME [--dataplane-config FILE | --cores LIST]
//   axonctl tune rollback
// It runs locally (apply and rollback need root) and shares the state directory, its lock
// and its snapshot with the control plane's tuning component. Exit codes: 0 done (verify:
// profile in force), 1 verify found drift / rollback left values / an I/O error, 2 a bad
// command line or profile.
#include <linux/limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "axon/tuning/tuning.h"

#include "api_call.h"
#include "commands.h"

namespace axon::ctl {
namespace {

struct TuneOptions {
  std::string profile;
  std::string root = "/";
  std::string state_dir = "/var/lib/axon/tuning";
  std::vector<std::string> profile_dirs;
  std::string dataplane_config;
  std::string cores;
  std::vector<std::string> interfaces;
  bool netns_only = false;
  bool all = false;
  bool remote = false;
};

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The installed profile directories, then those near the binary: <prefix>/share for an
// install under another prefix, and the source tree's tuning/profiles for a build tree.
std::vector<std::string> default_profile_dirs() {
  std::vector<std::string> dirs = {"/etc/axon/tuning", "/usr/share/axon/tuning/profiles"};
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return dirs;
  std::string dir(exe, std::size_t(n));
  for (int up = 0; up < 5; ++up) {
    const auto slash = dir.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    dir.resize(slash);
    for (const char* sub : {"/share/axon/tuning/profiles", "/tuning/profiles"}) {
      if (is_file(dir + sub + "/balanced.toml")) {
        dirs.push_back(dir + sub);
        return dirs;
      }
    }
  }
  return dirs;
}

int exit_for(tuning::TuningError e) {
  switch (e) {
    case tuning::TuningError::profile_not_found:
    case tuning::TuningError::invalid_profile:
    case tuning::TuningError::invalid_input:
    case tuning::TuningError::not_netns: return kExitUsage;
    default: return kExitFailure;
  }
}

int run_remote(GlobalOptions& global, const TuneOptions& o, tuning::Verb verb);

int run(GlobalOptions& global, const TuneOptions& o, tuning::Verb verb) {
  if (o.remote) return run_remote(global, o, verb);
  tuning::Options options;
  options.root = o.root;
  options.state_dir = o.state_dir;
  options.profile_dirs = o.profile_dirs.empty() ? default_profile_dirs() : o.profile_dirs;
  options.interfaces = o.interfaces;
  options.netns_only = o.netns_only;
  options.dataplane_config = o.dataplane_config;
  if (!o.cores.empty()) {
    auto cores = tuning::parse_cpu_list(o.cores);
    if (!cores || cores->empty()) {
      print_error_to(global, "tune: --cores '" + o.cores + "' is not a CPU list like 2-3,6");
      return kExitUsage;
    }
    options.cores = *cores;
  } else if (options.dataplane_config.empty() && o.root == "/" && is_file("/etc/axon/dataplane.toml")) {
    options.dataplane_config = "/etc/axon/dataplane.toml";
  }
  const bool changes = verb == tuning::Verb::apply || verb == tuning::Verb::rollback;
  if (changes && o.root == "/" && ::geteuid() != 0) {
    print_error_to(global, std::string("tune ") + tuning::to_string(verb) +
                               " changes host settings and needs root (try sudo); check, verify and diff do not");
    return kExitUsage;
  }
  // Progress on stderr as each knob is written, so a long apply shows where it is.
  tuning::Progress progress;
  if (global.verbose && !global.json) {
    progress = [&global](const tuning::Item& item) {
      std::fprintf(global.err, "axonctl: %s %s: %s\n", tuning::to_string(item.status), item.knob.c_str(),
                   item.now.c_str());
    };
  }
  tuning::TResult<tuning::Report> report = [&]() -> tuning::TResult<tuning::Report> {
    switch (verb) {
      case tuning::Verb::check: return tuning::check(o.profile, options);
      case tuning::Verb::apply: return tuning::apply(o.profile, options, progress);
      case tuning::Verb::verify: return tuning::verify(o.profile, options);
      case tuning::Verb::diff: return tuning::diff(o.profile, options);
      case tuning::Verb::rollback: return tuning::rollback(options, progress);
    }
    return tuning::check(o.profile, options);
  }();
  if (!report) {
    print_error_to(global, std::string("tune ") + tuning::to_string(verb) + ": " + report.message());
    return exit_for(report.code());
  }
  const tuning::Report& r = report.value();
  const std::string text = global.json ? tuning::render_json(r) + "\n" : tuning::render_text(r, o.all);
  std::fputs(text.c_str(), global.out);
  if (verb == tuning::Verb::verify && !r.in_force()) return kExitFailure;
  if (verb == tuning::Verb::rollback && r.count(tuning::Status::failed) > 0) return kExitFailure;
  return kExitOk;
}

// --remote: the same verb through the control plane's /v1/tuning (its tuning component
// applies on its host with its state directory; roles: admin for apply and rollback).
int run_remote(GlobalOptions& global, const TuneOptions& o, tuning::Verb verb) {
  ApiRequest request;
  switch (verb) {
    case tuning::Verb::apply:
      request = {"POST", "/v1/tuning/apply", nlohmann::json{{"profile", o.profile}}.dump()};
      break;
    case tuning::Verb::rollback: request = {"POST", "/v1/tuning/rollback", "{}"}; break;
    default:
      request = {"GET", std::string("/v1/tuning/") + tuning::to_string(verb) + "?profile=" + path_segment(o.profile),
                 ""};
  }
  ApiOutcome outcome = send_api(global, request);
  if (!outcome.response) return outcome.exit_code;
  const client::RestResponse& response = *outcome.response;
  if (response.status != 200) return report_api_error(global, request, response);
  auto report = tuning::report_from_json(response.body);
  if (!report) {
    print_error_to(global, "tune: the API's answer: " + report.message());
    return kExitApiError;
  }
  const std::string text = global.json ? response.body + "\n" : tuning::render_text(report.value(), o.all);
  std::fputs(text.c_str(), global.out);
  if (verb == tuning::Verb::verify && !report.value().in_force()) return kExitFailure;
  if (verb == tuning::Verb::rollback && report.value().count(tuning::Status::failed) > 0) return kExitFailure;
  return kExitOk;
}

int run_list(GlobalOptions& global, const TuneOptions& o) {
  tuning::Options options;
  options.profile_dirs = o.profile_dirs.empty() ? default_profile_dirs() : o.profile_dirs;
  auto list = tuning::list_profiles(options);
  if (!list) {
    print_error_to(global, "tune list: " + list.message());
    return kExitFailure;
  }
  for (const auto& p : list.value()) {
    std::string inc;
    for (const auto& i : p.includes) inc += (inc.empty() ? " (includes " : ", ") + i;
    if (!inc.empty()) inc += ")";
    std::fprintf(global.out, "%-12s %s%s\n             %s\n", p.name.c_str(), p.description.c_str(), inc.c_str(),
                 p.path.c_str());
  }
  return kExitOk;
}

void add_common(CLI::App* cmd, TuneOptions& o, bool with_profile) {
  if (with_profile) {
    cmd->add_option("--profile,-p", o.profile, "Profile name (axonctl tune list) or a path to a .toml file")
        ->required();
    cmd->add_option("--dataplane-config", o.dataplane_config,
                    "The data plane's config: its [dataplane] cores and interface place the IRQ, cpuset, NAPI, NIC "
                    "and kernel command line settings (default /etc/axon/dataplane.toml when present)");
    cmd->add_option("--cores", o.cores, "Data plane cores, e.g. 2-3 (instead of the data plane's config)");
    cmd->add_option("--interface", o.interfaces, "Data plane interface (repeatable; instead of the config)");
    cmd->add_flag("--netns-only", o.netns_only,
                  "Only knobs of this network namespace (net.* sysctls, interfaces); refuses the host's namespace");
    cmd->add_flag("--all", o.all, "One line per knob (per CPU, per IRQ) instead of collapsing alike ones");
  }
  cmd->add_flag("--remote", o.remote,
                "Through the control plane's REST API (/v1/tuning, --api/--unix/--token) instead of locally");
  cmd->add_option("--root", o.root, "Root prefix for /proc and /sys (a sandbox directory in tests)");
  cmd->add_option("--state-dir", o.state_dir, "Where the snapshot and lock live (default /var/lib/axon/tuning)");
  cmd->add_option("--profile-dir", o.profile_dirs,
                  "Profile directory (repeatable; default /etc/axon/tuning, /usr/share/axon/tuning/profiles)");
}

}  // namespace

void add_tune_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("tune", "Host tuning profiles: list, check, apply, verify, diff, rollback");
  cmd->require_subcommand(1);
  auto o = std::make_shared<TuneOptions>();

  struct VerbSpec {
    const char* name;
    const char* help;
    tuning::Verb verb;
  };
  static const VerbSpec kVerbs[] = {
      {"check", "What the profile would change and why, touching nothing", tuning::Verb::check},
      {"apply", "Snapshot the original values, then apply the profile (root)", tuning::Verb::apply},
      {"verify", "Compare live values with the profile; exit 1 on drift", tuning::Verb::verify},
      {"diff", "List only the values that differ from the profile", tuning::Verb::diff},
  };
  for (const auto& v : kVerbs) {
    CLI::App* sub = cmd->add_subcommand(v.name, v.help);
    add_common(sub, *o, true);
    const tuning::Verb verb = v.verb;
    sub->callback([&global, &selected, o, verb] { selected = [&global, o, verb] { return run(global, *o, verb); }; });
  }
  CLI::App* rb =
      cmd->add_subcommand("rollback", "Restore every value the last apply changed, from the snapshot (root)");
  add_common(rb, *o, false);
  rb->callback(
      [&global, &selected, o] { selected = [&global, o] { return run(global, *o, tuning::Verb::rollback); }; });
  CLI::App* list = cmd->add_subcommand("list", "The profiles found in the profile directories");
  list->add_option("--profile-dir", o->profile_dirs, "Profile directory (repeatable)");
  list->callback([&global, &selected, o] { selected = [&global, o] { return run_list(global, *o); }; });
}

}  // namespace axon::ctl

// axonctl tenants: list, set (create, or update only the given fields) and delete tenants:
// their rate limits (all classes and per class), credits and source prefix allowlists.
#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <string>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

struct SetOptions {
  std::uint32_t id = 0;
  std::string name;
  std::uint32_t rate = 0;
  std::uint32_t burst = 0;
  std::vector<std::string> prefixes;
  bool clear_prefixes = false;
  // Per-class limits and credits: each sent only when given (docs/scheduling.md).
  std::map<std::string, std::uint32_t> limits;
  std::map<std::string, CLI::Option*> limit_opts;
  std::int64_t if_match = 0;  // 0: conditional on the revision the GET returned
  CLI::Option* name_opt = nullptr;
  CLI::Option* rate_opt = nullptr;
  CLI::Option* burst_opt = nullptr;
  CLI::Option* prefix_opt = nullptr;
};

// GET the tenant first so that `set` changes only what was given; a 404 means create.
int run_set(GlobalOptions& global, const SetOptions& o) {
  const std::string path = "/v1/tenants/" + std::to_string(o.id);
  ApiRequest get{"GET", path, ""};
  ApiOutcome current = send_api(global, get);
  if (!current.response) return current.exit_code;
  json spec = json::object();
  if (current.response->status == 200) {
    try {
      spec = json::parse(current.response->body);
    } catch (const json::exception&) {
      spec = json::object();
    }
    if (!spec.is_object()) spec = json::object();
  } else if (current.response->status != 404) {
    return report_api_error(global, get, *current.response);
  }
  spec["id"] = o.id;
  if (o.name_opt->count() > 0) spec["name"] = o.name;
  if (o.rate_opt->count() > 0) spec["rate_pps"] = o.rate;
  if (o.burst_opt->count() > 0) spec["burst"] = o.burst;
  if (o.prefix_opt->count() > 0) spec["prefixes"] = o.prefixes;
  if (o.clear_prefixes) spec["prefixes"] = json::array();
  for (const auto& [key, option] : o.limit_opts) {
    if (option->count() > 0) spec[key] = o.limits.at(key);
  }
  if (!spec.contains("name")) {
    print_error_to(global, "tenants set: tenant " + std::to_string(o.id) + " does not exist yet: give --name");
    return kExitUsage;
  }
  // The PUT is conditional on the tenant as read (its `revision` stays in the body): a change
  // made by someone else in between is not overwritten but answered with 409. --if-match
  // names the revision instead.
  std::vector<std::pair<std::string, std::string>> headers;
  if (o.if_match > 0) {
    spec.erase("revision");
    headers = if_match_header(o.if_match);
  }
  const bool created = current.response->status == 404;
  return call_api(global, {"PUT", path, spec.dump(), headers}, [created](const json& tenant) {
    return std::string(created ? "created" : "updated") + " tenant\n" + render_tenant(tenant);
  });
}

}  // namespace

constexpr const char* kTenantIfMatchHelp =
    "Only if the tenant is still at this revision (from 'tenants get'); else 409 and nothing changes";

void add_tenants_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("tenants", "List, create/update and delete tenants");
  cmd->require_subcommand(1);

  cmd->add_subcommand("list", "List tenants (ID NAME RATE BURST PREFIXES)")->callback([&global, &selected] {
    selected = [&global] { return call_api(global, {"GET", "/v1/tenants", ""}, render_tenants); };
  });

  auto get_id = std::make_shared<std::uint32_t>(0);
  CLI::App* get = cmd->add_subcommand("get", "Show one tenant with its revision");
  get->add_option("id", *get_id, "Tenant id")->required()->check(CLI::Range(1u, 0xffffffffu));
  get->callback([&global, &selected, get_id] {
    const std::string path = "/v1/tenants/" + std::to_string(*get_id);
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_tenant); };
  });

  auto o = std::make_shared<SetOptions>();
  CLI::App* set = cmd->add_subcommand("set", "Create a tenant or change the given fields of one");
  set->add_option("id", o->id, "AXP tenant id (1..2^32-1)")->required()->check(CLI::Range(1u, 0xffffffffu));
  o->name_opt = set->add_option("--name", o->name, "Tenant name (required when creating)");
  o->rate_opt = set->add_option("--rate", o->rate, "Requests per second (0 = unlimited)");
  o->burst_opt = set->add_option("--burst", o->burst, "Burst size for the rate limit");
  o->prefix_opt = set->add_option("--prefix", o->prefixes,
                                  "Allowed source prefix, e.g. 10.0.0.0/8 (repeatable; "
                                  "replaces the list)")
                      ->expected(1, -1);
  set->add_flag("--clear-prefixes", o->clear_prefixes, "Remove every source prefix");
  set->add_option("--if-match", o->if_match, kTenantIfMatchHelp)->check(CLI::PositiveNumber);
  struct LimitFlag {
    const char* flag;
    const char* key;
    const char* help;
  };
  for (const LimitFlag& f :
       {LimitFlag{"--interactive-rate", "interactive_rate_pps",
                  "Interactive (priority 0) requests per second, in XDP (0 = no class limit)"},
        LimitFlag{"--interactive-burst", "interactive_burst", "Burst of --interactive-rate"},
        LimitFlag{"--background-rate", "background_rate_pps",
                  "Background (priority 1) requests per second, in XDP (0 = no class limit)"},
        LimitFlag{"--background-burst", "background_burst", "Burst of --background-rate"},
        LimitFlag{"--credits-max", "credits_max", "Credits: requests per refresh interval at most (0 = credits off)"},
        LimitFlag{"--credits-min", "credits_min", "Credits never drop below this"},
        LimitFlag{"--credit-delay-target-us", "credit_delay_target_us",
                  "Queueing delay the credits aim for, us (0 = the data plane's default)"}}) {
    o->limits[f.key] = 0;
    o->limit_opts[f.key] = set->add_option(f.flag, o->limits[f.key], f.help);
  }
  set->callback([&global, &selected, o] { selected = [&global, o] { return run_set(global, *o); }; });

  auto delete_id = std::make_shared<std::uint32_t>(0);
  auto delete_if = std::make_shared<std::int64_t>(0);
  CLI::App* del = cmd->add_subcommand("delete", "Delete a tenant (refused while an agent uses it)");
  del->add_option("id", *delete_id, "Tenant id")->required();
  del->add_option("--if-match", *delete_if, kTenantIfMatchHelp)->check(CLI::PositiveNumber);
  del->callback([&global, &selected, delete_id, delete_if] {
    std::uint32_t id = *delete_id;
    const std::int64_t revision = *delete_if;
    selected = [&global, id, revision] {
      return call_api(global, {"DELETE", "/v1/tenants/" + std::to_string(id), "", if_match_header(revision)},
                      [id](const json&) { return "deleted tenant " + std::to_string(id) + "\n"; });
    };
  });
}

}  // namespace axon::ctl

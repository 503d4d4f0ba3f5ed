// axonctl agents: list, get, create (from a JSON spec file and/or flags), delete, scale and
// reset-breaker for the agents the control plane runs worker pools for.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

struct CreateOptions {
  std::string file;
  std::string name;
  std::uint32_t id = 0;
  std::uint32_t tenant = 0;
  std::string priority;
  std::vector<std::string> command;
  std::vector<std::string> argv;  // after "--"
  std::vector<std::string> env;   // KEY=VALUE
  std::uint32_t min = 0;
  std::uint32_t max = 0;
  std::string cgroup_profile;
  std::string user;
  CLI::Option* id_opt = nullptr;
  CLI::Option* tenant_opt = nullptr;
  CLI::Option* min_opt = nullptr;
  CLI::Option* max_opt = nullptr;
  // Scheduling (docs/scheduling.md): each sent only when given.
  std::string dispatch;
  std::string class_scheduling;  // "on" | "off"
  std::uint32_t reserved_interactive = 0;
  double reserved_share = 0;
  std::uint32_t queue_delay_target_us = 0;
  double high_water = 1;
  CLI::Option* reserved_opt = nullptr;
  CLI::Option* share_opt = nullptr;
  CLI::Option* delay_opt = nullptr;
  CLI::Option* water_opt = nullptr;
  // Response cache (docs/operations.md): sent only when given.
  std::string cacheable;  // "on" | "off"
  std::uint32_t cache_ttl_ms = 0;
  CLI::Option* ttl_opt = nullptr;
  // Retransmit dedup (docs/scheduling.md, "Retransmit dedup"): each sent only when given.
  std::uint32_t dedup_window_ms = 0;
  std::uint32_t reply_cache_entries = 0;
  std::string reply_cache_eviction;
  CLI::Option* window_opt = nullptr;
  CLI::Option* cache_entries_opt = nullptr;
};

std::string name_of(const json& agent) {
  if (agent.is_object() && agent.contains("spec") && agent["spec"].is_object() && agent["spec"].contains("name") &&
      agent["spec"]["name"].is_string()) {
    return agent["spec"]["name"].get<std::string>();
  }
  return "?";
}

// The AgentSpec JSON for `agents create`: the --file spec (if any) with the flags on top.
// Returns false with `why` set for a usage error.
bool build_agent_spec(const CreateOptions& o, json& spec, std::string& why) {
  spec = json::object();
  if (!o.file.empty()) {
    std::string text;
    if (o.file == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      std::ifstream in(o.file);
      if (!in) {
        why = "agents create: cannot read --file " + o.file;
        return false;
      }
      std::ostringstream buffer;
      buffer << in.rdbuf();
      text = buffer.str();
    }
    try {
      spec = json::parse(text);
    } catch (const json::exception& e) {
      why = "agents create: " + o.file + " is not valid JSON: " + e.what();
      return false;
    }
    if (!spec.is_object()) {
      why = "agents create: " + o.file + " must hold one JSON object (an agent spec)";
      return false;
    }
  }
  if (!o.name.empty()) spec["name"] = o.name;
  if (o.id_opt->count() > 0) spec["id"] = o.id;
  if (o.tenant_opt->count() > 0) spec["tenant"] = o.tenant;
  if (!o.priority.empty()) spec["priority"] = o.priority;
  std::vector<std::string> command = o.command;
  command.insert(command.end(), o.argv.begin(), o.argv.end());
  if (!command.empty()) spec["command"] = command;
  if (!o.env.empty()) {
    json env = spec.contains("env") && spec["env"].is_object() ? spec["env"] : json::object();
    for (const std::string& kv : o.env) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        why = "agents create: --env wants KEY=VALUE, got '" + kv + "'";
        return false;
      }
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    spec["env"] = env;
  }
  if (o.min_opt->count() > 0 || o.max_opt->count() > 0) {
    json pool = spec.contains("pool") && spec["pool"].is_object() ? spec["pool"] : json::object();
    if (o.min_opt->count() > 0) pool["min"] = o.min;
    if (o.max_opt->count() > 0) pool["max"] = o.max;
    spec["pool"] = pool;
  }
  if (!o.cgroup_profile.empty()) spec["cgroup_profile"] = o.cgroup_profile;
  if (!o.dispatch.empty()) spec["dispatch"] = o.dispatch;
  if (!o.class_scheduling.empty()) spec["class_scheduling"] = o.class_scheduling == "on";
  if (o.reserved_opt->count() > 0) spec["reserved_interactive"] = o.reserved_interactive;
  if (o.share_opt->count() > 0) spec["reserved_interactive_share"] = o.reserved_share;
  if (o.delay_opt->count() > 0) spec["queue_delay_target_us"] = o.queue_delay_target_us;
  if (o.water_opt->count() > 0) spec["high_water"] = o.high_water;
  if (!o.cacheable.empty()) spec["cacheable"] = o.cacheable == "on";
  if (o.ttl_opt->count() > 0) spec["cache_ttl_ms"] = o.cache_ttl_ms;
  if (o.window_opt->count() > 0) spec["dedup_window_ms"] = o.dedup_window_ms;
  if (o.cache_entries_opt->count() > 0) spec["reply_cache_entries"] = o.reply_cache_entries;
  if (!o.reply_cache_eviction.empty()) spec["reply_cache_eviction"] = o.reply_cache_eviction;
  if (!o.user.empty()) spec["user"] = o.user;
  if (!spec.contains("name")) {
    why = "agents create: give --name (or a \"name\" in --file)";
    return false;
  }
  return true;
}

}  // namespace

constexpr const char* kAgentIfMatchHelp =
    "Only if the agent is still at this revision (from 'agents get'); else 409 and nothing changes";

void add_agents_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("agents", "List, inspect, create, delete and scale agents");
  cmd->require_subcommand(1);

  cmd->add_subcommand("list", "List agents (NAME ID TENANT PRIO WARM/MIN/MAX BREAKER RESTARTS)")
      ->callback([&global, &selected] {
        selected = [&global] { return call_api(global, {"GET", "/v1/agents", ""}, render_agents); };
      });

  auto get_name = std::make_shared<std::string>();
  CLI::App* get = cmd->add_subcommand("get", "Show one agent's spec and pool state");
  get->add_option("name", *get_name, "Agent name")->required();
  get->callback([&global, &selected, get_name] {
    std::string path = "/v1/agents/" + path_segment(*get_name);
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_agent); };
  });

  auto scaling_name = std::make_shared<std::string>();
  CLI::App* scaling =
      cmd->add_subcommand("scaling", "Show the autoscaler's view of an agent's pool: queueing delay and decisions");
  scaling->add_option("name", *scaling_name, "Agent name")->required();
  scaling->callback([&global, &selected, scaling_name] {
    std::string path = "/v1/agents/" + path_segment(*scaling_name) + "/scaling";
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_scaling); };
  });

  auto o = std::make_shared<CreateOptions>();
  CLI::App* create = cmd->add_subcommand(
      "create", "Register an agent: --file spec.json and/or flags; the worker command may follow --");
  create->add_option("--file,-f", o->file, "Agent spec as JSON (\"-\" = stdin); flags override its fields");
  create->add_option("--name", o->name, "Agent name: [a-z0-9][a-z0-9_-]{0,31}");
  o->id_opt = create->add_option("--id", o->id, "AXP agent id (1..2^32-1)");
  o->tenant_opt = create->add_option("--tenant", o->tenant, "AXP tenant id (must exist)");
  create->add_option("--priority", o->priority, "realtime | standard | batch")
      ->check(CLI::IsMember({"realtime", "standard", "batch"}));
  create->add_option("--command", o->command, "Worker argv, one word per --command (or give argv after --)")
      ->allow_extra_args(false);
  create->add_option("argv", o->argv, "Worker argv after --");
  create->add_option("--env", o->env, "Extra environment KEY=VALUE (repeatable)")->allow_extra_args(false);
  o->min_opt = create->add_option("--min", o->min, "Workers kept warm");
  o->max_opt = create->add_option("--max", o->max, "Upper bound when scaling with load");
  create->add_option("--cgroup-profile", o->cgroup_profile, "A [cgroup_profiles.<name>] of the config");
  create->add_option("--user", o->user, "Run workers as this user");
  create->add_option("--dispatch", o->dispatch, "sticky | p2c | jsq | round_robin")
      ->check(CLI::IsMember({"sticky", "p2c", "jsq", "round_robin"}));
  create->add_option("--class-scheduling", o->class_scheduling, "on (interactive first) | off (one FIFO)")
      ->check(CLI::IsMember({"on", "off"}));
  o->reserved_opt =
      create->add_option("--reserved-interactive", o->reserved_interactive, "Workers kept for interactive requests");
  o->share_opt = create->add_option("--reserved-share", o->reserved_share,
                                    "Share of the live workers kept for interactive requests (0..1)");
  o->delay_opt = create->add_option("--queue-delay-target-us", o->queue_delay_target_us,
                                    "Queueing-delay target: BUSY above it, and the pool grows to stay under it");
  o->water_opt = create->add_option("--high-water", o->high_water, "BUSY above this fraction of a ring (0..1]");
  create->add_option("--cacheable", o->cacheable, "on: identical requests within the TTL are answered from the cache")
      ->check(CLI::IsMember({"on", "off"}));
  o->ttl_opt = create->add_option("--cache-ttl-ms", o->cache_ttl_ms, "How long a cached reply is served (ms)");
  o->window_opt = create->add_option("--dedup-window-ms", o->dedup_window_ms,
                                     "Retransmits of a request answered this recently get the cached reply (0 = off)");
  o->cache_entries_opt = create->add_option("--reply-cache-entries", o->reply_cache_entries,
                                            "Replies cached per data-plane lcore for this agent");
  create->add_option("--reply-cache-eviction", o->reply_cache_eviction, "lru | fifo")
      ->check(CLI::IsMember({"lru", "fifo"}));
  create->callback([&global, &selected, o] {
    selected = [&global, o] {
      json spec;
      std::string why;
      if (!build_agent_spec(*o, spec, why)) {
        print_error_to(global, why);
        return int(kExitUsage);
      }
      return call_api(global, {"POST", "/v1/agents", spec.dump()},
                      [](const json& agent) { return "created agent " + name_of(agent) + "\n" + render_agent(agent); });
    };
  });

  auto delete_name = std::make_shared<std::string>();
  auto delete_if = std::make_shared<std::int64_t>(0);
  CLI::App* del = cmd->add_subcommand("delete", "Unregister an agent (its workers drain and stop)");
  del->add_option("name", *delete_name, "Agent name")->required();
  del->add_option("--if-match", *delete_if, kAgentIfMatchHelp)->check(CLI::PositiveNumber);
  del->callback([&global, &selected, delete_name, delete_if] {
    std::string name = *delete_name;
    const std::int64_t revision = *delete_if;
    selected = [&global, name, revision] {
      return call_api(global, {"DELETE", "/v1/agents/" + path_segment(name), "", if_match_header(revision)},
                      [name](const json&) { return "deleted agent " + name + "\n"; });
    };
  });

  struct ScaleOptions {
    std::string name;
    std::uint32_t min = 0, max = 0;
    std::int64_t if_match = 0;
    CLI::Option* min_opt = nullptr;
    CLI::Option* max_opt = nullptr;
  };
  auto s = std::make_shared<ScaleOptions>();
  CLI::App* scale = cmd->add_subcommand("scale", "Change an agent's pool size");
  scale->add_option("name", s->name, "Agent name")->required();
  s->min_opt = scale->add_option("--min", s->min, "Workers kept warm");
  s->max_opt = scale->add_option("--max", s->max, "Upper bound when scaling with load");
  scale->add_option("--if-match", s->if_match, kAgentIfMatchHelp)->check(CLI::PositiveNumber);
  scale->callback([&global, &selected, s] {
    selected = [&global, s] {
      json body = json::object();
      if (s->min_opt->count() > 0) body["min"] = s->min;
      if (s->max_opt->count() > 0) body["max"] = s->max;
      if (body.empty()) {
        print_error_to(global, "agents scale: give --min, --max or both");
        return int(kExitUsage);
      }
      return call_api(
          global, {"POST", "/v1/agents/" + path_segment(s->name) + "/scale", body.dump(), if_match_header(s->if_match)},
          [](const json& agent) { return "scaled agent " + name_of(agent) + "\n" + render_agent(agent); });
    };
  });

  auto reset_name = std::make_shared<std::string>();
  CLI::App* reset = cmd->add_subcommand("reset-breaker", "Close an open crash-loop breaker so the pool respawns");
  reset->add_option("name", *reset_name, "Agent name")->required();
  reset->callback([&global, &selected, reset_name] {
    std::string path = "/v1/agents/" + path_segment(*reset_name) + "/breaker/reset";
    selected = [&global, path] {
      return call_api(global, {"POST", path, ""}, [](const json& agent) {
        return "reset breaker of agent " + name_of(agent) + "\n" + render_agent(agent);
      });
    };
  });
}

}  // namespace axon::ctl

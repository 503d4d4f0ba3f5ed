// axonctl workers: list worker processes, drain one (no new requests, then it exits) or kill
// one (SIGKILL; its pool respawns it).
#include <CLI/CLI.hpp>
#include <memory>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

std::string worker_line(const char* verb, const nlohmann::json& w) {
  std::string id = w.is_object() && w.contains("id") && w["id"].is_string() ? w["id"].get<std::string>() : "?";
  std::string state =
      w.is_object() && w.contains("state") && w["state"].is_string() ? w["state"].get<std::string>() : "?";
  return std::string(verb) + " worker " + id + " (now " + state + ")\n";
}

}  // namespace

void add_workers_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("workers", "List, drain or kill worker processes");
  cmd->require_subcommand(1);

  auto agent = std::make_shared<std::string>();
  CLI::App* list = cmd->add_subcommand("list", "List workers (ID AGENT SLOT PID STATE INFLIGHT RESTARTS)");
  list->add_option("--agent", *agent, "Only this agent's workers");
  list->callback([&global, &selected, agent] {
    std::string path = "/v1/workers";
    if (!agent->empty()) path += "?agent=" + path_segment(*agent);
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_workers); };
  });

  auto drain_id = std::make_shared<std::string>();
  CLI::App* drain = cmd->add_subcommand("drain", "Stop sending a worker new requests; it exits when idle");
  drain->add_option("id", *drain_id, "Worker id (see workers list)")->required();
  drain->callback([&global, &selected, drain_id] {
    std::string path = "/v1/workers/" + path_segment(*drain_id) + "/drain";
    selected = [&global, path] {
      return call_api(global, {"POST", path, ""}, [](const nlohmann::json& w) { return worker_line("draining", w); });
    };
  });

  auto kill_id = std::make_shared<std::string>();
  CLI::App* kill = cmd->add_subcommand("kill", "SIGKILL a worker; its pool respawns it");
  kill->add_option("id", *kill_id, "Worker id (see workers list)")->required();
  kill->callback([&global, &selected, kill_id] {
    std::string path = "/v1/workers/" + path_segment(*kill_id) + "/kill";
    selected = [&global, path] {
      return call_api(global, {"POST", path, ""}, [](const nlohmann::json& w) { return worker_line("killed", w); });
    };
  });
}

}  // namespace axon::ctl

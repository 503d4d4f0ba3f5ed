// axonctl fleet list: the appliances of this appliance's fleet as etcd has them, and whether
// this appliance reaches etcd (GET /v1/fleet, docs/fleet.md).
#include <CLI/CLI.hpp>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

std::string str(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string front_doors(const json& member) {
  std::string out;
  const auto axp = member.find("axp");
  if (axp == member.end() || !axp->is_array()) return "-";
  for (const auto& a : *axp) {
    const std::string address = str(a, "address");
    const bool v6 = address.find(':') != std::string::npos;
    out += (out.empty() ? "" : ",") + (v6 ? "[" + address + "]" : address) + ":" + str(a, "port");
  }
  return out.empty() ? "-" : out;
}

std::string render_fleet(const json& view) {
  std::string out;
  const json etcd = view.value("etcd", json::object());
  out += "this appliance: " + str(view, "appliance_id") + " (" + str(view, "health") + ", " +
         (view.value("registered", false) ? "registered" : "NOT registered") + ", config revision " +
         str(view, "config_revision") + ")\n";
  out += "etcd: " + std::string(etcd.value("reachable", false) ? "reachable" : "UNREACHABLE") + " via " +
         str(etcd, "current_endpoint");
  if (etcd.contains("last_error")) out += "; last error: " + str(etcd, "last_error");
  out += "\n";
  Table table({"ID", "HEALTH", "AXP", "API", "WORKERS", "LCORES", "CONFIG_REV"});
  for (const auto& m : view.value("members", json::array())) {
    const json capacity = m.value("capacity", json::object());
    table.add_row({str(m, "id"), str(m, "health"), front_doors(m), str(m, "api"), str(capacity, "workers"),
                   str(capacity, "lcores"), str(m, "config_revision")});
  }
  if (view.contains("members_error")) return out + "members: unknown (" + str(view, "members_error") + ")\n";
  return out + (table.rows() == 0 ? std::string("no members\n") : table.str());
}

}  // namespace

void add_fleet_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("fleet", "The appliances of this appliance's fleet (etcd)");
  cmd->require_subcommand(1);
  CLI::App* list = cmd->add_subcommand("list", "List the members, their health and front doors");
  list->callback([&global, &selected] {
    selected = [&global] { return call_api(global, {"GET", "/v1/fleet", ""}, render_fleet); };
  });
}

}  // namespace axon::ctl

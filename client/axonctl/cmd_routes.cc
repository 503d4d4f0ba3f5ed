// axonctl routes: the agent -> worker slot table pushed to the data plane (GET /v1/routes).
#include <CLI/CLI.hpp>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {

void add_routes_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("routes", "Show the routing table the data plane serves");
  cmd->callback([&global, &selected] {
    selected = [&global] { return call_api(global, {"GET", "/v1/routes", ""}, render_routes); };
  });
}

}  // namespace axon::ctl

// axonctl status: the control plane's SystemStatus (GET /v1/status) as a key/value block.
#include <CLI/CLI.hpp>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {

void add_status_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("status", "Show the control plane, data plane and pool summary");
  cmd->callback([&global, &selected] {
    selected = [&global] { return call_api(global, {"GET", "/v1/status", ""}, render_status); };
  });
}

}  // namespace axon::ctl

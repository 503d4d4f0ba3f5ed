// axonctl: the command-line client of the axon appliance. main() only builds the CLI from the
// subcommands registered in commands.h and runs the one the user picked.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"

namespace axon::ctl {

void print_error(const std::string& message) {
  std::fprintf(stderr, "axonctl: %s\n", message.c_str());
}

}  // namespace axon::ctl

int main(int argc, char** argv) {
  using namespace axon::ctl;
  CLI::App app{"axonctl: talk to an axon appliance (AXP over UDP)", "axonctl"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand name too

  GlobalOptions global;
  app.add_flag("-v,--verbose", global.verbose, "Print client-side counters after the command");

  Runner selected;
  add_send_command(app, global, selected);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One readable line instead of CLI11's multi-line report; --help shows the usage.
    print_error(e.what() + std::string(" (see --help)"));
    return kExitUsage;
  }
  if (!selected) {
    print_error("no subcommand selected (see --help)");
    return kExitUsage;
  }
  return selected();
}

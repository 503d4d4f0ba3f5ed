// axonctl's command line: global options, every subcommand from commands.h, and the mapping
// of parse failures to one readable line and exit code 2.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"

namespace axon::ctl {

void print_error(const std::string& message) {
  std::fprintf(stderr, "axonctl: %s\n", message.c_str());
}

int run_axonctl(int argc, const char* const* argv, GlobalOptions& global) {
  signal(SIGPIPE, SIG_IGN);  // a server closing mid-request is an error line, not a death
  CLI::App app{"axonctl: talk to an axon appliance (AXP over UDP) and its control plane (REST over HTTPS)", "axonctl"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand name too

  app.add_flag("-v,--verbose", global.verbose, "Print client-side counters after the command");
  app.add_option("--api", global.api, "Control-plane API base URL (default $AXON_API or https://127.0.0.1:9443)");
  app.add_option("--unix", global.unix_socket,
                 "Talk plain HTTP over this unix socket instead, as root (default $AXON_API_SOCKET)");
  app.add_option("--token", global.token, "Bearer token (default $AXON_TOKEN, --token-file)");
  app.add_option("--token-file", global.token_file, "File holding the token (default /etc/axon/axonctl.token)");
  app.add_option("--ca", global.ca_file,
                 "CA certificate (PEM) to verify the API's certificate (default $AXON_CA, for loopback "
                 "/etc/axon/tls/ca.crt, else the system store)");
  app.add_option("--cert", global.client_cert, "Client certificate (PEM) for mTLS");
  app.add_option("--key", global.client_key, "Client private key (PEM) for mTLS");
  app.add_flag("--insecure", global.insecure, "Do not verify the API's certificate (prints a warning)");
  app.add_flag("--json", global.json, "REST commands: print the server's JSON instead of a table");
  app.add_option("--api-timeout-ms", global.api_timeout_ms, "Connect/read timeout for the REST API")
      ->check(CLI::Range(1u, 600000u));

  Runner selected;
  add_send_command(app, global, selected);
  add_status_command(app, global, selected);
  add_agents_command(app, global, selected);
  add_workers_command(app, global, selected);
  add_tenants_command(app, global, selected);
  add_routes_command(app, global, selected);
  add_fleet_command(app, global, selected);
  add_cache_command(app, global, selected);
  add_tune_command(app, global, selected);
  add_top_command(app, global, selected);
  add_traces_command(app, global, selected);

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
    std::fprintf(global.err, "axonctl: %s (see --help)\n", e.what());
    return kExitUsage;
  }
  if (!selected) {
    std::fprintf(global.err, "axonctl: no subcommand selected (see --help)\n");
    return kExitUsage;
  }
  return selected();
}

}  // namespace axon::ctl

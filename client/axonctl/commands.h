// axonctl's subcommand registry: every subcommand lives in its own cmd_<name>.cc and plugs into
// the one CLI11 app through an add_<name>_command() function declared here.
//
// Adding a subcommand (status, agents, workers, tenants, routes talk to the REST API later):
// write cmd_<name>.cc with add_<name>_command(), declare it below, call it from main.cc and add
// the file to axonctl in client/CMakeLists.txt. Options shared by the REST subcommands (API
// address, token) belong in GlobalOptions so they are parsed once, before the subcommand.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace axon::ctl {

// Process exit codes, the same for every subcommand so scripts can tell failures apart.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,      // anything not listed below
  kExitUsage = 2,        // bad command line or input file
  kExitTimeout = 3,      // no reply within --timeout-ms
  kExitErrorReply = 4,   // the appliance answered ERROR
  kExitBusy = 5,         // the appliance answered BUSY (after any retries)
  kExitUnreachable = 6,  // resolve, socket or ICMP failure: nothing to talk to
};

// Options every subcommand sees; parsed on the top-level app.
struct GlobalOptions {
  bool verbose = false;
};

// The selected subcommand's body. Set by the subcommand's parse callback, run by main() once
// parsing is complete, so that parse errors never leave a half-run command behind.
using Runner = std::function<int()>;

void add_send_command(CLI::App& app, const GlobalOptions& global, Runner& selected);

// Prints "axonctl: <message>" on stderr, as one line.
void print_error(const std::string& message);

}  // namespace axon::ctl

// axonctl's subcommand registry: every subcommand lives in its own cmd_<name>.cc and plugs into
// the one CLI11 app through an add_<name>_command() function declared here.
//
// Adding a subcommand: write cmd_<name>.cc with add_<name>_command(), declare it below, call
// it from app.cc and add the file to axonctl_lib in client/CMakeLists.txt. Options shared by
// the REST subcommands (API address, token) live in GlobalOptions so they are parsed once.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "axon/client/rest.h"
#include "axon/common/result.h"

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
  // The REST subcommands (status, agents, workers, tenants, routes):
  kExitApiError = 1,    // the API answered with an error status (4xx/5xx)
  kExitConnection = 3,  // no answer: connect, TLS or timeout failure
};

// One REST call as a subcommand maps it from its arguments.
struct ApiRequest {
  std::string method;
  std::string path;
  std::string body;                                               // JSON; empty = none
  std::vector<std::pair<std::string, std::string>> headers = {};  // more request headers (If-Match)
};

// The If-Match header of a write conditional on a revision (--if-match REV), or none for 0.
std::vector<std::pair<std::string, std::string>> if_match_header(std::int64_t revision);

// Sends an ApiRequest; the default builds a RestClient from GlobalOptions. Tests replace it
// to see the request a command line maps to without a server.
using ApiTransport = std::function<Result<client::RestResponse, client::RestError>(const ApiRequest& request)>;

// Options every subcommand sees; parsed on the top-level app.
struct GlobalOptions {
  bool verbose = false;

  // REST API (see api_call.cc for the defaults from the environment).
  std::string api;                      // --api URL
  std::string unix_socket;              // --unix PATH
  std::string token;                    // --token
  std::string token_file;               // --token-file
  std::string ca_file;                  // --ca
  std::string client_cert, client_key;  // --cert, --key (mTLS)
  bool insecure = false;                // --insecure
  bool json = false;                    // --json: the server's JSON, pretty-printed
  unsigned api_timeout_ms = 10000;

  std::FILE* out = stdout;
  std::FILE* err = stderr;
  ApiTransport transport;  // empty = real HTTP
};

// The selected subcommand's body. Set by the subcommand's parse callback, run by main() once
// parsing is complete, so that parse errors never leave a half-run command behind.
using Runner = std::function<int()>;

void add_send_command(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_status_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_agents_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_workers_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_tenants_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_routes_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_cache_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_tune_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_top_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_fleet_command(CLI::App& app, GlobalOptions& global, Runner& selected);
void add_traces_command(CLI::App& app, GlobalOptions& global, Runner& selected);

// Builds the whole CLI, parses argv and runs the chosen subcommand; returns the exit code.
// main() is this with default GlobalOptions; tests pass their own (output files, transport).
int run_axonctl(int argc, const char* const* argv, GlobalOptions& global);

// Prints "axonctl: <message>" on stderr, as one line.
void print_error(const std::string& message);

}  // namespace axon::ctl

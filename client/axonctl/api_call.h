// The shared body of every REST subcommand: resolve the API address and credentials from
// options and environment, send one request, and print the result (a table, or the
// server's JSON with --json) or one error line with the exit code for its kind.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"

namespace axon::ctl {

// Renders a successful response body (null when the body was empty) for people.
using Renderer = std::function<std::string(const nlohmann::json& body)>;

// Sends `request` and prints the outcome; returns the process exit code.
int call_api(GlobalOptions& global, const ApiRequest& request, const Renderer& render);

// Sends `request` and returns the response, or prints the error and returns nullopt with
// `exit_code` set. For commands that need more than one call (tenants set).
struct ApiOutcome {
  int exit_code = kExitOk;
  std::optional<client::RestResponse> response;
};
ApiOutcome send_api(GlobalOptions& global, const ApiRequest& request);

// Prints an API error response ("403 forbidden: <message>") and returns kExitApiError.
int report_api_error(GlobalOptions& global, const ApiRequest& request, const client::RestResponse& response);

// The REST client options from the global options and the environment: --api or $AXON_API
// (default https://127.0.0.1:9443), --unix or $AXON_API_SOCKET, --token, $AXON_TOKEN,
// --token-file or /etc/axon/axonctl.token when readable, --ca or $AXON_CA.
Result<client::RestOptions, std::string> resolve_rest_options(const GlobalOptions& global);

// Percent-encodes a path segment (agent names and worker ids are plain, but never trust).
std::string path_segment(const std::string& text);

// "403 forbidden" for a status code.
std::string status_text(int status);

// Prints "axonctl: <message>" on global.err.
void print_error_to(const GlobalOptions& global, const std::string& message);

}  // namespace axon::ctl

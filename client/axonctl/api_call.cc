// Sending one REST request for a subcommand and turning the outcome into output and an exit
// code: 0 success, 1 an API error status, 2 bad options, 3 no answer (connect/TLS/timeout).
#include "api_call.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace axon::ctl {
namespace {

constexpr const char* kDefaultApi = "https://127.0.0.1:9443";
constexpr const char* kDefaultTokenFile = "/etc/axon/axonctl.token";
constexpr const char* kDefaultLocalCa = "/etc/axon/tls/ca.crt";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::optional<std::string> read_token_file(const std::string& path, std::string& why) {
  std::ifstream in(path);
  if (!in) {
    why = "cannot read token file " + path + " (see --token-file)";
    return std::nullopt;
  }
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
  if (token.empty()) {
    why = "token file " + path + " is empty";
    return std::nullopt;
  }
  return token;
}

bool loopback_url(const std::string& url) {
  for (const char* prefix : {"https://127.0.0.1", "https://localhost", "https://[::1]"}) {
    std::string p(prefix);
    if (url.compare(0, p.size(), p) == 0 && (url.size() == p.size() || url[p.size()] == ':' || url[p.size()] == '/')) {
      return true;
    }
  }
  return false;
}

int exit_code_for(client::RestError error) {
  switch (error) {
    case client::RestError::invalid_argument: return kExitUsage;
    case client::RestError::connect_failed:
    case client::RestError::tls_failed:
    case client::RestError::timeout:
    case client::RestError::io_error:
    case client::RestError::bad_response: return kExitConnection;
  }
  return kExitConnection;
}

}  // namespace

void print_error_to(const GlobalOptions& global, const std::string& message) {
  std::fprintf(global.err, "axonctl: %s\n", message.c_str());
  std::fflush(global.err);
}

std::string status_text(int status) {
  const char* reason = nullptr;
  switch (status) {
    case 400: reason = "bad request"; break;
    case 401: reason = "unauthorized"; break;
    case 403: reason = "forbidden"; break;
    case 404: reason = "not found"; break;
    case 405: reason = "method not allowed"; break;
    case 409: reason = "conflict"; break;
    case 413: reason = "request too large"; break;
    case 429: reason = "too many requests"; break;
    case 500: reason = "internal error"; break;
    case 503: reason = "unavailable"; break;
    default: break;
  }
  return reason != nullptr ? std::to_string(status) + " " + reason : "HTTP " + std::to_string(status);
}

std::vector<std::pair<std::string, std::string>> if_match_header(std::int64_t revision) {
  if (revision <= 0) return {};
  return {{"If-Match", "\"" + std::to_string(revision) + "\""}};
}

std::string path_segment(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(char(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

Result<client::RestOptions, std::string> resolve_rest_options(const GlobalOptions& g) {
  client::RestOptions o;
  // An explicit --api wins over $AXON_API_SOCKET; an explicit --unix over everything.
  if (!g.unix_socket.empty()) {
    o.unix_socket = g.unix_socket;
  } else if (g.api.empty() && !env("AXON_API_SOCKET").empty()) {
    o.unix_socket = env("AXON_API_SOCKET");
  }
  o.url = !g.api.empty() ? g.api : (!env("AXON_API").empty() ? env("AXON_API") : kDefaultApi);

  std::string why;
  if (!g.token.empty()) {
    o.token = g.token;
  } else if (!env("AXON_TOKEN").empty()) {
    o.token = env("AXON_TOKEN");
  } else if (!g.token_file.empty()) {
    auto token = read_token_file(g.token_file, why);
    if (!token) return make_error(std::string("token_file"), why);
    o.token = *token;
  } else if (access(kDefaultTokenFile, R_OK) == 0) {
    auto token = read_token_file(kDefaultTokenFile, why);
    if (token) o.token = *token;
  }

  if (!g.ca_file.empty()) {
    o.ca_file = g.ca_file;
  } else if (!env("AXON_CA").empty()) {
    o.ca_file = env("AXON_CA");
  } else if (loopback_url(o.url) && access(kDefaultLocalCa, R_OK) == 0) {
    o.ca_file = kDefaultLocalCa;  // install.sh's self-signed certificate for the local API
  }
  o.insecure = g.insecure;
  o.client_cert = g.client_cert;
  o.client_key = g.client_key;
  o.timeout = std::chrono::milliseconds(g.api_timeout_ms);
  return o;
}

int report_api_error(GlobalOptions& global, const ApiRequest& request, const client::RestResponse& response) {
  std::string message;
  try {
    auto body = nlohmann::json::parse(response.body);
    if (body.is_object() && body.contains("error") && body["error"].is_string())
      message = body["error"].get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  if (message.empty()) {
    message = response.body.substr(0, 200);
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.pop_back();
    if (message.empty()) message = request.method + " " + request.path;
  }
  std::string line = status_text(response.status) + ": " + message;
  if (response.status == 429) {
    std::string retry = response.header("Retry-After");
    if (!retry.empty()) line += " (retry after " + retry + " s)";
  }
  if (response.status == 401) line += " (give a token: --token, $AXON_TOKEN or --token-file)";
  print_error_to(global, line);
  return kExitApiError;
}

ApiOutcome send_api(GlobalOptions& global, const ApiRequest& request) {
  ApiOutcome outcome;
  Result<client::RestResponse, client::RestError> result = make_error(client::RestError::io_error, "");
  if (global.transport) {
    result = global.transport(request);
  } else {
    auto options = resolve_rest_options(global);
    if (!options) {
      print_error_to(global, options.message());
      outcome.exit_code = kExitUsage;
      return outcome;
    }
    options->headers.insert(options->headers.end(), request.headers.begin(), request.headers.end());
    auto rest = client::RestClient::create(options.value());
    if (!rest) {
      print_error_to(global, rest.message());
      outcome.exit_code = exit_code_for(rest.code());
      return outcome;
    }
    if (rest->insecure()) {
      print_error_to(global, "warning: --insecure: the server's certificate is not verified");
    }
    result = rest->request(request.method, request.path, request.body);
  }
  if (!result) {
    print_error_to(global, result.message());
    outcome.exit_code = exit_code_for(result.code());
    return outcome;
  }
  outcome.response = std::move(result).value();
  return outcome;
}

int call_api(GlobalOptions& global, const ApiRequest& request, const Renderer& render) {
  ApiOutcome outcome = send_api(global, request);
  if (!outcome.response) return outcome.exit_code;
  const client::RestResponse& response = *outcome.response;
  if (response.status >= 400) return report_api_error(global, request, response);

  nlohmann::json body;
  bool parsed = true;
  if (!response.body.empty()) {
    try {
      body = nlohmann::json::parse(response.body);
    } catch (const nlohmann::json::exception&) {
      parsed = false;
    }
  }
  if (global.json) {
    if (!response.body.empty()) {
      std::string pretty = parsed ? body.dump(2) : response.body;
      std::fprintf(global.out, "%s\n", pretty.c_str());
    }
    std::fflush(global.out);
    return kExitOk;
  }
  if (!parsed) {
    print_error_to(global, "the API answered " + request.method + " " + request.path +
                               " with something not JSON: " + response.body.substr(0, 120));
    return kExitApiError;
  }
  std::string text;
  try {
    text = render(body);
  } catch (const std::exception&) {  // a shape we do not know: show what came back
    text = body.dump(2) + "\n";
  }
  std::fputs(text.c_str(), global.out);
  std::fflush(global.out);
  return kExitOk;
}

}  // namespace axon::ctl

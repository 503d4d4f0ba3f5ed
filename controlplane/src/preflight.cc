// Preflight checks of a loaded config (see preflight.h).
#include "preflight.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace axon::controlplane {
namespace {

Result<Ok, PreflightError> readable(const char* key, const std::string& path) {
  if (path.empty() || access(path.c_str(), R_OK) == 0) return Ok{};
  return make_error(PreflightError::missing_file, "[api] " + std::string(key) + " " + path +
                                                      " cannot be read: " + std::strerror(errno) +
                                                      "; create it (deploy/install.sh makes a self-signed pair and a "
                                                      "tokens file) or fix the path");
}

struct Endpoint {
  sockaddr_storage address{};
  socklen_t length = 0;
};

Result<Endpoint, PreflightError> parse_listen(const std::string& listen) {
  auto bad = [&](const std::string& why) {
    return make_error(PreflightError::bad_listen, "[api] listen = \"" + listen + "\" is invalid: " + why +
                                                      "; write \"127.0.0.1:9443\", \"[::1]:9443\" or \"0.0.0.0:9443\"");
  };
  std::string host, port;
  if (!listen.empty() && listen[0] == '[') {
    const auto close = listen.find("]:");
    if (close == std::string::npos) return bad("an IPv6 address needs the form [address]:port");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return bad("the port must be a number from 0 to 65535");
  }
  Endpoint e;
  const auto number = htons(static_cast<std::uint16_t>(std::stoul(port)));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&e.address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.address);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = number;
    e.length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = number;
    e.length = sizeof(sockaddr_in6);
  } else {
    return bad("'" + host + "' is not an IPv4 or IPv6 address");
  }
  return e;
}

// Binds (SO_REUSEADDR, like the server) and closes again: the port is free now.
Result<Ok, PreflightError> port_free(const std::string& listen, const Endpoint& e) {
  const int fd = socket(e.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Ok{};  // not the config's fault; start will say
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool bound = bind(fd, reinterpret_cast<const sockaddr*>(&e.address), e.length) == 0;
  const int error = errno;
  close(fd);
  if (bound) return Ok{};
  const std::string port = listen.substr(listen.rfind(':') + 1);
  if (error == EADDRINUSE) {
    return make_error(PreflightError::port_in_use, "[api] listen = \"" + listen +
                                                       "\": the port is in use by another process (see ss -ltnp "
                                                       "'sport = :" +
                                                       port + "'); stop it or choose another port");
  }
  return make_error(PreflightError::bad_listen, "[api] listen = \"" + listen + "\" cannot be bound: " +
                                                    std::strerror(error) + "; use an address of this host");
}

Result<Ok, PreflightError> user_exists(const std::string& where, const std::string& user) {
  if (user.empty()) return Ok{};
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) return Ok{};
  return make_error(PreflightError::no_such_user, where + ": user '" + user +
                                                      "' does not exist on this host; create it (useradd --system " +
                                                      user + ") or name an existing user");
}

}  // namespace

Result<Ok, PreflightError> preflight(const ControlplaneConfig& config, bool probe_port) {
  const auto& api = config.api;
  for (const auto& [key, path] : {std::pair<const char*, const std::string&>{"cert_file", api.cert_file},
                                  {"key_file", api.key_file},
                                  {"client_ca_file", api.client_ca_file},
                                  {"tokens_file", api.tokens_file}}) {
    if (auto ok = readable(key, path); !ok) return ok;
  }
  if (!api.listen.empty()) {
    auto endpoint = parse_listen(api.listen);
    if (!endpoint) return endpoint.error();
    if (probe_port) {
      if (auto free = port_free(api.listen, endpoint.value()); !free) return free;
    }
  }
  const std::string& ca = config.tracing.otlp_ca_file;
  if (!config.tracing.otlp_endpoint.empty() && !ca.empty() && access(ca.c_str(), R_OK) != 0) {
    return make_error(PreflightError::missing_file, "[tracing] otlp_ca_file " + ca +
                                                        " cannot be read: " + std::strerror(errno) +
                                                        "; give the PEM bundle of the CA that signed the OTLP "
                                                        "collector's certificate, or \"\" for the system's");
  }
  if (auto ok = user_exists("[controlplane] worker_user", config.worker_user); !ok) return ok;
  for (const auto& agent : config.agents) {
    if (auto ok = user_exists("agent '" + agent.name + "'", agent.user); !ok) return ok;
  }
  return Ok{};
}

}  // namespace axon::controlplane

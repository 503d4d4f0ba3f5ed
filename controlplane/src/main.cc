// axon-controlplane: the control-plane daemon, and its offline helpers.
//
//   axon-controlplane --config FILE            run the daemon
//   axon-controlplane --config FILE --check    validate the config and exit
//   axon-controlplane token create --name N --role reader|admin [--tokens-file F | --config FILE]
//
// The daemon's main thread runs the control loop (worker pools, the data plane link) and
// handles signals through a signalfd; the REST API runs on its own threads.
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "axon/common/log.h"
#include "axon/common/systemd.h"
#include "axon/controlplane/api_server.h"
#include "axon/controlplane/config.h"

#include "control_plane.h"
#include "preflight.h"

namespace {

constexpr const char* kLog = "controlplane";
// How long the pools may take to come up (the data plane to appear, workers to attach).
constexpr std::chrono::seconds kReadyTimeout{60};

int create_token(const std::string& config_path, std::string tokens_file, const std::string& name,
                 const std::string& role_name) {
  using namespace axon::controlplane;
  if (tokens_file.empty()) {
    if (config_path.empty()) {
      std::fprintf(stderr, "axon-controlplane: token create needs --tokens-file or --config\n");
      return 2;
    }
    auto config = load_config(config_path);
    if (!config) {
      std::fprintf(stderr, "axon-controlplane: %s\n", config.message().c_str());
      return 1;
    }
    tokens_file = config->api.tokens_file;
  }
  if (role_name != "reader" && role_name != "admin") {
    std::fprintf(stderr, "axon-controlplane: --role must be reader or admin\n");
    return 2;
  }
  auto token = TokenStore::create(tokens_file, name, role_name == "admin" ? Role::admin : Role::reader);
  if (!token) {
    std::fprintf(stderr, "axon-controlplane: %s\n", token.message().c_str());
    return 1;
  }
  // The plaintext exists only here: the file keeps its hash.
  std::printf("%s\n", token.value().c_str());
  std::fprintf(stderr,
               "token '%s' (%s) added to %s; it is shown once. Send SIGHUP to a running axon-controlplane to load "
               "it.\n",
               name.c_str(), role_name.c_str(), tokens_file.c_str());
  return 0;
}

// SIGTERM, SIGINT, SIGHUP and SIGCHLD through a signalfd; -1 (logged) on failure.
int open_signal_fd() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGCHLD);
  // Blocked before any thread starts, so only the signalfd sees them.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) AXON_LOG_ERROR(kLog, "signalfd: %s", std::strerror(errno));
  return signal_fd;
}

axon::controlplane::ApiServerOptions api_options(const axon::controlplane::ControlplaneConfig& config,
                                                 const axon::systemd::ActivatedSockets& activated) {
  axon::controlplane::ApiServerOptions api;
  api.listen = config.api.listen;
  api.cert_file = config.api.cert_file;
  api.key_file = config.api.key_file;
  api.client_ca_file = config.api.client_ca_file;
  api.tokens_file = config.api.tokens_file;
  api.audit_log = config.api.audit_log;
  api.unix_socket = config.api.unix_socket;
  api.rate_per_second = config.api.rate_per_second;
  api.rate_burst = config.api.rate_burst;
  api.max_body_bytes = config.api.max_body_bytes;
  api.threads = config.api.threads;
  api.tcp_listen_fd = activated.tcp;
  api.unix_listen_fd = activated.unix_stream;
  return api;
}

// Drains the signalfd: false once SIGTERM or SIGINT arrived. SIGHUP reloads the tokens.
bool handle_signals(int signal_fd, axon::controlplane::ApiServer& server, axon::systemd::Notifier& notifier,
                    bool announced, const std::string& tokens_file) {
  bool running = true;
  signalfd_siginfo info{};
  while (read(signal_fd, &info, sizeof info) == ssize_t(sizeof info)) {
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      AXON_LOG_INFO(kLog, "signal %u: stopping", info.ssi_signo);
      running = false;
    } else if (info.ssi_signo == SIGHUP) {
      if (announced) notifier.reloading();
      auto reloaded = server.reload_tokens();
      if (reloaded) {
        AXON_LOG_INFO(kLog, "SIGHUP: tokens reloaded from %s", tokens_file.c_str());
      } else {
        AXON_LOG_ERROR(kLog, "SIGHUP: %s; keeping the previous tokens", reloaded.message().c_str());
      }
      if (announced) notifier.ready();
    }
    // SIGCHLD only wakes the loop: the supervisor reaps through pidfds.
  }
  return running;
}

// Announces readiness (sd_notify READY=1) once the plane is ready; false when it never will
// be (a pool's breaker opened, or kReadyTimeout passed).
bool check_readiness(axon::controlplane::ControlPlane& plane, const axon::controlplane::ControlplaneConfig& config,
                     axon::systemd::Notifier& notifier, std::chrono::steady_clock::time_point ready_deadline,
                     std::chrono::steady_clock::time_point now, bool& announced, std::string& last_waiting) {
  const auto readiness = plane.readiness();
  if (readiness.ready) {
    AXON_LOG_INFO(kLog, "ready: API on %s%s%s, %s", config.api.listen.empty() ? "-" : config.api.listen.c_str(),
                  config.api.unix_socket.empty() ? "" : " and ", config.api.unix_socket.c_str(),
                  plane.status_line().c_str());
    notifier.ready();
    notifier.status(plane.status_line());
    announced = true;
  } else if (!readiness.failure.empty() || now >= ready_deadline) {
    const std::string why = !readiness.failure.empty() ? readiness.failure
                                                       : "not ready after " + std::to_string(kReadyTimeout.count()) +
                                                             " s: " + readiness.waiting;
    AXON_LOG_ERROR(kLog, "cannot become ready: %s", why.c_str());
    notifier.status("failed: " + why);
    return false;
  } else if (readiness.waiting != last_waiting) {
    AXON_LOG_INFO(kLog, "not ready yet: %s", readiness.waiting.c_str());
    notifier.status("starting: " + readiness.waiting);
    last_waiting = readiness.waiting;
  }
  return true;
}

int run(const axon::controlplane::ControlplaneConfig& config) {
  using namespace axon::controlplane;
  axon::systemd::Notifier notifier = axon::systemd::Notifier::from_environment();

  int signal_fd = open_signal_fd();
  if (signal_fd < 0) return 1;

  // Socket activation (deploy/systemd/axon-controlplane.socket): the service manager's API
  // sockets replace `listen` and `unix_socket`. Taken (and made close-on-exec) before any
  // worker is spawned.
  const auto activated = axon::systemd::activated_sockets();
  for (const int fd : activated.unknown) {
    AXON_LOG_WARN(kLog, "closing fd %d from the service manager: not a listening TCP or unix stream socket", fd);
    ::close(fd);
  }

  if (auto checked = preflight(config, /*probe_port=*/false); !checked) {
    AXON_LOG_ERROR(kLog, "%s", checked.message().c_str());
    return 1;
  }
  ControlPlane plane(config);
  if (auto started = plane.start(); !started) {
    AXON_LOG_ERROR(kLog, "%s", started.message().c_str());
    return 1;
  }

  auto server = ApiServer::start(api_options(config, activated), plane);
  if (!server) {
    AXON_LOG_ERROR(kLog, "%s", server.message().c_str());
    return 1;
  }
  // Ready means: registry loaded, workers adopted, API answering, the data plane linked and
  // every pool at its minimum of warm workers (issue 11 item 14: never ready while a pool
  // cannot start). A pool whose breaker opens before that, or no readiness within
  // kReadyTimeout, stops the daemon with the reason.
  plane.tick();
  bool announced = false;
  const auto ready_deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  std::string last_waiting;
  int exit_code = 0;

  const auto watchdog = axon::systemd::watchdog_interval();
  auto next_watchdog = std::chrono::steady_clock::now();
  auto next_status = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  bool running = true;
  while (running) {
    auto timeout = plane.next_timeout();
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {plane.wait_fd(), POLLIN, 0}};
    int ready = poll(fds, 2, int(timeout.count()));
    if (ready < 0 && errno != EINTR) {
      AXON_LOG_ERROR(kLog, "poll: %s", std::strerror(errno));
      break;
    }
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      running = handle_signals(signal_fd, *server.value(), notifier, announced, config.api.tokens_file);
    }
    plane.tick();
    auto now = std::chrono::steady_clock::now();
    if (!announced && !check_readiness(plane, config, notifier, ready_deadline, now, announced, last_waiting)) {
      exit_code = 1;
      break;
    }
    if (watchdog.count() > 0 && now >= next_watchdog) {
      notifier.watchdog();
      next_watchdog = now + watchdog;
    }
    if (announced && now >= next_status) {
      notifier.status(plane.status_line());
      next_status = now + std::chrono::seconds(2);
    }
  }
  notifier.stopping();
  server.value()->stop();
  plane.shutdown();
  close(signal_fd);
  AXON_LOG_INFO(kLog, "stopped");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"axon-controlplane: worker pools, cgroups, the REST API and the data plane link"};
  std::string config_path;
  bool check = false;
  app.add_option("--config,-c", config_path, "control-plane TOML file (see deploy/axon-controlplane.toml)");
  app.add_flag("--check", check, "validate the config and exit");
  auto* token = app.add_subcommand("token", "manage API tokens");
  auto* token_create = token->add_subcommand("create", "create a token; prints it once");
  std::string token_name;
  std::string token_role = "reader";
  std::string tokens_file;
  token_create->add_option("--name", token_name, "who the token is for (appears in the audit log)")->required();
  token_create->add_option("--role", token_role, "reader or admin")->required();
  token_create->add_option("--tokens-file", tokens_file, "tokens file (default: [api] tokens_file of --config)");
  token->require_subcommand(1);
  CLI11_PARSE(app, argc, argv);

  if (token_create->parsed()) return create_token(config_path, tokens_file, token_name, token_role);
  if (config_path.empty()) {
    std::fprintf(stderr, "axon-controlplane: --config FILE is required (see deploy/axon-controlplane.toml)\n");
    return 2;
  }
  auto config = axon::controlplane::load_config(config_path);
  if (!config) {
    std::fprintf(stderr, "axon-controlplane: %s\n", config.message().c_str());
    return 1;
  }
  for (const auto& user : config->allowed_worker_users) {
    if (axon::controlplane::is_root_user(user)) {
      AXON_LOG_WARN(kLog, "allowed_worker_users lists '%s' (uid 0): an admin token can run any allowed command as root",
                    user.c_str());
    }
  }
  if (check) {
    if (auto checked = axon::controlplane::preflight(config.value(), /*probe_port=*/true); !checked) {
      std::fprintf(stderr, "axon-controlplane: %s\n", checked.message().c_str());
      return 1;
    }
    std::printf("%s: ok (%zu tenant(s), %zu agent(s) to seed)\n", config_path.c_str(), config->tenants.size(),
                config->agents.size());
    return 0;
  }
  return run(config.value());
}

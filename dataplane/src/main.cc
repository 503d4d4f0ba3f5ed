// axon-dataplane: entry point. Parses the command line and runs the daemon.
#include <cstdio>
#include <cstring>
#include <string>

#include "axon/common/log.h"

#include "daemon.h"

namespace {

void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --config FILE [--check] [--log-level debug|info|warn|error]\n"
               "  --config FILE   data plane configuration (see deploy/axon-dataplane.toml)\n"
               "  --check         validate the configuration and exit\n"
               "signals: SIGTERM/SIGINT drain and exit 0, SIGHUP reloads routes and tenant limits\n",
               argv0);
}

}  // namespace

int main(int argc, char** argv) {
  axon::dataplane::DaemonOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      options.config_path = argv[++i];
    } else if (arg == "--check") {
      options.check_only = true;
    } else if (arg == "--log-level" && i + 1 < argc) {
      std::string level = argv[++i];
      using axon::log::Level;
      if (level == "debug") {
        axon::log::set_level(Level::debug);
      } else if (level == "info") {
        axon::log::set_level(Level::info);
      } else if (level == "warn") {
        axon::log::set_level(Level::warn);
      } else if (level == "error") {
        axon::log::set_level(Level::error);
      } else {
        std::fprintf(stderr, "unknown log level '%s'\n", level.c_str());
        return 2;
      }
    } else if (arg == "-h" || arg == "--help") {
      usage(argv[0]);
      return 0;
    } else {
      std::fprintf(stderr, "unknown argument '%s'\n", arg.c_str());
      usage(argv[0]);
      return 2;
    }
  }
  if (options.config_path.empty()) {
    usage(argv[0]);
    return 2;
  }
  return axon::dataplane::run_daemon(options);
}

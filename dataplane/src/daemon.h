// axon-dataplane's control thread: brings the data plane up from a config, hands segments
// to connecting workers, watches them, reloads routes on SIGHUP and shuts down cleanly.
#pragma once

#include <string>

namespace axon::dataplane {

struct DaemonOptions {
  std::string config_path;
  bool check_only = false;  // validate the config and exit
};

// Returns the process exit code.
int run_daemon(const DaemonOptions& options);

}  // namespace axon::dataplane

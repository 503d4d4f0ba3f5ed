// Preflight: what `axon-controlplane --check` verifies beyond the config's syntax, so that a
// configuration it accepts does not then fail at start (issue 11 item 14).
//
// The API's certificate, key, CA and tokens files are readable; the listen address is a
// valid "host:port" / "[v6]:port" and its port is free; worker_user and every seeded agent's
// user exist. Each failure says what to fix. The daemon runs the same checks at start.
#pragma once

#include <string>

#include "axon/common/result.h"
#include "axon/controlplane/config.h"

namespace axon::controlplane {

enum class PreflightError { missing_file, bad_listen, port_in_use, no_such_user };

Result<Ok, PreflightError> preflight(const ControlplaneConfig& config, bool probe_port);

}  // namespace axon::controlplane

// Base64 for the fleet tests that write etcd JSON-gateway bodies by hand: the codec the clients use.
#pragma once

#include <string>

#include "axon/fleet/etcd.h"

namespace axon::client::testing {

inline std::string b64(const std::string& s) { return fleet::base64_encode(s); }

}  // namespace axon::client::testing

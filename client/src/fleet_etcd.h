// The etcd member source's loop (private to axon::client_fleet): lists <prefix>members/, then
// watches the prefix from the listed revision + 1 and hands every change on at once; after a
// failed read or a broken watch it waits poll_interval and lists again (the resync). Without a
// usable axon::fleet client (an endpoint it cannot take) it polls read_etcd_members instead.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <vector>

#include "axon/client/fleet.h"

namespace axon::client::detail {

struct EtcdMemberSink {
  std::function<void(std::vector<FleetMember>)> members;  // the current member list
  std::function<void()> error;                            // a read or a watch failed
  std::function<bool(std::chrono::milliseconds)> sleep;   // waits; false: stop now
};

// Runs until `stop` is set (or sink.sleep returns false).
void run_etcd_member_source(const EtcdSourceOptions& source, const std::atomic<bool>& stop, const EtcdMemberSink& sink);

}  // namespace axon::client::detail

// The control plane's client for the data plane's control socket (<run_dir>/control.sock).
//
// The control plane links this small library (axon::dataplane_control: no libxdp, libbpf
// or DPDK) to read the data plane's worker slots and to push tenant and agent tables at run
// time. Each call sends one JSON request over an AF_UNIX SOCK_SEQPACKET connection and waits
// for its one reply, bounded by the timeout given to connect(). The wire format is described
// in docs/operations.md ("Control socket").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "axon/common/model.h"
#include "axon/common/result.h"

namespace axon::dataplane::control {

inline constexpr int kProtocolVersion = 1;
inline constexpr std::size_t kMaxMessageBytes = 1u << 20;  // one request or reply, either way
inline constexpr int kGrantWaitMs = 3000;                  // how long a not-yet-granted worker connection is held

// The shared model's (axon/common/model.h): the control plane's registry, its REST JSON and
// the data plane's config carry the same structs.
using TenantEntry = model::Tenant;
using AgentEntry = model::Route;  // an agent and its worker slots

struct Tables {
  std::uint64_t version = 0;  // chosen by the control plane, echoed back by hello()
  std::vector<TenantEntry> tenants;
  std::vector<AgentEntry> agents;
};

struct SlotInfo {
  std::string name;
  std::string state;  // "vacant", "alive" or "dying"
  std::int32_t pid = 0;
  std::uint64_t generation = 0, inflight = 0, depth = 0, submitted = 0, completed = 0, lost = 0, deaths = 0;
  std::uint64_t depth_interactive = 0, depth_background = 0;  // `depth` per request ring
};

struct Hello {
  std::int32_t pid = 0;
  std::string interface, backend, mode, run_dir;
  std::uint64_t table_version = 0;
  std::vector<SlotInfo> slots;
  int protocol = 0;
  // The control socket's own counters since the data plane started.
  std::uint64_t refused_peers = 0;  // connections turned away by the uid check
  std::uint64_t bad_requests = 0;   // malformed JSON, unknown op, oversize, invalid fields
  std::uint64_t applies = 0;        // accepted apply requests
  std::uint64_t rejected_applies = 0;
};

enum class ControlError {
  not_running,     // no socket, or nobody listening on it
  refused,         // the data plane refused this peer (uid not allowed)
  io_error,        // send/receive failed or timed out
  protocol_error,  // the reply was not what the protocol promises
  rejected,        // the data plane understood the request and said no (message says why)
};

template <typename T>
using ControlResult = Result<T, ControlError>;

// Blocking, with a timeout per call; not thread-safe (use one per thread).
class ControlClient {
 public:
  static Result<ControlClient, ControlError> connect(const std::string& run_dir, int timeout_ms = 2000);

  ControlClient(ControlClient&& other) noexcept;
  ControlClient& operator=(ControlClient&& other) noexcept;
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;
  ~ControlClient();

  Result<Hello, ControlError> hello();
  // The accepted version, or `rejected` with the data plane's message naming the bad item.
  Result<std::uint64_t, ControlError> apply(const Tables& tables);
  Result<std::vector<SlotInfo>, ControlError> slots();
  // Only process `pid` may claim `slot` (its handoff socket) from now on; pid 0 marks the
  // slot managed with no claimant yet. A connection from any other process waits up to
  // kGrantWaitMs for its own grant, then is refused.
  Result<Ok, ControlError> grant(const std::string& slot, std::int32_t pid);
  // Drops the response-cache entries of one agent (by AXP id), or of every agent (agent_id 0):
  // no request is answered from an entry stored before this returns. `rejected` when the data
  // plane has no agent of that id.
  Result<Ok, ControlError> invalidate_cache(std::uint32_t agent_id);

  [[nodiscard]] const std::string& socket_path() const noexcept { return path_; }

 private:
  ControlClient(int fd, std::string path, int timeout_ms) noexcept;
  // Sends `request`, returns the raw reply text (already checked for {"ok":false}).
  Result<std::string, ControlError> call(const std::string& request);
  void close() noexcept;

  int fd_ = -1;
  std::string path_;
  int timeout_ms_ = 2000;
};

// The control socket's path for a run directory.
std::string control_socket_path(const std::string& run_dir);

}  // namespace axon::dataplane::control

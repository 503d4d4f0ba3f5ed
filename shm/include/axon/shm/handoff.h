// Handing a segment's memfd to its worker over a Unix socket (SCM_RIGHTS).
//
// The worker never opens anything by name: it gets exactly one fd, for its own segment,
// from the process that created it. The data plane learns the worker's pid from
// SO_PEERCRED on the same socket, which is what it then watches with a pidfd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "axon/shm/error.h"

namespace axon::shm {

inline constexpr std::uint32_t kHandoffMagic = 0x41584f48;  // "HOXA"
// Version 2 added sender_pid.
inline constexpr std::uint32_t kHandoffVersion = 2;

// Sent alongside the fd.
struct HandoffMessage {
  std::uint32_t magic = kHandoffMagic;
  std::uint32_t version = kHandoffVersion;
  std::uint32_t worker_id = 0;
  std::uint32_t layout_version = 0;
  std::uint64_t generation = 0;
  std::uint64_t segment_size = 0;
  // The data plane's pid (in its own pid namespace), so a worker can notice it exiting
  // through a pidfd instead of sleeping on its futex forever; 0 = not given.
  std::int32_t sender_pid = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(HandoffMessage) == 40);

struct ReceivedSegment {
  int fd = -1;
  HandoffMessage message{};
};

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

ShmResult<Ok> send_segment(int socket_fd, int segment_fd, const HandoffMessage& message);
// Waits up to timeout_ms for one message with exactly one fd.
ShmResult<ReceivedSegment> receive_segment(int socket_fd, int timeout_ms);
ShmResult<PeerCredentials> peer_credentials(int socket_fd);

// A listening SOCK_SEQPACKET Unix socket that workers connect to. Unlinks its path on
// destruction.
class HandoffListener {
 public:
  static ShmResult<HandoffListener> listen(const std::string& path);
  HandoffListener() = default;
  HandoffListener(HandoffListener&& other) noexcept;
  HandoffListener& operator=(HandoffListener&& other) noexcept;
  ~HandoffListener();

  // Accepts one connection within timeout_ms; returns the connected fd.
  ShmResult<int> accept(int timeout_ms);
  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Worker side: connects to a listener.
ShmResult<int> connect_handoff(const std::string& path, int timeout_ms);

}  // namespace axon::shm

// The data plane's end of the control socket (<run_dir>/control.sock): a non-blocking
// AF_UNIX SOCK_SEQPACKET listener and its connections, all behind one epoll fd that the
// daemon's control thread folds into its poll loop. Lcores never touch it.
//
// Peers are checked once, at accept, with SO_PEERCRED: root, the data plane's own euid and
// the configured control_uids may talk; anyone else gets one refusal message, is counted
// and logged, and is disconnected.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/result.h"

#include "control_codec.h"

namespace axon::dataplane::control {

enum class ServerError { socket_failed };

class ControlServer {
 public:
  // Turns a decoded request into the reply text.
  using Handler = std::function<std::string(const Request&)>;

  static Result<std::unique_ptr<ControlServer>, ServerError> listen(const std::string& path,
                                                                    std::vector<std::uint32_t> allowed_uids);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Readable when a connection or a request is waiting.
  [[nodiscard]] int fd() const noexcept { return epoll_fd_; }
  // Accepts, reads and answers whatever is ready; never blocks.
  void serve(const Handler& handler);

  [[nodiscard]] std::uint64_t refused() const noexcept { return refused_; }
  [[nodiscard]] std::uint64_t bad_requests() const noexcept { return bad_requests_; }
  [[nodiscard]] std::size_t connections() const noexcept { return connections_.size(); }

  static constexpr std::size_t kMaxConnections = 16;

 private:
  ControlServer() = default;
  void accept_all();
  void read_requests(int fd, const Handler& handler);
  void drop(int fd);
  bool reply(int fd, const std::string& text);

  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  std::string path_;
  std::vector<std::uint32_t> allowed_uids_;
  std::vector<int> connections_;
  std::string buffer_;  // one receive buffer, kMaxMessageBytes + 1, allocated once
  std::uint64_t refused_ = 0;
  std::uint64_t bad_requests_ = 0;
};

}  // namespace axon::dataplane::control

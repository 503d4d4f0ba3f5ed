// Socket activation of the REST API: listening sockets handed over as systemd does it (fd 3
// and up, $LISTEN_FDS and $LISTEN_PID), found by libsystemd's sd_listen_fds and served by
// ApiServer without binding anything itself. The server runs in a child process, which is
// the only way to give it fds 3 and 4 and a $LISTEN_PID of its own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "axon/common/systemd.h"
#include "axon/controlplane/api_server.h"

#include "api_test_support.h"

namespace axon::controlplane {
namespace {

using testing::TestPki;

int listening_tcp(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) return -1;
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

int listening_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) return -1;
  return fd;
}

// Runs in the child: fds 3 and 4 are the passed sockets. Exit codes name what went wrong.
[[noreturn]] void serve_activated(const TestPki& pki, std::uint16_t expected_port) {
  setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "2", 1);
  const auto sockets = systemd::activated_sockets();
  if (sockets.tcp != 3 || sockets.unix_stream != 4 || !sockets.unknown.empty()) ::_exit(10);
  if (std::getenv("LISTEN_FDS") != nullptr) ::_exit(11);  // children must not inherit them
  testing::FakeControlApi api;
  ApiServerOptions o;
  o.listen = "";  // nothing to bind: everything comes from the service manager
  o.tcp_listen_fd = sockets.tcp;
  o.unix_listen_fd = sockets.unix_stream;
  o.cert_file = pki.path("server.crt");
  o.key_file = pki.path("server.key");
  auto server = ApiServer::start(o, api);
  if (!server.ok()) ::_exit(12);
  if (server.value()->tcp_port() != expected_port) ::_exit(13);
  std::this_thread::sleep_for(std::chrono::seconds(60));  // until the parent is done
  ::_exit(14);
}

TEST(ApiActivation, ServesTheListeningSocketsPassedByTheServiceManager) {
  TestPki pki;
  std::uint16_t port = 0;
  const int tcp = listening_tcp(port);
  ASSERT_GE(tcp, 0) << std::strerror(errno);
  const std::string path = pki.path("activated.sock");
  const int ux = listening_unix(path);
  ASSERT_GE(ux, 0) << std::strerror(errno);

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Out of the way first, then onto 3 and 4 (dup2 clears close-on-exec, as systemd's are).
    const int t = ::fcntl(tcp, F_DUPFD, 100);
    const int u = ::fcntl(ux, F_DUPFD, 100);
    if (t < 0 || u < 0 || ::dup2(t, 3) != 3 || ::dup2(u, 4) != 4) ::_exit(9);
    ::close(t);
    ::close(u);
    serve_activated(pki, port);
  }
  ::close(tcp);  // only the child accepts now
  ::close(ux);

  testing::TlsClientOptions tls;
  tls.ca_file = pki.path("ca.crt");
  testing::HttpResult r;
  for (int i = 0; i < 100 && r.status != 200; ++i) {
    r = testing::https(port, tls, "GET", "/v1/health", "");
    if (r.status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r.status, 200) << r.error;
  const auto u = testing::unix_http(path, testing::request_text("GET", "/v1/health", ""));
  EXPECT_EQ(u.status, 200) << u.error;

  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, WNOHANG), 0)
      << "the server exited early: code " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1)
      << " (9 dup2, 10 sockets not found, 11 env kept, 12 start, 13 port)";
  ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, &status, 0), child);
}

}  // namespace
}  // namespace axon::controlplane

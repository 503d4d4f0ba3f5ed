// Support for the integration tests (data plane and control plane daemon tests); see it_support.h.
#include "axon/testing/it_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace axon::dataplane::it {
namespace {

// fork+exec with the child tied to our life; returns the pid or -1.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env, int out_fd,
            bool search_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const auto& e : extra_env) env_storage.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls from here to exec.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd >= 0) dup2(null_fd, 0);
  if (out_fd >= 0) {
    dup2(out_fd, 1);
    dup2(out_fd, 2);
  }
  if (search_path) {
    // execvpe: PATH lookup with our prepared environment.
    execvpe(args[0], args.data(), env.data());
  } else {
    execve(args[0], args.data(), env.data());
  }
  _exit(127);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::uint64_t next_request_id() {
  static std::atomic<std::uint64_t> counter{(std::uint64_t(getpid()) << 32) | 0x1000};
  return counter.fetch_add(1);
}

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = std::uint8_t(v >> 8);
  p[1] = std::uint8_t(v);
}

}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* output) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = spawn(argv, {}, pipe_fds[1], true);
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    return -1;
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipe_fds[0], buf, sizeof buf);
    if (n > 0) {
      out.append(buf, std::size_t(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool in_netns(const std::string& ns, const std::function<void()>& fn, std::string* error) {
  bool ok = false;
  std::string why;
  std::thread t([&] {
    int fd = open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      why = "open /var/run/netns/" + ns + ": " + std::strerror(errno);
      return;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
      why = std::string("setns: ") + std::strerror(errno);
      close(fd);
      return;
    }
    close(fd);
    fn();
    ok = true;
  });
  t.join();
  if (!ok && error != nullptr) *error = why;
  return ok;
}

// ---- TestNetwork ----------------------------------------------------------------------

void TestNetwork::remove_leftovers() {
  std::string out;
  if (run_command({"ip", "netns", "list"}, &out) != 0) return;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::string name = line.substr(0, line.find(' '));
    if (name.rfind("axit-", 0) != 0) continue;
    std::string digits = name.substr(5);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = pid_t(std::stol(digits));
    if (pid == getpid()) continue;
    // Only a namespace whose creator is gone is a leftover. A live process of another test
    // binary (dataplane_control_test, or another build tree's integration test) owns its
    // own namespace, even though its executable differs from ours.
    const bool alive = kill(pid, 0) == 0 || errno == EPERM;
    if (!alive) run_command({"ip", "netns", "del", name});
  }
}

std::unique_ptr<TestNetwork> TestNetwork::create(std::string& error, unsigned queues) {
  remove_leftovers();
  std::unique_ptr<TestNetwork> net(new TestNetwork());
  const pid_t pid = getpid();
  net->ns = "axit-" + std::to_string(pid);
  const std::string base = "axi" + std::to_string(pid % 100000);
  net->root_if = base + "a";
  net->ns_if = base + "b";
  net->root_mac = {0x02, 0xa1, std::uint8_t(pid >> 16), std::uint8_t(pid >> 8), std::uint8_t(pid), 0x01};
  net->ns_mac = {0x02, 0xa1, std::uint8_t(pid >> 16), std::uint8_t(pid >> 8), std::uint8_t(pid), 0x02};

  // A /30 in 10.199.128-191.x that the root namespace does not use yet.
  std::string addrs;
  run_command({"ip", "-4", "-o", "addr", "show"}, &addrs);
  int third = -1;
  for (int i = 0; i < 64; ++i) {
    int candidate = 128 + (int(pid) + i) % 64;
    if (addrs.find("10.199." + std::to_string(candidate) + ".") == std::string::npos) {
      third = candidate;
      break;
    }
  }
  if (third < 0) {
    error = "no free 10.199.128-191.0/30 subnet in the root namespace";
    return nullptr;
  }
  const std::string net4 = "10.199." + std::to_string(third) + ".";
  net->root_ip4 = net4 + "1";
  net->ns_ip4 = net4 + "2";
  net->prefix4 = net4 + "0/30";
  inet_pton(AF_INET, net->root_ip4.c_str(), &net->root_addr4);
  inet_pton(AF_INET, net->ns_ip4.c_str(), &net->ns_addr4);

  // A namespace or link of our exact names can only be a leftover of a dead process that had
  // our pid: remove it.
  run_command({"ip", "link", "del", net->root_if});
  run_command({"ip", "netns", "del", net->ns});

  auto mac_text = [](const std::array<std::uint8_t, 6>& m) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return std::string(buf);
  };
  std::string out;
  auto step = [&](const std::vector<std::string>& argv) {
    if (run_command(argv, &out) == 0) return true;
    error = "`";
    for (const auto& a : argv) error += a + " ";
    error += "` failed: " + out;
    return false;
  };
  if (!step({"ip", "netns", "add", net->ns})) return nullptr;
  net->created_ = true;  // from here on the destructor cleans up
  // One command creates both ends, the peer already inside the namespace: there is no moment
  // when a crash could leave a half-made pair in the root namespace.
  const std::string queue_text = std::to_string(std::max(1u, queues));
  if (!step({"ip",
             "link",
             "add",
             net->root_if,
             "address",
             mac_text(net->root_mac),
             "numtxqueues",
             queue_text,
             "numrxqueues",
             queue_text,
             "type",
             "veth",
             "peer",
             "name",
             net->ns_if,
             "address",
             mac_text(net->ns_mac),
             "numtxqueues",
             queue_text,
             "numrxqueues",
             queue_text,
             "netns",
             net->ns}) ||
      !step({"ip", "addr", "add", net->root_ip4 + "/30", "dev", net->root_if}) ||
      !step({"ip", "link", "set", net->root_if, "up"}) || !step({"ip", "-n", net->ns, "link", "set", "lo", "up"}) ||
      !step({"ip", "-n", net->ns, "addr", "add", net->ns_ip4 + "/30", "dev", net->ns_if}) ||
      !step({"ip", "-n", net->ns, "link", "set", net->ns_if, "up"})) {
    return nullptr;
  }
  const std::string net6 = "fd99:199:" + std::to_string(third) + "::";
  net->root_ip6 = net6 + "1";
  net->ns_ip6 = net6 + "2";
  net->has_ipv6 =
      run_command({"ip", "-6", "addr", "add", net->root_ip6 + "/64", "dev", net->root_if, "nodad"}) == 0 &&
      run_command({"ip", "-n", net->ns, "-6", "addr", "add", net->ns_ip6 + "/64", "dev", net->ns_if, "nodad"}) == 0;
  inet_pton(AF_INET6, net->root_ip6.c_str(), &net->root_addr6);
  inet_pton(AF_INET6, net->ns_ip6.c_str(), &net->ns_addr6);

  net->root_ifindex = int(if_nametoindex(net->root_if.c_str()));
  std::string ns_if = net->ns_if;
  int ns_ifindex = 0;
  in_netns(net->ns, [&] { ns_ifindex = int(if_nametoindex(ns_if.c_str())); });
  net->ns_ifindex = ns_ifindex;
  if (net->root_ifindex <= 0 || net->ns_ifindex <= 0) {
    error = "veth pair " + net->root_if + "/" + net->ns_if + " has no ifindex";
    return nullptr;
  }
  // Both ends up with carrier before anyone sends.
  bool up = eventually(
      [&] {
        std::string state;
        run_command({"cat", "/sys/class/net/" + net->root_if + "/operstate"}, &state);
        return state.rfind("up", 0) == 0;
      },
      5s);
  if (!up) {
    error = net->root_if + " did not come up";
    return nullptr;
  }
  return net;
}

TestNetwork::~TestNetwork() {
  if (!created_) return;
  // Deleting one end deletes the pair (and any XDP program on it); then the namespace.
  run_command({"ip", "link", "del", root_if});
  run_command({"ip", "netns", "del", ns});
}

int TestNetwork::socket_in_ns(int domain, int type, int protocol) const {
  int fd = -1;
  in_netns(ns, [&] { fd = ::socket(domain, type | SOCK_CLOEXEC, protocol); });
  return fd;
}

// ---- ChildProcess ---------------------------------------------------------------------

ChildProcess::~ChildProcess() {
  kill_now();
}

bool ChildProcess::start(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                         const std::string& log_path, std::string* error) {
  log_path_ = log_path;
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error != nullptr) *error = "cannot open " + log_path + ": " + std::strerror(errno);
    return false;
  }
  pid_ = spawn(argv, extra_env, fd, false);
  close(fd);
  if (pid_ < 0) {
    if (error != nullptr) *error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  exit_code_.reset();
  return true;
}

bool ChildProcess::running() {
  if (pid_ <= 0 || exit_code_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return r == 0;
}

bool ChildProcess::signal(int sig) {
  return running() && kill(pid_, sig) == 0;
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  eventually([&] { return !running(); }, timeout);
  return exit_code_;
}

void ChildProcess::kill_now() {
  if (!running()) return;
  kill(pid_, SIGCONT);
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ChildProcess::log() const {
  return log_path_.empty() ? std::string() : read_file(log_path_);
}

// ---- TempDir --------------------------------------------------------------------------

TempDir::TempDir() {
  char tmpl[] = "/tmp/axon-dpit-XXXXXX";
  if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (!keep_ && !path_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

// ---- Daemon and workers ---------------------------------------------------------------

std::string make_config(const TestNetwork& net, const std::string& run_dir, const ConfigSpec& spec) {
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  std::string queue_list, core_list;
  for (std::uint32_t q = 0; q < std::max(1u, spec.queue_count); ++q) {
    queue_list += (q == 0 ? "" : ", ") + std::to_string(q);
    core_list += (q == 0 ? "" : ", ") + std::to_string((unsigned(spec.core) + q) % cpus);
  }
  std::ostringstream c;
  c << "# generated by dataplane_integration_test\n"
    << "[dataplane]\n"
    << "interface = \"" << (spec.interface.empty() ? net.root_if : spec.interface) << "\"\n"
    << "backend = \"" << spec.backend << "\"\n"
    << "queues = [" << queue_list << "]\n"
    << "cores = [" << core_list << "]\n"
    << "ports = [" << spec.port << "]\n"
    << "run_dir = \"" << run_dir << "\"\n"
    << "drain_timeout_ms = 10000\n"
    << "busy_retry_after_us = " << spec.busy_retry_after_us << "\n"
    << spec.dataplane_extra << "\n"
    << "[xdp]\n"
    << "frames = 1024\n"
    << "frame_size = 4096\n"
    << spec.xdp_extra << "\n"
    << "[shm]\n"
    << spec.shm << "\n"
    << backend_sections(net, spec) << "\n";
  for (const auto& w : spec.workers) c << "[[workers]]\nname = \"" << w << "\"\n\n";
  c << spec.tables << "\n";
  return c.str();
}

std::string backend_sections(const TestNetwork& net, const ConfigSpec& spec) {
  if (spec.backend == "dpdk") {
    // DPDK drives the veth's root end through a net_af_xdp vdev (its own XDP program and
    // AF_XDP socket). A file prefix per daemon keeps the EAL runtime dirs of this binary's
    // daemons apart; small pools: the tests need correctness, not depth.
    static int serial = 0;
    const std::string queue_arg = spec.queue_count > 1 ? ",queue_count=" + std::to_string(spec.queue_count) : "";
    return "[dpdk]\nvdevs = [\"net_af_xdp0,iface=" + net.root_if + queue_arg + "\"]\nfile_prefix = \"axit-" +
           std::to_string(getpid()) + "-" + std::to_string(serial++) +
           "\"\nmbufs = 4095\nmbuf_cache = 64\nrx_descriptors = 512\ntx_descriptors = 512\n";
  }
  if (spec.backend == "uring" || spec.backend == "auto") {
    // Small rings: the tests need correctness, not depth, and several daemons may run at once.
    return "[uring]\nbuffers = 1024\ntx_frames = 512\n" + spec.uring_extra + "\n";
  }
  return "";
}

Daemon::~Daemon() {
  process_.kill_now();
}

bool Daemon::write_config(const std::string& text) const {
  // Write-then-rename, so a SIGHUP never reads half a file.
  const std::string tmp = config_path() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) return false;
  }
  return rename(tmp.c_str(), config_path().c_str()) == 0;
}

bool Daemon::start(const std::string& config_text, std::string* error) {
  if (!write_config(config_text)) {
    if (error != nullptr) *error = "cannot write " + config_path();
    return false;
  }
  return process_.start({AXON_DATAPLANE_BIN, "--config", config_path()}, {}, run_dir_ + "/dataplane.log", error);
}

bool Daemon::wait_ready(std::chrono::milliseconds timeout, std::string* error) {
  bool exited = false;
  bool ready = eventually(
      [&] {
        if (!process_.running()) {
          exited = true;
          return true;
        }
        // A file whose writer is gone (an earlier daemon in this run_dir) is replaced by the
        // new daemon's: open again until the reader sees a live one.
        if (!stats_ || !stats_->alive()) {
          stats_.reset();
          if (auto opened = StatsReader::open(stats_path())) stats_.emplace(std::move(opened).value());
        }
        // Ready, and every lcore has been through its loop at least once: the poll threads
        // really run (on a busy shared machine a pinned thread can take a while to get a CPU).
        return stats_ && stats_->ready() && stats_->lcores(&LcoreStats::loops) > 0;
      },
      timeout);
  if (exited) {
    if (error != nullptr) {
      *error = "axon-dataplane exited with " + std::to_string(process_.exit_code().value_or(-1)) +
               " before it was ready; its log:\n" + log();
    }
    return false;
  }
  if (!ready && error != nullptr) {
    *error =
        std::string("axon-dataplane not ready in time (") +
        (stats_ && stats_->ready() ? "ready flag set, but the lcore never ran a loop: CPU starved?" : "no ready flag") +
        "); its log:\n" + log();
  }
  return ready;
}

std::optional<int> Daemon::stop(std::chrono::milliseconds timeout) {
  if (!process_.running()) return process_.exit_code();
  process_.signal(SIGTERM);
  auto code = process_.wait_exit(timeout);
  if (!code) process_.kill_now();
  return code;
}

bool Worker::start(const Daemon& daemon, const std::string& slot_name, std::uint64_t work_ns, std::string* error) {
  static std::atomic<int> serial{0};
  const std::string log = daemon.run_dir() + "/worker-" + slot_name + "-" + std::to_string(serial++) + ".log";
  return process_.start({AXON_ECHO_WORKER_BIN, "--work-ns", std::to_string(work_ns)},
                        {"AXON_WORKER_SOCKET=" + daemon.socket_path(slot_name)}, log, error);
}

// ---- AxpClient ------------------------------------------------------------------------

AxpClient::AxpClient(const TestNetwork& net, int family, std::uint16_t server_port) : family_(family) {
  fd_ = net.socket_in_ns(family, SOCK_DGRAM, 0);
  if (fd_ < 0) return;
  int rcvbuf = 4 << 20;
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  sockaddr_storage local{};
  socklen_t local_len = 0;
  if (family == AF_INET) {
    auto* l = reinterpret_cast<sockaddr_in*>(&local);
    l->sin_family = AF_INET;
    l->sin_addr = net.ns_addr4;
    local_len = sizeof(sockaddr_in);
    auto* s = reinterpret_cast<sockaddr_in*>(&server_);
    s->sin_family = AF_INET;
    s->sin_addr = net.root_addr4;
    s->sin_port = htons(server_port);
    server_len_ = sizeof(sockaddr_in);
  } else {
    auto* l = reinterpret_cast<sockaddr_in6*>(&local);
    l->sin6_family = AF_INET6;
    l->sin6_addr = net.ns_addr6;
    local_len = sizeof(sockaddr_in6);
    auto* s = reinterpret_cast<sockaddr_in6*>(&server_);
    s->sin6_family = AF_INET6;
    s->sin6_addr = net.root_addr6;
    s->sin6_port = htons(server_port);
    server_len_ = sizeof(sockaddr_in6);
  }
  if (bind(fd_, reinterpret_cast<sockaddr*>(&local), local_len) != 0) {
    close(fd_);
    fd_ = -1;
    return;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  local_port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                        : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
}

AxpClient::AxpClient(const std::string& loopback_server, std::uint16_t server_port) {
  family_ = loopback_server.find(':') == std::string::npos ? AF_INET : AF_INET6;
  fd_ = ::socket(family_, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_storage local{};
  socklen_t local_len = 0;
  if (family_ == AF_INET) {
    auto* l = reinterpret_cast<sockaddr_in*>(&local);
    l->sin_family = AF_INET;
    inet_pton(AF_INET, loopback_server.c_str(), &l->sin_addr);
    local_len = sizeof(sockaddr_in);
    auto* s = reinterpret_cast<sockaddr_in*>(&server_);
    *s = *l;
    s->sin_port = htons(server_port);
    server_len_ = sizeof(sockaddr_in);
  } else {
    auto* l = reinterpret_cast<sockaddr_in6*>(&local);
    l->sin6_family = AF_INET6;
    inet_pton(AF_INET6, loopback_server.c_str(), &l->sin6_addr);
    local_len = sizeof(sockaddr_in6);
    auto* s = reinterpret_cast<sockaddr_in6*>(&server_);
    *s = *l;
    s->sin6_port = htons(server_port);
    server_len_ = sizeof(sockaddr_in6);
  }
  bind_and_name(local, local_len);
}

void AxpClient::bind_and_name(const sockaddr_storage& local, socklen_t local_len) {
  if (bind(fd_, reinterpret_cast<const sockaddr*>(&local), local_len) != 0) {
    close(fd_);
    fd_ = -1;
    return;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  local_port_ = ntohs(family_ == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
}

AxpClient::~AxpClient() {
  if (fd_ >= 0) close(fd_);
}

bool AxpClient::send(const protocol::Header& header, std::span<const std::uint8_t> payload) {
  auto bytes = encode(header, payload);
  return !bytes.empty() && send_bytes(bytes);
}

bool AxpClient::widen_receive_buffer(int bytes) {
  return setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) == 0;
}

bool AxpClient::allow_fragmentation() {
  int mode = IP_PMTUDISC_DONT;
  return setsockopt(fd_, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof mode) == 0;
}

bool AxpClient::send_bytes(std::span<const std::uint8_t> datagram) {
  ssize_t n =
      sendto(fd_, datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&server_), server_len_);
  return n == ssize_t(datagram.size());
}

std::optional<Received> AxpClient::receive(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, left.count() > 0 ? int(left.count()) : 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return std::nullopt;
    }
    Received rx;
    rx.bytes.resize(65536);
    socklen_t from_len = sizeof rx.from;
    ssize_t n =
        recvfrom(fd_, rx.bytes.data(), rx.bytes.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&rx.from), &from_len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return std::nullopt;
    }
    rx.bytes.resize(std::size_t(n));
    rx.reason = protocol::validate(rx.bytes);
    if (rx.reason == protocol::Reason::ok) {
      rx.header = protocol::decode_header(rx.bytes);
      auto payload = protocol::payload_of(rx.bytes);
      rx.payload.assign(payload.begin(), payload.end());
    }
    return rx;
  }
}

std::vector<Received> AxpClient::receive_n(std::size_t count, std::chrono::milliseconds timeout) {
  return receive_until([count](const std::vector<Received>& got) { return got.size() >= count; }, timeout);
}

std::vector<Received> AxpClient::receive_until(const std::function<bool(const std::vector<Received>&)>& done,
                                               std::chrono::milliseconds timeout) {
  std::vector<Received> got;
  const auto deadline = Clock::now() + timeout;
  while (!done(got)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    auto rx = receive(left);
    if (!rx) break;
    got.push_back(std::move(*rx));
  }
  return got;
}

protocol::Header request_header(std::uint32_t tenant, std::uint32_t agent) {
  protocol::Header h;
  h.type = protocol::MessageType::request;
  h.tenant_id = tenant;
  h.agent_id = agent;
  h.request_id = next_request_id();
  h.trace_id = protocol::random_trace_id();
  h.span_id = protocol::random_span_id();
  h.trace_flags = protocol::kTraceSampled;
  return h;
}

std::vector<std::uint8_t> encode(const protocol::Header& header, std::span<const std::uint8_t> payload) {
  std::vector<std::uint8_t> out(protocol::kHeaderLen + payload.size());
  std::size_t n = protocol::encode_datagram(header, payload, out);
  out.resize(n);
  return out;
}

std::vector<std::uint8_t> pattern_payload(std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> p(size);
  for (std::size_t i = 0; i < size; ++i) p[i] = std::uint8_t(seed + i * 31 + (i >> 8));
  return p;
}

// ---- raw frames -----------------------------------------------------------------------

std::uint32_t checksum_partial(std::span<const std::uint8_t> data, std::uint32_t sum) {
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) sum += std::uint32_t(data[i]) << 8 | data[i + 1];
  if (i < data.size()) sum += std::uint32_t(data[i]) << 8;
  return sum;
}

std::uint16_t inet_checksum(std::span<const std::uint8_t> data, std::uint32_t partial) {
  std::uint32_t sum = checksum_partial(data, partial);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return std::uint16_t(~sum & 0xffff);
}

std::vector<std::uint8_t> build_ipv4_frame(const FrameSpec& spec, std::span<const std::uint8_t> udp_payload) {
  std::vector<std::uint8_t> f;
  f.insert(f.end(), spec.dst_mac.begin(), spec.dst_mac.end());
  f.insert(f.end(), spec.src_mac.begin(), spec.src_mac.end());
  for (std::uint16_t tci : spec.vlan_tags) {
    f.push_back(0x81);
    f.push_back(0x00);
    f.push_back(std::uint8_t(tci >> 8));
    f.push_back(std::uint8_t(tci));
  }
  f.push_back(0x08);
  f.push_back(0x00);
  const std::size_t ip = f.size();
  const std::uint16_t udp_len = std::uint16_t(8 + udp_payload.size());
  f.resize(ip + 28);
  std::uint8_t* h = f.data() + ip;
  h[0] = 0x45;
  h[1] = 0;
  put16(h + 2, std::uint16_t(20 + udp_len + spec.ip_len_extra));
  put16(h + 4, 0x4242);
  put16(h + 6, spec.frag_off);
  h[8] = 64;
  h[9] = 17;
  put16(h + 10, 0);
  std::memcpy(h + 12, &spec.src, 4);
  std::memcpy(h + 16, &spec.dst, 4);
  put16(h + 10, inet_checksum(std::span<const std::uint8_t>(h, 20)));
  std::uint8_t* u = h + 20;
  put16(u, spec.src_port);
  put16(u + 2, spec.dst_port);
  put16(u + 4, spec.udp_len.value_or(udp_len));
  put16(u + 6, 0);
  f.insert(f.end(), udp_payload.begin(), udp_payload.end());
  h = f.data() + ip;
  u = h + 20;
  std::uint32_t pseudo = checksum_partial(std::span<const std::uint8_t>(h + 12, 8)) + 17 + udp_len;
  std::uint16_t check = inet_checksum(std::span<const std::uint8_t>(u, udp_len), pseudo);
  put16(u + 6, check == 0 ? 0xffff : check);
  return f;
}

RawSocket::RawSocket(const TestNetwork& net) : ifindex_(net.ns_ifindex) {
  fd_ = net.socket_in_ns(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd_ < 0) return;
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = ifindex_;
  int one = 1;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      setsockopt(fd_, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) != 0) {
    close(fd_);
    fd_ = -1;
  }
}

RawSocket::~RawSocket() {
  if (fd_ >= 0) close(fd_);
}

bool RawSocket::send(std::span<const std::uint8_t> frame) {
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_ifindex = ifindex_;
  addr.sll_halen = 6;
  std::memcpy(addr.sll_addr, frame.data(), 6);
  ssize_t n = sendto(fd_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  return n == ssize_t(frame.size());
}

std::optional<RawSocket::Frame> RawSocket::receive(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, left.count() > 0 ? int(left.count()) : 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return std::nullopt;
    }
    Frame frame;
    frame.bytes.resize(65536);
    sockaddr_ll from{};
    alignas(cmsghdr) char control[256];
    iovec iov{frame.bytes.data(), frame.bytes.size()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return std::nullopt;
    }
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    frame.bytes.resize(std::size_t(n));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
        tpacket_auxdata aux{};
        std::memcpy(&aux, CMSG_DATA(c), sizeof aux);
        frame.vlan_valid = (aux.tp_status & TP_STATUS_VLAN_VALID) != 0;
        frame.vlan_tci = aux.tp_vlan_tci;
        frame.vlan_tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) != 0 ? aux.tp_vlan_tpid : 0x8100;
      }
    }
    return frame;
  }
}

}  // namespace axon::dataplane::it

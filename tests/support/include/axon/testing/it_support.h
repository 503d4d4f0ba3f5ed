// Support for the data plane integration tests: on the network fixture (test_network.h),
// the real axon-dataplane and echo_worker processes, a read-only view of the stats file, an
// AXP client whose socket lives inside the namespace, and raw frame crafting.
//
// Every resource is RAII and owned by the test that made it: processes are killed by pid and
// reaped, the network fixture deletes its namespace (with the veth pair and any XDP program), and
// children carry PR_SET_PDEATHSIG so a crashed test binary leaves no daemon running.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "axon/dataplane/stats_reader.h"
#include "axon/protocol/axp.h"
#include "axon/testing/test_network.h"

namespace axon::dataplane::it {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long to wait for something that normally takes milliseconds. Generous on purpose: the
// machine is shared and a starved process must not read as a broken data plane; a passing test
// never waits this long (every wait ends as soon as its condition holds).
inline constexpr std::chrono::milliseconds kPatience = 15s;

// Polls cond every ~2 ms until it holds or timeout passes; returns whether it held.
template <typename F>
bool eventually(F&& cond, std::chrono::milliseconds timeout = kPatience) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(2ms);
  }
}

// The network fixture (axon::test_network) and its command helpers, under the names these
// tests have always used.
using axon::testing::in_netns;
using axon::testing::run_command;
using axon::testing::TestNetwork;

// A child process started with fork+exec, PR_SET_PDEATHSIG(SIGKILL), output to a log file.
// The destructor kills it (SIGCONT first, in case it was stopped) and reaps it.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool start(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
             const std::string& log_path, std::string* error);
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  // True while the process has not exited (reaps it if it has).
  bool running();
  bool signal(int sig);
  // Waits for exit; returns the exit code (or 128 + signal), nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGKILL + reap, if still running.
  void kill_now();
  [[nodiscard]] std::optional<int> exit_code() const noexcept { return exit_code_; }
  [[nodiscard]] std::string log() const;
  [[nodiscard]] const std::string& log_path() const noexcept { return log_path_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// A temporary directory, removed on destruction unless keep() was called.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  void keep() noexcept { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

// Knobs for a generated daemon configuration.
struct ConfigSpec {
  // [dataplane] backend: "xdp", "uring", "dpdk" or "auto"; the backend's own section comes from
  // backend_sections() below.
  std::string backend = "xdp";
  std::string interface;  // default: the veth pair's root end
  std::uint16_t port = protocol::kDefaultPort;
  std::string uring_extra;      // lines appended to [uring] (backend uring or auto)
  std::string xdp_extra;        // lines appended to [xdp]
  std::string dataplane_extra;  // lines appended to [dataplane]
  std::string shm =             // the whole [shm] body: small segments (a hugepage each)
      "request_capacity = 128\nreply_capacity = 128\nloan_capacity = 16\nsmall_buffer_size = 2048\n"
      "small_buffer_count = 256\nlarge_buffer_size = 65536\nlarge_buffer_count = 4\n";
  std::vector<std::string> workers{"w0"};
  // [[tenants]] and [[agents]] tables, verbatim. Default: tenant 1, agent 7 -> w0.
  std::string tables = "[[tenants]]\nid = 1\nname = \"t1\"\n\n[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\n";
  int core = 1;
  // queues = [0 .. queue_count-1], one lcore each on cores core, core+1, ... (modulo the CPU
  // count); dpdk's vdev gets the same queue_count.
  std::uint32_t queue_count = 1;
  std::uint32_t busy_retry_after_us = 200;
};
std::string make_config(const TestNetwork& net, const std::string& run_dir, const ConfigSpec& spec);

// The per-backend hook of make_config: the TOML sections a backend needs to serve `net` (for
// "uring" its [uring] table; for "dpdk" the [dpdk] table with a vdev on the veth). Backends
// that need nothing return "".
std::string backend_sections(const TestNetwork& net, const ConfigSpec& spec);

// The real axon-dataplane, with its own run_dir.
class Daemon {
 public:
  explicit Daemon(std::string run_dir) : run_dir_(std::move(run_dir)) {}
  ~Daemon();  // SIGKILL if still running (tests stop it with stop())

  [[nodiscard]] std::string config_path() const { return run_dir_ + "/dataplane.toml"; }
  [[nodiscard]] std::string stats_path() const { return run_dir_ + "/dataplane.stats"; }
  [[nodiscard]] std::string socket_path(const std::string& worker) const {
    return run_dir_ + "/workers/" + worker + ".sock";
  }
  bool write_config(const std::string& text) const;
  // Writes the config and starts the daemon (does not wait).
  bool start(const std::string& config_text, std::string* error);
  // Waits until the stats file says ready (its writer alive, the flag set); fails early if the
  // daemon exits. stats() is valid afterwards.
  bool wait_ready(std::chrono::milliseconds timeout, std::string* error);
  // SIGTERM, then waits; returns the exit code (nullopt: had to be killed).
  std::optional<int> stop(std::chrono::milliseconds timeout = 15s);
  bool running() { return process_.running(); }
  bool signal(int sig) { return process_.signal(sig); }
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) { return process_.wait_exit(timeout); }
  [[nodiscard]] std::string log() const { return process_.log(); }
  [[nodiscard]] pid_t pid() const noexcept { return process_.pid(); }
  [[nodiscard]] StatsReader& stats() { return *stats_; }
  [[nodiscard]] const std::string& run_dir() const noexcept { return run_dir_; }

 private:
  std::string run_dir_;
  ChildProcess process_;
  std::optional<StatsReader> stats_;  // the library reader (axon::dataplane_stats)
};

// One echo_worker attached to a worker slot.
class Worker {
 public:
  Worker() = default;
  ~Worker() = default;  // ChildProcess kills and reaps
  // extra_args: more echo_worker options (e.g. "--count").
  bool start(const Daemon& daemon, const std::string& slot_name, std::uint64_t work_ns, std::string* error,
             const std::vector<std::string>& extra_args = {});
  [[nodiscard]] pid_t pid() const noexcept { return process_.pid(); }
  ChildProcess& process() noexcept { return process_; }
  [[nodiscard]] std::string log() const { return process_.log(); }

 private:
  ChildProcess process_;
};

// One datagram received by the client, decoded when it is valid AXP.
struct Received {
  std::vector<std::uint8_t> bytes;
  protocol::Reason reason = protocol::Reason::axp_truncated;
  protocol::Header header{};
  std::vector<std::uint8_t> payload;
  sockaddr_storage from{};
};

// A UDP socket inside the namespace, bound to the namespace's address (or, with the second
// constructor, a socket in this process's namespace talking to a loopback server).
class AxpClient {
 public:
  AxpClient(const TestNetwork& net, int family, std::uint16_t server_port = protocol::kDefaultPort);
  AxpClient(const std::string& loopback_server, std::uint16_t server_port);
  ~AxpClient();
  AxpClient(const AxpClient&) = delete;
  AxpClient& operator=(const AxpClient&) = delete;

  [[nodiscard]] bool ok() const noexcept { return fd_ >= 0; }
  [[nodiscard]] std::uint16_t local_port() const noexcept { return local_port_; }
  // For tests that let hundreds of replies queue up before reading them.
  bool widen_receive_buffer(int bytes);
  // Lets the kernel fragment datagrams above the path MTU (IPv4: no DF) instead of refusing them.
  bool allow_fragmentation();
  bool send(const protocol::Header& header, std::span<const std::uint8_t> payload = {});
  bool send_bytes(std::span<const std::uint8_t> datagram);
  std::optional<Received> receive(std::chrono::milliseconds timeout);
  // Receives until `count` datagrams arrived or timeout passed.
  std::vector<Received> receive_n(std::size_t count, std::chrono::milliseconds timeout);
  // Receives until `done(all so far)` holds or timeout passed.
  std::vector<Received> receive_until(const std::function<bool(const std::vector<Received>&)>& done,
                                      std::chrono::milliseconds timeout);

 private:
  void bind_and_name(const sockaddr_storage& local, socklen_t local_len);

  int fd_ = -1;
  int family_ = AF_INET;
  sockaddr_storage server_{};
  socklen_t server_len_ = 0;
  std::uint16_t local_port_ = 0;
};

// A REQUEST header with fresh trace context and a unique request id.
protocol::Header request_header(std::uint32_t tenant, std::uint32_t agent);
std::vector<std::uint8_t> encode(const protocol::Header& header, std::span<const std::uint8_t> payload = {});
std::vector<std::uint8_t> pattern_payload(std::size_t size, std::uint8_t seed);

// ---- raw frames -----------------------------------------------------------------------

// Internet checksum (RFC 1071) over data, starting from a partial sum.
std::uint16_t inet_checksum(std::span<const std::uint8_t> data, std::uint32_t partial = 0);
std::uint32_t checksum_partial(std::span<const std::uint8_t> data, std::uint32_t sum = 0);

struct FrameSpec {
  std::array<std::uint8_t, 6> dst_mac{}, src_mac{};
  std::vector<std::uint16_t> vlan_tags;  // TCIs, outermost first (ethertype 0x8100)
  in_addr src{}, dst{};
  std::uint16_t src_port = 40000, dst_port = protocol::kDefaultPort;
  std::uint16_t frag_off = 0x4000;       // host order: flags + offset (default DF)
  std::optional<std::uint16_t> udp_len;  // override the UDP length field
  std::uint16_t ip_len_extra = 0;        // IPv4 total length claims this many bytes more than sent
};
// Ethernet (+VLAN) / IPv4 / UDP frame around `udp_payload`, checksums computed.
std::vector<std::uint8_t> build_ipv4_frame(const FrameSpec& spec, std::span<const std::uint8_t> udp_payload);

// A raw AF_PACKET socket inside the namespace, bound to the namespace end of the veth.
class RawSocket {
 public:
  explicit RawSocket(const TestNetwork& net);
  ~RawSocket();
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  [[nodiscard]] bool ok() const noexcept { return fd_ >= 0; }
  bool send(std::span<const std::uint8_t> frame);
  // An incoming frame (not our own outgoing ones), with its VLAN tag from PACKET_AUXDATA
  // when the kernel stripped one.
  struct Frame {
    std::vector<std::uint8_t> bytes;
    bool vlan_valid = false;
    std::uint16_t vlan_tci = 0;
    std::uint16_t vlan_tpid = 0;
  };
  std::optional<Frame> receive(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  int ifindex_ = 0;
};

}  // namespace axon::dataplane::it

// The tests' one network fixture; see test_network.h.
#include "axon/testing/test_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

extern char** environ;

namespace axon::testing {
namespace {

constexpr std::size_t kMaxPrefix = 5;

std::string mac_text(const std::array<std::uint8_t, 6>& m) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

// The pid in a namespace name `<prefix>-<pid>[-...]`, or 0 when the name is not of that form.
pid_t owner_of(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix + "-", 0) != 0) return 0;
  const std::string rest = name.substr(prefix.size() + 1);
  const std::string digits = rest.substr(0, rest.find('-'));
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return pid_t(std::stol(digits));
}

// `ip` where `ns` names a namespace (`ip -n ns ...`) or, when empty, this process's namespace.
std::vector<std::string> ip_in(const std::string& ns, std::vector<std::string> args) {
  std::vector<std::string> argv{"ip"};
  if (!ns.empty()) argv.insert(argv.end(), {"-n", ns});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// Whether `dev` (in ns) has carrier: `state UP` in `ip -o link show`.
bool link_up(const std::string& ns, const std::string& dev) {
  std::string out;
  return run_command(ip_in(ns, {"-o", "link", "show", "dev", dev}), &out) == 0 &&
         out.find(" state UP ") != std::string::npos;
}

int ifindex_in(const std::string& ns, const std::string& dev) {
  if (ns.empty()) return int(if_nametoindex(dev.c_str()));
  int index = 0;
  in_netns(ns, [&] { index = int(if_nametoindex(dev.c_str())); });
  return index;
}

}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* output) {
  if (argv.empty()) return -1;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawned != 0) {
    close(pipe_fds[0]);
    if (output != nullptr) *output = argv[0] + ": " + std::strerror(spawned);
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
    int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      why = "open /run/netns/" + ns + ": " + std::strerror(errno);
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

void TestNetwork::remove_leftovers(const std::string& prefix) {
  std::string out;
  if (run_command({"ip", "netns", "list"}, &out) != 0) return;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const std::string name = line.substr(0, line.find(' '));
    const pid_t pid = owner_of(name, prefix);
    if (pid <= 0 || pid == getpid()) continue;
    // Only a namespace whose creator is gone is a leftover: a live process (another test
    // binary of the same prefix, or another build tree's) owns its own namespaces.
    const bool alive = kill(pid, 0) == 0 || errno == EPERM;
    if (!alive) run_command({"ip", "netns", "del", name});
  }
}

std::unique_ptr<TestNetwork> TestNetwork::create(const NetworkSpec& spec, std::string& error) {
  if (spec.prefix.empty() || spec.prefix.size() > kMaxPrefix || spec.prefix.find_first_of("-/ ") != std::string::npos) {
    error = "test network prefix \"" + spec.prefix + "\": use 1 to 5 characters without '-', '/' or spaces";
    return nullptr;
  }
  remove_leftovers(spec.prefix);
  std::unique_ptr<TestNetwork> net(new TestNetwork());
  if (!net->build(spec, error)) return nullptr;  // the destructor removes what was made
  return net;
}

bool TestNetwork::build(const NetworkSpec& spec, std::string& error) {
  static std::atomic<unsigned> sequence{0};
  const unsigned n = sequence.fetch_add(1) % 100;
  const pid_t pid = getpid();
  topology = spec.topology;
  ns = spec.prefix + "-" + std::to_string(pid) + "-" + std::to_string(n);
  if (topology == Topology::two_namespaces) root_ns = ns + "-root";
  const std::string base = spec.prefix + std::to_string(pid % 100000) + "x" + std::to_string(n);
  root_if = base + "a";
  ns_if = base + "b";
  root_mac = {0x02, 0xa1, std::uint8_t(pid >> 16), std::uint8_t(pid >> 8), std::uint8_t(pid), std::uint8_t(2 * n + 1)};
  ns_mac = {0x02, 0xa1, std::uint8_t(pid >> 16), std::uint8_t(pid >> 8), std::uint8_t(pid), std::uint8_t(2 * n + 2)};

  // A /30 in 10.199.128-191.x that the root namespace does not use yet.
  std::string addrs;
  run_command({"ip", "-4", "-o", "addr", "show"}, &addrs);
  int third = -1;
  for (int i = 0; i < 64 && third < 0; ++i) {
    const int candidate = 128 + (int(pid) + int(n) + i) % 64;
    if (addrs.find("10.199." + std::to_string(candidate) + ".") == std::string::npos) third = candidate;
  }
  if (third < 0) {
    error = "no free 10.199.128-191.0/30 subnet in the root namespace: delete stale test addresses (ip addr)";
    return false;
  }
  const std::string net4 = "10.199." + std::to_string(third) + ".";
  root_ip4 = net4 + "1";
  ns_ip4 = net4 + "2";
  prefix4 = net4 + "0/30";
  inet_pton(AF_INET, root_ip4.c_str(), &root_addr4);
  inet_pton(AF_INET, ns_ip4.c_str(), &ns_addr4);

  std::string out;
  auto step = [&](const std::vector<std::string>& argv) {
    if (run_command(argv, &out) == 0) return true;
    error = "`";
    for (const auto& a : argv) error += a + " ";
    error += "` failed (needs root and iproute2): " + out;
    return false;
  };
  // A namespace of our exact name can only be a leftover of a dead process that had our pid.
  for (const auto& name : {root_ns, ns}) {
    if (name.empty()) continue;
    run_command({"ip", "netns", "del", name});
    if (!step({"ip", "netns", "add", name})) return false;
    created_namespaces_.push_back(name);  // from here on the destructor deletes it
    if (!step({"ip", "-n", name, "link", "set", "lo", "up"})) return false;
  }
  // One command creates both ends, the peer already inside its namespace: there is no moment
  // when a crash could leave a half-made pair in the root namespace.
  const std::string queue_text = std::to_string(std::max(1u, spec.queues));
  if (!step(ip_in(root_ns, {"link",
                            "add",
                            root_if,
                            "address",
                            mac_text(root_mac),
                            "numtxqueues",
                            queue_text,
                            "numrxqueues",
                            queue_text,
                            "type",
                            "veth",
                            "peer",
                            "name",
                            ns_if,
                            "address",
                            mac_text(ns_mac),
                            "numtxqueues",
                            queue_text,
                            "numrxqueues",
                            queue_text,
                            "netns",
                            ns}))) {
    return false;
  }
  if (!spec.ipv6) {
    // Before the links come up, so not even the first neighbour discovery frames leave.
    auto sysctl_in = [](const std::string& where, const std::string& dev) {
      std::vector<std::string> argv;
      if (!where.empty()) argv = {"ip", "netns", "exec", where};
      argv.insert(argv.end(), {"sysctl", "-qw", "net.ipv6.conf." + dev + ".disable_ipv6=1"});
      return argv;
    };
    if (!step(sysctl_in(root_ns, root_if)) || !step(sysctl_in(ns, ns_if))) return false;
  }
  if (!step(ip_in(root_ns, {"addr", "add", root_ip4 + "/30", "dev", root_if})) ||
      !step(ip_in(ns, {"addr", "add", ns_ip4 + "/30", "dev", ns_if}))) {
    return false;
  }
  const std::string net6 = "fd99:199:" + std::to_string(third) + "::";
  root_ip6 = net6 + "1";
  ns_ip6 = net6 + "2";
  has_ipv6 = spec.ipv6 &&
             run_command(ip_in(root_ns, {"-6", "addr", "add", root_ip6 + "/64", "dev", root_if, "nodad"})) == 0 &&
             run_command(ip_in(ns, {"-6", "addr", "add", ns_ip6 + "/64", "dev", ns_if, "nodad"})) == 0;
  inet_pton(AF_INET6, root_ip6.c_str(), &root_addr6);
  inet_pton(AF_INET6, ns_ip6.c_str(), &ns_addr6);
  if (!step(ip_in(root_ns, {"link", "set", root_if, "up"})) || !step(ip_in(ns, {"link", "set", ns_if, "up"}))) {
    return false;
  }

  root_ifindex = ifindex_in(root_ns, root_if);
  ns_ifindex = ifindex_in(ns, ns_if);
  if (root_ifindex <= 0 || ns_ifindex <= 0) {
    error = "veth pair " + root_if + "/" + ns_if + " has no ifindex";
    return false;
  }
  // Both ends up with carrier before anyone sends (bounded: a few ms normally, 5 s at most).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!(link_up(root_ns, root_if) && link_up(ns, ns_if))) {
    if (std::chrono::steady_clock::now() >= deadline) {
      error = "veth pair " + root_if + "/" + ns_if + " did not come up within 5 s";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TestNetwork::~TestNetwork() {
  // Deleting one end deletes the pair (and any XDP program on it) at once; a namespace's
  // devices go asynchronously after `ip netns del`.
  if (!created_namespaces_.empty()) run_command(ip_in(root_ns, {"link", "del", root_if}));
  for (auto it = created_namespaces_.rbegin(); it != created_namespaces_.rend(); ++it) {
    run_command({"ip", "netns", "del", *it});
  }
}

int TestNetwork::socket_in_ns(int domain, int type, int protocol) const {
  int fd = -1;
  in_netns(ns, [&] { fd = ::socket(domain, type | SOCK_CLOEXEC, protocol); });
  return fd;
}

std::unique_ptr<TestNetwork::Entered> TestNetwork::enter_root_ns() const {
  std::unique_ptr<Entered> entered(new Entered());
  if (root_ns.empty()) {
    entered->ok_ = true;
    return entered;
  }
  // thread-self: the calling thread's namespace, which may differ from the main thread's.
  entered->original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = open(("/run/netns/" + root_ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (entered->original_ < 0 || target < 0) {
    entered->error_ = "cannot open the namespace files of this thread or of " + root_ns + ": " + std::strerror(errno);
  } else if (setns(target, CLONE_NEWNET) != 0) {
    entered->error_ = "setns into " + root_ns + ": " + std::strerror(errno) + " (needs root)";
  } else {
    entered->ok_ = true;
  }
  if (target >= 0) close(target);
  return entered;
}

TestNetwork::Entered::~Entered() {
  if (original_ < 0) return;
  if (ok_ && setns(original_, CLONE_NEWNET) != 0) std::perror("setns back to the original namespace");
  close(original_);
}

}  // namespace axon::testing

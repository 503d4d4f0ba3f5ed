// The tests' one network fixture (issue 12 item 7): a veth pair of the test's own, in network
// namespaces the test creates, with IPv4 and (optionally) IPv6 addresses. Used by every test
// that needs a real interface: the XDP attach tests (axon_bpf_tests), the data plane
// integration tests and the control plane's daemon test. Target axon::test_network.
//
// Two topologies:
//   root_and_ns     `root_if` in this process's namespace, `ns_if` in the namespace `ns`
//                   (the daemons attach to root_if; clients live in ns);
//   two_namespaces  `root_if` in the namespace `root_ns`, which stands in for the root one,
//                   `ns_if` in `ns`: nothing of the test is visible in the root namespace, and
//                   traffic between the ends crosses the pair (so it meets root_if's XDP hook).
//                   enter_root_ns() moves the calling thread into root_ns for its scope.
//
// Names carry a prefix of the test binary's own and its pid (`<prefix>-<pid>-<n>`), so tests
// running at once never collide; create() first deletes namespaces of the same prefix whose
// creating process is gone (a crashed earlier run). The destructor deletes what create() made,
// which removes the veth pair and any XDP program attached to it.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace axon::testing {

// Runs argv (argv[0] looked up in PATH) and returns its exit status (128 + signal when it was
// killed, -1 when it could not start); output, when given, gets stdout and stderr.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr);

// Runs fn on a short-lived thread that entered the namespace first (setns). Sockets created
// there stay in the namespace for their whole life, whichever thread uses them later.
bool in_netns(const std::string& ns, const std::function<void()>& fn, std::string* error = nullptr);

enum class Topology { root_and_ns, two_namespaces };

struct NetworkSpec {
  Topology topology = Topology::root_and_ns;
  // Names: namespaces `<prefix>-<pid>-<n>` (and `...-root` for two_namespaces), links
  // `<prefix><pid mod 100000>x<n mod 100><a|b>`. At most 5 characters, so link names fit
  // IFNAMSIZ.
  std::string prefix = "axit";
  unsigned queues = 1;  // TX and RX queues per end
  // false: IPv6 disabled on both ends before they come up (no neighbour discovery, MLD or
  // router solicitations on the wire), for tests that count every frame.
  bool ipv6 = true;
};

// A veth pair: `root_if` (where the program under test attaches) and `ns_if` (the client side)
// with 10.199.X.1/30 and .2/30 and, unless disabled or refused by the kernel,
// fd99:199:X::1/64 and ::2/64 (nodad). With queues > 1 both ends get that many TX and RX
// queues: the namespace end spreads flows over its TX queues by hash, and veth delivers each
// frame on the root end's RX queue of the same index.
class TestNetwork {
 public:
  static std::unique_ptr<TestNetwork> create(const NetworkSpec& spec, std::string& error);
  static std::unique_ptr<TestNetwork> create(std::string& error, unsigned queues = 1) {
    NetworkSpec spec;
    spec.queues = queues;
    return create(spec, error);
  }
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  // Deletes the namespaces named `<prefix>-<pid>...` whose process is gone.
  static void remove_leftovers(const std::string& prefix = "axit");

  // A socket created inside `ns` (SOCK_CLOEXEC added), or -1.
  [[nodiscard]] int socket_in_ns(int domain, int type, int protocol) const;

  // While alive, the calling thread is inside root_ns (two_namespaces; a no-op for
  // root_and_ns). Destroy it before the network.
  class Entered {
   public:
    ~Entered();
    Entered(const Entered&) = delete;
    Entered& operator=(const Entered&) = delete;
    [[nodiscard]] bool ok() const noexcept { return ok_; }
    [[nodiscard]] const std::string& error() const noexcept { return error_; }

   private:
    friend class TestNetwork;
    Entered() = default;
    int original_ = -1;
    bool ok_ = false;
    std::string error_;
  };
  [[nodiscard]] std::unique_ptr<Entered> enter_root_ns() const;

  Topology topology = Topology::root_and_ns;
  std::string root_ns;  // empty for root_and_ns: root_if is in this process's namespace
  std::string ns;
  std::string root_if;
  std::string ns_if;
  int root_ifindex = 0;  // in root_ns
  int ns_ifindex = 0;    // inside ns
  std::array<std::uint8_t, 6> root_mac{};
  std::array<std::uint8_t, 6> ns_mac{};
  std::string root_ip4, ns_ip4, prefix4;  // prefix4: the /30 that holds both ends
  in_addr root_addr4{}, ns_addr4{};
  bool has_ipv6 = false;
  std::string root_ip6, ns_ip6;
  in6_addr root_addr6{}, ns_addr6{};

 private:
  TestNetwork() = default;
  bool build(const NetworkSpec& spec, std::string& error);
  std::vector<std::string> created_namespaces_;
};

}  // namespace axon::testing

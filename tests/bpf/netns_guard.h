// Throwaway network namespaces with a veth pair, for tests that attach XDP to a real interface.
//
// The constructor creates `axon-t-<pid>` holding veth0 and `axon-t-<pid>-peer` holding its peer
// (another prefix may be given)
// veth1 (both up), and moves the calling thread into the first. Traffic between the two ends
// crosses the pair, so it meets veth0's XDP hook; within one namespace it would take the local
// route instead. The destructor moves the thread back and deletes both namespaces, which
// destroys the veths and anything attached to them, even when the test failed half-way.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace axon::test {

class NetnsGuard {
 public:
  // `prefix` names the namespaces (<prefix><pid>, <prefix><pid>-peer): each suite may use its own.
  explicit NetnsGuard(const std::string& prefix = "axon-t-")
      : name_(prefix + std::to_string(getpid())), peer_(name_ + "-peer") {
    ok_ = setup();
  }

  ~NetnsGuard() {
    if (original_ >= 0) {
      if (setns(original_, CLONE_NEWNET) != 0) std::perror("setns back to the original namespace");
      close(original_);
    }
    run("ip netns del " + name_ + " 2>/dev/null");
    run("ip netns del " + peer_ + " 2>/dev/null");
  }

  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;

  [[nodiscard]] bool ok() const noexcept { return ok_; }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  // Runs `ip <args>` inside the peer namespace.
  [[nodiscard]] bool ip_in_peer(const std::string& args) const { return run("ip -n " + peer_ + " " + args); }

  // Runs `fn` with the calling thread in the peer namespace, then moves it back; false when
  // either move failed (fn then did not run).
  template <typename Fn>
  bool in_peer(Fn&& fn) const {
    int here = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int there = open(("/run/netns/" + peer_).c_str(), O_RDONLY | O_CLOEXEC);
    bool ok = here >= 0 && there >= 0 && setns(there, CLONE_NEWNET) == 0;
    if (ok) {
      fn();
      ok = setns(here, CLONE_NEWNET) == 0;
    }
    if (here >= 0) close(here);
    if (there >= 0) close(there);
    return ok;
  }

  // A socket created in the peer namespace (a socket keeps the namespace it was created in).
  [[nodiscard]] int peer_socket(int domain, int type) const {
    int here = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int there = open(("/run/netns/" + peer_).c_str(), O_RDONLY | O_CLOEXEC);
    int fd = -1;
    if (here >= 0 && there >= 0 && setns(there, CLONE_NEWNET) == 0) {
      fd = socket(domain, type, 0);
      if (setns(here, CLONE_NEWNET) != 0) std::perror("setns back from the peer namespace");
    }
    if (here >= 0) close(here);
    if (there >= 0) close(there);
    return fd;
  }

 private:
  static bool run(const std::string& command) { return std::system(command.c_str()) == 0; }
  bool fail(const std::string& what) {
    error_ = "netns setup failed at: " + what + " (needs root and iproute2)";
    return false;
  }

  bool setup() {
    // A leftover from a crashed run with a recycled pid would make `ip netns add` fail.
    run("ip netns del " + name_ + " 2>/dev/null");
    run("ip netns del " + peer_ + " 2>/dev/null");
    if (!run("ip netns add " + name_) || !run("ip netns add " + peer_)) return fail("ip netns add " + name_);
    if (!run("ip -n " + name_ + " link add veth0 type veth peer name veth1 netns " + peer_))
      return fail("creating veth0/veth1");
    if (!run("ip -n " + name_ + " link set veth0 up") || !run("ip -n " + peer_ + " link set veth1 up") ||
        !run("ip -n " + name_ + " link set lo up"))
      return fail("bringing the veth pair up");
    original_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    if (original_ < 0 || target < 0) {
      if (target >= 0) close(target);
      return fail("opening namespace files");
    }
    bool entered = setns(target, CLONE_NEWNET) == 0;
    close(target);
    if (!entered) return fail("setns into " + name_);
    return true;
  }

  std::string name_;
  std::string peer_;
  std::string error_;
  int original_ = -1;
  bool ok_ = false;
};

}  // namespace axon::test

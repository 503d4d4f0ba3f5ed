// The fleet tests' etcd: a real cluster of N etcd members (Debian's etcd-server), each in a
// network namespace of its own with a veth into a bridge in a hub namespace; this process
// reaches them over one more veth from its own namespace. Short heartbeat and election
// timeouts, data dirs in a temp dir, members stopped and started by the test, everything
// (processes by PID, namespaces, the temp dir) removed on destruction. Names: `axfl-<pid>-*`,
// so concurrent runs never collide and a crashed run's namespaces are removed next time.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace axon::fleet::testing {

class EtcdCluster {
 public:
  // Starts `members` members and waits until the cluster answers (a leader is elected).
  // nullptr with `error` set when etcd is missing or does not come up.
  static std::unique_ptr<EtcdCluster> start(unsigned members, std::string& error);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  std::vector<std::string> endpoints() const;  // http://10.197.X.(i+1):2379, one per member
  std::string endpoint(unsigned member) const;
  unsigned size() const { return unsigned(pids_.size()); }

  // SIGKILL (hard = true) or SIGTERM, then reaped. Idempotent.
  void stop(unsigned member, bool hard = false);
  // Restarts a stopped member with its data dir; waits until it answers (true) or 15 s pass.
  bool restart(unsigned member, std::string& error);
  // Restarts every stopped member at once (one alone has no quorum) and waits for the cluster.
  bool restart_all(std::string& error);
  bool running(unsigned member) const { return pids_[member] > 0; }
  // Waits until a read through `endpoints` succeeds (15 s at most).
  static bool wait_ready(const std::vector<std::string>& endpoints, std::string& error);

 private:
  EtcdCluster() = default;
  bool setup_network(std::string& error);
  bool spawn(unsigned member, std::string& error);
  std::string ns(unsigned member) const;

  std::string tag_;  // axfl-<pid>
  unsigned subnet_ = 0;
  std::string dir_;
  std::vector<pid_t> pids_;
  std::vector<std::string> namespaces_;
  std::string root_link_;
};

}  // namespace axon::fleet::testing

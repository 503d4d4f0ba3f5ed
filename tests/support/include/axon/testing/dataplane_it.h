// The data-plane integration tests' common fixture: one test network per suite (each suite
// its own prefix), a run directory per test, the real axon-dataplane and echo workers, and a
// teardown that holds every test to the same rules: the daemon drains and exits 0 on
// SIGTERM, no XDP program is left on the interface, and a failed test prints the daemon's
// and the workers' logs and keeps its run directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "axon/bpf/xdp_program.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {

// `Suite` is the deriving fixture (CRTP), so each suite has its own network.
template <class Suite, class Base = ::testing::Test>
class DataplaneIT : public Base {
 protected:
  // From the suite's SetUpTestSuite, with the suite's own prefix.
  static void create_network(const axon::testing::NetworkSpec& spec) {
    if (geteuid() != 0) return;
    net_ = TestNetwork::create(spec, net_error_).release();
  }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: it creates a namespace, a veth pair and attaches XDP";
    ASSERT_NE(net_, nullptr) << "cannot create the test network: " << net_error_;
    dir_ = std::make_unique<TempDir>();
    ASSERT_FALSE(dir_->path().empty()) << "mkdtemp failed";
  }

  void TearDown() override {
    for (auto& w : workers_) w->process().signal(SIGCONT);
    for (auto& p : processes_) p->signal(SIGCONT);
    if (daemon_ && daemon_->running()) {
      EXPECT_EQ(daemon_->stop(), std::optional<int>(0)) << "SIGTERM must drain, detach and exit 0";
    }
    if (net_ != nullptr) {
      auto q = bpf::query_attached(net_->root_ifindex);
      if (!q || q->program_id != 0) {
        ADD_FAILURE() << "an XDP program was left on " << net_->root_if;
        run_command({"ip", "link", "set", "dev", net_->root_if, "xdp", "off"});
      }
    }
    if (this->HasFailure()) {
      if (daemon_) std::cerr << "---- axon-dataplane log:\n" << daemon_->log() << "----\n";
      for (auto& w : workers_) std::cerr << "---- echo_worker " << w->pid() << " log:\n" << w->log() << "----\n";
      for (auto& p : processes_) std::cerr << "---- process " << p->pid() << " log:\n" << p->log() << "----\n";
      if (dir_) {
        dir_->keep();
        std::cerr << "run_dir kept: " << dir_->path() << "\n";
      }
    }
    workers_.clear();
    processes_.clear();
    daemon_.reset();
    dir_.reset();
  }

  // Starts the data plane on this test's network and run directory and waits until it is ready.
  void start_daemon(const ConfigSpec& spec) {
    daemon_ = std::make_unique<Daemon>(dir_->path());
    std::string error;
    ASSERT_TRUE(daemon_->start(make_config(*net_, dir_->path(), spec), &error)) << error;
    ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
  }

  StatsReader& stats() { return daemon_->stats(); }

  bool slot_alive_with(std::size_t index, pid_t pid) {
    return stats().worker_state(index) == WorkerSlotState::alive && stats().worker(index).pid.load() == pid;
  }

  // An echo_worker on slot `slot` (index `index` in the stats), attached before it returns;
  // nullptr (and a test failure) if it never attaches.
  Worker* start_worker(const std::string& slot, std::size_t index, std::uint64_t work_ns = 0,
                       const std::vector<std::string>& extra_args = {}) {
    workers_.push_back(std::make_unique<Worker>());
    Worker* w = workers_.back().get();
    std::string error;
    if (!w->start(*daemon_, slot, work_ns, &error, extra_args)) {
      ADD_FAILURE() << "cannot start echo_worker: " << error;
      return nullptr;
    }
    if (!eventually([&] { return slot_alive_with(index, w->pid()); })) {
      ADD_FAILURE() << "worker slot " << slot << " never showed pid " << w->pid() << " alive";
      return nullptr;
    }
    return w;
  }

  static inline TestNetwork* net_ = nullptr;
  static inline std::string net_error_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<ChildProcess>> processes_;  // other processes a test starts
};

}  // namespace axon::dataplane::it

// The DPDK backend against real DPDK: a net_ring vdev (its TX ring is its RX ring, so every
// frame sent comes back) on real hugepages. The EAL can be initialised once per process, so
// the loopback tests share one runtime, and every case that must start an EAL of its own
// (failures, teardown) runs this binary again as a child: `dpdk_test --child <case> <prefix>`.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "axon/dataplane/config.h"
#include "axon/dataplane/port.h"
#include "axon/testing/hugepages.h"

#include "dpdk/dpdk_options.h"

namespace axon::dataplane {
namespace {

std::string g_self;  // this binary, for the child cases

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string unique_prefix(const char* what) {
  return std::string("axdpdk-") + what + "-" + std::to_string(getpid());
}

using axon::testing::free_hugepages;

DpdkOptions ring_options(const std::string& prefix) {
  DpdkOptions options;
  options.vdevs = {"net_ring0"};
  options.file_prefix = prefix;
  options.mbufs = 4095;
  options.mbuf_cache = 64;
  options.rx_descriptors = 512;
  options.tx_descriptors = 512;
  return options;
}

// ---- EAL arguments and config mapping (no EAL needed) ------------------------------------

bool contains(const std::vector<std::string>& args, const std::string& value) {
  for (const auto& a : args) {
    if (a == value) return true;
  }
  return false;
}

TEST(DpdkEalArguments, ComeFromTheDpdkSectionOfTheConfig) {
  auto config = parse_config(R"(
[dataplane]
interface = "veth0"
backend = "dpdk"
queues = [0, 1]
cores = [0, 1]

[dpdk]
vdevs = ["net_af_xdp0,iface=veth0,queue_count=2"]
socket_mem = "128"
file_prefix = "axon-test"
mbufs = 4096
mbuf_cache = 128
telemetry = false
eal_args = ["--log-level=lib.eal:debug"]

[[workers]]
name = "w0"
)",
                             "dpdk.toml");
  ASSERT_TRUE(config) << config.message();
  DpdkOptions options = dpdk_options_from(config.value());
  EXPECT_EQ(options.queues, 2u);
  EXPECT_EQ(options.cores, (std::vector<int>{0, 1}));
  EXPECT_EQ(options.mbufs, 4096u);
  EXPECT_EQ(options.mbuf_cache, 128u);
  auto args = dpdk_eal_arguments(options);
  ASSERT_FALSE(args.empty());
  EXPECT_EQ(args.front(), "axon-dataplane");
  EXPECT_TRUE(contains(args, "--in-memory"));
  EXPECT_TRUE(contains(args, "--file-prefix=axon-test"));
  EXPECT_TRUE(contains(args, "--socket-mem=128"));
  EXPECT_TRUE(contains(args, "--vdev=net_af_xdp0,iface=veth0,queue_count=2"));
  EXPECT_TRUE(contains(args, "--no-telemetry"));
  EXPECT_TRUE(contains(args, "--no-pci")) << "without an allowlist no PCI device may be taken";
  EXPECT_EQ(args.back(), "--log-level=lib.eal:debug") << "extra arguments go last, verbatim";
  bool lcores = false;
  for (const auto& a : args) lcores = lcores || a.starts_with("--lcores=0@(");
  EXPECT_TRUE(lcores) << "the main lcore floats over the process's CPUs";
}

TEST(DpdkEalArguments, AllowlistAndFilePrefixMode) {
  DpdkOptions options;
  options.allow = {"0000:3b:00.0", "0000:3b:00.1"};
  options.in_memory = false;
  options.file_prefix = "p1";
  auto args = dpdk_eal_arguments(options);
  EXPECT_FALSE(contains(args, "--no-pci"));
  EXPECT_FALSE(contains(args, "--in-memory"));
  EXPECT_TRUE(contains(args, "--huge-unlink")) << "hugepage files must not outlive the process";
  EXPECT_TRUE(contains(args, "0000:3b:00.0"));
  EXPECT_TRUE(contains(args, "0000:3b:00.1"));
  EXPECT_FALSE(contains(args, "--no-telemetry"));
  EXPECT_FALSE(contains(args, "--socket-mem="));
}

TEST(DpdkConfig, RejectsBadValuesWithTheirLine) {
  const std::string head = "[dataplane]\ninterface = \"v\"\nbackend = \"dpdk\"\n";
  const std::string tail = "\n[[workers]]\nname = \"w0\"\n";
  struct Case {
    std::string body;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"[dpdk]\nvdevs = [\"net_ring0\"]\nsocket_mem = \"lots\"\n", "dpdk.toml:6:14: [dpdk] socket_mem"},
      {"[dpdk]\nvdevs = [\"net_ring0\"]\nfile_prefix = \"a/b\"\n", "dpdk.toml:6:15: [dpdk] file_prefix"},
      {"[dpdk]\nvdevs = [\"net ring0\"]\n", "[dpdk] vdevs"},
      {"[dpdk]\nvdevs = [\"net_ring0\"]\nmbufs = 10\n", "[dpdk] mbufs"},
      {"[dpdk]\nvdevs = [\"net_ring0\"]\nmbuf_cache = 1000\n", "[dpdk] mbuf_cache"},
      {"[dpdk]\nvdevs = [\"net_ring0\"]\nrx_descriptors = 1000\n", "[dpdk] rx_descriptors"},
      {"[dpdk]\nvdevs = [\"net_ring0\"]\nlcores = 3\n", "dpdk.toml:6:10: unknown key 'lcores' in [dpdk]"},
      {"[dpdk]\n", "needs a device"},
      {"", "needs a device"},
  };
  for (const Case& c : cases) {
    auto config = parse_config(head + c.body + tail, "dpdk.toml");
    ASSERT_FALSE(config) << c.body;
    EXPECT_NE(config.message().find(c.expect), std::string::npos) << c.body << "\n-> " << config.message();
  }
  auto queues = parse_config(head + "queues = [1]\ncores = [1]\n[dpdk]\nvdevs = [\"net_ring0\"]\n" + tail, "dpdk.toml");
  ASSERT_FALSE(queues);
  EXPECT_NE(queues.message().find("0, 1, ... n-1"), std::string::npos) << queues.message();
}

// ---- child processes: each opens its own EAL ----------------------------------------------

struct ChildResult {
  int exit_code = -1;
  std::string output;
};

ChildResult run_child(const std::string& which, const std::string& prefix) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execl(g_self.c_str(), g_self.c_str(), "--child", which.c_str(), prefix.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  ChildResult result;
  char buf[4096];
  ssize_t n = 0;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, std::size_t(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

class DpdkChild : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: the EAL maps hugepages";
  }
  // Runs a case and checks the EAL's runtime directory did not outlive it.
  ChildResult run(const std::string& which) {
    const std::string prefix = unique_prefix(which.c_str());
    ChildResult r = run_child(which, prefix);
    EXPECT_FALSE(exists("/var/run/dpdk/" + prefix)) << which << " left /var/run/dpdk/" << prefix << "\n" << r.output;
    return r;
  }
};

TEST_F(DpdkChild, NoDeviceConfiguredFailsBeforeTheEalAndSaysWhatToAdd) {
  ChildResult r = run("no_device");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("[dpdk] allow"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vfio-pci"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, BadEalArgumentFailsNamingTheArguments) {
  ChildResult r = run("bad_eal_arg");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("DPDK rejected its EAL arguments"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--no-such-eal-flag"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, MoreHugepageMemoryThanFreeFailsWithTheHugepageFix) {
  ChildResult r = run("too_much_memory");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("hugepage"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nr_hugepages"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, VdevOnAMissingInterfaceFailsNamingIt) {
  ChildResult r = run("missing_iface");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("axdpdk-nosuch0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, UnknownVdevDriverFailsAndCleansUp) {
  ChildResult r = run("unknown_driver");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("net_nosuchdriver0"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, TooManyQueuesForTheDeviceFailsAfterTheEalAndCleansUp) {
  ChildResult r = run("too_many_queues");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("queues"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, TelemetrySocketLivesInTheRuntimeDirWhileRunningAndNothingIsLeftAfter) {
  ChildResult r = run("telemetry");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("socket present"), std::string::npos) << r.output;
}

TEST_F(DpdkChild, AStaleRuntimeDirOfAKilledProcessIsReplacedAndRemoved) {
  const std::string prefix = unique_prefix("stale");
  const std::string dir = "/var/run/dpdk/" + prefix;
  ASSERT_EQ(::system(("mkdir -p " + dir + " && touch " + dir + "/dpdk_telemetry.v2").c_str()), 0);
  ChildResult r = run_child("telemetry", prefix);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("did not exit cleanly"), std::string::npos) << r.output;
  EXPECT_FALSE(exists(dir)) << r.output;
  ::system(("rm -rf " + dir).c_str());
}

// ---- the shared loopback runtime ----------------------------------------------------------

class DpdkRing : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0 || free_hugepages() < 8) return;
    // Two queue pairs: net_ring loops each TX queue back to the RX queue of the same index,
    // which shows the queues are really separate rings, as an lcore per queue needs.
    DpdkOptions options = ring_options(prefix_);
    options.queues = 2;
    options.cores = {0, 1};
    auto opened = open_dpdk(options);
    if (!opened) {
      open_error_ = opened.message();
      return;
    }
    runtime_ = std::move(opened).value().release();
    port_ = runtime_->take_port(0).release();
    second_port_ = runtime_->take_port(1).release();
  }
  static void TearDownTestSuite() {
    delete port_;
    port_ = nullptr;
    delete second_port_;
    second_port_ = nullptr;
    delete runtime_;
    runtime_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: the EAL maps hugepages";
    if (free_hugepages() < 8 && runtime_ == nullptr) GTEST_SKIP() << "needs 8 free hugepages";
    ASSERT_NE(runtime_, nullptr) << open_error_;
    ASSERT_NE(port_, nullptr);
    ASSERT_NE(second_port_, nullptr);
    drain();
    drain(second_port_);
  }
  static void drain(Port* port = port_) {
    Frame frames[32];
    for (;;) {
      std::uint32_t n = port->rx_burst(frames, 32);
      if (n == 0) break;
      port->rx_release(frames, n);
    }
  }
  // Allocates, fills and sends n frames; returns how many the port took (the rest freed).
  std::uint32_t send(std::uint32_t n, std::uint8_t seed, Port* port = port_) {
    std::vector<Frame> frames(n);
    std::uint32_t got = port->tx_alloc_burst(frames.data(), n);
    EXPECT_EQ(got, n);
    for (std::uint32_t i = 0; i < got; ++i) {
      EXPECT_GE(frames[i].len, 2048u);
      frames[i].len = 60 + i;
      for (std::uint32_t b = 0; b < frames[i].len; ++b) frames[i].data[b] = std::uint8_t(seed + i + b);
    }
    std::uint32_t sent = port->tx_burst(frames.data(), got);
    if (sent < got) port->tx_free(frames.data() + sent, got - sent);
    return sent;
  }

  static DpdkRuntime* runtime_;
  static std::string open_error_;
  static Port* port_;
  static Port* second_port_;
  static inline const std::string prefix_ = unique_prefix("ring");
};
DpdkRuntime* DpdkRing::runtime_ = nullptr;
Port* DpdkRing::port_ = nullptr;
Port* DpdkRing::second_port_ = nullptr;
std::string DpdkRing::open_error_;

TEST_F(DpdkRing, PortDescribesItself) {
  PortInfo info = port_->info();
  EXPECT_EQ(info.backend, "dpdk");
  EXPECT_EQ(info.interface, "net_ring0");
  EXPECT_EQ(info.queue, 0u);
  EXPECT_GE(info.frame_capacity, 2048u);
  EXPECT_EQ(runtime_->queue_count(), 2u);
  EXPECT_EQ(second_port_->info().queue, 1u);
  EXPECT_EQ(runtime_->take_port(0), nullptr) << "a port is handed out once";
  EXPECT_EQ(runtime_->take_port(1), nullptr) << "a port is handed out once";
  EXPECT_EQ(runtime_->take_port(2), nullptr) << "there is no third queue";
  EXPECT_NE(runtime_->describe().find("net_ring0"), std::string::npos);
}

TEST_F(DpdkRing, BurstsLoopBackByteForByte) {
  const PortCounters before = port_->counters();
  ASSERT_EQ(send(32, 7), 32u);
  Frame frames[32];
  std::uint32_t n = port_->rx_burst(frames, 32);
  ASSERT_EQ(n, 32u);
  for (std::uint32_t i = 0; i < n; ++i) {
    ASSERT_EQ(frames[i].len, 60 + i);
    bool same = true;
    for (std::uint32_t b = 0; b < frames[i].len; ++b) same = same && frames[i].data[b] == std::uint8_t(7 + i + b);
    EXPECT_TRUE(same) << "frame " << i;
  }
  port_->rx_release(frames, n);
  const PortCounters after = port_->counters();
  EXPECT_EQ(after.tx_frames - before.tx_frames, 32u);
  EXPECT_EQ(after.rx_frames - before.rx_frames, 32u);
}

TEST_F(DpdkRing, EachQueueIsItsOwnRingAndTheirThreadsRunAtOnce) {
  // One thread per queue, as the engine runs them: each sends on its queue and must get back
  // exactly its own frames, never the other queue's, while sharing the one mempool. Like
  // engine lcores, both threads register with the EAL before either drives traffic and stay
  // until both are done, so neither inherits the other's lcore id (and mempool cache).
  const std::uint64_t start = runtime_->mbufs_available();
  std::latch registered(2), finished(2);
  auto drive = [&](Port* port, std::uint8_t seed, std::uint32_t* own, std::uint32_t* foreign) {
    Frame nothing[1];
    EXPECT_EQ(port->rx_burst(nothing, 1), 0u);  // the first burst registers the thread
    registered.arrive_and_wait();
    for (int round = 0; round < 40; ++round) {
      EXPECT_EQ(send(16, seed, port), 16u);
      Frame frames[32];
      std::uint32_t n = port->rx_burst(frames, 32);
      for (std::uint32_t i = 0; i < n; ++i) {
        // send() fills byte b of frame i with seed + i + b, so byte 0 minus the index-free
        // length offset (len = 60 + i) recovers the seed.
        const std::uint32_t index = frames[i].len - 60;
        if (frames[i].data[0] == std::uint8_t(seed + index)) {
          ++*own;
        } else {
          ++*foreign;
        }
      }
      port->rx_release(frames, n);
    }
    finished.arrive_and_wait();
  };
  std::uint32_t own0 = 0, foreign0 = 0, own1 = 0, foreign1 = 0;
  std::thread first([&] { drive(port_, 10, &own0, &foreign0); });
  std::thread second([&] { drive(second_port_, 130, &own1, &foreign1); });
  first.join();
  second.join();
  EXPECT_EQ(own0, 640u);
  EXPECT_EQ(own1, 640u);
  EXPECT_EQ(foreign0, 0u) << "queue 0 received frames sent on queue 1";
  EXPECT_EQ(foreign1, 0u) << "queue 1 received frames sent on queue 0";
  drain();
  drain(second_port_);
  port_->poll_completions();
  second_port_->poll_completions();
  EXPECT_EQ(runtime_->mbufs_available(), start);
}

TEST_F(DpdkRing, MbufsReturnToThePoolAfterBurstsAndTxFree) {
  port_->poll_completions();
  const std::uint64_t start = runtime_->mbufs_available();
  ASSERT_GT(start, 0u);
  for (int round = 0; round < 50; ++round) {
    ASSERT_EQ(send(32, std::uint8_t(round)), 32u);
    Frame frames[32];
    std::uint32_t n = port_->rx_burst(frames, 32);
    ASSERT_EQ(n, 32u);
    port_->rx_release(frames, n);
    // Allocated but never sent: tx_free hands them back.
    Frame unused[16];
    std::uint32_t got = port_->tx_alloc_burst(unused, 16);
    ASSERT_EQ(got, 16u);
    port_->tx_free(unused, got);
  }
  port_->poll_completions();
  EXPECT_EQ(runtime_->mbufs_available(), start);
}

TEST_F(DpdkRing, AFullTxRingIsReportedAndNothingLeaks) {
  const std::uint64_t start = runtime_->mbufs_available();
  const PortCounters before = port_->counters();
  // net_ring's ring holds fewer than this: tx_burst must stop short, and the caller frees.
  std::uint32_t sent = 0;
  for (int i = 0; i < 100; ++i) sent += send(32, 1);
  EXPECT_LT(sent, 3200u);
  EXPECT_GT(port_->counters().tx_ring_full, before.tx_ring_full);
  drain();
  port_->poll_completions();
  EXPECT_EQ(runtime_->mbufs_available(), start);
}

TEST_F(DpdkRing, AnotherThreadCanDriveThePort) {
  // Lcore threads are std::threads: they register with the EAL on their first burst.
  const std::uint64_t start = runtime_->mbufs_available();
  std::uint32_t received = 0;
  std::thread t([&] {
    for (int round = 0; round < 20; ++round) {
      Frame frames[32];
      std::uint32_t got = port_->tx_alloc_burst(frames, 32);
      for (std::uint32_t i = 0; i < got; ++i) frames[i].len = 64;
      std::uint32_t sent = port_->tx_burst(frames, got);
      if (sent < got) port_->tx_free(frames + sent, got - sent);
      std::uint32_t n = port_->rx_burst(frames, 32);
      received += n;
      port_->rx_release(frames, n);
    }
  });
  t.join();
  EXPECT_EQ(received, 640u);
  drain();
  EXPECT_EQ(runtime_->mbufs_available(), start);
}

TEST_F(DpdkRing, AFilePrefixInUseByALiveProcessIsRefused) {
  ChildResult r = run_child("telemetry", prefix_);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("already uses file prefix"), std::string::npos) << r.output;
  EXPECT_TRUE(exists("/var/run/dpdk/" + prefix_)) << "the live process's runtime dir must stay";
}

// ---- the child side -----------------------------------------------------------------------

int child_main(const std::string& which, const std::string& prefix) {
  DpdkOptions options = ring_options(prefix);
  if (which == "no_device") {
    options.vdevs.clear();
  } else if (which == "bad_eal_arg") {
    options.extra_args = {"--no-such-eal-flag"};
  } else if (which == "too_much_memory") {
    options.socket_mem = std::to_string((free_hugepages() + 64) * 2);  // MiB: more than is free
  } else if (which == "missing_iface") {
    options.vdevs = {"net_af_packet0,iface=axdpdk-nosuch0"};
  } else if (which == "unknown_driver") {
    options.vdevs = {"net_nosuchdriver0"};
  } else if (which == "too_many_queues") {
    options.queues = 64;
  }
  auto runtime = open_dpdk(options);
  if (!runtime) {
    std::printf("open_dpdk: %s\n", runtime.message().c_str());
    return 1;
  }
  if (which == "telemetry") {
    const std::string socket = runtime.value()->runtime_dir() + "/dpdk_telemetry.v2";
    std::printf("runtime dir %s, socket %s\n", runtime.value()->runtime_dir().c_str(),
                exists(socket) ? "present" : "missing");
    runtime.value().reset();
    if (exists("/var/run/dpdk/" + prefix)) {
      std::printf("runtime dir still there after teardown\n");
      return 3;
    }
    return exists(socket) ? 2 : 0;
  }
  std::printf("open_dpdk unexpectedly succeeded for %s\n", which.c_str());
  return 4;
}

}  // namespace
}  // namespace axon::dataplane

int main(int argc, char** argv) {
  axon::dataplane::g_self = "/proc/self/exe";
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n > 0) axon::dataplane::g_self.assign(path, std::size_t(n));
  if (argc == 4 && std::strcmp(argv[1], "--child") == 0) {
    int code = axon::dataplane::child_main(argv[2], argv[3]);
    std::fflush(stdout);
    return code;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

// CgroupDriver against the host's real cgroups: v1 hierarchies (this hybrid host's
// primary path), the cgroup2 mount at /sys/fs/cgroup/unified (the v2 code path, with only
// hugetlb there), and the error messages. Needs root; skips otherwise.
#include "axon/controlplane/cgroup.h"

#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "axon/controlplane/spawn.h"

namespace axon::controlplane {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_cgroup2(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

bool is_cgroup1(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP_SUPER_MAGIC;
}

std::string unique_name() {
  return "axon-test-super-" + std::to_string(::getpid());
}

void kill_and_reap(const Spawned& s) {
  ::syscall(SYS_pidfd_send_signal, s.pidfd, SIGKILL, nullptr, 0);
  siginfo_t info{};
  ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(s.pidfd), &info, WEXITED);
  ::close(s.pidfd);
}

// Removes what a test created even when it fails half-way.
struct Cleanup {
  CgroupDriver* driver;
  ~Cleanup() {
    if (driver) (void)driver->remove_all_empty();
  }
};

class CgroupV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (real cgroups)";
    for (const char* c : {"cpu", "cpuset", "memory", "pids"}) {
      if (!is_cgroup1(std::string("/sys/fs/cgroup/") + c)) GTEST_SKIP() << "no cgroup v1 hierarchy for " << c;
    }
    CgroupOptions options;
    options.name = unique_name();
    options.mode = "v1";
    auto driver = CgroupDriver::open(options);
    ASSERT_TRUE(driver.ok()) << driver.message();
    driver_.emplace(std::move(driver.value()));
    name_ = options.name;
  }
  void TearDown() override {
    if (driver_) {
      auto r = driver_->remove_all_empty();
      EXPECT_TRUE(r.ok()) << r.message();
      for (const char* c : {"cpu", "cpuset", "memory", "pids"})
        EXPECT_FALSE(exists(std::string("/sys/fs/cgroup/") + c + "/" + name_)) << c;
    }
  }
  std::string dir(const char* controller, const std::string& relative) const {
    return std::string("/sys/fs/cgroup/") + controller + "/" + name_ + "/" + relative;
  }
  std::optional<CgroupDriver> driver_;
  std::string name_;
};

TEST_F(CgroupV1Test, EnsureCreatesGroupsWithLimitsInEveryHierarchy) {
  EXPECT_EQ(driver_->mode(), CgroupMode::v1);
  EXPECT_NE(driver_->describe().find("v1 (hybrid host: cpu,cpuset,memory,pids under /sys/fs/cgroup)"),
            std::string::npos)
      << driver_->describe();

  CgroupLimits cls;
  cls.cpu_weight = 200;
  auto r = driver_->ensure("standard", cls);
  ASSERT_TRUE(r.ok()) << r.message();

  CgroupLimits leaf;
  leaf.cpu_max_percent = 150;
  leaf.cpuset_cpus = "0";
  leaf.memory_max = 256ull << 20;
  leaf.memory_high = 128ull << 20;
  leaf.pids_max = 64;
  r = driver_->ensure("standard/acme", leaf);
  ASSERT_TRUE(r.ok()) << r.message();

  EXPECT_EQ(read_text(dir("cpu", "standard/cpu.shares")), "2048");
  EXPECT_EQ(read_text(dir("cpu", "standard/acme/cpu.cfs_quota_us")), "150000");
  EXPECT_EQ(read_text(dir("cpu", "standard/acme/cpu.cfs_period_us")), "100000");
  EXPECT_EQ(read_text(dir("cpuset", "standard/acme/cpuset.cpus")), "0");
  // Not set by the profile: inherited from the parent so that tasks can join.
  EXPECT_EQ(read_text(dir("cpuset", "standard/acme/cpuset.mems")), read_text("/sys/fs/cgroup/cpuset/cpuset.mems"));
  EXPECT_EQ(read_text(dir("cpuset", "standard/cpuset.cpus")), read_text("/sys/fs/cgroup/cpuset/cpuset.cpus"));
  EXPECT_EQ(read_text(dir("memory", "standard/acme/memory.limit_in_bytes")), std::to_string(256ull << 20));
  EXPECT_EQ(read_text(dir("memory", "standard/acme/memory.soft_limit_in_bytes")), std::to_string(128ull << 20));
  EXPECT_EQ(read_text(dir("pids", "standard/acme/pids.max")), "64");
  EXPECT_EQ(driver_->path_of("standard/acme"), "/sys/fs/cgroup/cpu/" + name_ + "/standard/acme");

  // Idempotent, and re-applies limits.
  leaf.pids_max = 32;
  r = driver_->ensure("standard/acme", leaf);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(read_text(dir("pids", "standard/acme/pids.max")), "32");

  r = driver_->remove_if_empty("standard/acme");
  ASSERT_TRUE(r.ok()) << r.message();
  for (const char* c : {"cpu", "cpuset", "memory", "pids"}) {
    EXPECT_FALSE(exists(dir(c, "standard"))) << c << ": the empty parent goes too";
    EXPECT_TRUE(exists(dir(c, ""))) << c << ": <name> stays until remove_all_empty";
  }
}

TEST_F(CgroupV1Test, SpawnPlacesChildInEveryHierarchyAndRemoveReportsBusy) {
  CgroupLimits leaf;
  leaf.pids_max = 16;
  leaf.memory_max = 64ull << 20;
  ASSERT_TRUE(driver_->ensure("batch/t7", leaf).ok());

  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  spec.cgroup = "batch/t7";
  auto child = spawn(spec, &*driver_);
  ASSERT_TRUE(child.ok()) << child.message();

  std::string cgroups = read_text("/proc/" + std::to_string(child->pid) + "/cgroup") + "\n";
  std::string want = "/" + name_ + "/batch/t7";
  for (const char* c : {":cpu:", ":cpuset:", ":memory:", ":pids:"}) {
    EXPECT_NE(cgroups.find(std::string(c) + want + "\n"), std::string::npos) << c << " in\n" << cgroups;
  }
  auto pids = driver_->pids("batch/t7");
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_EQ(pids[0], child->pid);

  auto busy = driver_->remove_if_empty("batch/t7");
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.code(), CgroupError::busy);
  EXPECT_NE(busy.message().find("batch/t7"), std::string::npos) << busy.message();
  EXPECT_NE(busy.message().find("holds processes"), std::string::npos) << busy.message();
  EXPECT_TRUE(exists(dir("memory", "batch/t7")));

  kill_and_reap(child.value());
  auto removed = driver_->remove_if_empty("batch/t7");
  ASSERT_TRUE(removed.ok()) << removed.message();
  for (const char* c : {"cpu", "cpuset", "memory", "pids"}) EXPECT_FALSE(exists(dir(c, "batch"))) << c;
}

TEST_F(CgroupV1Test, ErrorsNameControllerAndFile) {
  CgroupLimits bad_cpus;
  bad_cpus.cpuset_cpus = "4095";
  auto r = driver_->ensure("realtime/x", bad_cpus);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CgroupError::invalid_value);
  EXPECT_NE(r.message().find("cpuset.cpus"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("controller 'cpuset'"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("/sys/fs/cgroup/cpuset/" + name_ + "/realtime/x"), std::string::npos) << r.message();

  CgroupLimits bad_weight;
  bad_weight.cpu_weight = 0;
  r = driver_->ensure("realtime/x", bad_weight);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CgroupError::invalid_value);
  EXPECT_NE(r.message().find("1..10000"), std::string::npos) << r.message();

  r = driver_->ensure("../escape", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CgroupError::invalid_value);

  // An unwritable file: a non-root process (nobody) writing pids.max of a root-owned group.
  ASSERT_TRUE(driver_->ensure("denied", {}).ok());
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(report[0]);
    std::string out;
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
      out = "setuid failed";
    } else {
      CgroupLimits limits;
      limits.pids_max = 5;
      auto denied = driver_->ensure("denied", limits);
      out = denied.ok() ? "ok" : std::string(to_string(denied.code())) + "|" + denied.message();
    }
    [[maybe_unused]] auto n = ::write(report[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(report[1]);
  std::string got;
  char buf[1024];
  for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(report[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_EQ(got.substr(0, got.find('|')), "permission_denied") << got;
  EXPECT_NE(got.find("cannot write pids.max = \"5\" in /sys/fs/cgroup/pids/" + name_ +
                     "/denied (controller 'pids'): "
                     "Permission denied; run as root or delegate the subtree (systemd: Delegate=yes)"),
            std::string::npos)
      << got;
}

TEST(CgroupOpen, MissingControllerNamesControllerAndPath) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  CgroupOptions options;
  options.name = unique_name();
  options.mode = "v1";
  options.v1_root = "/nonexistent-axon-" + std::to_string(::getpid());
  auto r = CgroupDriver::open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CgroupError::missing_controller);
  EXPECT_NE(r.message().find("controller 'cpu'"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find(options.v1_root + "/cpu"), std::string::npos) << r.message();

  options.v1_root = "/sys/fs/cgroup";
  options.mode = "v3";
  r = CgroupDriver::open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CgroupError::invalid_value);

  // v2 on a mount that lacks the managed controllers.
  if (is_cgroup2("/sys/fs/cgroup/unified")) {
    options.mode = "v2";
    options.v2_root = "/sys/fs/cgroup/unified";
    r = CgroupDriver::open(options);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), CgroupError::missing_controller);
    EXPECT_NE(r.message().find("controller 'cpu' is not available (not in /sys/fs/cgroup/unified/cgroup.controllers"),
              std::string::npos)
        << r.message();
  }

  // Auto mode on this host picks v1 unless cgroup2 is at the root.
  options.mode = "auto";
  options.v2_root = "";
  r = CgroupDriver::open(options);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->mode(), is_cgroup2("/sys/fs/cgroup") ? CgroupMode::v2 : CgroupMode::v1);
}

// The v2 code path on this hybrid host: cgroup2 at /sys/fs/cgroup/unified, no controllers
// but hugetlb, which is enough for groups, placement and CLONE_INTO_CGROUP.
TEST(CgroupV2, UnifiedMountGroupsAndCloneIntoCgroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const std::string root = "/sys/fs/cgroup/unified";
  if (!is_cgroup2(root)) GTEST_SKIP() << "no cgroup2 mount at " << root;
  CgroupOptions options;
  options.name = unique_name();
  options.mode = "v2";
  options.v2_root = root;
  options.controllers = {};
  auto opened = CgroupDriver::open(options);
  ASSERT_TRUE(opened.ok()) << opened.message();
  CgroupDriver driver = std::move(opened.value());
  Cleanup cleanup{&driver};
  EXPECT_EQ(driver.mode(), CgroupMode::v2);
  EXPECT_NE(driver.describe().find("v2 (" + root), std::string::npos) << driver.describe();

  auto r = driver.ensure("standard/acme", {});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_TRUE(exists(root + "/" + options.name + "/standard/acme/cgroup.procs"));

  CgroupLimits memory;
  memory.memory_max = 256ull << 20;
  r = driver.ensure("standard/acme", memory);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CgroupError::missing_controller);
  EXPECT_NE(r.message().find("controller 'memory'"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find(root + "/cgroup.controllers"), std::string::npos) << r.message();

  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  spec.cgroup = "standard/acme";
  auto child = spawn(spec, &driver);
  ASSERT_TRUE(child.ok()) << child.message();
  std::string cgroups = read_text("/proc/" + std::to_string(child->pid) + "/cgroup") + "\n";
  EXPECT_NE(cgroups.find("0::/" + options.name + "/standard/acme\n"), std::string::npos) << cgroups;
  auto pids = driver.pids("standard/acme");
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_EQ(pids[0], child->pid);

  auto busy = driver.remove_if_empty("standard/acme");
  EXPECT_EQ(busy.ok() ? CgroupError::io_error : busy.code(), CgroupError::busy);

  kill_and_reap(child.value());
  r = driver.remove_if_empty("standard/acme");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_FALSE(exists(root + "/" + options.name + "/standard"));
  ASSERT_TRUE(driver.remove_all_empty().ok());
  EXPECT_FALSE(exists(root + "/" + options.name));

  auto fd = driver.open_dir_fd("missing/group");
  EXPECT_FALSE(fd.ok());
}

// Running as a service with a delegated cgroup (systemd Delegate=yes): the root is our own
// cgroup, and the daemon moves into <root>/supervisor before creating groups below, as v2's
// no-internal-processes rule requires. Simulated with a forked child on the cgroup2 mount.
TEST(CgroupV2, DelegatedRootMovesDaemonIntoSupervisorLeaf) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const std::string mount = "/sys/fs/cgroup/unified";
  if (!is_cgroup2(mount)) GTEST_SKIP() << "no cgroup2 mount at " << mount;
  const std::string service = mount + "/" + unique_name() + "-service";
  ASSERT_EQ(::mkdir(service.c_str(), 0755), 0) << service;

  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(report[0]);
    std::string out;
    {
      std::ofstream(service + "/cgroup.procs") << ::getpid() << std::flush;
      CgroupOptions options;
      options.mode = "v2";
      options.v1_root = mount;  // where cgroup2 is mounted; the root is detected from /proc/self/cgroup
      options.controllers = {};
      auto driver = CgroupDriver::open(options);
      if (!driver.ok()) {
        out = "open: " + driver.message();
      } else {
        out += driver->describe() + "\n" + driver->path_of("standard/acme") + "\n";
        auto r = driver->ensure("standard/acme", {});
        out += (r.ok() ? std::string("ensured") : "ensure: " + r.message()) + "\n";
        out += read_text("/proc/self/cgroup").substr(read_text("/proc/self/cgroup").find("0::")) + "\n";
        auto again = CgroupDriver::open(options);  // e.g. a reload: still the same root
        out += (again.ok() ? again->path_of("") : "reopen: " + again.message()) + "\n";
        auto removed = driver->remove_all_empty();
        out += removed.ok() ? "removed" : "remove: " + removed.message();
      }
    }
    [[maybe_unused]] auto n = ::write(report[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(report[1]);
  std::string got;
  char buf[1024];
  for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(report[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  std::string rel = service.substr(mount.size());
  EXPECT_EQ(got, "v2 (" + service + ", delegated; controllers: none)\n" + service +
                     "/axon/standard/acme\nensured\n0::" + rel + "/supervisor\n" + service + "/axon\nremoved")
      << got;
  EXPECT_FALSE(exists(service + "/axon"));
  ::rmdir((service + "/supervisor").c_str());
  EXPECT_EQ(::rmdir(service.c_str()), 0) << service;
}

}  // namespace
}  // namespace axon::controlplane

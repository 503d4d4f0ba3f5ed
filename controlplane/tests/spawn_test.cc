// spawn(): the child's privileges, identity, environment, fds and signal state, read back
// from /proc of real processes; exec failures come back as errors with no zombie left.
// Needs root (dropping capabilities and switching users are what is tested); skips otherwise.
#include "axon/controlplane/spawn.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

namespace axon::controlplane {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "Key:\tvalue" lines of /proc/<pid>/status.
std::map<std::string, std::string> proc_status(pid_t pid) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    out[line.substr(0, colon)] = value;
  }
  return out;
}

std::set<std::string> open_fds(pid_t pid) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    out.insert(e.path().filename().string());
  return out;
}

std::string link_of(const std::string& path) {
  std::error_code ec;
  return std::filesystem::read_symlink(path, ec).string();
}

int wait_exit(const Spawned& s) {
  siginfo_t info{};
  ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(s.pidfd), &info, WEXITED);
  ::close(s.pidfd);
  return info.si_status;
}

void kill_and_reap(const Spawned& s) {
  ::syscall(SYS_pidfd_send_signal, s.pidfd, SIGKILL, nullptr, 0);
  wait_exit(s);
}

// True when this process has no child left to reap (nothing exited unreaped, nothing alive).
bool no_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD;
}

class SpawnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (capabilities, setuid)";
    dir_ = "/tmp/axon-test-super-spawn-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(SpawnTest, ChildHasNoCapabilitiesAndNoNewPrivs) {
  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  auto child = spawn(spec, nullptr);
  ASSERT_TRUE(child.ok()) << child.message();
  auto st = proc_status(child->pid);
  EXPECT_EQ(st["Name"], "sleep");  // spawn returns after the exec
  for (const char* key : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(st[key], "0000000000000000") << key;
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["Uid"], "0\t0\t0\t0");
  EXPECT_EQ(::getsid(child->pid), child->pid) << "a session of its own";
  EXPECT_EQ(link_of("/proc/" + std::to_string(child->pid) + "/cwd"), "/");
  kill_and_reap(child.value());
}

// Issue 12 item 5: the launch goes through libcap's CAP_MODE_NOPRIV: besides empty sets,
// the securebits are set and locked (noroot, no-setuid-fixup, keep-caps locked,
// no-ambient-raise), so not even an exec of a setuid-root binary could give a capability
// back. capsh (libcap2-bin) reports what the child got.
TEST_F(SpawnTest, LaunchedThroughLibcapWithLockedSecurebits) {
  if (::access("/sbin/capsh", X_OK) != 0) GTEST_SKIP() << "capsh not installed (apt-get install libcap2-bin)";
  for (const char* user : {"", "nobody"}) {
    SCOPED_TRACE(std::string("user '") + user + "'");
    SpawnSpec spec;
    spec.argv = {"/sbin/capsh", "--print"};
    spec.user = user;
    spec.log_path = dir_ + "/capsh-" + (*user ? user : "root") + ".log";
    auto child = spawn(spec, nullptr);
    ASSERT_TRUE(child.ok()) << child.message();
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PIDFD, static_cast<id_t>(child->pidfd), &info, WEXITED), 0);
    ::close(child->pidfd);
    std::ifstream in(spec.log_path);
    std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(out.find("Current: =\n"), std::string::npos) << out;
    EXPECT_NE(out.find("Bounding set =\n"), std::string::npos) << out;
    EXPECT_NE(out.find("Securebits: 0357/0xef/8'b11101111 (no-new-privs=1)"), std::string::npos) << out;
    EXPECT_NE(out.find("secure-noroot: yes (locked)"), std::string::npos) << out;
    EXPECT_NE(out.find("secure-no-ambient-raise: yes (locked)"), std::string::npos) << out;
  }
}

// A uid from [controlplane] worker_uids: no passwd entry, gid = uid, no groups.
TEST_F(SpawnTest, RunsAsABareUidWithItsOwnGidAndNoGroups) {
  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  spec.uid = 61234;
  auto child = spawn(spec, nullptr);
  ASSERT_TRUE(child.ok()) << child.message();
  auto st = proc_status(child->pid);
  EXPECT_EQ(st["Uid"], "61234\t61234\t61234\t61234");
  EXPECT_EQ(st["Gid"], "61234\t61234\t61234\t61234");
  EXPECT_EQ(st["Groups"], "");
  for (const char* key : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(st[key], "0000000000000000") << key;
  kill_and_reap(child.value());
  spec.uid = 0;
  EXPECT_EQ(spawn(spec, nullptr).code(), SpawnError::invalid_argument);
  spec.uid = 61234;
  spec.user = "nobody";
  EXPECT_EQ(spawn(spec, nullptr).code(), SpawnError::invalid_argument);
}

TEST_F(SpawnTest, RunsAsNobody) {
  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  spec.user = "nobody";
  spec.working_dir = "/tmp";
  auto child = spawn(spec, nullptr);
  ASSERT_TRUE(child.ok()) << child.message();
  auto st = proc_status(child->pid);
  EXPECT_EQ(st["Uid"], "65534\t65534\t65534\t65534");
  EXPECT_EQ(st["Gid"], "65534\t65534\t65534\t65534");
  EXPECT_EQ(st["Groups"], "65534");
  for (const char* key : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(st[key], "0000000000000000") << key;
  EXPECT_EQ(link_of("/proc/" + std::to_string(child->pid) + "/cwd"), "/tmp");
  kill_and_reap(child.value());
}

TEST_F(SpawnTest, OnlyTheGivenEnvironmentAndLogAppended) {
  ::setenv("AXON_SUPER_SECRET", "leak", 1);
  std::string log = dir_ + "/env.log";
  SpawnSpec spec;
  spec.argv = {"/usr/bin/env"};
  spec.env = {{"FOO", "bar"}, {"AXON_WORKER", "7"}};
  spec.log_path = log;
  auto first = spawn(spec, nullptr);
  ASSERT_TRUE(first.ok()) << first.message();
  EXPECT_EQ(wait_exit(first.value()), 0);
  std::string out = read_text(log);
  EXPECT_EQ(out, "AXON_WORKER=7\nFOO=bar\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");

  spec.env["PATH"] = "/bin";
  auto second = spawn(spec, nullptr);
  ASSERT_TRUE(second.ok()) << second.message();
  EXPECT_EQ(wait_exit(second.value()), 0);
  EXPECT_EQ(read_text(log), out + "AXON_WORKER=7\nFOO=bar\nPATH=/bin\n") << "appended, not truncated";
  ::unsetenv("AXON_SUPER_SECRET");
}

TEST_F(SpawnTest, OnlyStdioFdsAndDefaultSignalState) {
  // An inheritable fd and an ignored, blocked signal in the parent must not reach the child.
  int leaky = ::open("/dev/zero", O_RDONLY);
  ASSERT_GE(leaky, 0);
  struct sigaction ignore {
  }, old_action{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGUSR1, &ignore, &old_action);
  sigset_t usr2, old_mask;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ::pthread_sigmask(SIG_BLOCK, &usr2, &old_mask);

  std::string log = dir_ + "/fd.log";
  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  spec.log_path = log;
  auto child = spawn(spec, nullptr);
  ::close(leaky);
  ::sigaction(SIGUSR1, &old_action, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ASSERT_TRUE(child.ok()) << child.message();

  std::string proc = "/proc/" + std::to_string(child->pid);
  // spawn() returns once the exec has happened, but the new program's dynamic loader still
  // opens and closes its libraries for a moment: wait for that to pass. An fd leaked to the
  // child never closes, so it still fails the check.
  const std::set<std::string> stdio{"0", "1", "2"};
  std::set<std::string> fds = open_fds(child->pid);
  for (int i = 0; i < 500 && fds != stdio; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    fds = open_fds(child->pid);
  }
  EXPECT_EQ(fds, stdio);
  EXPECT_EQ(link_of(proc + "/fd/0"), "/dev/null");
  EXPECT_EQ(link_of(proc + "/fd/1"), log);
  EXPECT_EQ(link_of(proc + "/fd/2"), log);
  auto st = proc_status(child->pid);
  EXPECT_EQ(st["SigIgn"], "0000000000000000");
  EXPECT_EQ(st["SigBlk"], "0000000000000000");
  kill_and_reap(child.value());
}

TEST_F(SpawnTest, ExecFailureIsReportedWithoutZombie) {
  ASSERT_TRUE(no_children());
  SpawnSpec spec;
  spec.argv = {"/nonexistent/axon-worker", "--x"};
  auto r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::exec_failed);
  EXPECT_EQ(r.message(), "cannot exec /nonexistent/axon-worker: No such file or directory");
  EXPECT_TRUE(no_children()) << "the failed child was reaped";

  // Not executable (a directory), and a setup step failing before exec.
  spec.argv = {"/tmp"};
  r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::exec_failed);
  EXPECT_EQ(r.message(), "cannot exec /tmp: Permission denied");

  spec.argv = {"/bin/true"};
  spec.working_dir = "/nonexistent-dir-axon";
  r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::exec_failed);
  EXPECT_NE(r.message().find("cannot change to working directory /nonexistent-dir-axon: No such file or directory"),
            std::string::npos)
      << r.message();
  EXPECT_TRUE(no_children());
}

TEST_F(SpawnTest, InvalidArguments) {
  SpawnSpec spec;
  spec.argv = {"sleep", "1"};
  auto r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::invalid_argument);
  EXPECT_NE(r.message().find("absolute path"), std::string::npos) << r.message();

  spec.argv = {"/bin/sleep", "1"};
  spec.user = "axon-no-such-user";
  r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::no_such_user);
  EXPECT_NE(r.message().find("axon-no-such-user"), std::string::npos) << r.message();

  spec.user = "";
  spec.cgroup = "standard/x";
  r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::invalid_argument);

  spec.cgroup = "";
  spec.env = {{"A=B", "c"}};
  r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::invalid_argument);

  spec.env = {};
  spec.log_path = "/nonexistent-dir-axon/worker.log";
  r = spawn(spec, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), SpawnError::invalid_argument);
  EXPECT_NE(r.message().find("cannot open log file /nonexistent-dir-axon/worker.log"), std::string::npos)
      << r.message();
  EXPECT_TRUE(no_children());
}

// The daemon has threads: a thread holding malloc's lock (or any libc lock) at the moment
// of clone3 must not hang the child, which uses only raw system calls until exec.
TEST_F(SpawnTest, SpawnsWhileOtherThreadsAllocate) {
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (!done.load(std::memory_order_relaxed)) {
        std::vector<std::string> junk;
        for (int i = 0; i < 64; ++i) junk.emplace_back(std::string(100 + i * 37, 'x'));
        (void)std::getenv("HOME");
      }
    });
  }
  SpawnSpec spec;
  spec.argv = {"/bin/true"};
  spec.user = "nobody";
  spec.env = {{"A", "b"}};
  int exited_ok = 0;
  for (int i = 0; i < 100; ++i) {
    auto child = spawn(spec, nullptr);
    ASSERT_TRUE(child.ok()) << child.message();
    exited_ok += wait_exit(child.value()) == 0;
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(exited_ok, 100);
}

}  // namespace
}  // namespace axon::controlplane

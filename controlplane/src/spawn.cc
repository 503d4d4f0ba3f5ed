// spawn(): clone3 + CLONE_PIDFD (+ CLONE_INTO_CGROUP on v2), a capability-free child,
// and exec failures reported back through a CLOEXEC pipe.
//
// The daemon has threads, so between clone3 and execve the child may only make raw
// system calls on data prepared beforehand: libc wrappers that keep process-wide state
// (setuid's cross-thread broadcast, malloc, sanitizer interceptors holding locks of
// threads that do not exist in the child) could deadlock or misbehave there.
#include "axon/controlplane/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <pwd.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "axon/controlplane/cgroup.h"

namespace axon::controlplane {

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The setup steps the child reports on failure.
enum class Step : int {
  wait_placement = 1,
  signals,
  session,
  stdio,
  close_fds,
  bounding_set,
  ambient,
  groups,
  gid,
  uid,
  capabilities,
  no_new_privs,
  chdir,
  exec
};

struct ChildReport {
  int step = 0;
  int err = 0;
};

// Everything the child needs, computed before clone3.
struct ChildPlan {
  int sync_fd = -1;  // v1: read end; the parent writes one byte once the child is placed
  int report_fd = -1;
  int stdin_fd = -1;
  int log_fd = -1;
  bool change_user = false;
  bool keep_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  std::size_t group_count = 0;
  int last_cap = 0;
  const char* working_dir = "/";
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
};

// The kernel's struct sigaction for rt_sigaction (not glibc's, which differs in layout);
// this field order is x86-64's (and the generic one with SA_RESTORER).
static_assert(sizeof(void*) == 8, "KernelSigaction below is laid out for 64-bit Linux");
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  unsigned long mask;
};

[[noreturn]] void child_fail(const ChildPlan& plan, Step step) {
  ChildReport report{static_cast<int>(step), errno};
  ::syscall(SYS_write, plan.report_fd, &report, sizeof report);
  ::syscall(SYS_exit_group, 127);
  __builtin_unreachable();
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  if (plan.sync_fd >= 0) {
    char byte = 0;
    long n;
    do n = ::syscall(SYS_read, plan.sync_fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) child_fail(plan, Step::wait_placement);  // the parent gave up on us
  }

  // Default dispositions, then an empty mask (the parent blocked everything around clone3
  // so that none of its handlers can run here).
  KernelSigaction dfl{};
  dfl.handler = SIG_DFL;
  for (int sig = 1; sig < 65; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(unsigned long));  // EINVAL for reserved ones: fine
  }
  unsigned long empty_mask = 0;
  if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, nullptr, sizeof empty_mask) != 0)
    child_fail(plan, Step::signals);

  if (::syscall(SYS_setsid) < 0) child_fail(plan, Step::session);

  if (::syscall(SYS_dup3, plan.stdin_fd, 0, 0) < 0 || ::syscall(SYS_dup3, plan.log_fd, 1, 0) < 0 ||
      ::syscall(SYS_dup3, plan.log_fd, 2, 0) < 0)
    child_fail(plan, Step::stdio);
  // Everything above 2 closes at exec; the report pipe stays usable until then.
  if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) child_fail(plan, Step::close_fds);

  // Only the data plane (started by a control plane without systemd) keeps its privileges:
  // it needs them for XDP, AF_XDP and hugepages. Workers never do.
  if (!plan.keep_privileges) {
    // Capabilities: the bounding set and ambient set first, while we still hold CAP_SETPCAP.
    for (int cap = 0; cap <= plan.last_cap; ++cap) {
      if (::syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
        if (errno == EPERM) break;  // an unprivileged daemon: nothing to give away
        child_fail(plan, Step::bounding_set);
      }
    }
    if (::syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
      child_fail(plan, Step::ambient);

    if (plan.change_user) {
      if (::syscall(SYS_setgroups, plan.group_count, plan.groups) != 0) child_fail(plan, Step::groups);
      if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) child_fail(plan, Step::gid);
      if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) child_fail(plan, Step::uid);
    }

    // Effective, permitted and inheritable to zero. With the bounding and inheritable sets
    // empty, exec grants nothing even to uid 0.
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capset, &header, data) != 0) child_fail(plan, Step::capabilities);

    if (::syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(plan, Step::no_new_privs);
  }
  if (::syscall(SYS_chdir, plan.working_dir) != 0) child_fail(plan, Step::chdir);
  ::syscall(SYS_execve, plan.path, plan.argv, plan.envp);
  child_fail(plan, Step::exec);
}

std::string step_message(Step step, const SpawnSpec& spec, int err) {
  std::string e = std::strerror(err);
  switch (step) {
    case Step::wait_placement: return "child for " + spec.argv[0] + " was not released after cgroup placement";
    case Step::signals: return "cannot reset the signal mask for " + spec.argv[0] + ": " + e;
    case Step::session: return "cannot start a new session for " + spec.argv[0] + ": " + e;
    case Step::stdio: return "cannot set up stdin/stdout/stderr for " + spec.argv[0] + ": " + e;
    case Step::close_fds: return "cannot close inherited fds for " + spec.argv[0] + ": " + e;
    case Step::bounding_set: return "cannot drop the capability bounding set for " + spec.argv[0] + ": " + e;
    case Step::ambient: return "cannot clear ambient capabilities for " + spec.argv[0] + ": " + e;
    case Step::groups: return "cannot set supplementary groups of user '" + spec.user + "': " + e;
    case Step::gid: return "cannot switch to the group of user '" + spec.user + "': " + e;
    case Step::uid: return "cannot switch to user '" + spec.user + "': " + e + "; the daemon needs CAP_SETUID";
    case Step::capabilities: return "cannot drop capabilities for " + spec.argv[0] + ": " + e;
    case Step::no_new_privs: return "cannot set no_new_privs for " + spec.argv[0] + ": " + e;
    case Step::chdir:
      return "cannot change to working directory " + spec.working_dir + ": " + e + "; check working_dir";
    case Step::exec: return "cannot exec " + spec.argv[0] + ": " + e;
  }
  return "spawn of " + spec.argv[0] + " failed: " + e;
}

// An fd that closes itself.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

// Moves fd above 2 so that dup3 onto 0..2 never meets itself (the daemon may run with
// stdin closed).
int above_stdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

bool has_nul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

// Kills and reaps a child that will not exec, so that no zombie is left.
void discard_child(int pidfd) {
  ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED) != 0 && errno == EINTR) {
  }
}

}  // namespace

const char* to_string(SpawnError error) noexcept {
  switch (error) {
    case SpawnError::invalid_argument: return "invalid_argument";
    case SpawnError::no_such_user: return "no_such_user";
    case SpawnError::cgroup_failed: return "cgroup_failed";
    case SpawnError::clone_failed: return "clone_failed";
    case SpawnError::exec_failed: return "exec_failed";
  }
  return "unknown";
}

Result<Spawned, SpawnError> spawn(const SpawnSpec& spec, CgroupDriver* cgroups) {
  if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
    return make_error(SpawnError::invalid_argument, "the command must start with an absolute path (got '" +
                                                        (spec.argv.empty() ? std::string() : spec.argv[0]) + "')");
  for (const auto& a : spec.argv) {
    if (has_nul(a)) return make_error(SpawnError::invalid_argument, "an argument of " + spec.argv[0] + " holds a NUL");
  }
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos || has_nul(key) || has_nul(value))
      return make_error(SpawnError::invalid_argument,
                        "invalid environment variable name '" + key + "' (empty, or holds '=' or NUL)");
  }
  if (spec.working_dir.empty() || spec.working_dir[0] != '/' || has_nul(spec.working_dir))
    return make_error(SpawnError::invalid_argument,
                      "working_dir must be an absolute path (got '" + spec.working_dir + "')");
  if (spec.uid && (*spec.uid == 0 || !spec.user.empty()))
    return make_error(SpawnError::invalid_argument, "a worker uid must be non-zero and excludes a user name (uid " +
                                                        std::to_string(*spec.uid) + ", user '" + spec.user + "')");
  if (!spec.cgroup.empty() && cgroups == nullptr)
    return make_error(SpawnError::invalid_argument,
                      "a cgroup ('" + spec.cgroup + "') was given but no cgroup driver is configured");

  ChildPlan plan;

  // The user, looked up now: getpwnam in the child could take locks or allocate.
  std::vector<gid_t> groups;
  if (!spec.user.empty()) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    int rc = ::getpwnam_r(spec.user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr)
      return make_error(SpawnError::no_such_user, "no such user '" + spec.user + "'" +
                                                      (rc != 0 ? std::string(": ") + std::strerror(rc) : "") +
                                                      "; create it or fix the agent's user");
    int count = 64;
    groups.resize(static_cast<std::size_t>(count));
    while (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &count) < 0) {
      groups.resize(static_cast<std::size_t>(count) + 64);
      count = static_cast<int>(groups.size());
    }
    groups.resize(static_cast<std::size_t>(count));
    plan.change_user = true;
    plan.uid = pw.pw_uid;
    plan.gid = pw.pw_gid;
    plan.groups = groups.data();
    plan.group_count = groups.size();
  }
  if (spec.uid) {
    plan.change_user = true;
    plan.uid = *spec.uid;
    plan.gid = static_cast<gid_t>(*spec.uid);
    plan.groups = nullptr;
    plan.group_count = 0;
  }
  plan.last_cap = static_cast<int>(cap_max_bits()) - 1;
  plan.keep_privileges = spec.keep_privileges;

  // argv and envp arrays.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : spec.env) env_strings.push_back(key + "=" + value);
  if (spec.env.find("PATH") == spec.env.end()) env_strings.push_back(std::string("PATH=") + kDefaultPath);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  plan.path = spec.argv[0].c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.working_dir = spec.working_dir.c_str();

  Fd null_fd(above_stdio(::open("/dev/null", O_RDWR | O_CLOEXEC)));
  if (null_fd.fd < 0)
    return make_error(SpawnError::invalid_argument, std::string("cannot open /dev/null: ") + std::strerror(errno));
  Fd log_fd;
  if (spec.log_path.empty()) {
    log_fd.reset(above_stdio(::fcntl(null_fd.fd, F_DUPFD_CLOEXEC, 3)));
  } else {
    log_fd.reset(above_stdio(::open(spec.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)));
  }
  if (log_fd.fd < 0)
    return make_error(SpawnError::invalid_argument, "cannot open log file " + spec.log_path + ": " +
                                                        std::strerror(errno) + "; check the log directory");
  plan.stdin_fd = null_fd.fd;
  plan.log_fd = log_fd.fd;

  int report_pipe[2];
  if (::pipe2(report_pipe, O_CLOEXEC) != 0)
    return make_error(SpawnError::clone_failed, std::string("cannot create a pipe: ") + std::strerror(errno));
  Fd report_read(report_pipe[0]), report_write(report_pipe[1]);
  plan.report_fd = report_write.fd;

  bool v2 = cgroups != nullptr && !spec.cgroup.empty() && cgroups->mode() == CgroupMode::v2;
  bool v1 = cgroups != nullptr && !spec.cgroup.empty() && cgroups->mode() == CgroupMode::v1;
  Fd cgroup_fd, sync_read, sync_write;
  if (v2) {
    auto fd = cgroups->open_dir_fd(spec.cgroup);
    if (!fd) return make_error(SpawnError::cgroup_failed, fd.message());
    cgroup_fd.reset(fd.value());
  }
  if (v1) {
    int sync_pipe[2];
    if (::pipe2(sync_pipe, O_CLOEXEC) != 0)
      return make_error(SpawnError::clone_failed, std::string("cannot create a pipe: ") + std::strerror(errno));
    sync_read.reset(sync_pipe[0]);
    sync_write.reset(sync_pipe[1]);
    plan.sync_fd = sync_read.fd;
  }

  clone_args args{};
  int pidfd = -1;
  args.flags = CLONE_PIDFD | (v2 ? CLONE_INTO_CGROUP : 0);
  args.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = v2 ? static_cast<std::uint64_t>(cgroup_fd.fd) : 0;

  // No handler of ours may run in the child before it resets the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long child = ::syscall(SYS_clone3, &args, sizeof args);
  if (child == 0) run_child(plan);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  if (child < 0) {
    std::string e = std::strerror(clone_errno);
    if (v2 && (clone_errno == EBUSY || clone_errno == EACCES || clone_errno == EPERM || clone_errno == EOPNOTSUPP ||
               clone_errno == EINVAL))
      return make_error(SpawnError::cgroup_failed,
                        "cannot start " + spec.argv[0] + " in cgroup " + cgroups->path_of(spec.cgroup) + ": " + e +
                            (clone_errno == EBUSY ? "; cgroup v2 allows processes only in leaf groups" : ""));
    return make_error(SpawnError::clone_failed,
                      "cannot start " + spec.argv[0] + ": clone3 failed: " + e +
                          (clone_errno == EAGAIN ? "; pids limit or RLIMIT_NPROC reached" : ""));
  }
  Fd owned_pidfd(pidfd);
  report_write.reset();
  sync_read.reset();

  if (v1) {
    auto placed = cgroups->place(static_cast<pid_t>(child), spec.cgroup);
    if (!placed) {
      sync_write.reset();  // the child sees EOF and exits
      discard_child(owned_pidfd.fd);
      return make_error(SpawnError::cgroup_failed, placed.message());
    }
    char go = 1;
    ssize_t n;
    do n = ::write(sync_write.fd, &go, 1);
    while (n < 0 && errno == EINTR);
    sync_write.reset();
  }

  // EOF without a report means the exec succeeded (the pipe was CLOEXEC).
  ChildReport report;
  std::size_t got = 0;
  while (got < sizeof report) {
    ssize_t n = ::read(report_read.fd, reinterpret_cast<char*>(&report) + got, sizeof report - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > 0) {
    discard_child(owned_pidfd.fd);
    if (got < sizeof report)
      return make_error(SpawnError::exec_failed, "cannot exec " + spec.argv[0] + ": the child failed during setup");
    return make_error(SpawnError::exec_failed, step_message(static_cast<Step>(report.step), spec, report.err));
  }
  return Spawned{static_cast<pid_t>(child), owned_pidfd.release()};
}

}  // namespace axon::controlplane

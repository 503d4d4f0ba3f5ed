// spawn(): libcap's launcher (cap_launch) with a setup callback, a capability-free child in
// its cgroup, and setup failures reported back through a CLOEXEC pipe.
//
// cap_launch forks (glibc's fork, which keeps malloc usable in the child of this
// multi-threaded daemon), runs our callback (signals, session, stdio, fds, cgroup
// placement, user switch, working directory), then puts the process in libcap's
// CAP_MODE_NOPRIV: inheritable, ambient, permitted and effective sets empty, the bounding
// set dropped, securebits locked (noroot, no-setuid-fixup, keep-caps, no-ambient-raise,
// each with its lock) and no_new_privs; then execve. The pidfd is opened right after the
// launch: nothing in the daemon reaps children except through pidfds, so the pid cannot
// have been recycled in between.
#include "axon/controlplane/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "axon/controlplane/cgroup.h"

namespace axon::controlplane {

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The setup steps the child reports on failure.
enum class Step : int { signals = 1, session, stdio, close_fds, cgroup, groups, gid, uid, no_new_privs, chdir, exec };

struct ChildReport {
  int step = 0;
  int err = 0;
};

// Everything the child needs, computed before the launch.
struct ChildPlan {
  int report_fd = -1;
  int stdin_fd = -1;
  int log_fd = -1;
  const int* procs_fds = nullptr;  // cgroup.procs of the worker's group, one per hierarchy
  std::size_t procs_count = 0;
  bool change_user = false;
  bool keep_privileges = false;
  bool can_lock = false;  // the daemon holds CAP_SETPCAP: libcap's CAP_MODE_NOPRIV applies
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  std::size_t group_count = 0;
  const char* working_dir = "/";
  const char* path = nullptr;  // argv[0]
};

// Reports the failed step to the parent; the launch then fails (libcap reaps the child).
int child_fail(const ChildPlan& plan, Step step) {
  ChildReport report{static_cast<int>(step), errno};
  ssize_t n = ::write(plan.report_fd, &report, sizeof report);
  (void)n;
  return -1;
}

int setup_child(void* detail) {
  const ChildPlan& plan = *static_cast<const ChildPlan*>(detail);
  // Default dispositions, then an empty mask (the parent blocked everything around the
  // fork so that none of its handlers can run here).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) (void)::sigaction(sig, &dfl, nullptr);  // EINVAL for reserved ones
  }
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) return child_fail(plan, Step::signals);
  if (::setsid() < 0) return child_fail(plan, Step::session);
  if (::dup2(plan.stdin_fd, 0) < 0 || ::dup2(plan.log_fd, 1) < 0 || ::dup2(plan.log_fd, 2) < 0)
    return child_fail(plan, Step::stdio);
  // Everything above 2 closes at exec; the report pipe stays usable until then.
  if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) return child_fail(plan, Step::close_fds);
  // Into the worker's cgroup in every hierarchy before anything of the worker runs
  // ("0" is the writing process).
  for (std::size_t i = 0; i < plan.procs_count; ++i) {
    if (::write(plan.procs_fds[i], "0", 1) != 1) return child_fail(plan, Step::cgroup);
  }
  if (plan.change_user) {
    // Keep the permitted set across the uid change: libcap needs CAP_SETPCAP afterwards to
    // empty the bounding set and lock the securebits. It clears every set before exec.
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return child_fail(plan, Step::uid);
    if (::setgroups(plan.group_count, plan.groups) != 0) return child_fail(plan, Step::groups);
    if (::setresgid(plan.gid, plan.gid, plan.gid) != 0) return child_fail(plan, Step::gid);
    if (::setresuid(plan.uid, plan.uid, plan.uid) != 0) return child_fail(plan, Step::uid);
  }
  if (::chdir(plan.working_dir) != 0) return child_fail(plan, Step::chdir);
  // libcap's failed execve reaches the parent only as a bare launch failure: check here,
  // as the worker's user, what would make it fail, so the message can say so.
  struct stat st {};
  if (::stat(plan.path, &st) != 0) return child_fail(plan, Step::exec);
  if (!S_ISREG(st.st_mode) || ::access(plan.path, X_OK) != 0) {
    errno = EACCES;
    return child_fail(plan, Step::exec);
  }
  // A daemon without CAP_SETPCAP (not root) has nothing to give away, and libcap could not
  // lock the securebits: it only sets no_new_privs.
  if (!plan.keep_privileges && !plan.can_lock && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return child_fail(plan, Step::no_new_privs);
  return 0;
}

std::string step_message(Step step, const SpawnSpec& spec, int err) {
  std::string e = std::strerror(err);
  std::string who = spec.uid ? "uid " + std::to_string(*spec.uid) : "user '" + spec.user + "'";
  switch (step) {
    case Step::signals: return "cannot reset the signal mask for " + spec.argv[0] + ": " + e;
    case Step::session: return "cannot start a new session for " + spec.argv[0] + ": " + e;
    case Step::stdio: return "cannot set up stdin/stdout/stderr for " + spec.argv[0] + ": " + e;
    case Step::close_fds: return "cannot close inherited fds for " + spec.argv[0] + ": " + e;
    case Step::cgroup: return "cannot move " + spec.argv[0] + " into cgroup " + spec.cgroup + ": " + e;
    case Step::groups: return "cannot set supplementary groups of " + who + ": " + e;
    case Step::gid: return "cannot switch to the group of " + who + ": " + e;
    case Step::uid: return "cannot switch to " + who + ": " + e + "; the daemon needs CAP_SETUID";
    case Step::no_new_privs: return "cannot set no_new_privs for " + spec.argv[0] + ": " + e;
    case Step::chdir:
      return "cannot change to working directory " + spec.working_dir + ": " + e + "; check working_dir";
    case Step::exec: return "cannot exec " + spec.argv[0] + ": " + e;
  }
  return "spawn of " + spec.argv[0] + " failed: " + e;
}

// A failure inside libcap's part of the launch (capabilities, or an exec failure the check
// in setup_child could not foresee); libcap does not keep the child's errno reliably.
std::string launch_message(const SpawnSpec& spec, int err) {
  return "cannot exec " + spec.argv[0] + " with an empty capability set (libcap CAP_MODE_NOPRIV): the launch failed (" +
         std::strerror(err) + "); check that it is an executable for this system and that the daemon holds CAP_SETPCAP";
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

}  // namespace

const char* to_string(SpawnError error) noexcept {
  switch (error) {
    case SpawnError::invalid_argument: return "invalid_argument";
    case SpawnError::no_such_user: return "no_such_user";
    case SpawnError::cgroup_failed: return "cgroup_failed";
    case SpawnError::clone_failed: return "clone_failed";
    case SpawnError::exec_failed: return "exec_failed";
    case SpawnError::supervise_failed: return "supervise_failed";
  }
  return "unknown";
}

namespace {

// The spec's own checks, before anything is opened or looked up.
std::optional<Error<SpawnError>> check_spec(const SpawnSpec& spec, const CgroupDriver* cgroups) {
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
  return std::nullopt;
}

// Who the child becomes and whether it can lock its capabilities; plan.groups points into
// `groups`, which the caller keeps alive until the launch.
std::optional<Error<SpawnError>> plan_identity(const SpawnSpec& spec, ChildPlan& plan, std::vector<gid_t>& groups) {
  // The user, looked up now: getpwnam in the child could take locks or allocate.
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
  plan.keep_privileges = spec.keep_privileges;
  if (!spec.keep_privileges) {
    cap_t own = cap_get_proc();
    cap_flag_value_t setpcap = CAP_CLEAR;
    if (own != nullptr) (void)cap_get_flag(own, CAP_SETPCAP, CAP_PERMITTED, &setpcap);
    cap_free(own);
    plan.can_lock = setpcap == CAP_SET;
  }
  return std::nullopt;
}

// Why cap_launch failed: our own steps report through the pipe; libcap's (capabilities,
// exec) leave errno.
Error<SpawnError> launch_error(int report_fd, pid_t child, int launch_errno, const SpawnSpec& spec) {
  ChildReport report;
  ssize_t got;
  do got = ::read(report_fd, &report, sizeof report);
  while (got < 0 && errno == EINTR);
  if (got == ssize_t(sizeof report)) {
    return make_error(report.step == int(Step::cgroup) ? SpawnError::cgroup_failed : SpawnError::exec_failed,
                      step_message(static_cast<Step>(report.step), spec, report.err));
  }
  if (child < 0 && launch_errno == EAGAIN)
    return make_error(SpawnError::clone_failed,
                      "cannot start " + spec.argv[0] + ": fork failed: pids limit or RLIMIT_NPROC reached");
  return make_error(SpawnError::exec_failed, launch_message(spec, launch_errno));
}

}  // namespace

Result<Spawned, SpawnError> spawn(const SpawnSpec& spec, CgroupDriver* cgroups) {
  if (auto invalid = check_spec(spec, cgroups)) return *invalid;

  ChildPlan plan;

  std::vector<gid_t> groups;  // plan.groups points into it
  if (auto failed = plan_identity(spec, plan, groups)) return *failed;

  // argv and envp arrays.
  std::vector<const char*> argv;
  for (const auto& a : spec.argv) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : spec.env) env_strings.push_back(key + "=" + value);
  if (spec.env.find("PATH") == spec.env.end()) env_strings.push_back(std::string("PATH=") + kDefaultPath);
  std::vector<const char*> envp;
  for (auto& e : env_strings) envp.push_back(e.c_str());
  envp.push_back(nullptr);
  plan.working_dir = spec.working_dir.c_str();
  plan.path = spec.argv[0].c_str();

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

  struct FdList {
    std::vector<int> fds;
    ~FdList() {
      for (int fd : fds) ::close(fd);
    }
  } procs;
  if (cgroups != nullptr && !spec.cgroup.empty()) {
    auto fds = cgroups->open_procs_fds(spec.cgroup);
    if (!fds) return make_error(SpawnError::cgroup_failed, fds.message());
    procs.fds = fds.value();
  }
  plan.procs_fds = procs.fds.data();
  plan.procs_count = procs.fds.size();

  std::unique_ptr<std::remove_pointer_t<cap_launch_t>, int (*)(void*)> launcher(
      cap_new_launcher(spec.argv[0].c_str(), argv.data(), envp.data()), cap_free);
  if (!launcher)
    return make_error(SpawnError::clone_failed, std::string("cap_new_launcher failed: ") + std::strerror(errno));
  cap_launcher_callback(launcher.get(), setup_child);
  if (!spec.keep_privileges && plan.can_lock) cap_launcher_set_mode(launcher.get(), CAP_MODE_NOPRIV);

  // No handler of ours may run in the child before it resets the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t child = cap_launch(launcher.get(), &plan);
  int launch_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  report_write.reset();

  if (child <= 0) {
    return launch_error(report_read.fd, child, launch_errno, spec);
  }
  // Exec'd (cap_launch returns once the exec happened). Nothing reaps our children but
  // through pidfds, so this pid is still ours.
  int pidfd = int(::syscall(SYS_pidfd_open, child, 0));
  if (pidfd < 0) {
    int err = errno;
    ::kill(child, SIGKILL);
    return make_error(SpawnError::clone_failed, "cannot open a pidfd for " + spec.argv[0] + " (pid " +
                                                    std::to_string(child) + "): " + std::strerror(err));
  }
  // CLOEXEC so later spawns do not inherit it.
  (void)::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return Spawned{child, pidfd};
}

}  // namespace axon::controlplane

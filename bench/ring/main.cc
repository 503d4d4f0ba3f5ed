// axon-bench-ring: axon's SPSC ring side by side with DPDK rte_ring, Boost.Lockfree
// spsc_queue, iceoryx and a plain cache-line ping-pong, between two pinned processes over
// the same hugepage memfd region. See docs/benchmarks.md for what each number means.
//
// The driver (this process) never measures anything itself: for every run it formats the
// peer's rings in the shared region, forks one process per role, pins them, waits for
// both under a watchdog and collects what they wrote into the region.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <new>
#include <sstream>
#include <string>
#include <thread>

#include "axon/common/cpu.h"
#include "axon/shm/region.h"

#include "bench.h"

namespace axon::bench {
namespace {

// ---------------------------------------------------------------------------------------
// Options

struct Options {
  std::uint32_t runs = 5;
  bool quick = false;
  std::string json;
  std::vector<std::string> only;  // peer keys; empty = all
  bool iceoryx = true;
  bool rt = false;           // run the measuring processes under SCHED_FIFO
  std::uint32_t slices = 4;  // interleaved samples per peer per run
  Params params;
  int watchdog_s = 60;
};

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: axon-bench-ring [--runs N] [--messages N] [--cpus A,B] [--quick] [--json FILE]\n"
               "                       [--pingpong N] [--wake N] [--recovery N] [--only KEY,KEY] [--no-iceoryx]\n"
               "                       [--watchdog SECONDS] [--rt] [--slices K]\n"
               "  --runs N        fresh-fork runs per measurement, medians reported (default 5)\n"
               "  --messages N    messages per throughput run (default 10000000)\n"
               "  --cpus A,B      producer/ping CPU and consumer/pong CPU (default 0,1)\n"
               "  --quick         small counts, 1 run: a CI smoke test, not a measurement\n"
               "  --json FILE     also write machine-readable results to FILE\n"
               "  --pingpong N    timed round trips per latency run (default 200000, after 20000 warmup)\n"
               "  --wake N        sleep-to-wake samples per run (default 2000)\n"
               "  --recovery N    kill -9 recovery trials (default 15, at most 64)\n"
               "  --only KEYS     run only these peers (axon_ring_64, axon_ring_descriptor,\n"
               "                  axon_descriptor_notify, axon_ring_64_stampfree, axon_ring_64_burststamp, rte_ring,\n"
               "                  boost_spsc, iceoryx, cacheline_pingpong)\n"
               "  --no-iceoryx    skip iceoryx (no RouDi is started)\n"
               "  --watchdog S    kill a run's processes after S seconds (default 60)\n"
               "  --slices K      split each run into K interleaved slices (peer A, B, C, A, B, C, ...; each a\n"
               "                  fresh fork with 1/K of the messages); a run's value is its slices' median\n"
               "                  (default 4, 1 with --quick)\n"
               "  --rt            run the two measuring processes as SCHED_FIFO 50 (every peer alike), so other\n"
               "                  load on the machine cannot preempt them (the kernel still keeps 5%% for others)\n"
               "Exits non-zero when any peer that ran lost, reordered or corrupted a message, or failed.\n");
  std::exit(code);
}

std::uint64_t parse_u64(const char* flag, const char* value) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0') {
    std::fprintf(stderr, "axon-bench-ring: %s wants a number, got '%s'\n", flag, value);
    std::exit(2);
  }
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  bool messages_set = false, pingpong_set = false, wake_set = false, recovery_set = false, runs_set = false,
       slices_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "axon-bench-ring: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(0);
    } else if (a == "--runs") {
      o.runs = std::uint32_t(parse_u64("--runs", value()));
      runs_set = true;
    } else if (a == "--messages") {
      o.params.messages = parse_u64("--messages", value());
      messages_set = true;
    } else if (a == "--pingpong") {
      o.params.pingpong_iters = std::uint32_t(parse_u64("--pingpong", value()));
      pingpong_set = true;
    } else if (a == "--wake") {
      o.params.wake_samples = std::uint32_t(parse_u64("--wake", value()));
      wake_set = true;
    } else if (a == "--recovery") {
      o.params.recovery_trials = std::uint32_t(parse_u64("--recovery", value()));
      recovery_set = true;
    } else if (a == "--cpus") {
      auto parts = split(value(), ',');
      if (parts.size() != 2) {
        std::fprintf(stderr, "axon-bench-ring: --cpus wants two CPUs, e.g. 0,1\n");
        std::exit(2);
      }
      o.params.cpu[0] = int(parse_u64("--cpus", parts[0].c_str()));
      o.params.cpu[1] = int(parse_u64("--cpus", parts[1].c_str()));
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--only") {
      o.only = split(value(), ',');
    } else if (a == "--slices") {
      o.slices = std::uint32_t(parse_u64("--slices", value()));
      slices_set = true;
    } else if (a == "--rt") {
      o.rt = true;
    } else if (a == "--no-iceoryx") {
      o.iceoryx = false;
    } else if (a == "--watchdog") {
      o.watchdog_s = int(parse_u64("--watchdog", value()));
    } else {
      std::fprintf(stderr, "axon-bench-ring: unknown option '%s'\n", a.c_str());
      usage(2);
    }
  }
  if (o.quick) {
    if (!runs_set) o.runs = 1;
    if (!messages_set) o.params.messages = 200'000;
    if (!pingpong_set) o.params.pingpong_iters = 20'000;
    if (!wake_set) o.params.wake_samples = 100;
    if (!recovery_set) o.params.recovery_trials = 3;
    if (!slices_set) o.slices = 1;
    o.params.pingpong_warmup = 2'000;
  }
  if (o.runs == 0 || o.params.messages == 0 || o.params.pingpong_iters == 0 || o.slices == 0) {
    std::fprintf(stderr, "axon-bench-ring: --runs, --messages, --pingpong and --slices must be positive\n");
    std::exit(2);
  }
  if (o.params.cpu[0] == o.params.cpu[1]) {
    std::fprintf(stderr, "axon-bench-ring: --cpus must name two different CPUs\n");
    std::exit(2);
  }
  return o;
}

// ---------------------------------------------------------------------------------------
// Statistics over runs

struct Series {
  std::vector<double> v;
  std::vector<std::uint32_t> run;  // which run each value came from (for paired ratios)
  void add(double x, std::uint32_t r = 0) {
    v.push_back(x);
    run.push_back(r);
  }
  [[nodiscard]] bool empty() const { return v.empty(); }
  [[nodiscard]] double median() const {
    if (v.empty()) return NAN;
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    std::size_t n = s.size();
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }
  [[nodiscard]] double min() const { return v.empty() ? NAN : *std::min_element(v.begin(), v.end()); }
  [[nodiscard]] double max() const { return v.empty() ? NAN : *std::max_element(v.begin(), v.end()); }
};

struct PeerResult {
  Peer peer{};
  std::string unavailable;                // non-empty: could not run here, and why
  Series tput[2];                         // M msg/s, batch 1 and batch 32
  Series syscalls[2];                     // producer syscalls per message (perf), per batch
  Series wakes[2];                        // producer futex wakes per message (eventcount counter)
  Series p50, p99, p999, lat_min;         // one-way ns
  Series wake_p50, wake_p99, wake_wakes;  // µs; wakes issued per sample
  std::vector<std::string> errors;
  [[nodiscard]] bool selected(const Options& o) const {
    return o.only.empty() || std::find(o.only.begin(), o.only.end(), peer.key) != o.only.end();
  }
};

// ---------------------------------------------------------------------------------------
// Processes

struct Child {
  pid_t pid = -1;
  int pidfd = -1;
};

bool g_rt = false;

template <typename Fn>
Child spawn(int cpu, Fn&& fn) {
  std::fflush(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return {};
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(97);
    if (cpu >= 0 && !pin_this_thread(cpu)) _exit(98);
    if (g_rt) {
      sched_param param{};
      param.sched_priority = 50;
      if (sched_setscheduler(0, SCHED_FIFO, &param) != 0) _exit(96);
    }
    _exit(fn());
  }
  Child c;
  c.pid = pid;
  c.pidfd = int(syscall(SYS_pidfd_open, pid, 0));
  return c;
}

// Waits for every child, killing them all when the watchdog expires. Returns one exit
// description per child ("" = exited 0).
std::vector<std::string> reap(std::vector<Child>& children, int timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::vector<bool> done(children.size(), false);
  bool watchdog = false;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < children.size(); ++i) {
      if (!done[i] && children[i].pidfd >= 0) {
        fds.push_back(pollfd{children[i].pidfd, POLLIN, 0});
        index.push_back(i);
      }
    }
    if (fds.empty()) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      watchdog = true;
      for (std::size_t i = 0; i < children.size(); ++i) {
        if (!done[i]) kill(children[i].pid, SIGKILL);
      }
      break;
    }
    int n = poll(fds.data(), fds.size(), int(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) break;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents != 0) done[index[k]] = true;
    }
  }
  std::vector<std::string> out;
  for (auto& c : children) {
    std::string what;
    if (c.pid <= 0) {
      out.push_back("fork failed");
      continue;
    }
    int status = 0;
    waitpid(c.pid, &status, 0);
    if (c.pidfd >= 0) close(c.pidfd);
    if (watchdog) {
      what = "killed by the " + std::to_string(timeout_s) + " s watchdog";
    } else if (WIFSIGNALED(status)) {
      what = std::string("killed by signal ") + strsignal(WTERMSIG(status));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
      int code = WEXITSTATUS(status);
      what = code == 98   ? "could not pin to its CPU"
             : code == 96 ? "could not switch to SCHED_FIFO (--rt needs root or CAP_SYS_NICE)"
                          : "exited with status " + std::to_string(code);
    }
    out.push_back(what);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// One run of one workload of one peer

struct Shared {
  Control* control;
  RecoveryResult* recovery;
  std::byte* area;
  std::size_t area_size;
};

// Returns "" on success, else what went wrong. `roles` receives both results.
std::string run_once(const Peer& peer, Workload workload, const Params& p, const Shared& sh, int watchdog_s,
                     RoleResult roles[2]) {
  std::memset(static_cast<void*>(sh.control), 0, sizeof(Control));
  auto* ctl = new (sh.control) Control{};
  peer.init(sh.area);
  std::vector<Child> children;
  for (int role = 0; role < 2; ++role) {
    children.push_back(spawn(p.cpu[role], [&, role] { return peer.child(sh.area, workload, role, *ctl, p); }));
  }
  auto exits = reap(children, watchdog_s);
  std::string error;
  for (int role = 0; role < 2; ++role) {
    roles[role] = ctl->role[role];
    const char* who = role == 0 ? "producer" : "consumer";
    if (!exits[role].empty() || roles[role].status != 0) {
      if (!error.empty()) error += "; ";
      error += std::string(who) + ": " + (roles[role].error[0] ? roles[role].error : "no result") +
               (exits[role].empty() ? "" : " (" + exits[role] + ")");
    }
  }
  return error;
}

const char* workload_name(Workload w) {
  switch (w) {
    case Workload::batch1: return "batch 1";
    case Workload::batch32: return "batch 32";
    case Workload::pingpong: return "ping-pong";
    case Workload::wake: return "sleep-to-wake";
  }
  return "?";
}

void record(PeerResult& pr, Workload w, const Params& p, const RoleResult roles[2], std::uint32_t run) {
  if (w == Workload::batch1 || w == Workload::batch32) {
    const int b = w == Workload::batch1 ? 0 : 1;
    const double ns = double(roles[1].tsc_end - roles[1].tsc_start) / p.tsc_per_ns;
    pr.tput[b].add(double(roles[1].messages) / ns * 1e3, run);
    if (roles[0].syscalls >= 0) pr.syscalls[b].add(double(roles[0].syscalls) / double(roles[0].messages), run);
    pr.wakes[b].add(double(roles[0].wakes_issued) / double(roles[0].messages), run);
  } else if (w == Workload::pingpong) {
    pr.p50.add(roles[0].latency.p50, run);
    pr.p99.add(roles[0].latency.p99, run);
    pr.p999.add(roles[0].latency.p999, run);
    pr.lat_min.add(roles[0].latency.min, run);
  } else if (w == Workload::wake) {
    pr.wake_p50.add(roles[1].latency.p50 / 1e3, run);
    pr.wake_p99.add(roles[1].latency.p99 / 1e3, run);
    pr.wake_wakes.add(double(roles[0].wakes_issued) / double(roles[0].messages), run);
  }
}

// One run's value from its slices: the median throughput and latency percentiles, the
// worst system-call and wake counts.
struct Slice {
  RoleResult roles[2];
};

void record_slices(PeerResult& pr, Workload w, const Params& p, const std::vector<Slice>& slices, std::uint32_t run) {
  if (slices.empty()) return;
  auto median = [](std::vector<double> v) {
    Series s;
    s.v = std::move(v);
    return s.median();
  };
  if (w == Workload::batch1 || w == Workload::batch32) {
    const int b = w == Workload::batch1 ? 0 : 1;
    std::vector<double> tput;
    double syscalls = 0, wakes = 0;
    bool counted = true;
    for (const Slice& s : slices) {
      const double ns = double(s.roles[1].tsc_end - s.roles[1].tsc_start) / p.tsc_per_ns;
      tput.push_back(double(s.roles[1].messages) / ns * 1e3);
      if (s.roles[0].syscalls < 0) counted = false;
      syscalls = std::max(syscalls, double(s.roles[0].syscalls) / double(s.roles[0].messages));
      wakes = std::max(wakes, double(s.roles[0].wakes_issued) / double(s.roles[0].messages));
    }
    pr.tput[b].add(median(tput), run);
    if (counted) pr.syscalls[b].add(syscalls, run);
    pr.wakes[b].add(wakes, run);
  } else if (w == Workload::pingpong) {
    std::vector<double> p50, p99, p999, mn;
    for (const Slice& s : slices) {
      p50.push_back(s.roles[0].latency.p50);
      p99.push_back(s.roles[0].latency.p99);
      p999.push_back(s.roles[0].latency.p999);
      mn.push_back(s.roles[0].latency.min);
    }
    pr.p50.add(median(p50), run);
    pr.p99.add(median(p99), run);
    pr.p999.add(median(p999), run);
    pr.lat_min.add(*std::min_element(mn.begin(), mn.end()), run);
  } else {
    for (const Slice& s : slices) record(pr, w, p, s.roles, run);
  }
}

// ---------------------------------------------------------------------------------------
// Environment: machine facts, the syscall tracepoint, RouDi

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return trim(line.substr(colon + 1));
    }
  }
  return "";
}

long meminfo_field(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  long v = -1;
  while (in >> k) {
    if (k == key + ":") {
      in >> v;
      return v;
    }
    in.ignore(1 << 10, '\n');
  }
  return -1;
}

int read_id(const std::string& path) {
  std::ifstream in(path);
  int id = -1;
  if (in >> id) return id;
  return -1;
}

// raw_syscalls:sys_enter's id, mounting tracefs on a private temporary directory when
// it is not mounted already.
int find_syscall_tracepoint(std::string& how) {
  const char* rel = "/events/raw_syscalls/sys_enter/id";
  for (const char* root : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
    int id = read_id(std::string(root) + rel);
    if (id >= 0) {
      how = std::string("perf_event_open(PERF_TYPE_TRACEPOINT raw_syscalls:sys_enter, id from ") + root + ")";
      return id;
    }
  }
  char dir[] = "/tmp/axon-bench-tracefs-XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    how = "unavailable: tracefs is not mounted and no temporary mount point could be made";
    return -1;
  }
  int id = -1;
  if (mount("nodev", dir, "tracefs", 0, nullptr) == 0) {
    id = read_id(std::string(dir) + rel);
    umount(dir);
    how = id >= 0 ? "perf_event_open(PERF_TYPE_TRACEPOINT raw_syscalls:sys_enter, id from a private tracefs mount)"
                  : "unavailable: tracefs has no raw_syscalls:sys_enter event";
  } else {
    how = std::string("unavailable: tracefs is not mounted and mounting it failed (") + std::strerror(errno) + ")";
  }
  rmdir(dir);
  return id;
}

struct Roudi {
  pid_t pid = -1;
  std::string config;
  std::string log;
};

std::string tail_of(const std::string& path) {
  std::string s = read_file(path.c_str());
  std::vector<std::string> lines = split(s, '\n');
  std::string out;
  for (std::size_t i = lines.size() > 3 ? lines.size() - 3 : 0; i < lines.size(); ++i) {
    std::string l;
    for (char ch : lines[i]) {
      if (ch == '\x1b') continue;
      l += ch;
    }
    out += (out.empty() ? "" : " | ") + l;
  }
  return out;
}

// Starts iox-roudi with a small config and waits for "RouDi is ready for clients".
// Returns "" on success, else the reason iceoryx is unavailable.
std::string start_roudi(Roudi& r) {
  char cfg[] = "/tmp/axon-bench-roudi-XXXXXX.toml";
  int fd = mkstemps(cfg, 5);
  if (fd < 0) return "cannot create a RouDi config file in /tmp";
  // One segment with room for both channels' queues (2 x 256) many times over.
  const char* text =
      "[general]\nversion = 1\n\n[[segment]]\n\n[[segment.mempool]]\nsize = 128\ncount = 8192\n\n"
      "[[segment.mempool]]\nsize = 1024\ncount = 64\n";
  if (write(fd, text, std::strlen(text)) < 0) {
    close(fd);
    return "cannot write the RouDi config file";
  }
  close(fd);
  r.config = cfg;
  char log[] = "/tmp/axon-bench-roudi-XXXXXX.log";
  int log_fd = mkstemps(log, 4);
  if (log_fd < 0) return "cannot create a RouDi log file in /tmp";
  r.log = log;
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return "fork failed";
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, STDIN_FILENO);
    execlp("iox-roudi", "iox-roudi", "-c", r.config.c_str(), "-m", "off", nullptr);
    std::fprintf(stderr, "exec iox-roudi failed: %s\n", std::strerror(errno));
    _exit(127);
  }
  close(log_fd);
  r.pid = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      r.pid = -1;
      std::string why = tail_of(r.log);
      if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        return "iox-roudi not found (install the Debian package 'iceoryx')";
      }
      return "iox-roudi exited at startup: " + (why.empty() ? std::string("no output") : why);
    }
    if (read_file(r.log.c_str()).find("RouDi is ready for clients") != std::string::npos) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "iox-roudi did not report ready within 15 s: " + tail_of(r.log);
}

void stop_roudi(Roudi& r) {
  if (r.pid > 0) {
    kill(r.pid, SIGTERM);
    int pidfd = int(syscall(SYS_pidfd_open, r.pid, 0));
    if (pidfd >= 0) {
      pollfd pfd{pidfd, POLLIN, 0};
      if (poll(&pfd, 1, 10'000) == 0) kill(r.pid, SIGKILL);
      close(pidfd);
    }
    waitpid(r.pid, nullptr, 0);
    r.pid = -1;
  }
  if (!r.config.empty()) unlink(r.config.c_str());
  if (!r.log.empty()) unlink(r.log.c_str());
}

// ---------------------------------------------------------------------------------------
// Output

std::string fmt(double v, int digits = 1) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string spread(const Series& s, int digits = 1) {
  if (s.empty()) return "n/a";
  if (s.v.size() == 1) return fmt(s.median(), digits);
  return fmt(s.median(), digits) + " (" + fmt(s.min(), digits) + "–" + fmt(s.max(), digits) + ")";
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string jstr(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  out.append(json_escape(s));
  out.push_back('"');
  return out;
}
std::string jnum(double v, int digits = 4) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string jseries(const Series& s, int digits = 4) {
  if (s.empty()) return "null";
  std::string out = "{\"median\": " + jnum(s.median(), digits) + ", \"min\": " + jnum(s.min(), digits) +
                    ", \"max\": " + jnum(s.max(), digits) + ", \"runs\": [";
  for (std::size_t i = 0; i < s.v.size(); ++i) out += (i ? ", " : "") + jnum(s.v[i], digits);
  return out + "]}";
}

struct Target {
  std::string name;
  std::string goal;
  double value;   // ratio of the medians
  double paired;  // median over runs of the same run's ratio
  bool met;       // judged on `value`
  bool known;
  bool paired_met;
};

// Median over runs of a[r] / b[r], pairing values from the same run: both were measured
// seconds apart, so a shift of the VM's vCPU placement mostly hits both alike.
double paired_ratio(const Series& a, const Series& b) {
  Series r;
  for (std::size_t i = 0; i < a.v.size(); ++i) {
    for (std::size_t k = 0; k < b.v.size(); ++k) {
      if (a.run[i] == b.run[k] && b.v[k] != 0) r.add(a.v[i] / b.v[k]);
    }
  }
  return r.median();
}

// A run whose cache-line ping-pong one way is below this sat in the near placement (~35-50 ns),
// below kFarFloorNs in the far one (~110-190 ns); above it the vCPUs were further still (seen
// at ~300 ns while the host was busy).
constexpr double kNearFloorNs = 80;
constexpr double kFarFloorNs = 250;

std::string loadavg() {
  return trim(read_file("/proc/loadavg"));
}

}  // namespace
}  // namespace axon::bench

int main(int argc, char** argv) {
  using namespace axon::bench;
  using axon::shm::Region;
  const auto wall_start = std::chrono::steady_clock::now();
  Options opt = parse(argc, argv);
  Params& p = opt.params;

  const int ncpu = axon::online_cpus();
  for (int c : p.cpu) {
    if (c >= ncpu) {
      std::fprintf(stderr, "axon-bench-ring: CPU %d does not exist (this machine has %d online)\n", c, ncpu);
      return 2;
    }
  }
  p.tsc_per_ns = axon::tsc_ticks_per_ns();
  g_rt = opt.rt;
  std::string syscall_method;
  p.syscall_tracepoint = find_syscall_tracepoint(syscall_method);

  // One region for every ring peer: control block in the first 2 MiB page, the peer's
  // rings at the same offset of the second, reformatted before each run.
  constexpr std::size_t kAreaAt = 2u << 20;
  axon::shm::RegionOptions ro;
  ro.size = 4u << 20;
  ro.name = "axon-bench-ring";
  auto region = Region::create(ro);
  if (!region) {
    std::fprintf(stderr, "axon-bench-ring: cannot create the shared region: %s\n", region.message().c_str());
    return 1;
  }
  static_assert(sizeof(Control) + sizeof(RecoveryResult) + 256 < kAreaAt);
  Shared sh{};
  sh.control = new (region->base()) Control{};
  sh.recovery = new (region->base() + ((sizeof(Control) + 255) & ~std::size_t{255})) RecoveryResult{};
  sh.area = region->base() + kAreaAt;
  sh.area_size = region->size() - kAreaAt;
  const char* backing = region->backing() == axon::shm::SegmentBacking::hugetlb_2m ? "hugetlb 2 MiB (memfd MFD_HUGETLB)"
                                                                                   : "4 KiB shmem (hugepage fallback)";

  std::vector<PeerResult> results;
  {
    std::vector<Peer> peers = axon_peers();
    for (const Peer& extra : {rte_ring_peer(), boost_peer(), iceoryx_peer(), baseline_peer()}) peers.push_back(extra);
    for (const Peer& peer : peers) {
      PeerResult pr;
      pr.peer = peer;
      results.push_back(std::move(pr));
    }
  }
  for (auto& pr : results) {
    if (pr.peer.unavailable != nullptr) pr.unavailable = pr.peer.unavailable;
    if (pr.unavailable.empty() && pr.peer.area_bytes() > sh.area_size) {
      pr.unavailable = "needs more shared memory than the bench region holds";
    }
  }
  auto find = [&](const char* key) -> PeerResult* {
    for (auto& pr : results) {
      if (std::strcmp(pr.peer.key, key) == 0) return &pr;
    }
    return nullptr;
  };
  PeerResult* iox = find("iceoryx");
  if (!opt.iceoryx && iox->unavailable.empty()) iox->unavailable = "skipped (--no-iceoryx)";

  const std::string load_start = loadavg();
  std::fprintf(stderr, "axon-bench-ring: %u run(s), %llu messages, CPUs %d,%d, %s, TSC %.3f GHz, loadavg %s\n",
               opt.runs, static_cast<unsigned long long>(p.messages), p.cpu[0], p.cpu[1], backing, p.tsc_per_ns,
               load_start.c_str());
  if (std::atof(load_start.c_str()) > 0.5) {
    std::fprintf(stderr,
                 "axon-bench-ring: warning: the machine is busy (1-min load %.2f); with 2 vCPUs every "
                 "number will be skewed by whatever else runs\n",
                 std::atof(load_start.c_str()));
  }

  bool failed = false;
  std::uint32_t run_id = 0;
  // Runs one slice; false (and the error recorded) if it failed.
  auto run_slice = [&](PeerResult& pr, Workload w, std::uint32_t run, std::vector<Slice>& into) {
    Params rp = p;
    rp.run_id = ++run_id;
    if (opt.slices > 1 && w != Workload::wake) {
      rp.messages = std::max<std::uint64_t>(1, p.messages / opt.slices);
      rp.pingpong_iters = std::max<std::uint32_t>(1, p.pingpong_iters / opt.slices);
      rp.pingpong_warmup = std::max<std::uint32_t>(1000, p.pingpong_warmup / opt.slices);
    }
    Slice slice;
    std::string err = run_once(pr.peer, w, rp, sh, opt.watchdog_s, slice.roles);
    if (!err.empty()) {
      std::string msg = std::string(workload_name(w)) + " run " + std::to_string(run + 1) + ": " + err;
      std::fprintf(stderr, "axon-bench-ring: %s FAILED: %s\n", pr.peer.key, msg.c_str());
      pr.errors.push_back(msg);
      failed = true;
      return false;
    }
    into.push_back(slice);
    return true;
  };
  auto runnable = [&](const PeerResult& pr) { return pr.unavailable.empty() && pr.selected(opt); };

  // Ring peers, interleaved at slice granularity (A B C A B C ...) so a shift of the VM's
  // vCPU placement, which lasts seconds, hits every peer alike; the order rotates too.
  const Workload workloads[] = {Workload::batch1, Workload::batch32, Workload::pingpong};
  auto run_block = [&](const std::vector<PeerResult*>& peers, std::uint32_t run) {
    for (Workload w : workloads) {
      std::vector<std::vector<Slice>> got(peers.size());
      std::vector<bool> ok(peers.size(), true);
      for (std::uint32_t slice = 0; slice < opt.slices; ++slice) {
        for (std::size_t k = 0; k < peers.size(); ++k) {
          const std::size_t i = (k + run + slice) % peers.size();
          PeerResult& pr = *peers[i];
          if ((w == Workload::pingpong && !pr.peer.latency) || (w != Workload::pingpong && !pr.peer.throughput))
            continue;
          if (ok[i]) ok[i] = run_slice(pr, w, run, got[i]);
        }
      }
      for (std::size_t i = 0; i < peers.size(); ++i) {
        if (ok[i]) record_slices(*peers[i], w, p, got[i], run);
      }
    }
  };
  std::vector<PeerResult*> ring_peers;
  for (auto& pr : results) {
    if (&pr != iox && runnable(pr)) ring_peers.push_back(&pr);
  }
  for (std::uint32_t run = 0; run < opt.runs; ++run) {
    run_block(ring_peers, run);
    std::fprintf(stderr, "axon-bench-ring: run %u/%u done\n", run + 1, opt.runs);
  }
  // Sleep-to-wake on the eventcount.
  for (auto& pr : results) {
    if (!pr.peer.wake || !runnable(pr)) continue;
    for (std::uint32_t run = 0; run < opt.runs; ++run) {
      std::vector<Slice> one;
      if (run_slice(pr, Workload::wake, run, one)) record_slices(pr, Workload::wake, p, one, run);
    }
  }
  // iceoryx, with its RouDi up only for its own runs.
  if (runnable(*iox)) {
    Roudi roudi;
    std::string why = start_roudi(roudi);
    if (!why.empty()) {
      iox->unavailable = why;
      std::fprintf(stderr, "axon-bench-ring: iceoryx unavailable: %s\n", why.c_str());
    } else {
      for (std::uint32_t run = 0; run < opt.runs; ++run) run_block({iox}, run);
      std::fprintf(stderr, "axon-bench-ring: iceoryx done\n");
    }
    stop_roudi(roudi);
  }
  // Recovery after kill -9, in a data-plane process pinned like the producers.
  RecoveryResult rec{};
  bool recovery_ran = false;
  if (opt.only.empty() || std::find(opt.only.begin(), opt.only.end(), "recovery") != opt.only.end()) {
    recovery_ran = true;
    new (sh.recovery) RecoveryResult{};
    std::vector<Child> dp{spawn(p.cpu[0], [&] { return recovery_child(*sh.recovery, p); })};
    auto exits = reap(dp, opt.watchdog_s * 2);
    rec = *sh.recovery;
    if (!exits[0].empty() || rec.status != 0 || rec.trials == 0) {
      std::fprintf(stderr, "axon-bench-ring: recovery FAILED: %s %s\n", rec.error, exits[0].c_str());
      failed = true;
    }
  }
  const std::string load_end = loadavg();
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

  // Every selected, available peer must have a full set of results.
  for (auto& pr : results) {
    if (!runnable(pr)) continue;
    bool missing = false;
    if (pr.peer.throughput && (pr.tput[0].v.size() != opt.runs || pr.tput[1].v.size() != opt.runs)) missing = true;
    if (pr.peer.latency && pr.p50.v.size() != opt.runs) missing = true;
    if (pr.peer.wake && pr.wake_p50.v.size() != opt.runs) missing = true;
    if (missing) {
      failed = true;
      if (pr.errors.empty()) pr.errors.push_back("results missing");
    }
  }

  // ---- ratios and targets
  PeerResult* ax = find("axon_ring_64");
  PeerResult* rte = find("rte_ring");
  PeerResult* bst = find("boost_spsc");
  PeerResult* base = find("cacheline_pingpong");
  PeerResult* notify = find("axon_descriptor_notify");
  auto ratio = [](const Series& a, const Series& b) {
    return (a.empty() || b.empty()) ? NAN : a.median() / b.median();
  };
  std::vector<Target> targets;
  auto add_target = [&](std::string name, std::string goal, const Series& a, const Series& b, bool ge, double bound) {
    const double v = ratio(a, b);
    const double pv = paired_ratio(a, b);
    const bool known = !std::isnan(v);
    auto meets = [&](double x) { return !std::isnan(x) && (ge ? x >= bound : x <= bound); };
    targets.push_back(Target{std::move(name), std::move(goal), v, pv, meets(v), known, meets(pv)});
  };
  add_target("batch 32: axon / rte_ring", ">= 1.0", ax->tput[1], rte->tput[1], true, 1.0);
  add_target("batch 1: axon / rte_ring", ">= 1.2", ax->tput[0], rte->tput[0], true, 1.2);
  add_target("batch 32: axon / Boost", ">= 1.5", ax->tput[1], bst->tput[1], true, 1.5);
  add_target("batch 1: axon / Boost", ">= 1.5", ax->tput[0], bst->tput[0], true, 1.5);
  add_target("one-way p50: axon / cache-line ping-pong", "<= 1.3", ax->p50, base->p50, false, 1.3);
  double worst_syscalls = NAN;
  bool syscalls_by_perf = false;
  for (int b = 0; b < 2; ++b) {
    const Series& s = notify->syscalls[b].empty() ? notify->wakes[b] : notify->syscalls[b];
    if (!notify->syscalls[b].empty()) syscalls_by_perf = true;
    if (!s.empty()) worst_syscalls = std::isnan(worst_syscalls) ? s.max() : std::max(worst_syscalls, s.max());
  }
  {
    const bool known = !std::isnan(worst_syscalls);
    const bool met = known && worst_syscalls == 0.0;
    targets.push_back(Target{std::string("producer syscalls/msg, consumer busy (") +
                                 (syscalls_by_perf ? "perf" : "wakes_issued") + ", worst run)",
                             "== 0", worst_syscalls, worst_syscalls, met, known, met});
  }

  // ---- placements. The host puts the two vCPUs near each other (one cache-line transfer
  // ~35-50 ns) or far apart (~110-190 ns) and moves them every few seconds; every peer moves
  // with them. Each run is classified by its own ping-pong floor, and the targets are
  // judged per placement on the runs that fell in it (ratios within a run, then the median).
  struct Placement {
    std::string name;
    std::vector<std::uint32_t> runs;
    Series floor;
    std::vector<Target> targets;
  };
  std::vector<Placement> placements{{"near (floor < " + fmt(kNearFloorNs, 0) + " ns)", {}, {}, {}},
                                    {"far (" + fmt(kNearFloorNs, 0) + "-" + fmt(kFarFloorNs, 0) + " ns)", {}, {}, {}},
                                    {"very far (floor >= " + fmt(kFarFloorNs, 0) + " ns)", {}, {}, {}}};
  for (std::size_t i = 0; i < base->p50.v.size(); ++i) {
    const double f = base->p50.v[i];
    Placement& pl = placements[f < kNearFloorNs ? 0 : f < kFarFloorNs ? 1 : 2];
    pl.runs.push_back(base->p50.run[i]);
    pl.floor.add(base->p50.v[i], base->p50.run[i]);
  }
  for (Placement& pl : placements) {
    auto only = [&](const Series& x) {
      Series out;
      for (std::size_t i = 0; i < x.v.size(); ++i)
        if (std::find(pl.runs.begin(), pl.runs.end(), x.run[i]) != pl.runs.end()) out.add(x.v[i], x.run[i]);
      return out;
    };
    auto add = [&](std::string name, std::string goal, const Series& a, const Series& b, bool ge, double bound) {
      Series sa = only(a), sb = only(b);
      const double v = ratio(sa, sb);
      const double pv = paired_ratio(sa, sb);
      auto meets = [&](double x) { return !std::isnan(x) && (ge ? x >= bound : x <= bound); };
      pl.targets.push_back(Target{std::move(name), std::move(goal), v, pv, meets(v), !std::isnan(v), meets(pv)});
    };
    // The targets, which must hold in every placement.
    add("batch 32: axon / rte_ring", ">= 1.0", ax->tput[1], rte->tput[1], true, 1.0);
    add("batch 32: axon / Boost", ">= 1.0", ax->tput[1], bst->tput[1], true, 1.0);
    add("batch 1: axon / rte_ring", ">= 1.2", ax->tput[0], rte->tput[0], true, 1.2);
    add("one-way p50: axon / floor", "<= 1.3", ax->p50, base->p50, false, 1.3);
    if (PeerResult* d = find("axon_ring_descriptor"); d != nullptr && runnable(*d)) {
      add("batch 32: 128 B Descriptor / rte_ring", "(report)", d->tput[1], rte->tput[1], true, 0.0);
      add("batch 1: 128 B Descriptor / rte_ring", "(report)", d->tput[0], rte->tput[0], true, 0.0);
    }
    if (PeerResult* sf = find("axon_ring_64_stampfree"); sf != nullptr && runnable(*sf)) {
      add("batch 32: axon / axon without stamps", "(report)", ax->tput[1], sf->tput[1], true, 0.0);
      add("batch 1: axon / axon without stamps", "(report)", ax->tput[0], sf->tput[0], true, 0.0);
    }
    if (PeerResult* bs = find("axon_ring_64_burststamp"); bs != nullptr && runnable(*bs)) {
      add("batch 32: axon / axon with one stamp per burst", "(report)", ax->tput[1], bs->tput[1], true, 0.0);
      add("batch 1: axon / axon with one stamp per burst", "(report)", ax->tput[0], bs->tput[0], true, 0.0);
    }
  }

  // ---- Markdown
  std::string md;
  md +=
      "| peer | msg | batch 1, M msg/s | batch 32, M msg/s | one-way p50 ns | one-way p99 ns | one-way p99.9 ns "
      "| sleep→wake p50 / p99 µs | producer syscalls/msg b1 / b32 |\n";
  md += "|---|---|---|---|---|---|---|---|---|\n";
  for (auto& pr : results) {
    if (!pr.selected(opt)) continue;
    md += "| " + std::string(pr.peer.label) + " | " + pr.peer.message + " | ";
    if (!pr.unavailable.empty()) {
      md += "unavailable: " + pr.unavailable + " | | | | | | |\n";
      continue;
    }
    md += (pr.peer.throughput ? spread(pr.tput[0]) : std::string("n/a")) + " | ";
    md += (pr.peer.throughput ? spread(pr.tput[1]) : std::string("n/a")) + " | ";
    md += (pr.peer.latency ? spread(pr.p50, 0) : std::string("n/a")) + " | ";
    md += (pr.peer.latency ? fmt(pr.p99.median(), 0) : std::string("n/a")) + " | ";
    md += (pr.peer.latency ? fmt(pr.p999.median(), 0) : std::string("n/a")) + " | ";
    if (pr.peer.wake) {
      md += fmt(pr.wake_p50.median(), 1) + " / " + fmt(pr.wake_p99.median(), 1);
    } else {
      md += std::strcmp(pr.peer.key, "iceoryx") == 0 ? "not measured (WaitSet exists)" : "n/a (no blocking wait)";
    }
    md += " | ";
    if (pr.peer.throughput) {
      auto sc = [&](int b) {
        if (!pr.syscalls[b].empty()) return fmt(pr.syscalls[b].max(), 3);
        return std::string("n/a");
      };
      md += sc(0) + " / " + sc(1);
      if (pr.peer.wake) {
        md += " (wakes_issued/msg " + fmt(std::max(pr.wakes[0].max(), pr.wakes[1].max()), 3) + ")";
      }
    } else {
      md += "n/a";
    }
    md += " |\n";
  }
  md += "\nMedians of " + std::to_string(opt.runs) + " run(s), (min–max) across runs; each run is the median of " +
        std::to_string(opt.slices) +
        " interleaved slice(s). Latency columns are the median over runs of each run's "
        "percentile; syscalls/msg is the worst slice of any run.\n\n";
  md += "| target | goal | ratio of medians | met | median of per-run ratios | met |\n|---|---|---|---|---|---|\n";
  for (auto& t : targets) {
    md += "| " + t.name + " | " + t.goal + " | " + (t.known ? fmt(t.value, 3) : std::string("n/a")) + " | " +
          (t.known ? (t.met ? "met" : "NOT met") : "unknown") + " | " + fmt(t.paired, 3) + " | " +
          (std::isnan(t.paired) ? "unknown" : (t.paired_met ? "met" : "NOT met")) + " |\n";
  }
  md +=
      "\nPer placement of the two vCPUs (each run classified by its own ping-pong floor; ratios are the median "
      "of the per-run ratios of the runs in that placement, the ratio of their medians in brackets):\n\n"
      "| placement | runs | floor p50 ns |";
  for (const Target& t : placements[0].targets) md += " " + t.name + " (" + t.goal + ") |";
  md += "\n|---|---|---|";
  for (std::size_t i = 0; i < placements[0].targets.size(); ++i) md += "---|";
  md += "\n";
  for (const Placement& pl : placements) {
    md += "| " + pl.name + " | " + std::to_string(pl.runs.size()) + " | " +
          (pl.runs.empty() ? std::string("-") : spread(pl.floor, 0)) + " |";
    for (const Target& t : pl.targets) {
      if (pl.runs.empty()) {
        md += " not seen in this run |";
        continue;
      }
      const bool judged = t.goal.front() != '(';
      md += " " + fmt(t.paired, 2) + " (" + fmt(t.value, 2) + ")" +
            (judged ? (t.paired_met ? " met" : " **NOT met**") : std::string("")) + " |";
    }
    md += "\n";
  }
  md += "\nOther ratios: axon Descriptor / rte_ring batch 1 " +
        fmt(ratio(find("axon_ring_descriptor")->tput[0], rte->tput[0]), 2) + ", batch 32 " +
        fmt(ratio(find("axon_ring_descriptor")->tput[1], rte->tput[1]), 2) + "; axon / iceoryx batch 1 " +
        fmt(ratio(ax->tput[0], iox->tput[0]), 2) + ", batch 32 " + fmt(ratio(ax->tput[1], iox->tput[1]), 2) + ".\n";
  if (recovery_ran && rec.trials > 0) {
    Series total, detect, reclaim;
    for (std::uint32_t i = 0; i < rec.trials; ++i) {
      total.add(rec.total_ns[i] / 1e3);
      detect.add(rec.detect_ns[i] / 1e3);
      reclaim.add(rec.reclaim_ns[i] / 1e3);
    }
    md += "\nBuffer recovery after kill -9 of the worker (" + std::to_string(rec.trials) + " trials, " +
          std::to_string(rec.held) + " requests held, " + std::to_string(rec.total_buffers) +
          " buffers): kill() → all buffers free " + spread(total) +
          " µs median (min–max); of which kill() → "
          "DeathWatch report " +
          fmt(detect.median()) + " µs, reclaim() " + fmt(reclaim.median()) + " µs.\n";
  }
  md += "\nSyscall counting: " + syscall_method + ". Region: " + backing + ". Wall time " + fmt(wall_s, 1) +
        " s. Scheduling: " + (opt.rt ? "SCHED_FIFO 50" : "SCHED_OTHER") + ". /proc/loadavg at start: " + load_start +
        "; at end: " + load_end + ".\n";
  for (auto& pr : results) {
    for (auto& e : pr.errors) md += "\nFAILED " + std::string(pr.peer.key) + ": " + e;
  }
  std::fputs(md.c_str(), stdout);
  std::fflush(stdout);

  // ---- JSON
  if (!opt.json.empty()) {
    utsname u{};
    uname(&u);
    std::string j = "{\n";
    j += "  \"benchmark\": \"axon-bench-ring\",\n";
    j += "  \"ok\": " + std::string(failed ? "false" : "true") + ",\n";
    j += "  \"wall_seconds\": " + jnum(wall_s, 2) + ",\n";
    j += "  \"machine\": {\"cpu_model\": " + jstr(cpuinfo_field("model name")) +
         ", \"online_cpus\": " + std::to_string(ncpu) + ", \"kernel\": " + jstr(std::string(u.release)) +
         ", \"kernel_version\": " + jstr(std::string(u.version)) + ", \"tsc_ghz\": " + jnum(p.tsc_per_ns, 4) +
         ", \"hugepages_total\": " + std::to_string(meminfo_field("HugePages_Total")) +
         ", \"hugepages_free\": " + std::to_string(meminfo_field("HugePages_Free")) +
         ", \"hugepage_kb\": " + std::to_string(meminfo_field("Hugepagesize")) +
         ", \"compiler\": " + jstr(std::string("g++ ") + __VERSION__) + ", \"loadavg_start\": " + jstr(load_start) +
         ", \"loadavg_end\": " + jstr(load_end) + "},\n";
    j += "  \"config\": {\"runs\": " + std::to_string(opt.runs) + ", \"quick\": " + (opt.quick ? "true" : "false") +
         ", \"messages\": " + std::to_string(p.messages) +
         ", \"pingpong_round_trips\": " + std::to_string(p.pingpong_iters) +
         ", \"pingpong_warmup\": " + std::to_string(p.pingpong_warmup) +
         ", \"wake_samples\": " + std::to_string(p.wake_samples) + ", \"slices\": " + std::to_string(opt.slices) +
         ", \"sched\": " + jstr(opt.rt ? "SCHED_FIFO 50" : "SCHED_OTHER") + ", \"cpus\": [" + std::to_string(p.cpu[0]) +
         ", " + std::to_string(p.cpu[1]) +
         "], \"message_bytes\": 64, \"descriptor_bytes\": 128, \"ring_capacity\": " + std::to_string(kCapacity) +
         ", \"max_burst\": " + std::to_string(kMaxBurst) + ", \"region_backing\": " + jstr(backing) +
         ", \"syscall_counting\": " + jstr(syscall_method) + "},\n";
    j += "  \"peers\": [\n";
    bool first = true;
    for (auto& pr : results) {
      if (!pr.selected(opt)) continue;
      j += first ? "" : ",\n";
      first = false;
      j += "    {\"key\": " + jstr(pr.peer.key) + ", \"label\": " + jstr(pr.peer.label) +
           ", \"message_bytes\": " + std::to_string(pr.peer.msg_bytes) + ", \"note\": " + jstr(pr.peer.note) + ", ";
      if (!pr.unavailable.empty()) {
        j += "\"status\": \"unavailable\", \"reason\": " + jstr(pr.unavailable) + "}";
        continue;
      }
      j += "\"status\": " + jstr(pr.errors.empty() ? "ok" : "failed") + ", \"errors\": [";
      for (std::size_t i = 0; i < pr.errors.size(); ++i) j += (i ? ", " : "") + jstr(pr.errors[i]);
      j += "],\n      \"throughput_mmsgs\": {\"batch1\": " + jseries(pr.tput[0]) +
           ", \"batch32\": " + jseries(pr.tput[1]) + "},\n";
      j += "      \"producer_syscalls_per_msg\": {\"batch1\": " + jseries(pr.syscalls[0], 6) +
           ", \"batch32\": " + jseries(pr.syscalls[1], 6) + "},\n";
      j += "      \"producer_wakes_per_msg\": {\"batch1\": " + jseries(pr.wakes[0], 6) +
           ", \"batch32\": " + jseries(pr.wakes[1], 6) + "},\n";
      j += "      \"one_way_ns\": {\"p50\": " + jseries(pr.p50, 1) + ", \"p99\": " + jseries(pr.p99, 1) +
           ", \"p999\": " + jseries(pr.p999, 1) + ", \"min\": " + jseries(pr.lat_min, 1) + "},\n";
      j += "      \"sleep_to_wake_us\": ";
      if (pr.peer.wake) {
        j += "{\"p50\": " + jseries(pr.wake_p50, 2) + ", \"p99\": " + jseries(pr.wake_p99, 2) +
             ", \"wakes_per_sample\": " + jseries(pr.wake_wakes, 3) + "}";
      } else {
        j += jstr(std::strcmp(pr.peer.key, "iceoryx") == 0 ? "not measured" : "n/a (no blocking wait)");
      }
      j += "}";
    }
    j += "\n  ],\n  \"targets\": [";
    for (std::size_t i = 0; i < targets.size(); ++i) {
      auto& t = targets[i];
      j += std::string(i ? ", " : "") + "\n    {\"name\": " + jstr(t.name) + ", \"goal\": " + jstr(t.goal) +
           ", \"measured\": " + jnum(t.value, 4) + ", \"met\": " + (t.known ? (t.met ? "true" : "false") : "null") +
           ", \"paired_median\": " + jnum(t.paired, 4) +
           ", \"paired_met\": " + (std::isnan(t.paired) ? "null" : (t.paired_met ? "true" : "false")) + "}";
    }
    j += "\n  ],\n  \"placements\": [";
    for (std::size_t k = 0; k < placements.size(); ++k) {
      const Placement& pl = placements[k];
      j += std::string(k ? ", " : "") + "\n    {\"name\": " + jstr(pl.name) + ", \"runs\": [";
      for (std::size_t i = 0; i < pl.runs.size(); ++i) j += (i ? ", " : "") + std::to_string(pl.runs[i]);
      j += "], \"floor_p50_ns\": " + jseries(pl.floor, 1) + ", \"targets\": [";
      for (std::size_t i = 0; i < pl.targets.size(); ++i) {
        const Target& t = pl.targets[i];
        j += std::string(i ? ", " : "") + "{\"name\": " + jstr(t.name) + ", \"goal\": " + jstr(t.goal) +
             ", \"ratio_of_medians\": " + jnum(t.value, 4) + ", \"paired_median\": " + jnum(t.paired, 4) +
             ", \"paired_met\": " +
             (std::isnan(t.paired) || t.goal.front() == '(' ? "null" : (t.paired_met ? "true" : "false")) + "}";
      }
      j += "]}";
    }
    j += "\n  ],\n  \"recovery\": ";
    if (recovery_ran && rec.trials > 0) {
      Series total, detect, reclaim;
      for (std::uint32_t i = 0; i < rec.trials; ++i) {
        total.add(rec.total_ns[i] / 1e3);
        detect.add(rec.detect_ns[i] / 1e3);
        reclaim.add(rec.reclaim_ns[i] / 1e3);
      }
      j += "{\"status\": " + jstr(rec.status == 0 ? "ok" : "failed") + ", \"trials\": " + std::to_string(rec.trials) +
           ", \"requests_held\": " + std::to_string(rec.held) +
           ", \"lost_reported\": " + std::to_string(rec.lost_reported) +
           ", \"buffers_total\": " + std::to_string(rec.total_buffers) +
           ", \"buffers_free_restored\": " + std::to_string(rec.free_before) +
           ", \"segment_backing\": " + jstr(rec.backing == 1 ? "hugetlb_2m" : "shmem_4k") +
           ", \"kill_to_reclaimed_us\": " + jseries(total, 1) +
           ", \"kill_to_death_reported_us\": " + jseries(detect, 1) + ", \"reclaim_us\": " + jseries(reclaim, 1) +
           ", \"error\": " + jstr(rec.error) + "}";
    } else if (recovery_ran) {
      j += "{\"status\": \"failed\", \"error\": " + jstr(rec.error) + "}";
    } else {
      j += "null";
    }
    j += ",\n  \"markdown\": " + jstr(md) + "\n}\n";
    std::ofstream out(opt.json);
    out << j;
    if (!out) {
      std::fprintf(stderr, "axon-bench-ring: cannot write %s\n", opt.json.c_str());
      return 1;
    }
  }
  if (failed) {
    std::fprintf(stderr, "axon-bench-ring: FAILED (see above)\n");
    return 1;
  }
  return 0;
}

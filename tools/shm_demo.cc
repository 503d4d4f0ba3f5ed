// axon-shm-demo: the data-plane side of the shared-memory transport, standing in for the
// real data plane in the quickstart until it exists.
//
// Per worker it creates one WorkerChannel (its own hugepage segment) and one handoff
// socket, fork+execs the worker with only that socket's path in its environment, and
// watches it through a pidfd. A single busy-poll loop then does what the data plane will
// do: lease a buffer, write a request into it, submit bursts, poll replies, check every
// reply byte for byte, free the buffers and keep the workers' loan rings stocked. It
// prints live figures every second and a summary, and proves the transport's promises
// at the end: no echo mismatch, every buffer back in the pool, and a worker killed
// mid-run reclaimed, its lost requests reported, and respawned.
//
// The poll loop allocates nothing: every array it touches is sized at setup.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/clock.h"
#include "axon/common/cpu.h"
#include "axon/shm/channel.h"
#include "axon/shm/handoff.h"
#include "axon/shm/layout.h"
#include "axon/shm/liveness.h"
#include "axon/shm/region.h"

extern char** environ;

namespace {

namespace shm = axon::shm;
using axon::monotonic_ns;
using u64 = std::uint64_t;
using u32 = std::uint32_t;
using ull = unsigned long long;

constexpr u32 kBurst = 32;
constexpr u64 kSecond = 1'000'000'000ull;
constexpr u64 kStartTimeoutNs = 10 * kSecond;  // a Python worker needs a moment to import
constexpr u64 kDrainTimeoutNs = 3 * kSecond;
constexpr u64 kExitTimeoutNs = 3 * kSecond;
constexpr u64 kHousekeepingNs = 1'000'000;  // pidfd poll and handoffs: once a millisecond
constexpr double kMaxDurationS = 3600;

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}

// --- latency histogram -----------------------------------------------------------------

// Log-linear buckets (HdrHistogram's idea): values below 64 ns are exact, above that each
// power of two is split into 32 buckets, so any percentile is within about 3%. Recording
// is an increment; no allocation ever.
class Histogram {
 public:
  static constexpr unsigned kSubBits = 5;
  static constexpr u32 kSub = 1u << kSubBits;
  static constexpr std::size_t kBuckets = std::size_t{64 - kSubBits + 1} * kSub;

  void record(u64 value) noexcept {
    ++counts_[index(value)];
    ++total_;
    if (value > max_) max_ = value;
  }
  void reset() noexcept {
    counts_.fill(0);
    total_ = 0;
    max_ = 0;
  }
  [[nodiscard]] u64 total() const noexcept { return total_; }
  [[nodiscard]] u64 max() const noexcept { return max_; }
  // The value at quantile q (0..1): the midpoint of its bucket, capped at the maximum seen.
  [[nodiscard]] u64 quantile(double q) const noexcept {
    if (total_ == 0) return 0;
    u64 rank = u64(std::llround(q * double(total_)));
    if (rank < 1) rank = 1;
    if (rank > total_) rank = total_;
    u64 seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(midpoint(i), max_);
    }
    return max_;
  }

 private:
  static std::size_t index(u64 v) noexcept {
    if (v < 2 * kSub) return std::size_t(v);
    const unsigned e = 63u - unsigned(std::countl_zero(v));  // >= kSubBits + 1
    return std::size_t(e - kSubBits) * kSub + std::size_t(v >> (e - kSubBits));
  }
  static u64 midpoint(std::size_t i) noexcept {
    if (i < 2 * kSub) return u64(i);
    const unsigned e = unsigned(i / kSub) + kSubBits - 1;
    const u64 m = u64(i % kSub) + kSub;
    const unsigned shift = e - kSubBits;
    return (m << shift) + ((u64{1} << shift) >> 1);
  }

  std::array<u64, kBuckets> counts_{};
  u64 total_ = 0;
  u64 max_ = 0;
};

// 1234567 -> "1,234,567", into a caller's buffer (no allocation on the report path).
const char* grouped(u64 value, char (&out)[32]) {
  char digits[24];
  int n = std::snprintf(digits, sizeof digits, "%llu", ull(value));
  int o = 0;
  for (int i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
  return out;
}

// A string as a JSON string literal (paths may hold quotes or backslashes).
std::string json_string(const std::string& in) {
  std::string out = "\"";
  for (char ch : in) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", unsigned(static_cast<unsigned char>(ch)));
      out += esc;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// --- options -----------------------------------------------------------------------------

struct Options {
  u32 workers = 2;
  double duration_s = 10;
  u64 rate = 0;  // 0: closed loop, as fast as the window allows
  u32 payload = 256;
  u32 window = 128;  // closed loop: in-flight requests per worker
  std::string worker_binary;
  std::vector<std::string> worker_args;
  std::string socket_dir;
  int cpu = -1;
  std::string json_path;
  u32 max_respawns = 3;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: axon-shm-demo [options]\n"
               "Feeds echo requests to N worker processes over axon's shared-memory transport and\n"
               "prints live figures. Exit status 0 only if every reply echoed its request, no buffer\n"
               "leaked and every worker that died could be replaced.\n\n"
               "  --workers N          worker processes (default 2, at most 64)\n"
               "  --duration S         seconds to run (default 10, at most %.0f)\n"
               "  --rate R             offered requests/s in total; refused arrivals count as BUSY\n"
               "                       (default: closed loop, as fast as the in-flight window allows)\n"
               "  --window N           closed loop: in-flight requests per worker (default 128)\n"
               "  --payload BYTES      request size (default 256, at most 65536)\n"
               "  --worker-binary PATH worker to run (default: echo_worker next to this binary)\n"
               "  --worker-arg ARG     argument for the worker (repeatable)\n"
               "  --socket-dir DIR     where the handoff sockets live (default: a fresh /tmp dir)\n"
               "  --cpu N              pin the poll loop to CPU N\n"
               "  --max-respawns N     workers replaced after a crash, in total (default 3)\n"
               "  --json FILE          write the summary as JSON\n",
               kMaxDurationS);
}

bool parse_u64(const char* text, u64 lo, u64 hi, u64& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < lo || v > hi) return false;
  out = v;
  return true;
}

bool parse_options(int argc, char** argv, Options& o, int& exit_code) {
  auto bad = [&](const char* flag, const char* what) {
    std::fprintf(stderr, "axon-shm-demo: %s %s\n", flag, what);
    exit_code = 2;
    return false;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      exit_code = 0;
      return false;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "axon-shm-demo: unknown option or missing value: '%s'\n", a.c_str());
      usage(stderr);
      exit_code = 2;
      return false;
    }
    const char* v = argv[++i];
    u64 n = 0;
    if (a == "--workers") {
      if (!parse_u64(v, 1, 64, n)) return bad("--workers", "needs an integer from 1 to 64");
      o.workers = u32(n);
    } else if (a == "--duration") {
      char* end = nullptr;
      double d = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(d > 0) || d > kMaxDurationS) {
        return bad("--duration", "needs seconds, more than 0 and at most 3600");
      }
      o.duration_s = d;
    } else if (a == "--rate") {
      if (!parse_u64(v, 1, 1'000'000'000, n)) return bad("--rate", "needs requests/s from 1 to 1e9");
      o.rate = n;
    } else if (a == "--window") {
      if (!parse_u64(v, 1, 1024, n)) return bad("--window", "needs an integer from 1 to 1024");
      o.window = u32(n);
    } else if (a == "--payload") {
      if (!parse_u64(v, 1, 65536, n)) return bad("--payload", "needs bytes from 1 to 65536");
      o.payload = u32(n);
    } else if (a == "--worker-binary") {
      o.worker_binary = v;
    } else if (a == "--worker-arg") {
      o.worker_args.emplace_back(v);
    } else if (a == "--socket-dir") {
      o.socket_dir = v;
    } else if (a == "--cpu") {
      if (!parse_u64(v, 0, 4095, n)) return bad("--cpu", "needs a CPU number");
      o.cpu = int(n);
    } else if (a == "--max-respawns") {
      if (!parse_u64(v, 0, 1000, n)) return bad("--max-respawns", "needs an integer from 0 to 1000");
      o.max_respawns = u32(n);
    } else if (a == "--json") {
      o.json_path = v;
    } else {
      std::fprintf(stderr, "axon-shm-demo: unknown option '%s'\n", a.c_str());
      usage(stderr);
      exit_code = 2;
      return false;
    }
  }
  return true;
}

// --- spawning workers --------------------------------------------------------------------------

std::string self_dir() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return ".";
  path[n] = '\0';
  std::string s(path);
  std::size_t slash = s.rfind('/');
  return slash == std::string::npos ? "." : s.substr(0, slash);
}

bool executable(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// Resolves the worker binary like a shell would, before any fork, so a typo fails with a
// clear message instead of a worker that dies at once.
bool resolve_binary(const std::string& name, std::string& resolved) {
  if (name.find('/') != std::string::npos) {
    resolved = name;
    return executable(name);
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (executable(candidate)) {
      resolved = candidate;
      return true;
    }
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return false;
}

struct Launcher {
  std::string binary;
  std::vector<std::string> args;
  std::vector<std::string> env;  // inherited environment without any AXON_WORKER_FD/SOCKET
};

// fork+exec of one worker whose environment names only its own socket. A CLOEXEC pipe
// reports a failed exec back to us synchronously.
pid_t spawn_worker(const Launcher& launcher, const std::string& socket_path, std::string& error) {
  std::vector<std::string> env = launcher.env;
  env.push_back("AXON_WORKER_SOCKET=" + socket_path);
  std::vector<char*> argv;
  argv.reserve(launcher.args.size() + 2);
  argv.push_back(const_cast<char*>(launcher.binary.c_str()));
  for (const std::string& a : launcher.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    error = std::string("pipe2 failed: ") + std::strerror(errno);
    return -1;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    error = std::string("fork failed: ") + std::strerror(errno);
    close(report[0]);
    close(report[1]);
    return -1;
  }
  if (pid == 0) {
    // Own process group: a terminal's Ctrl-C reaches only the demo, which then drains and
    // stops the workers in order. PDEATHSIG: workers never outlive a killed demo.
    close(report[0]);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execve(argv[0], argv.data(), envp.data());
    int err = errno;
    ssize_t ignored = write(report[1], &err, sizeof err);
    (void)ignored;
    _exit(127);
  }
  close(report[1]);
  int err = 0;
  ssize_t got;
  do {
    got = read(report[0], &err, sizeof err);
  } while (got < 0 && errno == EINTR);
  close(report[0]);
  if (got == ssize_t(sizeof err)) {
    waitpid(pid, nullptr, 0);
    error = "cannot execute " + launcher.binary + ": " + std::strerror(err);
    return -1;
  }
  return pid;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) +
           (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "ended (status " + std::to_string(status) + ")";
}

// --- the demo --------------------------------------------------------------------------------

enum class Phase { idle, starting, running, failed, stopped };

struct WorkerSlot {
  WorkerSlot(u32 i, shm::WorkerChannel&& c, shm::HandoffListener&& l)
      : index(i), channel(std::move(c)), listener(std::move(l)) {}

  u32 index;
  shm::WorkerChannel channel;
  shm::HandoffListener listener;
  Phase phase = Phase::idle;
  pid_t pid = -1;
  u64 spawned_ns = 0;
  u32 initial_free = 0;
  u32 respawns = 0;
  u32 deaths = 0;
  u64 submitted = 0;
  u64 completed = 0;
  u64 lost = 0;
  u64 busy = 0;
  u64 mismatches = 0;
  u64 bad_status = 0;
  u64 sleeps_before = 0;  // futex sleeps of earlier incarnations (reclaim wipes the header)
  // Shutdown results.
  int exit_status = 0;
  bool reaped = false;
  bool detached_cleanly = false;
  u32 final_free = 0;
  u32 loans_parked = 0;  // loans still sitting in the worker's loan rings at the end
  u32 stranded = 0;      // buffers neither free, nor in flight, nor parked as a loan
  u64 unanswered = 0;
  bool leak_checked = false;
  bool leak = false;
};

class Demo {
 public:
  explicit Demo(const Options& options) : o_(options) {}
  ~Demo() { cleanup(); }

  int main();

 private:
  bool setup();
  bool start_all();
  void run_loop();
  void drain();
  void stop_workers();
  int report();
  void cleanup();

  bool spawn(WorkerSlot& w);
  void try_handoff(WorkerSlot& w, u64 now);
  void housekeeping(u64 now, bool allow_respawn);
  void on_death(WorkerSlot& w, bool allow_respawn);
  u32 poll(WorkerSlot& w);
  u32 submit(WorkerSlot& w, u32 want, bool refuse_on_no_buffer);
  void offer_open_loop(u64 now);
  void live_line(u64 now);

  void fill(std::byte* dst, u64 id) const noexcept;
  [[nodiscard]] bool verify(const std::byte* src, u32 length, u64 id) const noexcept;
  [[nodiscard]] u64 total_sleeps() const noexcept;
  [[nodiscard]] u64 total_wakes() const noexcept;
  [[nodiscard]] u64 total_errors() const noexcept;
  [[nodiscard]] u32 total_inflight() const noexcept;
  [[nodiscard]] u32 hugepage_segments() const noexcept;
  [[nodiscard]] double elapsed_s(u64 now) const noexcept { return double(now - start_ns_) / 1e9; }

  Options o_;
  Launcher launcher_;
  std::string socket_dir_;
  bool own_socket_dir_ = false;
  shm::DeathWatch watch_;
  std::vector<std::unique_ptr<WorkerSlot>> workers_;
  std::vector<std::byte> pattern_;

  // Hot-loop scratch, sized once.
  std::array<shm::OutgoingRequest, kBurst> outgoing_{};
  std::array<shm::Completion, kBurst> completions_{};
  std::vector<u64> dead_;
  std::vector<shm::LostRequest> lost_;

  Histogram total_hist_;
  Histogram interval_hist_;
  u64 next_id_ = 1;
  u64 start_ns_ = 0;
  u64 end_ns_ = 0;
  u64 offered_ = 0;  // open loop: arrivals generated so far
  u32 rr_ = 0;
  u64 alloc_waits_ = 0;
  u32 respawns_used_ = 0;
  u64 worker_unavailable_ = 0;  // deaths that could not be replaced
  u64 leaks_ = 0;
  // Last live line.
  u64 last_ns_ = 0;
  u64 last_completed_ = 0;
  u64 last_busy_ = 0;
  u64 last_wakes_ = 0;
  u64 last_sleeps_ = 0;
};

bool Demo::setup() {
  // Worker binary and its environment.
  std::string wanted = o_.worker_binary.empty() ? self_dir() + "/../examples/echo_worker" : o_.worker_binary;
  if (!resolve_binary(wanted, launcher_.binary)) {
    std::fprintf(stderr, "axon-shm-demo: worker binary '%s' is not an executable file%s\n", wanted.c_str(),
                 o_.worker_binary.empty() ? "; build the echo_worker target or pass --worker-binary" : "");
    return false;
  }
  launcher_.args = o_.worker_args;
  bool has_lib = false;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "AXON_WORKER_FD=", 15) == 0 || std::strncmp(*e, "AXON_WORKER_SOCKET=", 19) == 0) continue;
    if (std::strncmp(*e, "AXON_WORKER_LIB=", 16) == 0) has_lib = true;
    launcher_.env.emplace_back(*e);
  }
  // Bindings (sdk/python) load libaxon_worker.so: point them at the one built with this
  // demo, so both sides speak the same layout version.
  if (std::string lib = self_dir() + "/../sdk/libaxon_worker.so"; !has_lib && access(lib.c_str(), R_OK) == 0) {
    char real[4096];
    if (realpath(lib.c_str(), real) != nullptr) launcher_.env.push_back(std::string("AXON_WORKER_LIB=") + real);
  }

  // Sockets.
  if (o_.socket_dir.empty()) {
    char tmpl[] = "/tmp/axon-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::fprintf(stderr, "axon-shm-demo: mkdtemp in /tmp failed: %s; pass --socket-dir\n", std::strerror(errno));
      return false;
    }
    socket_dir_ = tmpl;
    own_socket_dir_ = true;
  } else {
    socket_dir_ = o_.socket_dir;
    if (mkdir(socket_dir_.c_str(), 0700) == 0) {
      own_socket_dir_ = true;
    } else if (errno != EEXIST) {
      std::fprintf(stderr, "axon-shm-demo: cannot create socket dir %s: %s\n", socket_dir_.c_str(),
                   std::strerror(errno));
      return false;
    }
  }

  auto watch = shm::DeathWatch::create();
  if (!watch) {
    std::fprintf(stderr, "axon-shm-demo: %s\n", watch.message().c_str());
    return false;
  }
  watch_ = std::move(watch).value();

  // Segments: one per worker, hugepages first (the region warns once and falls back).
  // Loans cover a whole window of replies, so a worker that answers several bursts before
  // the loop gets back to restock still has a loan for each reply.
  shm::ChannelOptions channel_options;
  channel_options.geometry.loan_capacity = 256;
  channel_options.small_loans = 256;
  channel_options.large_loans = 4;
  u32 total_buffers = 0;
  for (u32 i = 0; i < o_.workers; ++i) {
    channel_options.worker_id = i;
    auto channel = shm::WorkerChannel::create(channel_options);
    if (!channel) {
      std::fprintf(stderr, "axon-shm-demo: cannot create worker %u's segment (%s): %s\n", i,
                   shm::to_string(channel.code()), channel.message().c_str());
      return false;
    }
    auto listener = shm::HandoffListener::listen(socket_dir_ + "/worker-" + std::to_string(i) + ".sock");
    if (!listener) {
      std::fprintf(stderr, "axon-shm-demo: %s\n", listener.message().c_str());
      return false;
    }
    auto slot = std::make_unique<WorkerSlot>(i, std::move(channel).value(), std::move(listener).value());
    slot->initial_free = slot->channel.free_buffers();
    total_buffers += slot->channel.total_buffers();
    workers_.push_back(std::move(slot));
  }
  // The window never exceeds the ring or the buffers a request of this size can use, so
  // the closed loop waits on replies, never on an empty pool.
  {
    const shm::SegmentHeader& h = *workers_[0]->channel.view().header;
    const u32 ring = workers_[0]->channel.view().request_ring->geometry.capacity;
    const u32 buffers = o_.payload <= h.small.buffer_size ? h.small.count - channel_options.small_loans
                                                          : h.large.count - channel_options.large_loans;
    o_.window = std::min({o_.window, ring, buffers});
  }
  lost_.reserve(total_buffers);
  dead_.reserve(o_.workers);

  // The payload template; each request stamps its id at both ends (see fill()).
  pattern_.resize(o_.payload);
  for (u32 i = 0; i < o_.payload; ++i) pattern_[i] = std::byte((i * 131u + 7u) & 0xffu);
  for (auto& r : outgoing_) {
    r.meta.tenant_id = 1;
    r.meta.priority = 1;
    r.meta.trace_flags = 1;
    r.length = o_.payload;
  }

  const auto& first = workers_[0]->channel;
  const u32 huge = hugepage_segments();
  std::printf("axon-shm-demo: %u worker%s (%s%s), payload %u B, %s, %.0f s\n", o_.workers, o_.workers == 1 ? "" : "s",
              launcher_.binary.c_str(), o_.worker_args.empty() ? "" : " + args", o_.payload,
              o_.rate > 0 ? "open loop" : "closed loop", o_.duration_s);
  if (o_.rate > 0) {
    std::printf("  offered rate %llu req/s in total; arrivals that find no room are refused as BUSY\n", ull(o_.rate));
  } else {
    std::printf("  in-flight window %u per worker, bursts of up to %u\n", o_.window, kBurst);
  }
  std::printf("  segments: %u x %.1f MiB, %u on 2 MiB hugepages, %u on 4 KiB pages%s; sockets in %s\n", o_.workers,
              double(first.view().size) / (1024.0 * 1024.0), huge, o_.workers - huge,
              huge < o_.workers ? " (reserve more: echo 64 > /proc/sys/vm/nr_hugepages)" : "", socket_dir_.c_str());
  std::fflush(stdout);
  return true;
}

bool Demo::spawn(WorkerSlot& w) {
  std::string error;
  pid_t pid = spawn_worker(launcher_, w.listener.path(), error);
  if (pid < 0) {
    std::fprintf(stderr, "axon-shm-demo: cannot start worker %u: %s\n", w.index, error.c_str());
    w.phase = Phase::failed;
    return false;
  }
  w.pid = pid;
  w.phase = Phase::starting;
  w.spawned_ns = monotonic_ns();
  w.reaped = false;
  if (auto watched = watch_.watch(pid, w.index); !watched) {
    std::fprintf(stderr, "axon-shm-demo: cannot watch worker %u (pid %d): %s\n", w.index, int(pid),
                 watched.message().c_str());
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    w.reaped = true;
    w.phase = Phase::failed;
    return false;
  }
  return true;
}

// Hands the segment to the worker that connected to its socket, once it has.
void Demo::try_handoff(WorkerSlot& w, u64 now) {
  pollfd pfd{w.listener.fd(), POLLIN, 0};
  if (::poll(&pfd, 1, 0) <= 0) {
    // `now` may predate a spawn made in this same housekeeping pass.
    if (now > w.spawned_ns && now - w.spawned_ns > kStartTimeoutNs) {
      std::fprintf(stderr, "axon-shm-demo: worker %u (pid %d) did not connect within %llu s; killing it\n", w.index,
                   int(w.pid), ull(kStartTimeoutNs / kSecond));
      kill(w.pid, SIGKILL);
      w.spawned_ns = now;  // the death watch takes it from here
    }
    return;
  }
  auto conn = w.listener.accept(0);
  if (!conn) return;
  const int fd = conn.value();
  auto peer = shm::peer_credentials(fd);
  if (!peer || peer->pid != w.pid) {
    std::fprintf(stderr,
                 "axon-shm-demo: rejected a connection to worker %u's socket from pid %d, not the worker (pid %d); "
                 "a worker must exec, not fork, the process that attaches\n",
                 w.index, peer ? int(peer->pid) : -1, int(w.pid));
    close(fd);
    return;
  }
  shm::HandoffMessage message;
  message.worker_id = w.index;
  message.layout_version = shm::kLayoutVersion;
  message.generation = w.channel.generation();
  message.segment_size = w.channel.view().size;
  auto sent = shm::send_segment(fd, w.channel.segment_fd(), message);
  close(fd);
  if (!sent) {
    std::fprintf(stderr, "axon-shm-demo: worker %u: %s\n", w.index, sent.message().c_str());
    return;  // it will time out or die; either way the death path cleans up
  }
  w.phase = Phase::running;
}

void Demo::housekeeping(u64 now, bool allow_respawn) {
  dead_.clear();
  (void)watch_.poll(dead_, 0);
  for (u64 key : dead_) on_death(*workers_[key], allow_respawn);
  for (auto& w : workers_) {
    if (w->phase == Phase::starting) {
      try_handoff(*w, now);
    } else if (w->phase == Phase::running && w->channel.worker_misbehaved()) {
      std::fprintf(stderr, "axon-shm-demo: worker %u (pid %d) wrote impossible ring indices; killing it\n", w->index,
                   int(w->pid));
      kill(w->pid, SIGKILL);
    }
  }
}

void Demo::on_death(WorkerSlot& w, bool allow_respawn) {
  int status = 0;
  while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
  }
  w.reaped = true;
  w.exit_status = status;
  ++w.deaths;
  const u64 now = monotonic_ns();
  // Replies the worker published before dying are good: take them first, so only the
  // requests it really never answered count as lost.
  u32 drained = 0;
  for (u32 n; (n = poll(w)) > 0;) drained += n;
  const u64 old_generation = w.channel.generation();
  w.sleeps_before += w.channel.view().header->request_event.sleeps.load(std::memory_order_relaxed);
  lost_.clear();
  const u32 lost = w.channel.reclaim(lost_);
  w.lost += lost;
  const u32 free_now = w.channel.free_buffers();
  const bool restored = free_now == w.initial_free;
  if (!restored) ++leaks_;
  char ids[160] = "";
  int used = 0;
  for (std::size_t i = 0; i < lost_.size() && i < 6 && used < int(sizeof ids) - 24; ++i) {
    used +=
        std::snprintf(ids + used, sizeof ids - std::size_t(used), "%s%llu", i ? ", " : "", ull(lost_[i].user_cookie));
  }
  if (lost_.size() > 6) std::snprintf(ids + used, sizeof ids - std::size_t(used), ", ... (+%zu)", lost_.size() - 6);
  std::printf(
      "[%5.1fs] worker %u (pid %d) %s: %u in-flight request%s lost and reported%s%s%s, %u late replies drained; "
      "segment reclaimed (generation %llu -> %llu), free buffers %u/%u %s\n",
      start_ns_ ? elapsed_s(now) : 0.0, w.index, int(w.pid), describe_exit(status).c_str(), lost, lost == 1 ? "" : "s",
      lost ? " (ids " : "", ids, lost ? ")" : "", drained, ull(old_generation), ull(w.channel.generation()), free_now,
      w.initial_free, restored ? "restored OK" : "LEAK");
  if (allow_respawn && respawns_used_ < o_.max_respawns) {
    ++respawns_used_;
    ++w.respawns;
    std::printf("[%5.1fs] respawning worker %u (respawn %u of %u)\n", start_ns_ ? elapsed_s(now) : 0.0, w.index,
                respawns_used_, o_.max_respawns);
    if (!spawn(w)) ++worker_unavailable_;
  } else {
    w.phase = Phase::failed;
    if (allow_respawn) {
      ++worker_unavailable_;
      std::printf("[%5.1fs] worker %u stays down: the respawn budget (%u) is spent\n", start_ns_ ? elapsed_s(now) : 0.0,
                  w.index, o_.max_respawns);
    }
  }
  std::fflush(stdout);
}

bool Demo::start_all() {
  for (auto& w : workers_) {
    if (!spawn(*w)) return false;
  }
  const u64 deadline = monotonic_ns() + kStartTimeoutNs + kSecond;
  for (;;) {
    const u64 now = monotonic_ns();
    dead_.clear();
    (void)watch_.poll(dead_, 5);
    for (u64 key : dead_) {
      WorkerSlot& w = *workers_[key];
      int status = 0;
      while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
      }
      w.reaped = true;
      w.phase = Phase::failed;
      std::fprintf(stderr, "axon-shm-demo: worker %u (pid %d) %s before attaching; its own message above says why\n",
                   w.index, int(w.pid), describe_exit(status).c_str());
      return false;
    }
    bool all = true;
    for (auto& w : workers_) {
      if (w->phase == Phase::starting) try_handoff(*w, now);
      all = all && w->phase == Phase::running;
    }
    if (all) return true;
    if (g_stop.load(std::memory_order_relaxed) || now > deadline) {
      std::fprintf(stderr, "axon-shm-demo: %s before every worker attached\n",
                   g_stop.load() ? "interrupted" : "timed out");
      return false;
    }
  }
}

void Demo::fill(std::byte* dst, u64 id) const noexcept {
  const u32 n = o_.payload;
  std::memcpy(dst, pattern_.data(), n);
  std::memcpy(dst, &id, std::min<u32>(8, n));
  if (n >= 16) std::memcpy(dst + n - 8, &id, 8);
}

bool Demo::verify(const std::byte* src, u32 length, u64 id) const noexcept {
  const u32 n = o_.payload;
  if (length != n) return false;
  const u32 head = std::min<u32>(8, n);
  const u32 tail = n >= 16 ? n - 8 : n;
  if (std::memcmp(src, &id, head) != 0) return false;
  if (n >= 16 && std::memcmp(src + tail, &id, 8) != 0) return false;
  return std::memcmp(src + head, pattern_.data() + head, tail - head) == 0;
}

u32 Demo::poll(WorkerSlot& w) {
  u32 total = 0;
  for (int round = 0; round < 4; ++round) {
    const u32 n = w.channel.poll_replies(completions_.data(), kBurst);
    if (n == 0) break;
    const u64 now = monotonic_ns();
    for (u32 i = 0; i < n; ++i) {
      const shm::Completion& c = completions_[i];
      if (c.status != shm::ReplyStatus::ok) {
        ++w.bad_status;
      } else if (!verify(c.data, c.length, c.user_cookie)) {  // cookie = request id
        ++w.mismatches;
      }
      const u64 rtt = now > c.enqueue_ns ? now - c.enqueue_ns : 0;
      total_hist_.record(rtt);
      interval_hist_.record(rtt);
      w.channel.finish(c);
    }
    w.completed += n;
    total += n;
    if (n < kBurst) break;
  }
  if (total > 0) w.channel.refill_loans();
  return total;
}

// Leases, fills and submits up to `want` requests as one burst. Requests the ring cannot
// take are refused (BUSY) and their buffers go straight back to the pool.
u32 Demo::submit(WorkerSlot& w, u32 want, bool refuse_on_no_buffer) {
  u32 n = 0;
  for (; n < want; ++n) {
    shm::OutgoingRequest& r = outgoing_[n];
    if (!w.channel.try_alloc(o_.payload, r.lease)) {
      ++alloc_waits_;
      break;
    }
    const u64 id = next_id_++;
    r.meta.request_id = id;
    r.meta.session_key = id >> 4;
    r.meta.user_cookie = id;
    r.meta.agent_id = w.index;
    std::memcpy(r.meta.trace_id, &id, sizeof id);
    fill(r.lease.data, id);
  }
  if (refuse_on_no_buffer) w.busy += want - n;
  if (n == 0) return 0;
  const u32 accepted = w.channel.try_submit_burst(outgoing_.data(), n);
  for (u32 i = accepted; i < n; ++i) w.channel.release(outgoing_[i].lease);
  w.busy += n - accepted;
  w.submitted += accepted;
  return accepted;
}

// Open loop: arrivals follow the offered rate whatever the workers do; each one is either
// taken or refused as BUSY, as the data plane would answer a client.
void Demo::offer_open_loop(u64 now) {
  const u64 due_total = u64(double(now - start_ns_) * double(o_.rate) / 1e9);
  if (due_total <= offered_) return;
  u64 due = due_total - offered_;
  const u32 count = u32(workers_.size());
  for (u32 k = 0; k < count && due > 0; ++k) {
    WorkerSlot& w = *workers_[(rr_ + k) % count];
    const u32 take = u32(std::min<u64>(due, kBurst));
    offered_ += take;
    due -= take;
    if (w.phase != Phase::running) {
      w.busy += take;  // no worker to take it right now (being replaced)
      continue;
    }
    (void)submit(w, take, /*refuse_on_no_buffer=*/true);
  }
  rr_ = (rr_ + 1) % count;
}

u64 Demo::total_sleeps() const noexcept {
  u64 s = 0;
  for (const auto& w : workers_) {
    s += w->sleeps_before + w->channel.view().header->request_event.sleeps.load(std::memory_order_relaxed);
  }
  return s;
}

u64 Demo::total_wakes() const noexcept {
  u64 s = 0;
  for (const auto& w : workers_) s += w->channel.stats().wakes_issued;
  return s;
}

u64 Demo::total_errors() const noexcept {
  u64 e = leaks_ + worker_unavailable_;
  for (const auto& w : workers_) {
    const shm::ChannelStats s = w->channel.stats();
    e += w->mismatches + w->bad_status + s.invalid_replies + s.torn_replies + w->unanswered;
  }
  return e;
}

u32 Demo::hugepage_segments() const noexcept {
  u32 n = 0;
  for (const auto& w : workers_) n += w->channel.backing() == shm::SegmentBacking::hugetlb_2m ? 1 : 0;
  return n;
}

u32 Demo::total_inflight() const noexcept {
  u32 n = 0;
  for (const auto& w : workers_) n += w->channel.inflight();
  return n;
}

void Demo::live_line(u64 now) {
  u64 completed = 0, busy = 0;
  for (const auto& w : workers_) {
    completed += w->completed;
    busy += w->busy;
  }
  const u64 wakes = total_wakes();
  const u64 sleeps = total_sleeps();
  const double secs = double(now - last_ns_) / 1e9;
  char rps[32];
  std::printf(
      "[%5.1fs] %11s req/s  p50 %6.1f us  p99 %7.1f us  in-flight %4u  busy %llu  wakes %llu  sleeps %llu  "
      "errors %llu\n",
      elapsed_s(now), grouped(u64(double(completed - last_completed_) / (secs > 0 ? secs : 1)), rps),
      double(interval_hist_.quantile(0.50)) / 1e3, double(interval_hist_.quantile(0.99)) / 1e3, total_inflight(),
      ull(busy - last_busy_), ull(wakes - last_wakes_), ull(sleeps - last_sleeps_), ull(total_errors()));
  std::fflush(stdout);
  interval_hist_.reset();
  last_ns_ = now;
  last_completed_ = completed;
  last_busy_ = busy;
  last_wakes_ = wakes;
  last_sleeps_ = sleeps;
}

void Demo::run_loop() {
  start_ns_ = monotonic_ns();
  last_ns_ = start_ns_;
  last_wakes_ = total_wakes();
  last_sleeps_ = total_sleeps();
  const u64 deadline = start_ns_ + u64(o_.duration_s * 1e9);
  u64 next_live = start_ns_ + kSecond;
  u64 next_house = start_ns_ + kHousekeepingNs;
  u64 now = start_ns_;
  while (!g_stop.load(std::memory_order_relaxed) && now < deadline) {
    for (auto& slot : workers_) {
      WorkerSlot& w = *slot;
      if (w.phase != Phase::running) continue;
      (void)poll(w);
      if (o_.rate == 0) {
        const u32 inflight = w.channel.inflight();
        if (inflight < o_.window) (void)submit(w, std::min(kBurst, o_.window - inflight), false);
      }
    }
    now = monotonic_ns();
    if (o_.rate > 0) offer_open_loop(now);
    if (now >= next_house) {
      housekeeping(now, /*allow_respawn=*/true);
      next_house = now + kHousekeepingNs;
      bool any = false;
      for (const auto& w : workers_) any = any || w->phase == Phase::running || w->phase == Phase::starting;
      if (!any) {
        std::fprintf(stderr, "axon-shm-demo: no worker left; stopping early\n");
        break;
      }
    }
    if (now >= next_live) {
      live_line(now);
      next_live += kSecond;
      if (next_live <= now) next_live = now + kSecond;
    }
  }
  end_ns_ = monotonic_ns();
}

// Stops offering work and collects every outstanding reply (bounded), so the final
// buffer accounting is exact.
void Demo::drain() {
  const u64 deadline = monotonic_ns() + kDrainTimeoutNs;
  u64 next_house = 0;
  for (u64 now = monotonic_ns(); total_inflight() > 0 && now < deadline; now = monotonic_ns()) {
    for (auto& w : workers_) {
      if (w->phase == Phase::running) (void)poll(*w);
    }
    if (now >= next_house) {
      housekeeping(now, /*allow_respawn=*/false);
      next_house = now + kHousekeepingNs;
    }
  }
  // With nothing in flight, every buffer must be free or a loan still parked in a loan
  // ring. A loan the worker took and never used in a reply is stranded: the pool count alone
  // would not show it, since the channel still books it as loaned.
  auto depth = [](const shm::RingHeader* ring) {
    return u32(ring->producer.head.load(std::memory_order_acquire) -
               ring->consumer.tail.load(std::memory_order_acquire));
  };
  for (auto& w : workers_) {
    w->channel.refill_loans();  // replies handed loans back; stock the rings as at the start
    w->unanswered = w->channel.inflight();
    w->final_free = w->channel.free_buffers();
    const shm::SegmentView& v = w->channel.view();
    w->loans_parked = depth(v.small_loan_ring) + depth(v.large_loan_ring);
    const u32 accounted = w->final_free + w->loans_parked;
    w->stranded = accounted < w->channel.total_buffers() ? w->channel.total_buffers() - accounted : 0;
    if (w->unanswered == 0) {
      w->leak_checked = true;
      w->leak = w->final_free != w->initial_free || accounted != w->channel.total_buffers();
      if (w->leak) ++leaks_;
    }
  }
}

void Demo::stop_workers() {
  for (auto& w : workers_) {
    if (w->pid > 0 && !w->reaped) kill(w->pid, SIGTERM);
  }
  const u64 deadline = monotonic_ns() + kExitTimeoutNs;
  for (;;) {
    bool waiting = false;
    for (auto& w : workers_) {
      if (w->pid <= 0 || w->reaped) continue;
      int status = 0;
      pid_t r = waitpid(w->pid, &status, WNOHANG);
      if (r == w->pid || (r < 0 && errno == ECHILD)) {
        w->reaped = true;
        w->exit_status = status;
        w->detached_cleanly =
            w->channel.view().header->worker_state.load(std::memory_order_acquire) == u32(shm::WorkerState::detached);
        if (w->phase == Phase::running || w->phase == Phase::starting) w->phase = Phase::stopped;
      } else {
        waiting = true;
      }
    }
    if (!waiting) break;
    if (monotonic_ns() > deadline) {
      for (auto& w : workers_) {
        if (w->pid > 0 && !w->reaped) {
          std::fprintf(stderr, "axon-shm-demo: worker %u (pid %d) ignored SIGTERM for %llu s; killing it\n", w->index,
                       int(w->pid), ull(kExitTimeoutNs / kSecond));
          kill(w->pid, SIGKILL);
          int status = 0;
          waitpid(w->pid, &status, 0);
          w->reaped = true;
          w->exit_status = status;
          w->phase = Phase::stopped;
        }
      }
      break;
    }
    usleep(5000);
  }
}

int Demo::report() {
  const double secs = double(end_ns_ - start_ns_) / 1e9;
  u64 submitted = 0, completed = 0, lost = 0, busy = 0, mismatches = 0, bad_status = 0, invalid = 0, torn = 0;
  u64 unanswered = 0;
  u32 deaths = 0;
  for (const auto& w : workers_) {
    const shm::ChannelStats s = w->channel.stats();
    submitted += w->submitted;
    completed += w->completed;
    lost += w->lost;
    busy += w->busy;
    mismatches += w->mismatches;
    bad_status += w->bad_status;
    invalid += s.invalid_replies;
    torn += s.torn_replies;
    unanswered += w->unanswered;
    deaths += w->deaths;
  }
  const u64 wakes = total_wakes();
  const u64 sleeps = total_sleeps();
  const u64 errors = total_errors();
  const u32 huge = hugepage_segments();
  const double rps = secs > 0 ? double(completed) / secs : 0;
  char a[32], b[32], c[32];

  std::printf("\naxon-shm-demo summary (%.1f s, %u worker%s, payload %u B, %s)\n", secs, o_.workers,
              o_.workers == 1 ? "" : "s", o_.payload, o_.rate > 0 ? "open loop" : "closed loop");
  std::printf("  requests   %s submitted, %s completed: %s req/s\n", grouped(submitted, a), grouped(completed, b),
              grouped(u64(rps), c));
  std::printf("  round trip p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us  (submit -> reply polled)\n",
              double(total_hist_.quantile(0.50)) / 1e3, double(total_hist_.quantile(0.99)) / 1e3,
              double(total_hist_.quantile(0.999)) / 1e3, double(total_hist_.max()) / 1e3);
  std::printf("  busy       %s refused (request ring full or no buffer)  alloc waits %s\n", grouped(busy, a),
              grouped(alloc_waits_, b));
  std::printf("  wakeups    %s futex wakes issued by the producer (%.6f per request), %s worker sleeps\n",
              grouped(wakes, a), completed ? double(wakes) / double(completed) : 0.0, grouped(sleeps, b));
  std::printf("  deaths     %u worker death%s, %s in-flight requests lost and reported, %u respawn%s (budget %u)\n",
              deaths, deaths == 1 ? "" : "s", grouped(lost, a), respawns_used_, respawns_used_ == 1 ? "" : "s",
              o_.max_respawns);
  std::printf(
      "  errors     %llu echo mismatches, %llu error replies, %llu invalid and %llu torn replies, %llu "
      "unanswered at exit, %llu leaks, %llu unreplaced workers\n",
      ull(mismatches), ull(bad_status), ull(invalid), ull(torn), ull(unanswered), ull(leaks_),
      ull(worker_unavailable_));
  std::printf("  memory     %u segment%s on 2 MiB hugepages, %u on 4 KiB pages (fallback)\n", huge,
              huge == 1 ? "" : "s", o_.workers - huge);
  for (const auto& w : workers_) {
    char fb[128];
    if (w->leak_checked) {
      std::snprintf(fb, sizeof fb, "free buffers %u/%u, %u loans parked, %u stranded: %s", w->final_free,
                    w->initial_free, w->loans_parked, w->stranded, w->leak ? "LEAK" : "OK");
    } else {
      std::snprintf(fb, sizeof fb, "free buffers not checked (%llu unanswered)", ull(w->unanswered));
    }
    std::string how = w->reaped ? describe_exit(w->exit_status) : "not started";
    if (w->detached_cleanly) how += ", detached cleanly";
    std::printf("  worker %-3u pid %-7d %s completed, %s lost, %s busy, %u respawn%s; %s; %s\n", w->index, int(w->pid),
                grouped(w->completed, a), grouped(w->lost, b), grouped(w->busy, c), w->respawns,
                w->respawns == 1 ? "" : "s", fb, how.c_str());
  }
  std::printf("  result     %s\n", errors == 0 ? "OK" : "FAILED");
  std::fflush(stdout);

  if (!o_.json_path.empty()) {
    FILE* f = std::fopen(o_.json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "axon-shm-demo: cannot write %s: %s\n", o_.json_path.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(f,
                 "{\n  \"duration_s\": %.3f,\n  \"workers\": %u,\n  \"worker_binary\": %s,\n  \"payload_bytes\": %u,"
                 "\n  \"mode\": \"%s\",\n  \"offered_rate\": %llu,\n  \"window_per_worker\": %u,\n"
                 "  \"hugepages\": %s,\n  \"submitted\": %llu,\n  \"completed\": %llu,\n  \"requests_per_s\": %.0f,\n"
                 "  \"latency_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f},\n"
                 "  \"busy\": %llu,\n  \"alloc_waits\": %llu,\n  \"wakes_issued\": %llu,\n  \"worker_sleeps\": %llu,\n"
                 "  \"deaths\": %u,\n  \"lost\": %llu,\n  \"respawns\": %u,\n"
                 "  \"errors\": {\"echo_mismatches\": %llu, \"error_replies\": %llu, \"invalid_replies\": %llu, "
                 "\"torn_replies\": %llu, \"unanswered\": %llu, \"leaks\": %llu, \"unreplaced_workers\": %llu, "
                 "\"total\": %llu},\n  \"per_worker\": [",
                 secs, o_.workers, json_string(launcher_.binary).c_str(), o_.payload, o_.rate > 0 ? "open" : "closed",
                 ull(o_.rate), o_.window, huge == o_.workers ? "true" : "false", ull(submitted), ull(completed), rps,
                 double(total_hist_.quantile(0.50)) / 1e3, double(total_hist_.quantile(0.99)) / 1e3,
                 double(total_hist_.quantile(0.999)) / 1e3, double(total_hist_.max()) / 1e3, ull(busy),
                 ull(alloc_waits_), ull(wakes), ull(sleeps), deaths, ull(lost), respawns_used_, ull(mismatches),
                 ull(bad_status), ull(invalid), ull(torn), ull(unanswered), ull(leaks_), ull(worker_unavailable_),
                 ull(errors));
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      const WorkerSlot& w = *workers_[i];
      std::fprintf(f,
                   "%s\n    {\"worker\": %u, \"submitted\": %llu, \"completed\": %llu, \"lost\": %llu, \"busy\": %llu, "
                   "\"respawns\": %u, \"free_buffers\": %u, \"initial_free_buffers\": %u, \"loans_parked\": %u, "
                   "\"stranded_buffers\": %u, \"leak\": %s, \"detached_cleanly\": %s}",
                   i ? "," : "", w.index, ull(w.submitted), ull(w.completed), ull(w.lost), ull(w.busy), w.respawns,
                   w.final_free, w.initial_free, w.loans_parked, w.stranded, w.leak ? "true" : "false",
                   w.detached_cleanly ? "true" : "false");
    }
    std::fprintf(f, "\n  ],\n  \"result\": \"%s\"\n}\n", errors == 0 ? "ok" : "failed");
    std::fclose(f);
  }
  return errors == 0 ? 0 : 1;
}

void Demo::cleanup() {
  for (auto& w : workers_) {
    if (w->pid > 0 && !w->reaped) {
      kill(w->pid, SIGKILL);
      waitpid(w->pid, nullptr, 0);
      w->reaped = true;
    }
  }
  workers_.clear();  // listeners unlink their sockets
  if (own_socket_dir_ && !socket_dir_.empty()) {
    rmdir(socket_dir_.c_str());
    own_socket_dir_ = false;
  }
}

int Demo::main() {
  if (!setup()) return 1;
  if (o_.cpu >= 0) {
    if (auto pinned = axon::pin_this_thread(o_.cpu); !pinned) {
      std::fprintf(stderr, "axon-shm-demo: %s\n", pinned.message().c_str());
      return 1;
    }
  }
  if (!start_all()) {
    stop_workers();
    return 1;
  }
  std::printf("  %u worker%s attached; running\n", o_.workers, o_.workers == 1 ? "" : "s");
  std::fflush(stdout);
  run_loop();
  drain();
  stop_workers();
  return report();
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  int code = 0;
  if (!parse_options(argc, argv, options, code)) return code;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Demo demo(options);
  return demo.main();
}

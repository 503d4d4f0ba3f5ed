// axon-bench-ring: shared pieces of the side-by-side ring benchmark.
//
// Every peer runs between two forked processes (role A on --cpus[0], role B on
// --cpus[1]) over the same MAP_SHARED memfd region, with the same 64-byte message, the
// same capacity and the same batch semantics. Each peer lives in its own translation
// unit (compiled with the same flags) and plugs a `Side` into the workload templates
// below, so the measuring loops are literally the same code for every peer.
//
// A Side is one process's end of a pair of one-way channels:
//   role A: out = channel 0, in = channel 1      role B: in = channel 0, out = channel 1
// and offers
//   using Msg = ...;
//   bool push1(const Msg&);                     one message, never blocks
//   bool pop1(Msg&);
//   uint32_t push_burst(const Msg*, uint32_t);  up to n, may accept fewer
//   uint32_t pop_burst(Msg*, uint32_t);
//   void after_push();                          called once per successful push call
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "axon/common/clock.h"
#include "axon/shm/layout.h"

namespace axon::bench {

// ---------------------------------------------------------------------------------------
// Messages

// The 64-byte message every peer carries. `commit` is first so axon's ring can stamp it;
// the other peers copy it like any other byte.
struct alignas(64) Msg64 {
  std::uint64_t commit;
  std::uint64_t seq;
  std::uint64_t check;
  std::uint64_t stamp;
  std::uint64_t payload[4];
};
static_assert(sizeof(Msg64) == 64);
static_assert(offsetof(Msg64, commit) == 0);

inline constexpr std::uint64_t kCheckMul = 0x9E3779B97F4A7C15ull;

inline void set_msg(Msg64& m, std::uint64_t seq) noexcept {
  m.seq = seq;
  m.check = seq * kCheckMul;
}
inline bool msg_ok(const Msg64& m, std::uint64_t seq) noexcept {
  return m.seq == seq && m.check == seq * kCheckMul;
}
inline std::uint64_t msg_seq(const Msg64& m) noexcept {
  return m.seq;
}

// The production descriptor: the sequence goes in the first line, the check word in the
// second, so the consumer touches both lines as the worker SDK does.
inline void set_msg(shm::Descriptor& d, std::uint64_t seq) noexcept {
  d.request_id = seq;
  d.user_cookie = seq * kCheckMul;
}
inline bool msg_ok(const shm::Descriptor& d, std::uint64_t seq) noexcept {
  return d.request_id == seq && d.user_cookie == seq * kCheckMul;
}
inline std::uint64_t msg_seq(const shm::Descriptor& d) noexcept {
  return d.request_id;
}

// ---------------------------------------------------------------------------------------
// Parameters and shared results

inline constexpr std::uint32_t kCapacity = 1024;  // slots per one-way channel, every peer
inline constexpr std::uint32_t kMaxBurst = 32;

struct Params {
  std::uint64_t messages = 10'000'000;  // per throughput run
  std::uint32_t pingpong_iters = 200'000;
  std::uint32_t pingpong_warmup = 20'000;
  std::uint32_t wake_samples = 2'000;
  std::uint32_t recovery_trials = 15;
  std::uint32_t recovery_held = 48;  // requests the killed worker still holds
  int cpu[2] = {0, 1};
  double tsc_per_ns = 1.0;
  int syscall_tracepoint = -1;  // raw_syscalls:sys_enter id, -1 if unavailable
  double stall_seconds = 10.0;  // no progress for this long fails the run
  std::uint32_t run_id = 0;     // distinct per run (iceoryx topics)
};

enum class Workload : int { batch1 = 0, batch32 = 1, pingpong = 2, wake = 3 };

struct LatencyStats {
  double p50 = 0, p99 = 0, p999 = 0, min = 0, max = 0, mean = 0;  // ns
  std::uint64_t samples = 0;
};

// What one child process reports back, in the shared region.
struct RoleResult {
  std::int32_t status = -1;  // 0 ok; set by the child
  std::int32_t pid = 0;
  std::uint64_t tsc_start = 0;
  std::uint64_t tsc_end = 0;
  std::uint64_t messages = 0;
  std::int64_t syscalls = -1;      // perf raw_syscalls:sys_enter count, -1 = not measured
  std::uint64_t wakes_issued = 0;  // eventcount futex wakes by the producer
  LatencyStats latency;
  char error[256] = {};
};

// Control block at the start of the shared region, reset before every run.
struct alignas(shm::kFalseSharingRange) Control {
  alignas(shm::kFalseSharingRange) std::atomic<std::uint32_t> ready;
  alignas(shm::kFalseSharingRange) std::atomic<std::uint32_t> go;
  alignas(shm::kFalseSharingRange) std::atomic<std::uint64_t> ack;  // wake workload
  alignas(shm::kFalseSharingRange) RoleResult role[2];
};

// ---------------------------------------------------------------------------------------
// Helpers shared by the children

void fail(RoleResult& r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
LatencyStats summarize(std::vector<std::uint64_t>& ticks, double tsc_per_ns);

// Counts this process's system calls with perf (raw_syscalls:sys_enter). Inactive when
// the tracepoint is unavailable; then count() returns -1.
class SyscallCounter {
 public:
  explicit SyscallCounter(int tracepoint_id) noexcept;
  ~SyscallCounter();
  SyscallCounter(const SyscallCounter&) = delete;
  SyscallCounter& operator=(const SyscallCounter&) = delete;
  [[nodiscard]] bool active() const noexcept { return fd_ >= 0; }
  void start() noexcept;
  // Syscalls between start() and stop(), less the counter's own overhead.
  std::int64_t stop() noexcept;

 private:
  int fd_ = -1;
  std::int64_t overhead_ = 0;
};

// Two-sided start line: each side announces itself, role A releases both.
// Returns false (and fills the error) if the peer never shows up.
bool start_line(Control& ctl, int role, RoleResult& r, const Params& p);

// Watches for a spin loop that makes no progress.
class Stall {
 public:
  explicit Stall(const Params& p) noexcept
      : limit_(std::uint64_t(p.stall_seconds * 1e9 * p.tsc_per_ns)), since_(rdtsc()) {}
  // Call when an operation made no progress; `progress` is any counter that moves when
  // work gets done. Cheap: looks at the clock once per 64 Ki calls.
  [[nodiscard]] bool stuck(std::uint64_t progress) noexcept {
    if (++idle_ < (1u << 16)) return false;
    idle_ = 0;
    std::uint64_t now = rdtsc();
    if (progress != last_progress_) {
      last_progress_ = progress;
      since_ = now;
      return false;
    }
    return now - since_ > limit_;
  }

 private:
  std::uint64_t limit_;
  std::uint64_t since_;
  std::uint64_t last_progress_ = ~0ull;
  std::uint32_t idle_ = 0;
};

// ---------------------------------------------------------------------------------------
// Workloads. Role A produces, role B consumes and verifies every message.

template <std::uint32_t Batch, typename Side>
int produce(Side& side, Control& ctl, const Params& p) {
  using Msg = typename Side::Msg;
  RoleResult& r = ctl.role[0];
  SyscallCounter syscalls(p.syscall_tracepoint);
  Msg buf[Batch];
  std::memset(static_cast<void*>(buf), 0, sizeof buf);
  Stall stall(p);
  if (!start_line(ctl, 0, r, p)) return 1;
  const std::uint64_t n_total = p.messages;
  syscalls.start();
  r.tsc_start = rdtsc();
  std::uint64_t seq = 0;
  while (seq < n_total) {
    const std::uint32_t n = std::uint32_t(std::min<std::uint64_t>(Batch, n_total - seq));
    for (std::uint32_t i = 0; i < n; ++i) set_msg(buf[i], seq + i);
    std::uint32_t done = 0;
    while (done < n) {
      std::uint32_t k;
      if constexpr (Batch == 1) {
        k = side.push1(buf[0]) ? 1u : 0u;
      } else {
        k = side.push_burst(buf + done, n - done);
      }
      if (k != 0) {
        done += k;
        side.after_push();
      } else {
        cpu_relax();
        if (stall.stuck(seq + done)) {
          fail(r, "producer stalled at message %llu (ring full, consumer not draining)",
               static_cast<unsigned long long>(seq + done));
          return 1;
        }
      }
    }
    seq += n;
  }
  r.tsc_end = rdtsc();
  r.syscalls = syscalls.stop();
  r.messages = seq;
  r.status = 0;
  return 0;
}

template <std::uint32_t Batch, typename Side>
int consume(Side& side, Control& ctl, const Params& p) {
  using Msg = typename Side::Msg;
  RoleResult& r = ctl.role[1];
  Msg buf[Batch];
  Stall stall(p);
  if (!start_line(ctl, 1, r, p)) return 1;
  r.tsc_start = rdtsc();
  const std::uint64_t n_total = p.messages;
  std::uint64_t expected = 0;
  while (expected < n_total) {
    std::uint32_t k;
    if constexpr (Batch == 1) {
      k = side.pop1(buf[0]) ? 1u : 0u;
    } else {
      k = side.pop_burst(buf, Batch);
    }
    if (k == 0) {
      cpu_relax();
      if (stall.stuck(expected)) {
        fail(r, "consumer stalled after %llu of %llu messages (messages lost?)",
             static_cast<unsigned long long>(expected), static_cast<unsigned long long>(n_total));
        return 1;
      }
      continue;
    }
    for (std::uint32_t i = 0; i < k; ++i) {
      if (!msg_ok(buf[i], expected)) [[unlikely]] {
        fail(r, "message %llu arrived out of order or corrupt (got seq %llu)",
             static_cast<unsigned long long>(expected), static_cast<unsigned long long>(msg_seq(buf[i])));
        return 1;
      }
      ++expected;
    }
  }
  r.tsc_end = rdtsc();
  // Anything beyond what was sent is an error too.
  for (int spins = 0; spins < 1000; ++spins) {
    std::uint32_t extra;
    if constexpr (Batch == 1) {
      extra = side.pop1(buf[0]) ? 1u : 0u;
    } else {
      extra = side.pop_burst(buf, Batch);
    }
    if (extra != 0) {
      fail(r, "consumer received more messages than were sent");
      return 1;
    }
  }
  r.messages = expected;
  r.status = 0;
  return 0;
}

// Ping-pong: A sends seq i, B echoes it back, A times the round trip with rdtsc.
template <typename Side>
int ping(Side& side, Control& ctl, const Params& p) {
  using Msg = typename Side::Msg;
  RoleResult& r = ctl.role[0];
  const std::uint32_t total = p.pingpong_warmup + p.pingpong_iters;
  std::vector<std::uint64_t> samples(p.pingpong_iters);
  Msg out{}, in{};
  Stall stall(p);
  if (!start_line(ctl, 0, r, p)) return 1;
  r.tsc_start = rdtsc();
  for (std::uint32_t i = 0; i < total; ++i) {
    set_msg(out, i);
    const std::uint64_t t0 = rdtsc();
    while (!side.push1(out)) {
      cpu_relax();
      if (stall.stuck(i)) {
        fail(r, "ping %u could not be sent", i);
        return 1;
      }
    }
    side.after_push();
    while (!side.pop1(in)) {
      cpu_relax();
      if (stall.stuck(i)) {
        fail(r, "pong %u never came back (lost?)", i);
        return 1;
      }
    }
    const std::uint64_t t1 = rdtsc();
    if (!msg_ok(in, i)) [[unlikely]] {
      fail(r, "pong %u came back as %llu", i, static_cast<unsigned long long>(msg_seq(in)));
      return 1;
    }
    if (i >= p.pingpong_warmup) samples[i - p.pingpong_warmup] = t1 - t0;
  }
  r.tsc_end = rdtsc();
  r.messages = total;
  // One-way = RTT / 2.
  for (auto& s : samples) s /= 2;
  r.latency = summarize(samples, p.tsc_per_ns);
  r.status = 0;
  return 0;
}

template <typename Side>
int pong(Side& side, Control& ctl, const Params& p) {
  using Msg = typename Side::Msg;
  RoleResult& r = ctl.role[1];
  const std::uint32_t total = p.pingpong_warmup + p.pingpong_iters;
  Msg m{};
  Stall stall(p);
  if (!start_line(ctl, 1, r, p)) return 1;
  for (std::uint32_t i = 0; i < total; ++i) {
    while (!side.pop1(m)) {
      cpu_relax();
      if (stall.stuck(i)) {
        fail(r, "ping %u never arrived (lost?)", i);
        return 1;
      }
    }
    if (!msg_ok(m, i)) [[unlikely]] {
      fail(r, "ping %u arrived as %llu", i, static_cast<unsigned long long>(msg_seq(m)));
      return 1;
    }
    while (!side.push1(m)) {
      cpu_relax();
      if (stall.stuck(i)) {
        fail(r, "pong %u could not be sent", i);
        return 1;
      }
    }
    side.after_push();
  }
  r.messages = total;
  r.status = 0;
  return 0;
}

// Runs `workload` for one role with a Side built for that role.
template <typename Side>
int run_role(Side& side, Workload workload, int role, Control& ctl, const Params& p) {
  switch (workload) {
    case Workload::batch1: return role == 0 ? produce<1>(side, ctl, p) : consume<1>(side, ctl, p);
    case Workload::batch32: return role == 0 ? produce<kMaxBurst>(side, ctl, p) : consume<kMaxBurst>(side, ctl, p);
    case Workload::pingpong: return role == 0 ? ping(side, ctl, p) : pong(side, ctl, p);
    case Workload::wake: break;
  }
  fail(ctl.role[role], "workload not supported by this peer");
  return 1;
}

// ---------------------------------------------------------------------------------------
// Peers

// A peer as the driver sees it. `area` is this peer's part of the shared region (the
// same bytes for every peer), `init` formats it before each run in the parent, and
// `child` runs one role in a freshly forked, pinned process and returns its exit code.
struct Peer {
  const char* key;      // JSON key
  const char* label;    // table label
  const char* message;  // what crosses, e.g. "64 B"
  std::uint32_t msg_bytes;
  bool throughput;          // batch 1 / batch 32 rows
  bool latency;             // ping-pong row
  bool wake;                // sleep-to-wake workload
  const char* unavailable;  // non-null: why the peer cannot run here
  std::size_t (*area_bytes)();
  void (*init)(std::byte* area);
  int (*child)(std::byte* area, Workload workload, int role, Control& ctl, const Params& p);
  const char* note;  // shown under the table
};

// Each peer translation unit provides its descriptors.
std::vector<Peer> axon_peers();
Peer rte_ring_peer();
Peer boost_peer();
Peer iceoryx_peer();
Peer baseline_peer();

// Recovery after kill -9 (axon only). Runs inside a forked "data plane" child.
struct RecoveryResult {
  std::int32_t status = -1;
  std::uint32_t trials = 0;
  std::uint32_t total_buffers = 0;
  std::uint32_t free_before = 0;
  std::uint32_t held = 0;
  std::uint32_t lost_reported = 0;
  std::uint32_t backing = 0;
  double total_ns[64] = {};    // kill() -> reclaim() returned, free count restored
  double detect_ns[64] = {};   // kill() -> DeathWatch reported the death
  double reclaim_ns[64] = {};  // reclaim() alone
  char error[256] = {};
};
int recovery_child(RecoveryResult& out, const Params& p);

// False when the bench was built without iceoryx (iceoryx_posh not found).
bool iceoryx_built() noexcept;

}  // namespace axon::bench

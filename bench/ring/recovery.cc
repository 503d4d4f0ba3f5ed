// Buffer recovery after kill -9 of the consumer.
//
// This process plays the data plane: a real axon::shm::WorkerChannel. Each trial forks a
// real sdk::Worker (pinned to the other CPU) that attaches to the channel's memfd, takes
// 64 requests, replies to 16 and keeps 48 in flight. The data plane collects the 16
// replies, then SIGKILLs the worker and times kill() -> DeathWatch (pidfd) reports the
// death -> reclaim() returns with the free-buffer count back where it started and all 48
// held requests reported lost.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <set>

#include "axon/common/cpu.h"
#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/liveness.h"

#include "bench.h"

namespace axon::bench {
namespace {

constexpr std::uint32_t kSent = 64;

[[noreturn]] void worker_main(int segment_fd, std::atomic<std::uint32_t>* held, std::uint32_t replied,
                              const Params& p) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  (void)pin_this_thread(p.cpu[1]);
  auto worker = sdk::Worker::attach(dup(segment_fd));
  if (!worker) _exit(2);
  sdk::Request requests[kSent];
  std::uint32_t got = 0;
  const std::uint64_t limit = std::uint64_t(10e9 * p.tsc_per_ns);
  const std::uint64_t t0 = rdtsc();
  // Waits sleep rather than spin: under --rt a spinning SCHED_FIFO process can starve the
  // kernel's per-CPU workers that fork, mmap and exit need.
  while (got < kSent) {
    const std::uint32_t n =
        worker->receive_burst(requests + got, std::min<std::uint32_t>(sdk::Worker::kMaxBurst, kSent - got));
    got += n;
    if (rdtsc() - t0 > limit) _exit(3);
    if (n == 0) usleep(10);
  }
  for (std::uint32_t i = 0; i < replied; ++i) {
    sdk::ReplyBuffer buffer = worker->in_place(requests[i]);
    if (!worker->try_complete(requests[i], buffer, requests[i].length)) _exit(4);
  }
  while (!worker->try_flush()) {
    usleep(10);
    if (rdtsc() - t0 > limit) _exit(5);
  }
  held->store(1, std::memory_order_release);
  // Holding the rest mid-stream: the data plane kills us here.
  while (rdtsc() - t0 < 3 * limit) usleep(1000);
  _exit(6);
}

void set_error(RecoveryResult& out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void set_error(RecoveryResult& out, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(out.error, sizeof out.error, fmt, args);
  va_end(args);
  out.status = 1;
}

}  // namespace

int recovery_child(RecoveryResult& out, const Params& p) {
  shm::ChannelOptions options;
  options.worker_id = 1;
  auto created = shm::WorkerChannel::create(options);
  if (!created) {
    set_error(out, "WorkerChannel::create failed: %s", created.message().c_str());
    return 1;
  }
  shm::WorkerChannel& channel = created.value();
  auto watch_created = shm::DeathWatch::create();
  if (!watch_created) {
    set_error(out, "DeathWatch::create failed: %s", watch_created.message().c_str());
    return 1;
  }
  shm::DeathWatch& watch = watch_created.value();
  void* flag_mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (flag_mem == MAP_FAILED) {
    set_error(out, "mmap of the flag page failed");
    return 1;
  }
  auto* held = new (flag_mem) std::atomic<std::uint32_t>(0);

  const std::uint32_t replied = kSent - std::min(p.recovery_held, kSent);
  out.total_buffers = channel.total_buffers();
  out.free_before = channel.free_buffers();
  out.held = kSent - replied;
  out.backing = std::uint32_t(channel.backing());
  const std::uint32_t trials = std::min<std::uint32_t>(p.recovery_trials, 64);
  const std::uint64_t limit = std::uint64_t(10e9 * p.tsc_per_ns);
  std::vector<shm::LostRequest> lost;
  lost.reserve(kSent);
  std::vector<std::uint64_t> dead;

  for (std::uint32_t t = 0; t < trials; ++t) {
    held->store(0, std::memory_order_relaxed);
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
      set_error(out, "fork failed");
      return 1;
    }
    if (pid == 0) worker_main(channel.segment_fd(), held, replied, p);
    if (auto watched = watch.watch(pid, t); !watched) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      set_error(out, "DeathWatch::watch failed: %s", watched.message().c_str());
      return 1;
    }

    // Submit kSent requests, each in its own small buffer.
    shm::OutgoingRequest requests[kSent];
    for (std::uint32_t i = 0; i < kSent; ++i) {
      shm::OutgoingRequest& r = requests[i];
      r = shm::OutgoingRequest{};
      if (!channel.try_alloc(512, r.lease)) {
        set_error(out, "buffer pool empty at request %u of trial %u", i, t);
        kill(pid, SIGKILL);
        return 1;
      }
      std::memset(r.lease.data, int(i), 512);
      r.length = 512;
      r.meta.request_id = std::uint64_t(t) * 1000 + i;
      r.meta.user_cookie = r.meta.request_id;  // the channel hands back only this key
    }
    std::uint32_t submitted = 0;
    while (submitted < kSent) {
      submitted += channel.try_submit_burst(requests + submitted, std::min<std::uint32_t>(32, kSent - submitted));
    }
    // Wait for the worker to hold them all and publish its replies; collect those.
    std::uint32_t completed = 0;
    std::set<std::uint64_t> outstanding;
    for (std::uint32_t i = 0; i < kSent; ++i) outstanding.insert(requests[i].meta.request_id);
    const std::uint64_t t_wait = rdtsc();
    while (held->load(std::memory_order_acquire) == 0 || completed < replied) {
      shm::Completion c[32];
      std::uint32_t n = channel.poll_replies(c, 32);
      for (std::uint32_t i = 0; i < n; ++i) {
        outstanding.erase(c[i].user_cookie);
        channel.finish(c[i]);
      }
      completed += n;
      if (rdtsc() - t_wait > limit) {
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        set_error(out, "trial %u: worker never held its requests (completed %u of %u replies; worker %s)", t, completed,
                  replied, WIFEXITED(status) ? ("exit " + std::to_string(WEXITSTATUS(status))).c_str() : "killed");
        return 1;
      }
      if (n == 0) usleep(10);
    }

    // The measured part.
    dead.clear();
    lost.clear();
    const std::uint64_t t0 = rdtsc();
    kill(pid, SIGKILL);
    while (dead.empty()) {
      watch.poll(dead, 100);
      if (rdtsc() - t0 > limit) {
        set_error(out, "trial %u: DeathWatch did not report the SIGKILLed worker within 10 s", t);
        return 1;
      }
    }
    const std::uint64_t t1 = rdtsc();
    channel.reclaim(lost);
    const bool restored = channel.free_buffers() == out.free_before;
    const std::uint64_t t2 = rdtsc();
    int status = 0;
    waitpid(pid, &status, 0);

    if (dead.size() != 1 || dead[0] != t) {
      set_error(out, "trial %u: DeathWatch reported the wrong key", t);
      return 1;
    }
    if (!restored) {
      set_error(out, "trial %u: free buffers %u after reclaim, %u before the trial", t, channel.free_buffers(),
                out.free_before);
      return 1;
    }
    std::set<std::uint64_t> reported;
    for (const auto& l : lost) reported.insert(l.user_cookie);
    if (lost.size() != out.held || reported != outstanding) {
      set_error(out, "trial %u: reclaim reported %zu lost requests, the worker held %u", t, lost.size(), out.held);
      return 1;
    }
    out.lost_reported = std::uint32_t(lost.size());
    out.total_ns[t] = double(t2 - t0) / p.tsc_per_ns;
    out.detect_ns[t] = double(t1 - t0) / p.tsc_per_ns;
    out.reclaim_ns[t] = double(t2 - t1) / p.tsc_per_ns;
    out.trials = t + 1;
  }
  out.status = 0;
  return 0;
}

}  // namespace axon::bench

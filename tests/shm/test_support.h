// Helpers shared by the shm tests: forked children that are always killed and reaped,
// bounded waits, a private temp directory, small segment geometries, hugepage
// reservation, and an echo worker plus the data-plane driver that checks its replies.
//
// Every wait here is bounded by a generous deadline and reports failure instead of
// hanging; nothing asserts on how long something took, because the development VM has
// two noisy vCPUs where the same run can swing 2x or more.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/handoff.h"
#include "axon/testing/hugepages.h"

#include "gtest/gtest.h"

namespace axon::test {

// Upper bound for anything the tests wait for; real waits take micro- to milliseconds.
inline constexpr std::chrono::milliseconds kDeadline{20'000};

// One step of a polling loop's backoff: yield at first, then sleep 100 µs.
void backoff(unsigned attempt) noexcept;

// Polls pred until it holds or limit passes; true if it held. Yields first, then sleeps
// briefly, so a waiting parent does not starve the child it waits for on 2 vCPUs.
template <typename Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds limit = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (unsigned spins = 0;; ++spins) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    backoff(spins);
  }
}

// "exited with status 3", "killed by signal 9 (Killed)".
std::string describe_status(int status);

// A forked child process. The child runs body() and _exit()s with its result, so it never
// returns into GoogleTest or runs the parent's atexit handlers; an exception in the child
// exits with kChildThrew. The destructor SIGKILLs and reaps a child that is still around,
// so a failing assertion in the parent never leaves a process behind.
class Child {
 public:
  static constexpr int kChildThrew = 125;

  static Child fork(const std::function<int()>& body);

  Child() = default;
  Child(Child&& other) noexcept : pid_(other.pid_), status_(other.status_) { other.pid_ = -1; }
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_and_reap(); }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  // Waits up to limit for the child to exit and reaps it; returns its wait status, or
  // nullopt if it is still running.
  std::optional<int> wait(std::chrono::milliseconds limit = kDeadline);
  // Checks (without blocking) whether the child has exited; reaps it if so.
  bool exited();
  void signal(int sig) const noexcept;
  void kill_and_reap() noexcept;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Asserts that a child exited normally with status 0.
::testing::AssertionResult exited_cleanly(Child& child, std::chrono::milliseconds limit = kDeadline);

// A private directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Owns one descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// A flag in an anonymous MAP_SHARED page, created before fork() so parent and child see
// the same word. Used to stop children instead of signals: under TSan an asynchronous
// signal handler only runs at the next intercepted call, which a spinning worker may
// never make.
class SharedFlag {
 public:
  SharedFlag();
  ~SharedFlag();
  SharedFlag(const SharedFlag&) = delete;
  SharedFlag& operator=(const SharedFlag&) = delete;
  [[nodiscard]] std::atomic<bool>& get() const noexcept { return *flag_; }
  void set() const noexcept { flag_->store(true, std::memory_order_release); }

 private:
  std::atomic<bool>* flag_ = nullptr;
};

// Number of open descriptors of this process (to check that error paths leak none).
int open_fd_count();

// A segment geometry small enough to fit one 2 MiB hugepage, with rings and pools big
// enough for real bursts.
shm::SegmentGeometry small_geometry();
shm::ChannelOptions small_channel_options(std::uint32_t worker_id);

// Hugepage counts and reservation: the one helper of every test (axon/testing/hugepages.h).
using axon::testing::ensure_free_hugepages;

// Creates a channel on hugepages: ensures pages are free first and refuses the 4 KiB
// fallback, so a test that claims to run on hugepages really does.
shm::ShmResult<shm::WorkerChannel> create_hugepage_channel(const shm::ChannelOptions& options);

// Deterministic payload bytes for a request id.
void fill_pattern(std::byte* data, std::uint32_t length, std::uint64_t seed) noexcept;
// Checks data against the pattern (bitwise inverted when `inverted`); returns the first
// mismatching index or -1.
long find_pattern_mismatch(const std::byte* data, std::uint32_t length, std::uint64_t seed, bool inverted) noexcept;
// Payload size used for request id: mostly small-class sizes, every 16th one large.
std::uint32_t payload_size_for(std::uint64_t request_id) noexcept;

// --- the echo worker (runs in forked children)
// Odd request ids are answered with an exact copy in a loaned buffer (zero copy back to
// the data plane); even ids, and odd ones when no loan is free, are answered in place
// with every byte inverted, so the reply proves the worker wrote it. A request whose
// user_cookie is kFailCookie gets no commit, which the SDK must turn into handler_error.
inline constexpr std::uint64_t kFailCookie = 0xfa11fa11fa11fa11ull;
void echo_handler(const sdk::Request& request, sdk::ReplyWriter& out) noexcept;
// Runs the echo handler until stop is set, then detaches. Returns 0.
int run_echo_worker(sdk::Worker& worker, const std::atomic<bool>& stop);
// One burst of what Worker::run does, without waiting: receive, echo, complete, flush.
// Returns how many requests it handled. For workers driven step by step.
std::uint32_t serve_once(sdk::Worker& worker);

// Scheduler state of a process or one of its threads ('R', 'S', 'T', ...; '?' if gone),
// from /proc/<pid>/task/<tid>/stat.
char task_state(pid_t pid, pid_t tid = 0);

// Data-plane side of a handoff: accepts one connection, checks SO_PEERCRED names
// expected_pid, and sends channel's segment with its current generation.
::testing::AssertionResult hand_over(shm::HandoffListener& listener, shm::WorkerChannel& channel, pid_t expected_pid);

// Drives `count` echo requests through one channel (ids first_id..first_id+count-1), at
// most `window` in flight, and verifies every reply: the id and cookie echoed by the
// worker, the payload (copied or inverted), the length and the status.
class EchoDriver {
 public:
  EchoDriver(shm::WorkerChannel& channel, std::uint64_t first_id, std::uint32_t count, std::uint32_t window = 64);

  // Submits what fits, polls and verifies replies, restocks loans. Returns true if
  // anything was completed; check failed()/error() for verification failures.
  bool step();
  [[nodiscard]] bool done() const noexcept { return completed_ == count_ || failed(); }
  [[nodiscard]] bool failed() const noexcept { return !error_.empty(); }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] std::uint32_t completed() const noexcept { return completed_; }
  [[nodiscard]] std::uint32_t loaned_replies() const noexcept { return loaned_replies_; }
  [[nodiscard]] std::uint32_t in_place_replies() const noexcept { return in_place_replies_; }
  [[nodiscard]] std::uint32_t handler_errors() const noexcept { return handler_errors_; }
  // Every fail_every-th request carries kFailCookie (0 = none).
  void set_fail_every(std::uint32_t n) noexcept { fail_every_ = n; }

 private:
  void fail(const std::string& why);

  shm::WorkerChannel& channel_;
  std::uint64_t next_id_;
  std::uint64_t end_id_;
  std::uint32_t count_;
  std::uint32_t window_;
  std::uint32_t fail_every_ = 0;
  std::uint32_t completed_ = 0;
  std::uint32_t loaned_replies_ = 0;
  std::uint32_t in_place_replies_ = 0;
  std::uint32_t handler_errors_ = 0;
  std::unordered_set<std::uint64_t> outstanding_;
  std::string error_;
};

// Steps every driver until all are done; fails if a reply is wrong or if no driver makes
// progress for `stall_limit` (a lost wakeup or a dead worker).
::testing::AssertionResult drive(const std::vector<EchoDriver*>& drivers,
                                 std::chrono::milliseconds stall_limit = kDeadline);

}  // namespace axon::test

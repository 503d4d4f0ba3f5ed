// Implementation of the shared shm test helpers (see test_support.h).
#include "test_support.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>

namespace axon::test {

void backoff(unsigned attempt) noexcept {
  if (attempt < 256) {
    sched_yield();
  } else {
    usleep(100);
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

// --- Child

Child Child::fork(const std::function<int()>& body) {
  // Anything still buffered would otherwise be written twice, once by each process.
  std::fflush(stdout);
  std::fflush(stderr);
  Child child;
  child.pid_ = ::fork();
  if (child.pid_ == 0) {
    int rc = kChildThrew;
    try {
      rc = body();
    } catch (...) {
    }
    _exit(rc);
  }
  return child;
}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

bool Child::exited() {
  if (status_) return true;
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t rc = waitpid(pid_, &status, WNOHANG);
  if (rc == pid_) {
    status_ = status;
    return true;
  }
  return false;
}

std::optional<int> Child::wait(std::chrono::milliseconds limit) {
  if (pid_ <= 0 && !status_) return std::nullopt;
  if (!wait_until([&] { return exited(); }, limit)) return std::nullopt;
  return status_;
}

void Child::signal(int sig) const noexcept {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

void Child::kill_and_reap() noexcept {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
  }
  pid_ = -1;
}

::testing::AssertionResult exited_cleanly(Child& child, std::chrono::milliseconds limit) {
  const pid_t pid = child.pid();
  auto status = child.wait(limit);
  if (!status) {
    return ::testing::AssertionFailure() << "child " << pid << " still running after " << limit.count() << " ms";
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return ::testing::AssertionFailure() << "child " << pid << " " << describe_status(*status);
  }
  return ::testing::AssertionSuccess();
}

// --- TempDir, Fd, SharedFlag

TempDir::TempDir() {
  char tmpl[] = "/tmp/axon-shm-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

SharedFlag::SharedFlag() {
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    std::perror("mmap shared flag");
    std::abort();
  }
  flag_ = new (page) std::atomic<bool>(false);
}

SharedFlag::~SharedFlag() {
  munmap(flag_, 4096);
}

int open_fd_count() {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

// --- geometry and hugepages

shm::SegmentGeometry small_geometry() {
  shm::SegmentGeometry g;
  g.request_capacity = 128;
  g.reply_capacity = 128;
  g.loan_capacity = 16;
  g.small_buffer_size = 2048;
  g.small_buffer_count = 256;
  g.large_buffer_size = 65536;
  g.large_buffer_count = 16;
  return g;
}

shm::ChannelOptions small_channel_options(std::uint32_t worker_id) {
  shm::ChannelOptions options;
  options.worker_id = worker_id;
  options.geometry = small_geometry();
  options.small_loans = 8;
  options.large_loans = 2;
  return options;
}

shm::ShmResult<shm::WorkerChannel> create_hugepage_channel(const shm::ChannelOptions& options) {
  constexpr std::size_t kHuge = 2u << 20;
  const long needed = long((shm::segment_bytes(options.geometry) + kHuge - 1) / kHuge);
  shm::ChannelOptions huge = options;
  huge.allow_fallback = false;
  ensure_free_hugepages(needed);
  auto channel = shm::WorkerChannel::create(huge);
  if (!channel && channel.code() == shm::ShmError::no_memory) {
    // Another process took the pages between our check and the mmap: reserve more once.
    ensure_free_hugepages(needed + 4);
    channel = shm::WorkerChannel::create(huge);
  }
  return channel;
}

// --- payloads

namespace {
std::uint8_t pattern_byte(std::uint64_t seed, std::uint32_t i) noexcept {
  std::uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull + std::uint64_t(i) * 0xBF58476D1CE4E5B9ull;
  return std::uint8_t((x >> 56) ^ (x >> 29));
}
}  // namespace

void fill_pattern(std::byte* data, std::uint32_t length, std::uint64_t seed) noexcept {
  for (std::uint32_t i = 0; i < length; ++i) data[i] = std::byte{pattern_byte(seed, i)};
}

long find_pattern_mismatch(const std::byte* data, std::uint32_t length, std::uint64_t seed, bool inverted) noexcept {
  for (std::uint32_t i = 0; i < length; ++i) {
    std::uint8_t want = pattern_byte(seed, i);
    if (inverted) want = std::uint8_t(~want);
    if (std::to_integer<std::uint8_t>(data[i]) != want) return long(i);
  }
  return -1;
}

std::uint32_t payload_size_for(std::uint64_t request_id) noexcept {
  if (request_id % 16 == 5) return 2049 + std::uint32_t((request_id * 7919) % (65536 - 2048));
  return 1 + std::uint32_t((request_id * 131) % 2048);
}

// --- echo worker

void echo_handler(const sdk::Request& request, sdk::ReplyWriter& out) noexcept {
  if (request.meta.user_cookie == kFailCookie) return;  // no commit: the SDK must answer handler_error
  const std::uint32_t length = request.length;
  if ((request.meta.request_id & 1) != 0) {
    std::span<std::byte> loaned = out.loan(length);
    if (!loaned.empty()) {
      std::memcpy(loaned.data(), request.data, length);
      out.commit(length);
      return;
    }
  }
  std::span<std::byte> in_place = out.in_place();
  for (std::uint32_t i = 0; i < length; ++i) in_place[i] = ~in_place[i];
  out.commit(length);
}

int run_echo_worker(sdk::Worker& worker, const std::atomic<bool>& stop) {
  worker.run(echo_handler, stop);
  worker.detach();
  return 0;
}

std::uint32_t serve_once(sdk::Worker& worker) {
  sdk::Request burst[sdk::Worker::kMaxBurst];
  const std::uint32_t n = worker.receive_burst(burst, sdk::Worker::kMaxBurst);
  for (std::uint32_t i = 0; i < n; ++i) {
    sdk::ReplyWriter writer(worker, burst[i]);
    echo_handler(burst[i], writer);
    sdk::ReplyBuffer buffer = writer.buffer();
    std::uint32_t length = writer.length();
    shm::ReplyStatus status = writer.status();
    if (!writer.committed()) {
      buffer = worker.in_place(burst[i]);
      length = 0;
      status = shm::ReplyStatus::handler_error;
    }
    if (!worker.try_complete(burst[i], buffer, length, status)) {
      worker.flush();
      (void)worker.try_complete(burst[i], buffer, length, status);
    }
  }
  worker.flush();
  return n;
}

char task_state(pid_t pid, pid_t tid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid != 0 ? tid : pid) + "/stat";
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return '?';
  // "pid (comm) S ...": comm may contain spaces and parentheses, so look after the last ')'.
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return '?';
  return line[close + 2];
}

::testing::AssertionResult hand_over(shm::HandoffListener& listener, shm::WorkerChannel& channel, pid_t expected_pid) {
  auto conn = listener.accept(int(kDeadline.count()));
  if (!conn) return ::testing::AssertionFailure() << "accept: " << conn.message();
  Fd connection(conn.value());
  auto creds = shm::peer_credentials(connection.get());
  if (!creds) return ::testing::AssertionFailure() << "peer_credentials: " << creds.message();
  if (creds->pid != expected_pid) {
    return ::testing::AssertionFailure() << "SO_PEERCRED says pid " << creds->pid << ", expected " << expected_pid;
  }
  shm::HandoffMessage message;
  message.worker_id = channel.worker_id();
  message.layout_version = shm::kLayoutVersion;
  message.generation = channel.generation();
  message.segment_size = channel.view().size;
  auto sent = shm::send_segment(connection.get(), channel.segment_fd(), message);
  if (!sent) return ::testing::AssertionFailure() << "send_segment: " << sent.message();
  return ::testing::AssertionSuccess();
}

// --- EchoDriver

EchoDriver::EchoDriver(shm::WorkerChannel& channel, std::uint64_t first_id, std::uint32_t count, std::uint32_t window)
    : channel_(channel), next_id_(first_id), end_id_(first_id + count), count_(count), window_(window) {}

void EchoDriver::fail(const std::string& why) {
  if (error_.empty()) error_ = "worker " + std::to_string(channel_.worker_id()) + ": " + why;
}

bool EchoDriver::step() {
  if (failed()) return false;
  constexpr std::uint32_t kBurst = 16;
  shm::OutgoingRequest batch[kBurst];
  std::uint32_t n = 0;
  while (n < kBurst && next_id_ < end_id_ && outstanding_.size() + n < window_) {
    const std::uint64_t id = next_id_;
    const std::uint32_t size = payload_size_for(id);
    shm::BufferLease lease;
    if (!channel_.try_alloc(size, lease)) break;  // pool busy: wait for replies
    if (lease.capacity < size) {
      fail("try_alloc(" + std::to_string(size) + ") returned a " + std::to_string(lease.capacity) + "-byte buffer");
      channel_.release(lease);
      break;
    }
    fill_pattern(lease.data, size, id);
    shm::OutgoingRequest& request = batch[n++];
    request = shm::OutgoingRequest{};
    request.meta.request_id = id;
    request.meta.user_cookie = (fail_every_ != 0 && id % fail_every_ == 0) ? kFailCookie : ~id;
    request.meta.agent_id = std::uint32_t(id & 0xffff);
    request.meta.tenant_id = 7;
    request.lease = lease;
    request.length = size;
    ++next_id_;
  }
  if (n > 0) {
    const std::uint32_t accepted = channel_.try_submit_burst(batch, n);
    for (std::uint32_t i = 0; i < accepted; ++i) outstanding_.insert(batch[i].meta.request_id);
    // The rest stay ours: give their buffers back and send those ids again later.
    for (std::uint32_t i = accepted; i < n; ++i) channel_.release(batch[i].lease);
    next_id_ -= (n - accepted);
  }

  shm::Completion done[32];
  const std::uint32_t got = channel_.poll_replies(done, 32);
  for (std::uint32_t i = 0; i < got; ++i) {
    const shm::Completion& c = done[i];
    // The worker's echo names the request; the channel's own cookie (from its in-flight table,
    // not the worker) must agree with it.
    const std::uint64_t id = c.reply.request_id;
    if (outstanding_.erase(id) != 1) {
      fail("reply for request " + std::to_string(id) + " that is not outstanding (duplicate or unknown)");
    } else {
      const bool fails = fail_every_ != 0 && id % fail_every_ == 0;
      const std::uint64_t cookie = fails ? kFailCookie : ~id;
      const std::uint32_t size = payload_size_for(id);
      if (c.user_cookie != cookie || c.reply.user_cookie != cookie) {
        fail("request " + std::to_string(id) + ": the channel's cookie or the worker's echo does not match");
      } else if (fails) {
        if (c.status != shm::ReplyStatus::handler_error || c.length != 0) {
          fail("request " + std::to_string(id) + ": uncommitted handler must yield an empty handler_error reply");
        }
        ++handler_errors_;
      } else if (c.status != shm::ReplyStatus::ok || c.length != size) {
        fail("request " + std::to_string(id) + ": status " + std::to_string(unsigned(c.status)) + ", length " +
             std::to_string(c.length) + " (sent " + std::to_string(size) + ")");
      } else if ((c.reply.flags & shm::kFlagReplyInPlace) != 0) {
        ++in_place_replies_;
        if (c.reply_buffer != c.request_buffer) fail("in-place reply names another buffer");
        if (long at = find_pattern_mismatch(c.data, c.length, id, /*inverted=*/true); at >= 0) {
          fail("request " + std::to_string(id) + ": in-place reply differs at byte " + std::to_string(at));
        }
      } else {
        ++loaned_replies_;
        if (c.reply_buffer == c.request_buffer) fail("loaned reply reuses the request buffer");
        if (long at = find_pattern_mismatch(c.data, c.length, id, /*inverted=*/false); at >= 0) {
          fail("request " + std::to_string(id) + ": loaned reply differs at byte " + std::to_string(at));
        }
      }
    }
    channel_.finish(c);
    ++completed_;
  }
  channel_.refill_loans();
  return got > 0;
}

::testing::AssertionResult drive(const std::vector<EchoDriver*>& drivers, std::chrono::milliseconds stall_limit) {
  auto last_progress = std::chrono::steady_clock::now();
  unsigned idle = 0;
  for (;;) {
    bool all_done = true;
    bool progressed = false;
    for (EchoDriver* driver : drivers) {
      if (driver->done()) continue;
      all_done = false;
      progressed |= driver->step();
    }
    for (EchoDriver* driver : drivers) {
      if (driver->failed()) return ::testing::AssertionFailure() << driver->error();
    }
    if (all_done) return ::testing::AssertionSuccess();
    if (progressed) {
      last_progress = std::chrono::steady_clock::now();
      idle = 0;
      continue;
    }
    if (std::chrono::steady_clock::now() - last_progress > stall_limit) {
      std::ostringstream why;
      why << "no reply for " << stall_limit.count() << " ms:";
      for (EchoDriver* driver : drivers) why << " [completed " << driver->completed() << "]";
      return ::testing::AssertionFailure() << why.str();
    }
    backoff(idle++);
  }
}

}  // namespace axon::test

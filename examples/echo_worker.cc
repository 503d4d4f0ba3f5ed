// echo_worker: the reference agent worker, written against the C++ SDK.
//
// It answers every request with its own payload, copied into a buffer the data plane
// loaned out, so the reply is built in shared memory with no copy across the process
// boundary. When no loan is available it replies in place: the request's buffer already
// holds the payload, so the echo costs nothing at all.
//
//   echo_worker [--socket PATH] [--work-ns N] [--spin-max N] [--count] [--trace-log PATH]
//
// With --count the first 8 bytes of every reply (of a request of at least 8 bytes) carry how
// many requests this process has handled, little-endian, this one included: a test can tell a
// reply its handler produced from one the data plane's response cache served.
//
// --trace-log shows how a handler reads its trace context: one line per traced request,
// "<request_id> <request traceparent> <handler traceparent>", appended to PATH.
//
// Without --socket it attaches through the environment the data plane sets up
// (AXON_WORKER_FD or AXON_WORKER_SOCKET). SIGTERM or SIGINT stops it cleanly: queued
// replies are flushed and the segment is marked detached. It also exits (status 0) when
// the data plane it attached to exits.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "axon/sdk/worker.h"

namespace {

// The example needs only the SDK: its own clock rather than axon's internal one.
std::uint64_t monotonic_ns() {
  return std::uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the stop flag is written from a signal handler");

extern "C" void on_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a sleeping worker's futex wait returns at once
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

int usage(const char* argv0, int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: %s [--socket PATH] [--work-ns N] [--spin-max N] [--count] [--trace-log PATH]\n"
               "  --socket PATH  connect to this handoff socket instead of AXON_WORKER_FD/AXON_WORKER_SOCKET\n"
               "  --work-ns N    busy-spin N ns per request to simulate handler work (default 0)\n"
               "  --count        the first 8 bytes of each reply: requests handled so far (little-endian)\n"
               "  --spin-max N   upper bound of the adaptive spin before sleeping, in pause iterations\n"
               "                 (default 65536; small values suit a worker sharing a core with the data plane)\n"
               "  --trace-log PATH  append '<request_id> <traceparent> <handler traceparent>' per traced request\n",
               argv0);
  return code;
}

bool parse_u64(const char* text, std::uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') return false;
  out = value;
  return true;
}

// Simulated handler work: a busy spin, since a real agent's CPU time is what we model.
void spin_for(std::uint64_t ns) {
  if (ns == 0) return;
  const std::uint64_t until = monotonic_ns() + ns;
  while (monotonic_ns() < until) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // be kind to the sibling hyperthread while spinning
#endif
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path;
  std::uint64_t work_ns = 0;
  std::uint64_t spin_max = 0;  // 0: the SDK's default wait policy
  bool count_requests = false;
  std::string trace_log_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (arg == "--work-ns" && i + 1 < argc) {
      if (!parse_u64(argv[++i], work_ns)) {
        std::fprintf(stderr, "echo_worker: --work-ns needs a non-negative integer, got '%s'\n", argv[i]);
        return 2;
      }
    } else if (arg == "--spin-max" && i + 1 < argc) {
      if (!parse_u64(argv[++i], spin_max) || spin_max == 0 || spin_max > (1u << 24)) {
        std::fprintf(stderr, "echo_worker: --spin-max needs an integer from 1 to 16777216, got '%s'\n", argv[i]);
        return 2;
      }
    } else if (arg == "--count") {
      count_requests = true;
    } else if (arg == "--trace-log" && i + 1 < argc) {
      trace_log_path = argv[++i];
    } else if (arg == "-h" || arg == "--help") {
      return usage(argv[0], 0);
    } else {
      std::fprintf(stderr, "echo_worker: unknown argument '%s'\n", arg.c_str());
      return usage(argv[0], 2);
    }
  }
  install_signal_handlers();
  std::FILE* trace_log = nullptr;
  if (!trace_log_path.empty() && (trace_log = std::fopen(trace_log_path.c_str(), "a")) == nullptr) {
    std::fprintf(stderr, "echo_worker: cannot open --trace-log '%s': %s\n", trace_log_path.c_str(),
                 std::strerror(errno));
    return 2;
  }

  auto attached = socket_path.empty() ? axon::sdk::Worker::from_environment() : axon::sdk::Worker::connect(socket_path);
  if (!attached) {
    std::fprintf(stderr, "echo_worker: cannot attach (%s): %s\n", axon::shm::to_string(attached.code()),
                 attached.message().c_str());
    return 1;
  }
  axon::sdk::Worker& worker = attached.value();
  if (spin_max != 0) {
    axon::sdk::WaitPolicy policy;
    policy.spin_max = std::uint32_t(spin_max);
    if (policy.spin_min > policy.spin_max) policy.spin_min = policy.spin_max;
    worker.set_wait_policy(policy);
  }

  std::uint64_t loaned = 0;
  std::uint64_t in_place = 0;
  std::uint64_t handled = 0;
  const std::uint64_t started = monotonic_ns();
  worker.run(
      [&](const axon::sdk::Request& request, axon::sdk::ReplyWriter& reply) {
        spin_for(work_ns);
        ++handled;
        if (trace_log != nullptr && request.has_trace()) {
          // The handler's span (made by the SDK) is what the reply carries back to the client.
          std::fprintf(trace_log, "%llu %s %s\n", static_cast<unsigned long long>(request.meta.request_id),
                       request.traceparent().data(), request.handler_traceparent().data());
          std::fflush(trace_log);
        }
        std::span<std::byte> buffer = reply.loan(request.length);
        if (!buffer.empty()) {
          std::memcpy(buffer.data(), request.data, request.length);
          ++loaned;
        } else {
          // No loan right now: the request's own buffer already holds the echo.
          buffer = reply.in_place();
          ++in_place;
        }
        if (count_requests && request.length >= sizeof handled && buffer.size() >= sizeof handled) {
          for (std::size_t i = 0; i < sizeof handled; ++i) buffer[i] = std::byte(handled >> (8 * i));
        }
        reply.commit(request.length);
      },
      g_stop);
  worker.detach();
  if (trace_log != nullptr) std::fclose(trace_log);
  if (worker.dataplane_exited()) {
    std::fprintf(stderr, "echo_worker[%d]: the data plane exited; stopping (a new worker attaches to its successor)\n",
                 int(getpid()));
  }

  const double seconds = double(monotonic_ns() - started) / 1e9;
  const auto& s = worker.stats();
  std::fprintf(stderr,
               "echo_worker[%d]: worker %u generation %llu (%s): %llu received, %llu completed (%llu loaned, %llu "
               "in place), %llu loan failures, %llu sleeps, %llu reply-ring waits in %.1f s; detached\n",
               int(getpid()), worker.worker_id(), static_cast<unsigned long long>(worker.generation()),
               worker.backing() == axon::shm::SegmentBacking::hugetlb_2m ? "2 MiB hugepages" : "4 KiB pages",
               static_cast<unsigned long long>(s.received), static_cast<unsigned long long>(s.completed),
               static_cast<unsigned long long>(loaned), static_cast<unsigned long long>(in_place),
               static_cast<unsigned long long>(s.loan_failures), static_cast<unsigned long long>(s.sleeps),
               static_cast<unsigned long long>(s.reply_ring_full), seconds);
  return 0;
}

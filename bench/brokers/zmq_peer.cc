// axon-bench-zmq: the ZeroMQ peer of the benchmark suite (libzmq): the ROUTER/DEALER broker
// pattern with worker processes.
//
//   axon-bench-zmq broker --front tcp://HOST:5555 --back ipc:///path [--cpu N]
//   axon-bench-zmq worker --back ipc:///path [--cpu N]
//   axon-bench-zmq driver --front tcp://HOST:5555 --rate R --duration S [--payload B] [--json F]
//
// broker: zmq_proxy between a ROUTER socket for clients and a DEALER socket for workers, which
// spreads requests over the connected workers and routes each reply back to its client.
// worker: a REP socket on the broker's backend; answers every request with its own payload.
// driver: a DEALER client, open loop (openloop.h): one thread sends on the schedule and takes
// replies as they come, waiting on the socket's ZMQ_FD between sends.
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <zmq.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "axon/common/clock.h"

#include "openloop.h"

namespace {

using axon::bench::DriverOptions;
using axon::bench::OpenLoop;

constexpr int kHwm = 1 << 20;  // open loop: queue rather than block or drop

void set_int(void* sock, int option, int value) {
  zmq_setsockopt(sock, option, &value, sizeof value);
}

int fail(const char* who, const char* what, const std::string& endpoint) {
  std::fprintf(stderr, "axon-bench-zmq %s: %s %s: %s\n", who, what, endpoint.c_str(), zmq_strerror(zmq_errno()));
  return 1;
}

extern "C" void on_alarm(int) {}

// A bound on every process's life: SIGALRM interrupts a blocking call, the loop sees the time.
void limit_life(double seconds) {
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, nullptr);
  alarm(static_cast<unsigned>(seconds) + 1);
}

int run_broker(const std::string& front, const std::string& back, double max_life) {
  void* ctx = zmq_ctx_new();
  void* frontend = zmq_socket(ctx, ZMQ_ROUTER);
  void* backend = zmq_socket(ctx, ZMQ_DEALER);
  for (void* s : {frontend, backend}) {
    set_int(s, ZMQ_SNDHWM, kHwm);
    set_int(s, ZMQ_RCVHWM, kHwm);
    set_int(s, ZMQ_LINGER, 0);
  }
  if (zmq_bind(frontend, front.c_str()) != 0) return fail("broker", "cannot bind", front);
  if (zmq_bind(backend, back.c_str()) != 0) return fail("broker", "cannot bind", back);
  std::printf("axon-bench-zmq broker %d: ROUTER %s <-> DEALER %s\n", getpid(), front.c_str(), back.c_str());
  std::fflush(stdout);
  limit_life(max_life);
  // Returns when a signal interrupts it (EINTR) or the context ends.
  zmq_proxy(frontend, backend, nullptr);
  zmq_close(frontend);
  zmq_close(backend);
  zmq_ctx_term(ctx);
  return 0;
}

int run_worker(const std::string& back, double max_life) {
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_REP);
  set_int(sock, ZMQ_SNDHWM, kHwm);
  set_int(sock, ZMQ_RCVHWM, kHwm);
  set_int(sock, ZMQ_LINGER, 0);
  if (zmq_connect(sock, back.c_str()) != 0) return fail("worker", "cannot connect to", back);
  limit_life(max_life);
  std::uint64_t echoed = 0;
  const std::uint64_t until = axon::monotonic_ns() + static_cast<std::uint64_t>(max_life * 1e9);
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  while (!axon::bench::stop_flag() && axon::monotonic_ns() < until) {
    if (zmq_msg_recv(&msg, sock, 0) < 0) {
      if (zmq_errno() == EINTR) continue;
      break;
    }
    // The echo: the reply is the request's payload (REP adds the envelope back).
    if (zmq_msg_send(&msg, sock, 0) < 0) break;
    ++echoed;
  }
  zmq_msg_close(&msg);
  zmq_close(sock);
  zmq_ctx_term(ctx);
  std::printf("axon-bench-zmq worker %d: echoed %llu\n", getpid(), static_cast<unsigned long long>(echoed));
  return 0;
}

int run_driver(const std::string& front, DriverOptions o) {
  axon::bench::pin_or_warn(o.cpu, "axon-bench-zmq driver");  // before libzmq starts its I/O thread
  const double cpu0 = axon::bench::process_cpu_s();
  const std::uint64_t wall0 = axon::monotonic_ns();
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_DEALER);
  set_int(sock, ZMQ_SNDHWM, kHwm);
  set_int(sock, ZMQ_RCVHWM, kHwm);
  set_int(sock, ZMQ_LINGER, 0);
  set_int(sock, ZMQ_IMMEDIATE, 1);  // no queueing before the connection is up
  if (zmq_connect(sock, front.c_str()) != 0) return fail("driver", "cannot connect to", front);
  int major, minor, patch;
  zmq_version(&major, &minor, &patch);
  o.peer = "zmq";
  o.transport = "libzmq " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch) +
                ", DEALER -> ROUTER/DEALER broker -> REP workers";
  int zfd = -1;
  std::size_t zfd_len = sizeof zfd;
  zmq_getsockopt(sock, ZMQ_FD, &zfd, &zfd_len);

  // Wait (bounded) for the connection, so the schedule does not start into a closed pipe.
  for (int i = 0; i < 500; ++i) {
    zmq_pollitem_t item{sock, 0, ZMQ_POLLOUT, 0};
    if (zmq_poll(&item, 1, 10) > 0) break;
  }

  OpenLoop loop(o);
  std::vector<std::uint8_t> buf(loop.payload_bytes(), 'a');
  std::vector<std::uint8_t> rx(65536);
  std::uint64_t sent_packets = 0, received = 0;
  auto drain = [&](std::uint64_t now) {
    for (;;) {
      // [empty delimiter][payload], as REP workers expect and return.
      int n = zmq_recv(sock, rx.data(), rx.size(), ZMQ_DONTWAIT);
      if (n < 0) return;
      int more = 0;
      std::size_t len = sizeof more;
      zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len);
      if (n == 0 && more) {
        n = zmq_recv(sock, rx.data(), rx.size(), ZMQ_DONTWAIT);
        if (n < 0) return;
        ++received;
        loop.on_reply({rx.data(), static_cast<std::size_t>(n)}, now);
      }
    }
  };
  while (!loop.schedule_done()) {
    std::uint64_t now = axon::monotonic_ns();
    for (int k = 0; k < 32 && !loop.schedule_done() && loop.next_intended() <= now; ++k) {
      loop.fill(buf.data(), loop.next_seq(), loop.next_intended());
      bool ok = zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0 &&
                zmq_send(sock, buf.data(), buf.size(), ZMQ_DONTWAIT) == static_cast<int>(buf.size());
      loop.advance(now, ok);
      sent_packets += ok;
    }
    drain(axon::monotonic_ns());
    now = axon::monotonic_ns();
    std::uint64_t next = loop.next_intended();
    if (next > now + 60'000) {
      int events = 0;
      std::size_t elen = sizeof events;
      zmq_getsockopt(sock, ZMQ_EVENTS, &events, &elen);  // also re-arms ZMQ_FD's edge
      if (events & ZMQ_POLLIN) continue;
      std::uint64_t wait = next - now - 40'000;
      timespec ts{static_cast<time_t>(wait / 1'000'000'000ull), static_cast<long>(wait % 1'000'000'000ull)};
      pollfd pfd{zfd, POLLIN, 0};
      ppoll(&pfd, 1, &ts, nullptr);
    } else if (next > now) {
      axon::cpu_relax();
    }
  }
  while (axon::monotonic_ns() < loop.end_ns() && !axon::bench::stop_flag()) {
    drain(axon::monotonic_ns());
    zmq_pollitem_t item{sock, 0, ZMQ_POLLIN, 0};
    zmq_poll(&item, 1, 1);
  }
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return loop.finish(axon::bench::process_cpu_s() - cpu0, static_cast<double>(axon::monotonic_ns() - wall0) / 1e9,
                     sent_packets, received);
}

}  // namespace

int main(int argc, char** argv) {
  std::string front = "tcp://127.0.0.1:5555";
  std::string back = "ipc:///tmp/axon-bench-zmq.ipc";
  double max_life = 3600;
  int cpu = -1;
  DriverOptions o;
  CLI::App app{"axon-bench-zmq: the ZeroMQ peer of bench/run.sh (ROUTER/DEALER broker, REP workers, open-loop driver)"};
  app.require_subcommand(1);
  CLI::App* broker = app.add_subcommand("broker", "zmq_proxy between a ROUTER (clients) and a DEALER (workers)");
  broker->add_option("--front", front, "Client endpoint to bind")->capture_default_str();
  broker->add_option("--back", back, "Worker endpoint to bind")->capture_default_str();
  broker->add_option("--cpu", cpu, "Pin to this CPU");
  broker->add_option("--max-life", max_life, "Exit after this many seconds at the latest")->capture_default_str();
  CLI::App* worker = app.add_subcommand("worker", "REP echo worker");
  worker->add_option("--back", back, "Broker's worker endpoint")->capture_default_str();
  worker->add_option("--cpu", cpu, "Pin to this CPU");
  worker->add_option("--max-life", max_life, "Exit after this many seconds at the latest")->capture_default_str();
  CLI::App* driver = app.add_subcommand("driver", "Open-loop DEALER client");
  driver->add_option("--front", front, "Broker's client endpoint")->capture_default_str();
  driver->add_option("--rate", o.rate, "Offered requests/s")->capture_default_str();
  driver->add_option("--duration", o.duration_s, "Measured seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 600.0));
  driver->add_option("--warmup", o.warmup_s, "Seconds before measuring")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  driver->add_option("--payload", o.payload_bytes, "Payload bytes (>= 16)")->capture_default_str();
  driver->add_option("--timeout-ms", o.timeout_ms, "A request unanswered this long is lost")->capture_default_str();
  driver->add_option("--cpu", o.cpu, "Pin the driver (and libzmq's I/O thread) to this CPU");
  driver->add_option("--seed", o.seed, "Seed of the arrival schedule")->capture_default_str();
  driver->add_option("--max-lag-us", o.max_lag_us, "Send lag p90 above which the run is load_behind")
      ->capture_default_str();
  driver->add_option("--json", o.json_file, "Write the report here");
  CLI11_PARSE(app, argc, argv);
  axon::bench::install_stop_handlers();
  if (driver->parsed()) {
    if (!(o.rate > 0) || o.rate > 10e6) {
      std::fprintf(stderr, "axon-bench-zmq: --rate must be in (0, 10,000,000]\n");
      return 2;
    }
    return run_driver(front, o);
  }
  axon::bench::pin_or_warn(cpu, "axon-bench-zmq");  // before libzmq starts its I/O thread
  return broker->parsed() ? run_broker(front, back, max_life) : run_worker(back, max_life);
}

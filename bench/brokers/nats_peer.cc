// axon-bench-nats: the NATS peer of the benchmark suite, with the NATS C client (libnats).
//
//   axon-bench-nats worker --url nats://HOST:4222 [--cpu N] [--group G] [--subject S]
//   axon-bench-nats driver --url nats://HOST:4222 --rate R --duration S [--payload B] [--json F]
//
// worker: subscribes to the subject in a queue group and answers every message on its reply
// subject with the same payload (the echo work every peer of the suite does). The suite starts
// several in one group: NATS hands each request to one of them.
// driver: request-reply, open loop (openloop.h): each request is published with a reply subject
// the driver subscribes to, on the schedule, whether or not earlier replies came back; the
// replies are timed on the client's delivery thread as they arrive.
#include <nats/nats.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "axon/common/clock.h"

#include "openloop.h"

namespace {

using axon::bench::DriverOptions;
using axon::bench::OpenLoop;

struct Common {
  std::string url = "nats://127.0.0.1:4222";
  std::string subject = "axon.bench.echo";
  std::string group = "axon-bench-workers";
  bool send_asap = false;
  double max_life_s = 3600;  // a worker never outlives this, whatever happens to the suite
};

natsStatus connect(const Common& c, natsConnection** nc) {
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, c.url.c_str());
  if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, c.send_asap);
  if (s == NATS_OK) s = natsOptions_SetNoEcho(opts, true);
  if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(opts, 1 << 20);
  if (s == NATS_OK) s = natsOptions_SetIOBufSize(opts, 256 * 1024);
  if (s == NATS_OK) s = natsConnection_Connect(nc, opts);
  natsOptions_Destroy(opts);
  return s;
}

// ---- worker ------------------------------------------------------------------------------
std::atomic<std::uint64_t> g_echoed{0};

void on_request(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
  const char* reply = natsMsg_GetReply(msg);
  if (reply != nullptr && reply[0] != '\0') {
    // The echo: the reply carries a copy of the request's payload.
    natsConnection_Publish(nc, reply, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    g_echoed.fetch_add(1, std::memory_order_relaxed);
  }
  natsMsg_Destroy(msg);
}

int run_worker(const Common& c, int cpu) {
  axon::bench::pin_or_warn(cpu, "axon-bench-nats worker");  // before libnats starts its threads
  natsConnection* nc = nullptr;
  natsStatus s = connect(c, &nc);
  if (s != NATS_OK) {
    std::fprintf(stderr, "axon-bench-nats worker: cannot connect to %s: %s (is nats-server running?)\n", c.url.c_str(),
                 natsStatus_GetText(s));
    return 1;
  }
  natsSubscription* sub = nullptr;
  s = natsConnection_QueueSubscribe(&sub, nc, c.subject.c_str(), c.group.c_str(), on_request, nullptr);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
  if (s == NATS_OK) s = natsConnection_FlushTimeout(nc, 5000);  // the subscription is known to the server
  if (s != NATS_OK) {
    std::fprintf(stderr, "axon-bench-nats worker: subscribe failed: %s\n", natsStatus_GetText(s));
    return 1;
  }
  std::printf("axon-bench-nats worker %d: subscribed to %s in group %s\n", getpid(), c.subject.c_str(),
              c.group.c_str());
  std::fflush(stdout);
  const std::uint64_t until = axon::monotonic_ns() + static_cast<std::uint64_t>(c.max_life_s * 1e9);
  while (!axon::bench::stop_flag() && axon::monotonic_ns() < until) usleep(20'000);
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  std::printf("axon-bench-nats worker %d: echoed %llu\n", getpid(), static_cast<unsigned long long>(g_echoed.load()));
  return 0;
}

// ---- driver ------------------------------------------------------------------------------
struct DriverState {
  OpenLoop* loop = nullptr;
  std::atomic<std::uint64_t> received{0};
};

void on_reply(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* st = static_cast<DriverState*>(closure);
  std::uint64_t now = axon::monotonic_ns();
  const auto* data = reinterpret_cast<const std::uint8_t*>(natsMsg_GetData(msg));
  st->loop->on_reply({data, static_cast<std::size_t>(natsMsg_GetDataLength(msg))}, now);
  st->received.fetch_add(1, std::memory_order_relaxed);
  natsMsg_Destroy(msg);
}

int run_driver(const Common& c, DriverOptions o) {
  axon::bench::pin_or_warn(o.cpu, "axon-bench-nats driver");
  const double cpu0 = axon::bench::process_cpu_s();
  const std::uint64_t wall0 = axon::monotonic_ns();
  natsConnection* nc = nullptr;
  natsStatus s = connect(c, &nc);
  if (s != NATS_OK) {
    std::fprintf(stderr, "axon-bench-nats driver: cannot connect to %s: %s (is nats-server running?)\n", c.url.c_str(),
                 natsStatus_GetText(s));
    return 2;
  }
  char inbox[64];
  std::snprintf(inbox, sizeof inbox, "axon.bench.reply.%d", getpid());
  o.peer = "nats";
  o.transport = std::string("libnats ") + nats_GetVersion() + ", request-reply, queue group, " +
                (c.send_asap ? "send asap" : "buffered publish");
  DriverState st;
  natsSubscription* sub = nullptr;
  s = natsConnection_Subscribe(&sub, nc, inbox, on_reply, &st);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
  if (s == NATS_OK) s = natsConnection_FlushTimeout(nc, 5000);
  if (s != NATS_OK) {
    std::fprintf(stderr, "axon-bench-nats driver: subscribe failed: %s\n", natsStatus_GetText(s));
    return 2;
  }
  OpenLoop loop(o);
  st.loop = &loop;
  std::vector<std::uint8_t> buf(loop.payload_bytes(), 'a');
  std::uint64_t published = 0;
  while (!loop.schedule_done()) {
    std::uint64_t now = axon::monotonic_ns();
    std::uint64_t next = loop.next_intended();
    if (next <= now) {
      loop.fill(buf.data(), loop.next_seq(), next);
      natsStatus ps =
          natsConnection_PublishRequest(nc, c.subject.c_str(), inbox, buf.data(), static_cast<int>(buf.size()));
      loop.advance(now, ps == NATS_OK);
      ++published;
      continue;
    }
    // Sleep through long gaps, spin through short ones (a wake-up costs tens of µs here).
    if (next > now + 100'000) {
      std::uint64_t wake = next - 50'000;
      timespec ts{static_cast<time_t>(wake / 1'000'000'000ull), static_cast<long>(wake % 1'000'000'000ull)};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
    } else {
      axon::cpu_relax();
    }
  }
  natsConnection_FlushTimeout(nc, 1000);
  // Replies have until the timeout after the window; then the subscription is drained, which
  // guarantees no callback runs any more when the tally is read.
  while (axon::monotonic_ns() < loop.end_ns() && !axon::bench::stop_flag()) usleep(10'000);
  natsSubscription_Drain(sub);
  natsSubscription_WaitForDrainCompletion(sub, 2000);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  return loop.finish(axon::bench::process_cpu_s() - cpu0, static_cast<double>(axon::monotonic_ns() - wall0) / 1e9,
                     published, st.received.load());
}

}  // namespace

int main(int argc, char** argv) {
  Common c;
  DriverOptions o;
  int worker_cpu = -1;
  CLI::App app{"axon-bench-nats: the NATS peer of bench/run.sh (queue-group echo workers and an open-loop driver)"};
  app.require_subcommand(1);
  auto common = [&c](CLI::App* sub) {
    sub->add_option("--url", c.url, "nats-server URL")->capture_default_str();
    sub->add_option("--subject", c.subject, "Request subject")->capture_default_str();
    sub->add_flag("--send-asap", c.send_asap, "Write each publish at once instead of through libnats' flusher");
  };
  CLI::App* worker = app.add_subcommand("worker", "Echo worker in a queue group");
  common(worker);
  worker->add_option("--group", c.group, "Queue group")->capture_default_str();
  worker->add_option("--cpu", worker_cpu, "Pin to this CPU");
  worker->add_option("--max-life", c.max_life_s, "Exit after this many seconds at the latest")->capture_default_str();
  CLI::App* driver = app.add_subcommand("driver", "Open-loop request-reply load");
  common(driver);
  driver->add_option("--rate", o.rate, "Offered requests/s")->capture_default_str();
  driver->add_option("--duration", o.duration_s, "Measured seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 600.0));
  driver->add_option("--warmup", o.warmup_s, "Seconds before measuring")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  driver->add_option("--payload", o.payload_bytes, "Payload bytes (>= 16)")->capture_default_str();
  driver->add_option("--timeout-ms", o.timeout_ms, "A request unanswered this long is lost")->capture_default_str();
  driver->add_option("--cpu", o.cpu, "Pin the driver (and libnats' threads) to this CPU");
  driver->add_option("--seed", o.seed, "Seed of the arrival schedule")->capture_default_str();
  driver->add_option("--max-lag-us", o.max_lag_us, "Send lag p90 above which the run is load_behind")
      ->capture_default_str();
  driver->add_option("--json", o.json_file, "Write the report here");
  CLI11_PARSE(app, argc, argv);
  if (!(o.rate > 0) || o.rate > 10e6) {
    std::fprintf(stderr, "axon-bench-nats: --rate must be in (0, 10,000,000]\n");
    return 2;
  }
  axon::bench::install_stop_handlers();
  int status = worker->parsed() ? run_worker(c, worker_cpu) : run_driver(c, o);
  nats_Close();
  return status;
}

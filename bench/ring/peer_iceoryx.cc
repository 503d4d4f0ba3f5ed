// Peer: iceoryx (Eclipse iceoryx 2.0, Debian's packages) typed publisher/subscriber.
//
// iceoryx cannot use our region: its chunks live in shared memory owned by its broker,
// RouDi, which the driver starts for the iceoryx block of runs and stops afterwards. To
// make it lossless like the rings (so every message can be checked), the publisher waits
// for the consumer (ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER) and the subscriber queue
// blocks the producer (QueueFullPolicy::BLOCK_PRODUCER); its queue holds at most 256
// chunks in this build (MAX_SUBSCRIBER_QUEUE_CAPACITY), not 1024. A push copies the
// message into a loaned chunk and publishes it (publishCopyOf); a pop takes a sample,
// copies it out and releases the chunk. A burst is n single publishes/takes: iceoryx has
// no burst API.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include "bench.h"

#if AXON_BENCH_HAVE_ICEORYX
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/popo/publisher.hpp"
#include "iceoryx_posh/popo/subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

namespace axon::bench {
namespace {

std::size_t area_bytes() {
  return 0;
}
void init(std::byte*) {}

using Pub = iox::popo::Publisher<Msg64>;
using Sub = iox::popo::Subscriber<Msg64>;

iox::capro::ServiceDescription service(std::uint32_t run, int channel) {
  char instance[64];
  // A fresh topic per run, so ports of an earlier (possibly killed) run never connect.
  std::snprintf(instance, sizeof instance, "run%u-ch%d", run, channel);
  return iox::capro::ServiceDescription{"AxonBench", iox::capro::IdString_t(iox::cxx::TruncateToCapacity, instance),
                                        "Msg64"};
}

iox::popo::PublisherOptions pub_options() {
  iox::popo::PublisherOptions o;
  o.historyCapacity = 0;
  o.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
  return o;
}

iox::popo::SubscriberOptions sub_options() {
  iox::popo::SubscriberOptions o;
  o.queueCapacity = iox::MAX_SUBSCRIBER_QUEUE_CAPACITY;
  o.historyRequest = 0;
  o.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
  return o;
}

struct IoxSide {
  using Msg = Msg64;
  Pub out;
  Sub in;
  IoxSide(std::uint32_t run, int role)
      : out(service(run, role == 0 ? 0 : 1), pub_options()), in(service(run, role == 0 ? 1 : 0), sub_options()) {}

  bool connected() const noexcept {
    return out.hasSubscribers() && in.getSubscriptionState() == iox::SubscribeState::SUBSCRIBED;
  }
  bool push1(const Msg& m) noexcept { return !out.publishCopyOf(m).has_error(); }
  bool pop1(Msg& m) noexcept {
    auto taken = in.take();
    if (taken.has_error()) return false;
    m = *taken.value();
    return true;
  }
  std::uint32_t push_burst(const Msg* m, std::uint32_t n) noexcept {
    std::uint32_t i = 0;
    while (i < n && push1(m[i])) ++i;
    return i;
  }
  std::uint32_t pop_burst(Msg* m, std::uint32_t n) noexcept {
    std::uint32_t i = 0;
    while (i < n && pop1(m[i])) ++i;
    return i;
  }
  void after_push() noexcept {}
};

int child(std::byte*, Workload workload, int role, Control& ctl, const Params& p) {
  char name[96];
  std::snprintf(name, sizeof name, "axon-bench-%c-%d", role == 0 ? 'a' : 'b', int(getpid()));
  // iceoryx's default level prints every registration; keep the bench's output clean
  // (setting the level announces itself, so that one line goes to /dev/null).
  {
    std::fflush(nullptr);
    const int saved_out = dup(STDOUT_FILENO);
    const int saved_err = dup(STDERR_FILENO);
    const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      close(null);
    }
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn);
    std::fflush(nullptr);
    if (saved_out >= 0) {
      dup2(saved_out, STDOUT_FILENO);
      close(saved_out);
    }
    if (saved_err >= 0) {
      dup2(saved_err, STDERR_FILENO);
      close(saved_err);
    }
  }
  iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name));
  int rc = 1;
  {
    IoxSide side(p.run_id, role);
    const std::uint64_t limit = std::uint64_t(15e9 * p.tsc_per_ns);
    const std::uint64_t t0 = rdtsc();
    while (!side.connected()) {
      usleep(1000);
      if (rdtsc() - t0 > limit) {
        fail(ctl.role[role], "publisher and subscriber did not connect within 15 s (RouDi discovery)");
        std::exit(1);
      }
    }
    rc = run_role(side, workload, role, ctl, p);
  }
  // exit(), not _exit(): the runtime deregisters from RouDi in its destructor.
  std::exit(rc);
}

}  // namespace

bool iceoryx_built() noexcept {
  return true;
}

Peer iceoryx_peer() {
  return Peer{"iceoryx",
              "iceoryx 2.0 publisher/subscriber",
              "64 B",
              64,
              true,
              true,
              false,
              nullptr,
              &area_bytes,
              &init,
              &child,
              "iceoryx 2.0.3 typed Publisher/Subscriber, publishCopyOf + take, WAIT_FOR_CONSUMER/BLOCK_PRODUCER, "
              "queue 256; chunks live in RouDi's /dev/shm segments (4 KiB pages), not in the hugepage region"};
}

}  // namespace axon::bench

#else

namespace axon::bench {
bool iceoryx_built() noexcept {
  return false;
}
Peer iceoryx_peer() {
  return Peer{"iceoryx", "iceoryx 2.0 publisher/subscriber",
              "64 B",    64,
              true,      true,
              false,     "not built: iceoryx_posh (libiceoryx-posh-dev) was not found at configure time",
              nullptr,   nullptr,
              nullptr,   ""};
}
}  // namespace axon::bench

#endif

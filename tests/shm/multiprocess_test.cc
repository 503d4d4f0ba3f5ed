// Multi-process tests: the data plane (this process) and real worker processes, forked,
// connected through the handoff socket (or an inherited fd), on hugepage segments.
// Covers echo traffic through several workers at once, the AXON_WORKER_FD and
// AXON_WORKER_SOCKET start-up paths, a worker killed with SIGKILL mid-stream (detected,
// its requests reported, its buffers reclaimed, its segment recycled for a successor),
// and a stopped worker that must not stall the producer for the others.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/eventcount.h"
#include "axon/shm/handoff.h"
#include "axon/shm/layout.h"
#include "axon/shm/liveness.h"

#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using namespace std::chrono_literals;
using sdk::Request;
using sdk::Worker;
using test::Child;
using test::Fd;

// One worker slot of the data plane: its channel and the process serving it.
struct Slot {
  std::unique_ptr<WorkerChannel> channel;
  std::unique_ptr<test::SharedFlag> stop = std::make_unique<test::SharedFlag>();
  Child child;
  std::uint32_t initial_free = 0;
};

class MultiProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    auto listener = HandoffListener::listen(dir_.file("workers.sock"));
    ASSERT_TRUE(listener) << listener.message();
    listener_ = std::move(listener).value();
  }

  // A hugepage channel for worker `id`.
  ::testing::AssertionResult add_channel(Slot& slot, std::uint32_t id) {
    auto channel = test::create_hugepage_channel(test::small_channel_options(id));
    if (!channel) return ::testing::AssertionFailure() << channel.message();
    slot.channel = std::make_unique<WorkerChannel>(std::move(channel).value());
    slot.initial_free = slot.channel->free_buffers();
    if (slot.channel->backing() != SegmentBacking::hugetlb_2m) {
      return ::testing::AssertionFailure() << "segment is not on hugepages";
    }
    return ::testing::AssertionSuccess();
  }

  // Forks an echo worker that connects to the listener like a real one, and hands it the
  // slot's segment.
  ::testing::AssertionResult start_echo_worker(Slot& slot) {
    const std::string path = listener_.path();
    const std::atomic<bool>& stop = slot.stop->get();
    slot.child = Child::fork([path, &stop] {
      auto worker = Worker::connect(path, 10'000);
      if (!worker) {
        std::fprintf(stderr, "worker: %s\n", worker.message().c_str());
        return 2;
      }
      return test::run_echo_worker(*worker, stop);
    });
    if (slot.child.pid() <= 0) return ::testing::AssertionFailure() << "fork failed";
    return test::hand_over(listener_, *slot.channel, slot.child.pid());
  }

  // Asks the worker to return from run() and waits for a clean exit.
  static ::testing::AssertionResult stop_worker(Slot& slot) {
    slot.stop->set();
    eventcount_notify(slot.channel->view().header->request_event);  // in case it sleeps
    return test::exited_cleanly(slot.child);
  }

  test::TempDir dir_;
  HandoffListener listener_;
};

// Three workers, each in its own process and segment, echo 4000 requests each while the
// data plane interleaves them; every reply is checked (id echoed, payload copied or
// inverted, handler errors turned into error replies) and every buffer comes back.
TEST_F(MultiProcess, EchoWorkersInSeparateProcesses) {
  constexpr int kWorkers = 3;
  constexpr std::uint32_t kRequests = 4000;
  Slot slots[kWorkers];
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);
  for (int i = 0; i < kWorkers; ++i) {
    ASSERT_TRUE(add_channel(slots[i], std::uint32_t(10 + i)));
    ASSERT_TRUE(start_echo_worker(slots[i]));
    ASSERT_TRUE(watch->watch(slots[i].child.pid(), std::uint64_t(i)));
  }
  std::vector<std::unique_ptr<test::EchoDriver>> drivers;
  std::vector<test::EchoDriver*> all;
  for (int i = 0; i < kWorkers; ++i) {
    drivers.push_back(std::make_unique<test::EchoDriver>(*slots[i].channel, 1'000'000 * (i + 1), kRequests));
    drivers.back()->set_fail_every(101);
    all.push_back(drivers.back().get());
  }
  ASSERT_TRUE(test::drive(all));

  for (int i = 0; i < kWorkers; ++i) {
    SCOPED_TRACE("worker " + std::to_string(10 + i));
    WorkerChannel& ch = *slots[i].channel;
    const SegmentHeader* header = ch.view().header;
    EXPECT_EQ(drivers[i]->completed(), kRequests);
    EXPECT_GT(drivers[i]->loaned_replies(), 0u);
    EXPECT_GT(drivers[i]->in_place_replies(), 0u);
    EXPECT_GT(drivers[i]->handler_errors(), 0u);
    EXPECT_EQ(ch.free_buffers(), slots[i].initial_free) << "every buffer back in the pool";
    EXPECT_EQ(ch.inflight(), 0u);
    EXPECT_EQ(ch.stats().invalid_replies, 0u);
    EXPECT_EQ(ch.stats().torn_replies, 0u);
    EXPECT_EQ(header->worker_state.load(), std::uint32_t(WorkerState::attached));
    EXPECT_EQ(header->worker_pid.load(), std::uint32_t(slots[i].child.pid()));
    EXPECT_EQ(header->requests_handled.load(), kRequests);
  }
  // No worker died during the run.
  std::vector<std::uint64_t> dead;
  EXPECT_EQ(watch->poll(dead, 0), 0u);

  for (int i = 0; i < kWorkers; ++i) {
    ASSERT_TRUE(stop_worker(slots[i]));
    EXPECT_EQ(slots[i].channel->view().header->worker_state.load(), std::uint32_t(WorkerState::detached));
  }
  std::set<std::uint64_t> reported;
  ASSERT_TRUE(test::wait_until([&] {
    watch->poll(dead, 10);
    reported.insert(dead.begin(), dead.end());
    return reported.size() == kWorkers;
  }));
}

// The data plane starts the worker with a connected socket in AXON_WORKER_FD (e.g. via
// systemd or a spawner); the SDK receives the segment on it and closes it.
TEST_F(MultiProcess, WorkerFromEnvironmentFd) {
  Slot slot;
  ASSERT_TRUE(add_channel(slot, 30));
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  Fd data_plane_end(sv[0]);
  Fd worker_end(sv[1]);
  const std::atomic<bool>& stop = slot.stop->get();
  const int inherited = worker_end.get();
  const int other = data_plane_end.get();
  slot.child = Child::fork([inherited, other, &stop] {
    close(other);
    setenv("AXON_WORKER_FD", std::to_string(inherited).c_str(), 1);
    unsetenv("AXON_WORKER_SOCKET");
    auto worker = Worker::from_environment(10'000);
    if (!worker) {
      std::fprintf(stderr, "worker: %s\n", worker.message().c_str());
      return 2;
    }
    if (fcntl(inherited, F_GETFD) != -1) return 3;  // the SDK must close the handoff socket
    if (worker->worker_id() != 30) return 4;
    return test::run_echo_worker(*worker, stop);
  });
  ASSERT_GT(slot.child.pid(), 0);
  worker_end.reset();

  HandoffMessage message;
  message.worker_id = 30;
  message.layout_version = kLayoutVersion;
  message.generation = slot.channel->generation();
  message.segment_size = slot.channel->view().size;
  ASSERT_TRUE(send_segment(data_plane_end.get(), slot.channel->segment_fd(), message));

  test::EchoDriver driver(*slot.channel, 1, 1500);
  ASSERT_TRUE(test::drive({&driver}));
  EXPECT_EQ(slot.channel->free_buffers(), slot.initial_free);
  EXPECT_EQ(slot.channel->view().header->worker_pid.load(), std::uint32_t(slot.child.pid()));
  ASSERT_TRUE(stop_worker(slot));
}

// The other start-up path: AXON_WORKER_SOCKET names the data plane's listener.
TEST_F(MultiProcess, WorkerFromEnvironmentSocketPath) {
  Slot slot;
  ASSERT_TRUE(add_channel(slot, 31));
  const std::string path = listener_.path();
  const std::atomic<bool>& stop = slot.stop->get();
  slot.child = Child::fork([path, &stop] {
    unsetenv("AXON_WORKER_FD");
    setenv("AXON_WORKER_SOCKET", path.c_str(), 1);
    auto worker = Worker::from_environment(10'000);
    if (!worker) {
      std::fprintf(stderr, "worker: %s\n", worker.message().c_str());
      return 2;
    }
    return test::run_echo_worker(*worker, stop);
  });
  ASSERT_GT(slot.child.pid(), 0);
  ASSERT_TRUE(test::hand_over(listener_, *slot.channel, slot.child.pid()));
  test::EchoDriver driver(*slot.channel, 1, 500);
  ASSERT_TRUE(test::drive({&driver}));
  ASSERT_TRUE(stop_worker(slot));
}

// A slow worker that never answers every third request is killed with SIGKILL while
// requests are queued, held and answered. The death watch reports it; reclaim() reports
// exactly the requests that got no reply and returns every buffer (the free count is what
// it was right after create()); the segment's generation moves on; a worker of the old
// generation is refused; and a new worker process attaches to the recycled segment and
// serves traffic.
TEST_F(MultiProcess, KilledWorkerIsDetectedReclaimedAndReplaced) {
  Slot slot;
  ASSERT_TRUE(add_channel(slot, 40));
  WorkerChannel& ch = *slot.channel;
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);

  const std::string path = listener_.path();
  slot.child = Child::fork([path] {
    auto worker = Worker::connect(path, 10'000);
    if (!worker) return 2;
    Request burst[8];
    for (;;) {
      const std::uint32_t n = worker->receive_burst(burst, 8);
      if (n == 0) {
        worker->wait_for_requests(nullptr);
        continue;
      }
      for (std::uint32_t i = 0; i < n; ++i) {
        usleep(300);                                      // slow, so the kill lands mid-stream
        if (burst[i].meta.request_id % 3 == 0) continue;  // taken, never answered
        sdk::ReplyBuffer buffer = worker->in_place(burst[i]);
        for (std::uint32_t b = 0; b < burst[i].length; ++b) buffer.data[b] = ~buffer.data[b];
        (void)worker->try_complete(burst[i], buffer, burst[i].length);
      }
      worker->flush(nullptr);
    }
  });
  ASSERT_GT(slot.child.pid(), 0);
  ASSERT_TRUE(test::hand_over(listener_, ch, slot.child.pid()));
  ASSERT_TRUE(watch->watch(slot.child.pid(), 40));

  // Queue 120 requests (the ring holds 128), then collect replies until at least 20 are in.
  std::set<std::uint64_t> submitted;
  std::set<std::uint64_t> completed;
  for (std::uint64_t base = 0; base < 120; base += 12) {
    OutgoingRequest batch[12];
    for (std::uint32_t i = 0; i < 12; ++i) {
      const std::uint64_t id = 5000 + base + i;
      ASSERT_TRUE(ch.try_alloc(64, batch[i].lease));
      test::fill_pattern(batch[i].lease.data, 64, id);
      batch[i].meta.request_id = id;
      batch[i].meta.user_cookie = id * 7;
      batch[i].meta.tenant_id = 3;
      batch[i].length = 64;
    }
    ASSERT_EQ(ch.try_submit_burst(batch, 12), 12u);
    for (const OutgoingRequest& r : batch) submitted.insert(r.meta.request_id);
  }
  auto collect = [&] {
    Completion done[32];
    const std::uint32_t n = ch.poll_replies(done, 32);
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint64_t id = done[i].user_cookie / 7;  // cookie = request id * 7
      EXPECT_EQ(done[i].reply.request_id, id);
      EXPECT_EQ(test::find_pattern_mismatch(done[i].data, done[i].length, id, true), -1);
      EXPECT_TRUE(completed.insert(id).second) << "request " << id << " twice";
      ch.finish(done[i]);
    }
    return n;
  };
  ASSERT_TRUE(test::wait_until([&] {
    collect();
    return completed.size() >= 20;
  })) << "the worker answered only "
      << completed.size() << " requests";

  slot.child.signal(SIGKILL);
  std::vector<std::uint64_t> dead;
  ASSERT_TRUE(test::wait_until([&] { return watch->poll(dead, 100) > 0; })) << "the death was never reported";
  EXPECT_EQ(dead, std::vector<std::uint64_t>{40});
  auto status = slot.child.wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << test::describe_status(*status);

  // Replies the worker published before dying are genuine: the data plane may use them.
  while (collect() > 0) {
  }
  ASSERT_LT(completed.size(), submitted.size());

  std::vector<LostRequest> lost;
  const std::uint32_t reported = ch.reclaim(lost);
  EXPECT_EQ(reported, lost.size());
  std::set<std::uint64_t> lost_ids;
  for (const LostRequest& l : lost) {
    const std::uint64_t id = l.user_cookie / 7;  // cookie = request id * 7
    EXPECT_EQ(l.user_cookie % 7, 0u);
    EXPECT_TRUE(lost_ids.insert(id).second) << "request " << id << " reported twice";
  }
  std::set<std::uint64_t> unanswered;
  for (std::uint64_t id : submitted) {
    if (completed.count(id) == 0) unanswered.insert(id);
  }
  EXPECT_EQ(lost_ids, unanswered) << "reclaim must report exactly the requests that got no reply";
  for (std::uint64_t id : submitted) {
    if (id % 3 == 0) {
      EXPECT_EQ(lost_ids.count(id), 1u) << "held request " << id << " not reported";
    }
  }
  EXPECT_EQ(ch.free_buffers(), slot.initial_free) << "every buffer of the dead worker back in the pool";
  EXPECT_EQ(ch.free_buffers(), ch.total_buffers() - 8 - 2) << "all but the re-stocked loans are free";
  EXPECT_EQ(ch.inflight(), 0u);
  EXPECT_EQ(ch.generation(), 2u);
  EXPECT_EQ(ch.stats().reclaims, 1u);
  EXPECT_EQ(ch.stats().lost_on_reclaim, lost.size());
  EXPECT_EQ(ch.view().header->worker_state.load(), std::uint32_t(WorkerState::vacant));

  // Whoever still holds the old generation is refused.
  auto stale = Worker::attach(dup(ch.segment_fd()), 1);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.code(), ShmError::generation_mismatch);

  // A successor process attaches to the recycled segment and serves traffic.
  Slot successor;
  successor.channel = std::move(slot.channel);
  successor.initial_free = slot.initial_free;
  ASSERT_TRUE(start_echo_worker(successor));
  test::EchoDriver driver(*successor.channel, 90'000, 2000);
  ASSERT_TRUE(test::drive({&driver}));
  EXPECT_EQ(successor.channel->view().header->worker_generation.load(), 2u);
  EXPECT_EQ(successor.channel->view().header->worker_pid.load(), std::uint32_t(successor.child.pid()));
  EXPECT_EQ(successor.channel->free_buffers(), successor.initial_free);
  ASSERT_TRUE(stop_worker(successor));
}

// Worker A stops consuming (SIGSTOP) while worker B keeps serving. Filling A's request
// ring makes try_submit_burst return short and then 0, counted each time, and never
// blocks: B receives and answers every one of its requests meanwhile. When A resumes, it
// answers everything that was queued for it; nothing was lost.
TEST_F(MultiProcess, StoppedWorkerNeverStallsTheOthers) {
  Slot a, b;
  ASSERT_TRUE(add_channel(a, 50));
  ASSERT_TRUE(add_channel(b, 51));
  ASSERT_TRUE(start_echo_worker(a));
  ASSERT_TRUE(start_echo_worker(b));
  WorkerChannel& ca = *a.channel;
  const std::uint32_t capacity = test::small_geometry().request_capacity;

  test::EchoDriver warm_up(ca, 1, 50);
  ASSERT_TRUE(test::drive({&warm_up})) << "worker A must work before it is stopped";
  a.child.signal(SIGSTOP);
  ASSERT_TRUE(test::wait_until([&] { return test::task_state(a.child.pid()) == 'T'; }))
      << "worker A did not stop (state " << test::task_state(a.child.pid()) << ")";

  std::map<std::uint64_t, std::uint32_t> queued_on_a;  // id -> length
  std::uint64_t next_a = 1000;
  std::uint64_t short_bursts = 0;
  std::uint64_t zero_bursts = 0;
  auto offer_a = [&] {
    OutgoingRequest batch[8];
    std::uint32_t n = 0;
    for (; n < 8; ++n) {
      batch[n] = OutgoingRequest{};
      if (!ca.try_alloc(100, batch[n].lease)) break;
      test::fill_pattern(batch[n].lease.data, 100, next_a + n);
      batch[n].meta.request_id = next_a + n;
      batch[n].meta.user_cookie = ~(next_a + n);
      batch[n].length = 100;
    }
    const std::uint32_t accepted = ca.try_submit_burst(batch, n);
    for (std::uint32_t i = 0; i < accepted; ++i) queued_on_a[batch[i].meta.request_id] = 100;
    for (std::uint32_t i = accepted; i < n; ++i) ca.release(batch[i].lease);
    next_a += accepted;
    if (accepted < n) ++short_bursts;
    if (accepted == 0) ++zero_bursts;
  };

  // B's traffic runs while A is offered a burst on every round.
  test::EchoDriver driver_b(*b.channel, 1'000'000, 3000);
  auto last_progress = std::chrono::steady_clock::now();
  unsigned idle = 0;
  while (!driver_b.done()) {
    offer_a();
    if (driver_b.step()) {
      last_progress = std::chrono::steady_clock::now();
      idle = 0;
    } else {
      ASSERT_LT(std::chrono::steady_clock::now() - last_progress, 20s)
          << "worker B stalled at " << driver_b.completed() << " replies";
      test::backoff(idle++);
    }
  }
  ASSERT_FALSE(driver_b.failed()) << driver_b.error();
  EXPECT_EQ(driver_b.completed(), 3000u);
  EXPECT_EQ(b.channel->free_buffers(), b.initial_free);

  EXPECT_EQ(queued_on_a.size(), capacity) << "A's ring holds exactly its capacity";
  EXPECT_EQ(ca.request_depth(), capacity);
  EXPECT_GE(zero_bursts, 1u);
  EXPECT_EQ(ca.stats().request_ring_full, short_bursts) << "every cut-short burst is counted";
  EXPECT_EQ(ca.free_buffers(), a.initial_free - capacity) << "refused requests' buffers were released";

  // A resumes and answers everything that waited for it.
  a.child.signal(SIGCONT);
  auto a_progress = std::chrono::steady_clock::now();
  while (!queued_on_a.empty()) {
    Completion done[32];
    const std::uint32_t n = ca.poll_replies(done, 32);
    for (std::uint32_t i = 0; i < n; ++i) {
      const Completion& c = done[i];
      const std::uint64_t id = ~c.user_cookie;  // cookie = ~request id
      ASSERT_EQ(queued_on_a.erase(id), 1u) << "unexpected reply " << id;
      ASSERT_EQ(c.reply.request_id, id);
      ASSERT_EQ(c.length, 100u);
      const bool in_place = (c.reply.flags & kFlagReplyInPlace) != 0;
      ASSERT_EQ(test::find_pattern_mismatch(c.data, 100, id, in_place), -1);
      ca.finish(c);
    }
    ca.refill_loans();
    if (n > 0) {
      a_progress = std::chrono::steady_clock::now();
    } else {
      ASSERT_LT(std::chrono::steady_clock::now() - a_progress, 20s) << queued_on_a.size() << " replies missing from A";
      test::backoff(0);
    }
  }
  EXPECT_EQ(ca.free_buffers(), a.initial_free);
  ASSERT_TRUE(stop_worker(a));
  ASSERT_TRUE(stop_worker(b));
}

}  // namespace
}  // namespace axon::shm

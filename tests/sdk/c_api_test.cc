// The worker SDK's C ABI (libaxon_worker.so) against a real data-plane channel in the same
// process: echo through loaned and in-place buffers, every error path a binding relies on,
// and that buffers always come back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "axon/common/clock.h"
#include "axon/shm/channel.h"
#include "axon/shm/handoff.h"

#include "axon_worker.h"

namespace {

using axon::shm::ChannelOptions;
using axon::shm::Completion;
using axon::shm::OutgoingRequest;
using axon::shm::WorkerChannel;

WorkerChannel make_channel() {
  ChannelOptions options;
  options.geometry.small_buffer_count = 64;
  options.geometry.large_buffer_count = 4;
  options.geometry.request_capacity = 16;
  options.geometry.reply_capacity = 16;
  options.geometry.loan_capacity = 8;
  options.small_loans = 4;
  options.large_loans = 1;
  auto channel = WorkerChannel::create(options);
  EXPECT_TRUE(channel.ok()) << (channel.ok() ? "" : channel.message());
  return std::move(channel).value();
}

axon_worker* attach(WorkerChannel& channel) {
  axon_worker* worker = nullptr;
  int rc = axon_worker_attach_fd(dup(channel.segment_fd()), channel.generation(), &worker);
  EXPECT_EQ(rc, AXON_OK) << axon_worker_last_error();
  return worker;
}

void submit(WorkerChannel& channel, std::uint64_t id, const std::string& payload,
            axon::shm::PriorityClass cls = axon::shm::PriorityClass::interactive, std::uint32_t deadline_us = 0,
            std::uint64_t rx_ns = 0) {
  OutgoingRequest request;
  request.meta.priority = std::uint8_t(cls);
  request.meta.deadline_us = deadline_us;
  request.meta.hop_ns[axon::shm::kHopRx] = rx_ns;
  ASSERT_TRUE(channel.try_alloc(std::uint32_t(payload.size()), request.lease));
  std::memcpy(request.lease.data, payload.data(), payload.size());
  request.length = std::uint32_t(payload.size());
  request.meta.request_id = id;
  request.meta.tenant_id = 3;
  request.meta.agent_id = 9;
  ASSERT_EQ(channel.try_submit_burst(&request, 1, cls), 1u);
}

TEST(CApi, VersionAndSizesMatchTheHeader) {
  EXPECT_EQ(axon_worker_abi_version(), AXON_WORKER_ABI_VERSION);
  EXPECT_EQ(axon_worker_request_size(), sizeof(axon_request));
  EXPECT_STREQ(axon_status_name(AXON_ERR_NO_LOAN), "AXON_ERR_NO_LOAN");
}

TEST(CApi, EchoThroughLoanedAndInPlaceBuffers) {
  WorkerChannel channel = make_channel();
  const std::uint32_t free_at_start = channel.free_buffers();
  axon_worker* worker = attach(channel);
  ASSERT_NE(worker, nullptr);
  submit(channel, 1, "loaned reply");
  submit(channel, 2, "in place reply");

  axon_request requests[AXON_WORKER_MAX_BURST];
  ASSERT_EQ(axon_worker_receive_burst(worker, requests, AXON_WORKER_MAX_BURST), 2);
  EXPECT_EQ(requests[0].request_id, 1u);
  EXPECT_EQ(requests[0].tenant_id, 3u);
  EXPECT_EQ(requests[0].agent_id, 9u);

  axon_buffer loan{};
  ASSERT_EQ(axon_worker_loan(worker, requests[0].length, &loan), AXON_OK) << axon_worker_last_error();
  EXPECT_EQ(loan.in_place, 0u);
  std::memcpy(loan.data, requests[0].data, requests[0].length);
  ASSERT_EQ(axon_worker_complete(worker, &requests[0], &loan, requests[0].length, AXON_REPLY_OK), AXON_OK);

  axon_buffer own{};
  ASSERT_EQ(axon_worker_in_place(worker, &requests[1], &own), AXON_OK);
  EXPECT_EQ(own.in_place, 1u);
  ASSERT_EQ(axon_worker_complete(worker, &requests[1], &own, requests[1].length, AXON_REPLY_OK), AXON_OK);
  ASSERT_EQ(axon_worker_flush(worker, nullptr), AXON_OK);

  Completion done[4];
  ASSERT_EQ(channel.poll_replies(done, 4), 2u);
  EXPECT_EQ(done[0].reply.request_id, 1u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(done[0].data), done[0].length), "loaned reply");
  EXPECT_NE(done[0].reply_buffer, done[0].request_buffer);
  EXPECT_EQ(done[1].reply.request_id, 2u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(done[1].data), done[1].length), "in place reply");
  EXPECT_EQ(done[1].reply_buffer, done[1].request_buffer);
  for (auto& c : done) {
    if (c.data != nullptr) channel.finish(c);
  }
  channel.refill_loans();
  EXPECT_EQ(channel.free_buffers(), free_at_start);
  EXPECT_EQ(channel.stats().invalid_replies, 0u);

  axon_worker_stats stats{};
  ASSERT_EQ(axon_worker_get_stats(worker, &stats), AXON_OK);
  EXPECT_EQ(stats.received, 2u);
  EXPECT_EQ(stats.completed, 2u);
  axon_worker_close(worker);
}

// The C ABI hands requests out in class order (interactive first, one background after every
// `background_every` interactive ones, background earliest deadline first), answers an expired
// one itself, and reports all of it in axon_worker_stats.
TEST(CApi, ReceiveIsInClassOrderWithTheConfiguredShare) {
  using axon::shm::PriorityClass;
  WorkerChannel channel = make_channel();
  axon_worker* worker = attach(channel);
  ASSERT_NE(worker, nullptr);
  EXPECT_EQ(axon_worker_set_background_every(worker, (1u << 20) + 1), AXON_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(axon_worker_set_background_every(worker, 2), AXON_OK);
  const std::uint64_t now = axon::monotonic_ns();
  submit(channel, 100, "late", PriorityClass::background, 3'000'000, now);
  submit(channel, 101, "soon", PriorityClass::background, 1'000'000, now);
  submit(channel, 102, "expired", PriorityClass::background, 1000, now - 50'000'000);
  for (std::uint64_t id = 1; id <= 5; ++id) submit(channel, id, "i", PriorityClass::interactive);

  axon_request requests[AXON_WORKER_MAX_BURST];
  const int n = axon_worker_receive_burst(worker, requests, AXON_WORKER_MAX_BURST);
  ASSERT_EQ(n, 7) << axon_worker_last_error();
  std::vector<std::uint64_t> order;
  for (int i = 0; i < n; ++i) order.push_back(requests[i].request_id);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{1, 2, 101, 3, 4, 100, 5}));
  EXPECT_EQ(requests[2].priority, 1u);
  for (int i = 0; i < n; ++i) {
    axon_buffer own{};
    ASSERT_EQ(axon_worker_in_place(worker, &requests[i], &own), AXON_OK);
    ASSERT_EQ(axon_worker_complete(worker, &requests[i], &own, 0, AXON_REPLY_OK), AXON_OK);
  }
  ASSERT_EQ(axon_worker_flush(worker, nullptr), AXON_OK);
  Completion done[16];
  const std::uint32_t replies = channel.poll_replies(done, 16);
  ASSERT_EQ(replies, 8u);
  std::uint32_t deadline_replies = 0;
  for (std::uint32_t i = 0; i < replies; ++i) {
    if (done[i].status == axon::shm::ReplyStatus::deadline_exceeded) {
      ++deadline_replies;
      EXPECT_EQ(done[i].reply.request_id, 102u);
    }
    channel.finish(done[i]);
  }
  EXPECT_EQ(deadline_replies, 1u);

  axon_worker_stats stats{};
  ASSERT_EQ(axon_worker_get_stats(worker, &stats), AXON_OK);
  EXPECT_EQ(stats.interactive, 5u);
  EXPECT_EQ(stats.background, 2u);
  EXPECT_EQ(stats.deadline_expired, 1u);
  EXPECT_EQ(stats.background_forced, 2u);
  EXPECT_EQ(stats.background_every, 2u);
  axon_worker_close(worker);
}

TEST(CApi, AttachErrorsSayWhatIsWrong) {
  axon_worker* worker = nullptr;
  EXPECT_EQ(axon_worker_attach_fd(-1, 0, &worker), AXON_ERR_BAD_FD);
  EXPECT_EQ(worker, nullptr);
  EXPECT_NE(std::string(axon_worker_last_error()).find("fd"), std::string::npos) << axon_worker_last_error();

  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  close(pipe_fds[1]);
  EXPECT_EQ(axon_worker_attach_fd(pipe_fds[0], 0, &worker), AXON_ERR_BAD_FD);  // takes ownership of the fd

  WorkerChannel channel = make_channel();
  EXPECT_EQ(axon_worker_attach_fd(dup(channel.segment_fd()), channel.generation() + 7, &worker),
            AXON_ERR_GENERATION_MISMATCH);
  EXPECT_NE(std::string(axon_worker_last_error()).find("generation"), std::string::npos);

  EXPECT_EQ(axon_worker_connect("/nonexistent/axon.sock", 50, &worker), AXON_ERR_HANDOFF_FAILED);
  EXPECT_EQ(worker, nullptr);
}

TEST(CApi, ForgedRequestAndExhaustedLoansAreRefused) {
  WorkerChannel channel = make_channel();
  axon_worker* worker = attach(channel);
  ASSERT_NE(worker, nullptr);
  submit(channel, 5, "x");
  axon_request request;
  ASSERT_EQ(axon_worker_receive_burst(worker, &request, 1), 1);

  // internal_ holds the descriptor (16 words), then the owning handle and a tag: a struct
  // that did not come from this worker's receive is refused before it reaches the ring.
  // (A forged descriptor inside an intact struct is the data plane's to reject: it
  // validates every reply against its own in-flight table, see tests/shm.)
  axon_request forged = request;
  forged.internal_[18] ^= 0x5a5a5a5a;
  axon_buffer own{};
  ASSERT_EQ(axon_worker_in_place(worker, &request, &own), AXON_OK);
  EXPECT_EQ(axon_worker_complete(worker, &forged, &own, 1, AXON_REPLY_OK), AXON_ERR_INVALID_ARGUMENT);
  axon_worker* other = attach(channel);
  axon_request foreign = request;
  EXPECT_EQ(axon_worker_complete(other, &foreign, &own, 1, AXON_REPLY_OK), AXON_ERR_INVALID_ARGUMENT);
  axon_worker_close(other);

  // Four small loans are stocked; the fifth small one borrows the large loan, the sixth fails.
  axon_buffer loans[6];
  int ok = 0;
  int refused = 0;
  for (auto& loan : loans) {
    int rc = axon_worker_loan(worker, 16, &loan);
    if (rc == AXON_OK) ++ok;
    if (rc == AXON_ERR_NO_LOAN) ++refused;
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(refused, 1);

  // The genuine request still completes, so nothing is left unanswered.
  ASSERT_EQ(axon_worker_complete(worker, &request, &own, 1, AXON_REPLY_OK), AXON_OK);
  ASSERT_EQ(axon_worker_flush(worker, nullptr), AXON_OK);
  Completion done;
  ASSERT_EQ(channel.poll_replies(&done, 1), 1u);
  channel.finish(done);
  axon_worker_close(worker);

  // The worker is gone: reclaim brings the loans it never used back.
  std::vector<axon::shm::LostRequest> lost;
  channel.reclaim(lost);
  EXPECT_TRUE(lost.empty());
  EXPECT_EQ(channel.free_buffers() + 5u, channel.total_buffers());  // 4 small + 1 large restocked
}

// A stand-in data plane on a real handoff socket: refuses the first `refusals` workers
// (accept + close, as axon-dataplane does for an occupied or dying slot), then hands the
// segment over naming `sender_pid` as the data plane.
class FakeHandoff {
 public:
  FakeHandoff(WorkerChannel& channel, int refusals, pid_t sender_pid)
      : path_("/tmp/axon-capi-test-" + std::to_string(getpid()) + ".sock") {
    auto listener = axon::shm::HandoffListener::listen(path_);
    EXPECT_TRUE(listener.ok()) << (listener.ok() ? "" : listener.message());
    listener_ = std::move(listener).value();
    thread_ = std::thread([this, &channel, refusals, sender_pid] {
      for (int i = 0; i <= refusals; ++i) {
        auto conn = listener_.accept(10000);
        if (!conn) return;
        if (i < refusals) {
          close(conn.value());
          continue;
        }
        axon::shm::HandoffMessage message;
        message.generation = channel.generation();
        message.segment_size = channel.view().size;
        message.sender_pid = sender_pid;
        (void)axon::shm::send_segment(conn.value(), channel.segment_fd(), message);
        close(conn.value());
      }
    });
  }
  ~FakeHandoff() { thread_.join(); }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
  axon::shm::HandoffListener listener_;
  std::thread thread_;
};

TEST(CApi, ConnectRetriesARefusedHandoffWithinItsBudget) {
  WorkerChannel channel = make_channel();
  {
    FakeHandoff handoff(channel, 3, 0);
    axon_worker* worker = nullptr;
    ASSERT_EQ(axon_worker_connect(handoff.path().c_str(), 5000, &worker), AXON_OK) << axon_worker_last_error();
    axon_worker_close(worker);
  }
  {
    // Refused more often than a 50 ms budget allows: a clear error, not a hang.
    FakeHandoff handoff(channel, 20, 0);
    axon_worker* worker = nullptr;
    EXPECT_EQ(axon_worker_connect(handoff.path().c_str(), 50, &worker), AXON_ERR_HANDOFF_FAILED);
    EXPECT_NE(std::string(axon_worker_last_error()).find("refused the handoff"), std::string::npos)
        << axon_worker_last_error();
    // Let the stand-in finish: connect until it stops accepting (each is refused).
    for (int i = 0; i < 100; ++i) {
      if (axon_worker_connect(handoff.path().c_str(), 0, &worker) == AXON_OK) {
        axon_worker_close(worker);
        break;
      }
    }
  }
}

int exit_handler(axon_worker*, const axon_request*, axon_reply*, void*) {
  return 0;
}

TEST(CApi, WaitAndRunReportTheDataPlaneExiting) {
  WorkerChannel channel = make_channel();
  const std::string path = "/tmp/axon-capi-exit-" + std::to_string(getpid()) + ".sock";
  unlink(path.c_str());
  // A child process plays the data plane: it listens, hands the segment over naming itself
  // (as axon-dataplane does), and stays until killed.
  pid_t dataplane = fork();
  ASSERT_GE(dataplane, 0);
  if (dataplane == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a failed test
    auto listener = axon::shm::HandoffListener::listen(path);
    if (!listener) _exit(1);
    auto conn = listener->accept(10000);
    if (!conn) _exit(2);
    axon::shm::HandoffMessage message;
    message.generation = channel.generation();
    message.segment_size = channel.view().size;
    message.sender_pid = getpid();
    if (!axon::shm::send_segment(conn.value(), channel.segment_fd(), message)) _exit(3);
    for (;;) pause();
  }
  axon_worker* worker = nullptr;
  ASSERT_EQ(axon_worker_connect(path.c_str(), 5000, &worker), AXON_OK) << axon_worker_last_error();
  ASSERT_EQ(axon_worker_set_wait_policy(worker, 1, 1, 5'000'000), AXON_OK);
  EXPECT_EQ(axon_worker_wait(worker, nullptr), 0) << "the data plane is alive: a plain timeout";
  kill(dataplane, SIGKILL);
  ASSERT_EQ(waitpid(dataplane, nullptr, 0), dataplane);
  int rc = 0;
  for (int i = 0; i < 400 && rc == 0; ++i) rc = axon_worker_wait(worker, nullptr);
  EXPECT_EQ(rc, AXON_ERR_DATAPLANE_EXITED) << axon_worker_last_error();
  EXPECT_STREQ(axon_status_name(rc), "AXON_ERR_DATAPLANE_EXITED");
  volatile int stop = 0;
  EXPECT_EQ(axon_worker_run(worker, exit_handler, nullptr, &stop), AXON_ERR_DATAPLANE_EXITED);
  axon_worker_close(worker);
  unlink(path.c_str());  // the killed child could not remove its socket
}

}  // namespace

// The worker SDK's C ABI (libaxon_worker.so) against a real data-plane channel in the same
// process: echo through loaned and in-place buffers, every error path a binding relies on,
// and that buffers always come back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "axon/shm/channel.h"

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

void submit(WorkerChannel& channel, std::uint64_t id, const std::string& payload) {
  OutgoingRequest request;
  ASSERT_TRUE(channel.try_alloc(std::uint32_t(payload.size()), request.lease));
  std::memcpy(request.lease.data, payload.data(), payload.size());
  request.length = std::uint32_t(payload.size());
  request.meta.request_id = id;
  request.meta.tenant_id = 3;
  request.meta.agent_id = 9;
  ASSERT_EQ(channel.try_submit_burst(&request, 1), 1u);
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
  EXPECT_EQ(done[0].request_id, 1u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(done[0].data), done[0].length), "loaned reply");
  EXPECT_NE(done[0].reply_buffer, done[0].request_buffer);
  EXPECT_EQ(done[1].request_id, 2u);
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

}  // namespace

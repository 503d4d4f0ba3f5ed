// The Python SDK hands trace context to handlers like the C++ one (docs/protocol.md §5): a
// real python3 process attaches (sdk/python/axon_worker.py over libaxon_worker.so) to a
// segment this test creates, and its handler answers with the traceparent strings and fields
// it read; the reply descriptor carries the handler's span that the handler saw.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "axon/shm/channel.h"

namespace {

using axon::shm::ChannelOptions;
using axon::shm::Completion;
using axon::shm::OutgoingRequest;
using axon::shm::WorkerChannel;

const std::uint8_t kTraceId[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                   0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
const std::uint8_t kSpan[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};

void submit(WorkerChannel& channel, std::uint64_t id, bool traced, std::uint8_t flags) {
  OutgoingRequest request;
  ASSERT_TRUE(channel.try_alloc(8, request.lease));
  request.length = 8;
  request.meta.request_id = id;
  request.meta.user_cookie = id;
  request.meta.trace_flags = flags;
  if (traced) {
    std::memcpy(request.meta.trace_id, kTraceId, 16);
    std::memcpy(request.meta.parent_span_id, kSpan, 8);
  }
  ASSERT_EQ(channel.try_submit_burst(&request, 1, axon::shm::PriorityClass::interactive), 1u);
}

std::string hex(const std::uint8_t* bytes, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 0xf];
  }
  return out;
}

TEST(PythonTrace, HandlerReadsTraceparentAndItsSpanGoesBackInTheReply) {
  ChannelOptions options;
  options.geometry.small_buffer_count = 64;
  options.geometry.large_buffer_count = 4;
  options.geometry.request_capacity = 16;
  options.geometry.reply_capacity = 16;
  options.geometry.loan_capacity = 8;
  options.small_loans = 4;
  options.large_loans = 1;
  auto created = WorkerChannel::create(options);
  ASSERT_TRUE(created) << created.message();
  WorkerChannel channel = std::move(created).value();
  submit(channel, 1, true, 0x01);   // sampled
  submit(channel, 2, true, 0x00);   // traced, not sampled
  submit(channel, 3, false, 0x00);  // no trace context

  const int fd = fcntl(channel.segment_fd(), F_DUPFD, 10);
  ASSERT_GE(fd, 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("AXON_WORKER_LIB", AXON_TEST_WORKER_LIB, 1);
    const std::string fd_text = std::to_string(fd);
    execl(AXON_TEST_PYTHON, AXON_TEST_PYTHON, AXON_TEST_SCRIPT, fd_text.c_str(), "3", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fd);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "python worker status " << status;

  Completion done[8];
  const std::uint32_t n = channel.poll_replies(done, 8);
  ASSERT_EQ(n, 3u);
  std::map<std::uint64_t, std::string> seen;
  for (std::uint32_t i = 0; i < n; ++i) {
    const Completion& c = done[i];
    const std::string text(reinterpret_cast<const char*>(c.data), c.length);
    const std::string span = hex(c.reply.span_id, 8);
    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    switch (c.reply.request_id) {
      case 1:
        ASSERT_NE(span, "0000000000000000");
        EXPECT_EQ(text, "00-" + trace + "-00f067aa0ba902b7-01 00-" + trace + "-" + span + "-01 1 1 " + span);
        break;
      case 2:
        ASSERT_NE(span, "0000000000000000");
        EXPECT_EQ(text, "00-" + trace + "-00f067aa0ba902b7-00 00-" + trace + "-" + span + "-00 0 1 " + span);
        break;
      case 3:
        EXPECT_EQ(span, "0000000000000000");
        EXPECT_EQ(text, "- - 0 0 0000000000000000");
        break;
      default: ADD_FAILURE() << "unexpected reply " << c.reply.request_id;
    }
    seen[c.reply.request_id] = span;
    channel.finish(done[i]);
  }
  EXPECT_NE(seen[1], seen[2]) << "each request has its own span";
}

}  // namespace

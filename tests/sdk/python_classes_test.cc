// The Python SDK serves priority classes like the C++ one: a real python3 process attaches
// (through sdk/python/axon_worker.py and libaxon_worker.so) to a segment whose two request
// rings hold interactive and background requests, and its handler sees them interactive
// first, with one background request after every `background_every` interactive ones and
// background earliest deadline first; an expired request never reaches it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "axon/common/clock.h"
#include "axon/shm/channel.h"

namespace {

using axon::shm::ChannelOptions;
using axon::shm::Completion;
using axon::shm::OutgoingRequest;
using axon::shm::PriorityClass;
using axon::shm::ReplyStatus;
using axon::shm::WorkerChannel;

void submit(WorkerChannel& channel, std::uint64_t id, PriorityClass cls, std::uint32_t deadline_us,
            std::uint64_t rx_ns) {
  OutgoingRequest request;
  ASSERT_TRUE(channel.try_alloc(8, request.lease));
  request.length = 8;
  request.meta.request_id = id;
  request.meta.user_cookie = id;
  request.meta.priority = std::uint8_t(cls);
  request.meta.deadline_us = deadline_us;
  request.meta.hop_ns[axon::shm::kHopRx] = rx_ns;
  ASSERT_EQ(channel.try_submit_burst(&request, 1, cls), 1u);
}

TEST(PythonClasses, HandlerSeesClassOrderShareAndDeadlineOrder) {
  ChannelOptions options;
  options.geometry.small_buffer_count = 64;
  options.geometry.large_buffer_count = 4;
  options.geometry.request_capacity = 16;
  options.geometry.reply_capacity = 64;
  options.geometry.loan_capacity = 8;
  options.small_loans = 4;
  options.large_loans = 1;
  auto created = WorkerChannel::create(options);
  ASSERT_TRUE(created) << created.message();
  WorkerChannel channel = std::move(created).value();

  const std::uint64_t now = axon::monotonic_ns();
  for (std::uint64_t id = 1; id <= 6; ++id) submit(channel, id, PriorityClass::interactive, 0, now);
  submit(channel, 200, PriorityClass::background, 0, now);                  // no deadline: last
  submit(channel, 201, PriorityClass::background, 9'000'000, now);          // 9 s
  submit(channel, 202, PriorityClass::background, 1000, now - 50'000'000);  // already expired
  submit(channel, 203, PriorityClass::background, 2'000'000, now);          // 2 s

  // The segment fd goes to the child without O_CLOEXEC, at a number the script is told.
  const int fd = fcntl(channel.segment_fd(), F_DUPFD, 10);
  ASSERT_GE(fd, 0);
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    setenv("AXON_WORKER_LIB", AXON_TEST_WORKER_LIB, 1);
    const std::string fd_text = std::to_string(fd);
    // 6 interactive and 3 live background requests; every = 2; expected counters 6, 3, 1.
    execl(AXON_TEST_PYTHON, AXON_TEST_PYTHON, AXON_TEST_SCRIPT, fd_text.c_str(), "2", "9", "6", "3", "1",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fd);
  close(out[1]);
  std::string printed;
  char buf[256];
  ssize_t got;
  while ((got = read(out[0], buf, sizeof buf)) > 0) printed.append(buf, std::size_t(got));
  close(out[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "python worker status " << status;

  // What the handler saw, in order (printed by the script).
  EXPECT_EQ(printed, "1 2 203 3 4 201 5 6 200\n");
  // And the replies: nine ok, one deadline_exceeded for 202 from the SDK.
  Completion done[16];
  const std::uint32_t n = channel.poll_replies(done, 16);
  ASSERT_EQ(n, 10u);
  std::vector<std::uint64_t> expired;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (done[i].status == ReplyStatus::deadline_exceeded) expired.push_back(done[i].user_cookie);
    channel.finish(done[i]);
  }
  EXPECT_EQ(expired, std::vector<std::uint64_t>{202});
}

}  // namespace

// Tests of segment geometry, attach-time validation, fd handoff and death watching:
// everything a worker or the data plane can be handed wrongly must fail with a clear
// error (the right code, and a message naming what was wrong), never crash, and never
// leak the descriptor it was given.
#include "axon/shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/handoff.h"
#include "axon/shm/layout.h"
#include "axon/shm/liveness.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using sdk::Worker;
using test::Child;
using test::Fd;
using ::testing::HasSubstr;

SegmentGeometry tiny_geometry() {
  SegmentGeometry g;
  g.request_capacity = 16;
  g.reply_capacity = 16;
  g.loan_capacity = 4;
  g.small_buffer_size = 256;
  g.small_buffer_count = 16;
  g.large_buffer_size = 4096;
  g.large_buffer_count = 4;
  return g;
}

// A memfd of `size` bytes, formatted as a segment when `format`, then sealed when `seal`
// the way Region::create seals it.
Fd make_memfd(std::size_t size, bool format, bool seal, std::size_t format_size = 0) {
  Fd fd(memfd_create("axon-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_GE(fd.get(), 0) << std::strerror(errno);
  EXPECT_EQ(ftruncate(fd.get(), off_t(size)), 0) << std::strerror(errno);
  if (format) {
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    EXPECT_NE(base, MAP_FAILED);
    auto view = format_segment(static_cast<std::byte*>(base), format_size != 0 ? format_size : size, tiny_geometry(), 3,
                               -1, SegmentBacking::shmem_4k, 1);
    EXPECT_TRUE(view) << view.message();
    munmap(base, size);
  }
  if (seal) {
    EXPECT_EQ(fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
  }
  return fd;
}

std::size_t tiny_size() {
  return (segment_bytes(tiny_geometry()) + 4095) / 4096 * 4096;
}

// --- geometry

TEST(Geometry, DefaultsAreValid) {
  EXPECT_TRUE(check_geometry(SegmentGeometry{}));
  EXPECT_TRUE(check_geometry(test::small_geometry()));
}

TEST(Geometry, RejectsRingCapacitiesThatAreNotPowersOfTwo) {
  for (std::uint32_t bad : {0u, 1u, 3u, 1000u, 1025u}) {
    SegmentGeometry g;
    g.request_capacity = bad;
    auto checked = check_geometry(g);
    ASSERT_FALSE(checked) << bad;
    EXPECT_EQ(checked.code(), ShmError::invalid_argument);
    EXPECT_THAT(checked.message(), HasSubstr("powers of two"));
    EXPECT_THAT(checked.message(), HasSubstr("request " + std::to_string(bad)));
  }
  SegmentGeometry reply;
  reply.reply_capacity = 6;
  EXPECT_THAT(check_geometry(reply).message(), HasSubstr("reply 6"));
  SegmentGeometry loan;
  loan.loan_capacity = 12;
  EXPECT_THAT(check_geometry(loan).message(), HasSubstr("loan 12"));
}

TEST(Geometry, RejectsBadBufferSizesAndCounts) {
  SegmentGeometry g;
  g.small_buffer_size = 100;  // not a multiple of 64
  EXPECT_EQ(check_geometry(g).code(), ShmError::invalid_argument);
  EXPECT_THAT(check_geometry(g).message(), HasSubstr("small 100"));
  g = SegmentGeometry{};
  g.large_buffer_size = 1024;  // smaller than the small class
  EXPECT_THAT(check_geometry(g).message(), HasSubstr("large >= small"));
  g = SegmentGeometry{};
  g.small_buffer_size = 0;
  EXPECT_FALSE(check_geometry(g));
  g = SegmentGeometry{};
  g.large_buffer_count = 0;
  EXPECT_THAT(check_geometry(g).message(), HasSubstr("at least one buffer"));
  g = SegmentGeometry{};
  g.large_buffer_size = 1u << 20;
  g.large_buffer_count = 5000;  // ~5 GiB: offsets would not fit in 32 bits
  EXPECT_THAT(check_geometry(g).message(), HasSubstr("4 GiB"));
}

TEST(Geometry, ChannelRefusesBadGeometryAndLoanTargets) {
  ChannelOptions options = test::small_channel_options(1);
  options.geometry.request_capacity = 100;
  auto bad = WorkerChannel::create(options);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.code(), ShmError::invalid_argument);
  EXPECT_THAT(bad.message(), HasSubstr("powers of two"));

  options = test::small_channel_options(1);
  options.small_loans = options.geometry.loan_capacity + 1;
  EXPECT_THAT(WorkerChannel::create(options).message(), HasSubstr("loan_capacity"));

  options = test::small_channel_options(1);
  options.geometry.large_buffer_count = 2;
  options.large_loans = 2;  // would loan out every large buffer
  EXPECT_THAT(WorkerChannel::create(options).message(), HasSubstr("leave buffers for requests"));
}

TEST(Geometry, FormatRefusesARegionTooSmall) {
  std::vector<std::byte> memory(4096);
  auto view = format_segment(memory.data(), memory.size(), tiny_geometry(), 1, -1, SegmentBacking::shmem_4k, 1);
  ASSERT_FALSE(view);
  EXPECT_EQ(view.code(), ShmError::invalid_argument);
  EXPECT_THAT(view.message(), HasSubstr("too small"));
}

// validate_segment() must refuse every header whose offsets or sizes do not fit the
// region, before any of it is dereferenced.
class CorruptHeader : public ::testing::Test {
 protected:
  void SetUp() override {
    memory_.assign(tiny_size() + 128, std::byte{0});
    base_ = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(memory_.data()) + 127) / 128 * 128);
    auto view = format_segment(base_, tiny_size(), tiny_geometry(), 1, -1, SegmentBacking::shmem_4k, 1);
    ASSERT_TRUE(view) << view.message();
    view_ = view.value();
  }
  ShmResult<SegmentView> validate() { return validate_segment(base_, tiny_size()); }

  std::vector<std::byte> memory_;
  std::byte* base_ = nullptr;
  SegmentView view_{};
};

TEST_F(CorruptHeader, IntactSegmentValidates) {
  EXPECT_TRUE(validate());
}

TEST_F(CorruptHeader, RingOffsetOutsideTheSegment) {
  view_.header->reply_ring_offset = tiny_size();
  auto v = validate();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.code(), ShmError::corrupt_geometry);
  EXPECT_THAT(v.message(), HasSubstr("reply ring header lies outside"));
  view_.header->reply_ring_offset = ~std::uint64_t{0} & ~std::uint64_t{127};
  EXPECT_EQ(validate().code(), ShmError::corrupt_geometry);
}

TEST_F(CorruptHeader, MisalignedRingOffset) {
  view_.header->request_ring_offset += 8;
  EXPECT_EQ(validate().code(), ShmError::corrupt_geometry);
}

TEST_F(CorruptHeader, RingCapacityNotAPowerOfTwo) {
  view_.request_ring->geometry.capacity = 12;
  auto v = validate();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.code(), ShmError::corrupt_geometry);
  EXPECT_THAT(v.message(), HasSubstr("capacity 12"));
}

TEST_F(CorruptHeader, RingSlotsRunPastTheEnd) {
  view_.small_loan_ring->geometry.capacity = 1u << 30;
  EXPECT_EQ(validate().code(), ShmError::corrupt_geometry);
}

TEST_F(CorruptHeader, WrongSlotSize) {
  view_.large_loan_ring->geometry.slot_size = sizeof(Descriptor);
  auto v = validate();
  EXPECT_EQ(v.code(), ShmError::corrupt_geometry);
  EXPECT_THAT(v.message(), HasSubstr("large loan ring"));
}

TEST_F(CorruptHeader, SlabOutsideTheSegment) {
  view_.header->large.count = 1u << 20;
  auto v = validate();
  EXPECT_EQ(v.code(), ShmError::corrupt_geometry);
  EXPECT_THAT(v.message(), HasSubstr("slab"));
  view_.header->large.count = tiny_geometry().large_buffer_count;
  view_.header->small.offset = tiny_size() - 64;
  EXPECT_EQ(validate().code(), ShmError::corrupt_geometry);
}

TEST_F(CorruptHeader, HeaderSizeField) {
  view_.header->header_size = 64;
  EXPECT_EQ(validate().code(), ShmError::truncated);
}

// --- attach errors, through the SDK entry point a worker uses

// Every error path of Worker::attach owns the fd it was given: none may leak it.
class Attach : public ::testing::Test {
 protected:
  void SetUp() override { fds_before_ = test::open_fd_count(); }
  void TearDown() override { EXPECT_EQ(test::open_fd_count(), fds_before_) << "a descriptor leaked"; }
  int fds_before_ = 0;
};

TEST_F(Attach, MinusOneIsBadFd) {
  auto worker = Worker::attach(-1);
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_fd);
  EXPECT_THAT(worker.message(), HasSubstr("fd -1 is not open"));
}

TEST_F(Attach, ClosedFdIsBadFd) {
  int fd = memfd_create("axon-closed", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(close(fd), 0);
  auto worker = Worker::attach(fd);
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_fd);
  EXPECT_THAT(worker.message(), HasSubstr("fd " + std::to_string(fd) + " is not open"));
}

TEST_F(Attach, RegularFileIsBadFd) {
  test::TempDir dir;
  const std::string path = dir.file("not-a-segment");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, off_t(tiny_size())), 0);
  auto worker = Worker::attach(fd);
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_fd);
  EXPECT_THAT(worker.message(), HasSubstr("not a sealed axon memfd"));
}

TEST_F(Attach, PipeIsBadFd) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  Fd write_end(pipe_fds[1]);
  auto worker = Worker::attach(pipe_fds[0]);
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_fd);
  EXPECT_THAT(worker.message(), HasSubstr("not a sealed axon memfd"));
}

// A well-formed segment in a memfd that can still be shrunk: a peer could truncate it
// and SIGBUS us, so it is refused even though its contents are fine.
TEST_F(Attach, UnsealedMemfdIsBadFd) {
  Fd fd = make_memfd(tiny_size(), /*format=*/true, /*seal=*/false);
  auto worker = Worker::attach(fd.release());
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_fd);
  EXPECT_THAT(worker.message(), HasSubstr("not a sealed axon memfd"));
}

TEST_F(Attach, SealedMemfdSmallerThanHeaderIsTruncated) {
  Fd fd = make_memfd(64, /*format=*/false, /*seal=*/true);
  auto worker = Worker::attach(fd.release());
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::truncated);
  EXPECT_THAT(worker.message(), HasSubstr("segment is 64 bytes"));
  EXPECT_THAT(worker.message(), HasSubstr(std::to_string(sizeof(SegmentHeader)) + "-byte header"));

  Fd empty = make_memfd(0, /*format=*/false, /*seal=*/true);
  EXPECT_EQ(Worker::attach(empty.release()).code(), ShmError::truncated);
}

// The header says the segment is smaller than what is mapped (or larger): either the
// file was cut or the header is not for this file.
TEST_F(Attach, HeaderSizeDifferentFromMappedSizeIsTruncated) {
  const std::size_t formatted = tiny_size();
  Fd bigger = make_memfd(formatted + 4096, /*format=*/true, /*seal=*/true, formatted);
  auto worker = Worker::attach(bigger.release());
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::truncated);
  EXPECT_THAT(worker.message(), HasSubstr("claims " + std::to_string(formatted) + " bytes"));
  EXPECT_THAT(worker.message(), HasSubstr(std::to_string(formatted + 4096) + " are mapped"));

  // A header claiming more than the file holds (the tail was cut before sealing).
  Fd cut = make_memfd(formatted, /*format=*/true, /*seal=*/false);
  ASSERT_EQ(ftruncate(cut.get(), off_t(formatted - 4096)), 0);
  ASSERT_EQ(fcntl(cut.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  auto shorter = Worker::attach(cut.release());
  ASSERT_FALSE(shorter);
  EXPECT_EQ(shorter.code(), ShmError::truncated);
  EXPECT_THAT(shorter.message(), HasSubstr("claims " + std::to_string(formatted)));
}

TEST_F(Attach, ZeroedSegmentHasBadMagic) {
  Fd fd = make_memfd(tiny_size(), /*format=*/false, /*seal=*/true);
  auto worker = Worker::attach(fd.release());
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_magic);
  EXPECT_THAT(worker.message(), HasSubstr("not an axon segment (magic 0x0000000000000000)"));
}

TEST_F(Attach, ForeignMagicIsNamed) {
  Fd fd = make_memfd(tiny_size(), /*format=*/true, /*seal=*/true);
  void* base = mmap(nullptr, tiny_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(base, MAP_FAILED);
  static_cast<SegmentHeader*>(base)->magic = 0x1122334455667788ull;
  munmap(base, tiny_size());
  auto worker = Worker::attach(fd.release());
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::bad_magic);
  EXPECT_THAT(worker.message(), HasSubstr("1122334455667788"));
}

// The real thing: a hugepage channel whose header announces a newer layout. The error
// names both versions so the operator knows which side to upgrade.
TEST_F(Attach, LayoutVersionMismatchNamesBothVersions) {
  auto channel = test::create_hugepage_channel(test::small_channel_options(4));
  ASSERT_TRUE(channel) << channel.message();
  SegmentHeader* header = channel->view().header;
  header->layout_version = kLayoutVersion + 1;
  auto worker = Worker::attach(dup(channel->segment_fd()));
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::version_mismatch);
  EXPECT_THAT(worker.message(), HasSubstr("segment layout version " + std::to_string(kLayoutVersion + 1)));
  EXPECT_THAT(worker.message(), HasSubstr("speaks version " + std::to_string(kLayoutVersion)));
  EXPECT_STREQ(to_string(worker.code()), "version_mismatch");
  // A failed attach leaves no trace in the segment.
  EXPECT_EQ(header->worker_state.load(), std::uint32_t(WorkerState::vacant));

  header->layout_version = kLayoutVersion;
  auto fine = Worker::attach(dup(channel->segment_fd()));
  ASSERT_TRUE(fine) << fine.message();
  EXPECT_EQ(header->worker_state.load(), std::uint32_t(WorkerState::attached));
  EXPECT_EQ(header->worker_pid.load(), std::uint32_t(getpid()));
  EXPECT_EQ(fine->backing(), SegmentBacking::hugetlb_2m);
}

TEST_F(Attach, GenerationMismatchNamesBothGenerations) {
  auto channel = test::create_hugepage_channel(test::small_channel_options(5));
  ASSERT_TRUE(channel) << channel.message();
  ASSERT_EQ(channel->generation(), 1u);
  auto stale = Worker::attach(dup(channel->segment_fd()), /*expected_generation=*/7);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.code(), ShmError::generation_mismatch);
  EXPECT_THAT(stale.message(), HasSubstr("segment generation 1"));
  EXPECT_THAT(stale.message(), HasSubstr("handoff said 7"));

  auto current = Worker::attach(dup(channel->segment_fd()), 1);
  ASSERT_TRUE(current) << current.message();
  EXPECT_EQ(current->generation(), 1u);
  EXPECT_EQ(current->worker_id(), 5u);
  EXPECT_EQ(channel->view().header->worker_generation.load(), 1u);
}

TEST_F(Attach, CorruptGeometryInALiveSegment) {
  auto channel = test::create_hugepage_channel(test::small_channel_options(6));
  ASSERT_TRUE(channel) << channel.message();
  channel->view().reply_ring->geometry.capacity = 100;
  auto worker = Worker::attach(dup(channel->segment_fd()));
  ASSERT_FALSE(worker);
  EXPECT_EQ(worker.code(), ShmError::corrupt_geometry);
  EXPECT_THAT(worker.message(), HasSubstr("reply ring geometry is invalid (capacity 100"));
}

TEST_F(Attach, DetachMarksTheSegmentAndMovesTransferIt) {
  auto channel = test::create_hugepage_channel(test::small_channel_options(7));
  ASSERT_TRUE(channel) << channel.message();
  SegmentHeader* header = channel->view().header;
  {
    auto attached = Worker::attach(dup(channel->segment_fd()));
    ASSERT_TRUE(attached) << attached.message();
    Worker moved = std::move(attached).value();
    // The moved-from object was destroyed inside the Result: the segment is still ours.
    EXPECT_EQ(header->worker_state.load(), std::uint32_t(WorkerState::attached));
    EXPECT_EQ(moved.worker_id(), 7u);
  }
  EXPECT_EQ(header->worker_state.load(), std::uint32_t(WorkerState::detached));
}

// --- handoff

class Handoff : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = test::open_fd_count();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    data_plane_.reset(sv[0]);
    worker_.reset(sv[1]);
  }
  void TearDown() override {
    data_plane_.reset();
    worker_.reset();
    EXPECT_EQ(test::open_fd_count(), fds_before_) << "a descriptor leaked";
  }
  Fd data_plane_;
  Fd worker_;
  int fds_before_ = 0;
};

TEST_F(Handoff, SendsTheSegmentFdAndMessage) {
  Fd segment = make_memfd(tiny_size(), /*format=*/true, /*seal=*/true);
  HandoffMessage message;
  message.worker_id = 9;
  message.layout_version = kLayoutVersion;
  message.generation = 3;
  message.segment_size = tiny_size();
  ASSERT_TRUE(send_segment(data_plane_.get(), segment.get(), message));

  auto received = receive_segment(worker_.get(), 1000);
  ASSERT_TRUE(received) << received.message();
  Fd got(received->fd);
  EXPECT_NE(got.get(), segment.get());
  struct stat a {
  }, b{};
  ASSERT_EQ(fstat(segment.get(), &a), 0);
  ASSERT_EQ(fstat(got.get(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "the received fd must be the same memfd";
  EXPECT_EQ(a.st_dev, b.st_dev);
  EXPECT_NE(fcntl(got.get(), F_GETFD) & FD_CLOEXEC, 0) << "received fds must not leak into exec'd children";
  EXPECT_EQ(received->message.worker_id, 9u);
  EXPECT_EQ(received->message.generation, 3u);
  EXPECT_EQ(received->message.segment_size, tiny_size());
  EXPECT_EQ(received->message.layout_version, kLayoutVersion);

  // And it attaches.
  auto worker = Worker::attach(got.release(), 1);
  ASSERT_TRUE(worker) << worker.message();
  EXPECT_EQ(worker->worker_id(), 3u);
}

TEST_F(Handoff, ReceiveTimesOutWithAClearError) {
  auto received = receive_segment(worker_.get(), 50);
  ASSERT_FALSE(received);
  EXPECT_EQ(received.code(), ShmError::handoff_failed);
  EXPECT_THAT(received.message(), HasSubstr("no segment arrived within 50 ms"));
}

TEST_F(Handoff, PeerClosedWithoutSending) {
  data_plane_.reset();
  auto received = receive_segment(worker_.get(), 1000);
  ASSERT_FALSE(received);
  EXPECT_THAT(received.message(), HasSubstr("closed the handoff socket"));
}

TEST_F(Handoff, MessageWithoutFdIsRefused) {
  HandoffMessage message;
  ASSERT_EQ(send(data_plane_.get(), &message, sizeof message, 0), ssize_t(sizeof message));
  auto received = receive_segment(worker_.get(), 1000);
  ASSERT_FALSE(received);
  EXPECT_THAT(received.message(), HasSubstr("carried 0 fds instead of exactly one"));
}

TEST_F(Handoff, ProtocolMismatchClosesTheFd) {
  Fd segment = make_memfd(tiny_size(), /*format=*/true, /*seal=*/true);
  HandoffMessage message;
  message.version = kHandoffVersion + 1;
  ASSERT_TRUE(send_segment(data_plane_.get(), segment.get(), message));
  auto received = receive_segment(worker_.get(), 1000);
  ASSERT_FALSE(received);
  EXPECT_THAT(received.message(),
              HasSubstr("handoff protocol mismatch (version " + std::to_string(kHandoffVersion + 1) + ", expected " +
                        std::to_string(kHandoffVersion)));
  // TearDown checks that the fd that arrived with the bad message was closed.
}

TEST_F(Handoff, MalformedMessageIsRefused) {
  const char junk[5] = "junk";
  ASSERT_EQ(send(data_plane_.get(), junk, sizeof junk, 0), ssize_t(sizeof junk));
  auto received = receive_segment(worker_.get(), 1000);
  ASSERT_FALSE(received);
  EXPECT_THAT(received.message(), HasSubstr("malformed handoff message (5 bytes)"));
}

TEST_F(Handoff, SendToAClosedPeerFails) {
  worker_.reset();
  Fd segment = make_memfd(4096, false, true);
  auto sent = send_segment(data_plane_.get(), segment.get(), HandoffMessage{});
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.code(), ShmError::handoff_failed);
  EXPECT_THAT(sent.message(), HasSubstr("the worker may have exited"));
}

TEST_F(Handoff, PeerCredentialsOfASocketpairNameItsCreator) {
  auto creds = peer_credentials(worker_.get());
  ASSERT_TRUE(creds) << creds.message();
  EXPECT_EQ(creds->pid, getpid());
  EXPECT_EQ(creds->uid, getuid());
  EXPECT_FALSE(peer_credentials(-1));
}

// A real worker process connects to the listener: the data plane learns its pid from
// SO_PEERCRED and the worker attaches to the segment it is sent.
TEST(HandoffListener, PeerCredentialsNameTheConnectingChild) {
  test::TempDir dir;
  const std::string path = dir.file("workers.sock");
  auto listener = HandoffListener::listen(path);
  ASSERT_TRUE(listener) << listener.message();
  EXPECT_TRUE(std::filesystem::is_socket(path));
  // Owner only: a control plane hands it to the uid of the slot's worker, no one else.
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto channel = test::create_hugepage_channel(test::small_channel_options(11));
  ASSERT_TRUE(channel) << channel.message();

  Child child = Child::fork([&] {
    auto worker = Worker::connect(path, 10'000);
    if (!worker) {
      std::fprintf(stderr, "child: %s\n", worker.message().c_str());
      return 2;
    }
    if (worker->worker_id() != 11 || worker->generation() != 1) return 3;
    if (worker->backing() != SegmentBacking::hugetlb_2m) return 4;
    return 0;  // the Worker destructor marks the segment detached
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(test::hand_over(*listener, *channel, child.pid()));
  ASSERT_TRUE(test::exited_cleanly(child));
  SegmentHeader* header = channel->view().header;
  EXPECT_EQ(header->worker_pid.load(), std::uint32_t(child.pid()));
  EXPECT_EQ(header->worker_generation.load(), 1u);
  EXPECT_EQ(header->worker_state.load(), std::uint32_t(WorkerState::detached));
}

TEST(HandoffListener, AcceptTimesOut) {
  test::TempDir dir;
  auto listener = HandoffListener::listen(dir.file("idle.sock"));
  ASSERT_TRUE(listener) << listener.message();
  auto conn = listener->accept(30);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.code(), ShmError::handoff_failed);
  EXPECT_THAT(conn.message(), HasSubstr("no worker connected to " + dir.file("idle.sock") + " within 30 ms"));
}

TEST(HandoffListener, BadPathsFailClearly) {
  auto too_long = HandoffListener::listen("/tmp/" + std::string(200, 'x'));
  ASSERT_FALSE(too_long);
  EXPECT_THAT(too_long.message(), HasSubstr("longer than"));
  auto no_dir = HandoffListener::listen("/nonexistent-axon-dir/w.sock");
  ASSERT_FALSE(no_dir);
  EXPECT_THAT(no_dir.message(), HasSubstr("check that the directory exists"));

  test::TempDir dir;
  auto nobody = Worker::connect(dir.file("nobody.sock"), 50);
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.code(), ShmError::handoff_failed);
  EXPECT_THAT(nobody.message(), HasSubstr("is the data plane running"));
}

// Destroying a listener unlinks its path; move-assigning one listener over another
// closes and unlinks the overwritten one and keeps the new one intact. The paths are
// long enough not to fit std::string's inline buffer, so ASan sees any use of freed
// string storage.
TEST(HandoffListener, MoveAndDestroyUnlinkTheRightPaths) {
  test::TempDir dir;
  const std::string first = dir.file("first-listener-with-a-long-name.sock");
  const std::string second = dir.file("second-listener-with-a-long-name.sock");
  {
    auto a = HandoffListener::listen(first);
    auto b = HandoffListener::listen(second);
    ASSERT_TRUE(a && b);
    HandoffListener listener = std::move(a).value();
    listener = std::move(b).value();
    EXPECT_EQ(listener.path(), second);
    EXPECT_FALSE(std::filesystem::exists(first)) << "the overwritten listener's socket must be unlinked";
    EXPECT_TRUE(std::filesystem::exists(second));
    HandoffListener moved(std::move(listener));
    EXPECT_EQ(moved.path(), second);
    EXPECT_EQ(listener.fd(), -1);
  }
  EXPECT_FALSE(std::filesystem::exists(second));
}

// --- environment

// Not AXON_WORKER_FD nor AXON_WORKER_SOCKET: a clear error saying what to set.
TEST(WorkerEnvironment, MissingOrMalformedVariablesFailClearly) {
  unsetenv("AXON_WORKER_FD");
  unsetenv("AXON_WORKER_SOCKET");
  auto none = Worker::from_environment(10);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.code(), ShmError::handoff_failed);
  EXPECT_THAT(none.message(), HasSubstr("AXON_WORKER_SOCKET"));

  setenv("AXON_WORKER_FD", "12abc", 1);
  auto garbage = Worker::from_environment(10);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.code(), ShmError::bad_fd);
  EXPECT_THAT(garbage.message(), HasSubstr("AXON_WORKER_FD='12abc'"));
  setenv("AXON_WORKER_FD", "-4", 1);
  EXPECT_EQ(Worker::from_environment(10).code(), ShmError::bad_fd);
  unsetenv("AXON_WORKER_FD");

  test::TempDir dir;
  setenv("AXON_WORKER_SOCKET", dir.file("absent.sock").c_str(), 1);
  auto absent = Worker::from_environment(30);
  unsetenv("AXON_WORKER_SOCKET");
  ASSERT_FALSE(absent);
  EXPECT_THAT(absent.message(), HasSubstr("absent.sock"));
}

// --- death watch

TEST(DeathWatch, ReportsAChildOnceAfterItExits) {
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch) << watch.message();
  int gate[2];
  ASSERT_EQ(pipe2(gate, O_CLOEXEC), 0);
  Fd gate_read(gate[0]);
  Fd gate_write(gate[1]);
  Child child = Child::fork([&] {
    char byte;
    return read(gate_read.get(), &byte, 1) == 1 ? 0 : 1;  // lives until the parent writes
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(watch->watch(child.pid(), 42));
  EXPECT_EQ(watch->watched(), 1u);

  std::vector<std::uint64_t> dead;
  EXPECT_EQ(watch->poll(dead, 0), 0u) << "the child is alive";
  EXPECT_EQ(watch->poll(dead, 20), 0u);
  EXPECT_TRUE(dead.empty());

  ASSERT_EQ(write(gate_write.get(), "x", 1), 1);
  EXPECT_TRUE(test::wait_until([&] { return watch->poll(dead, 100) > 0; })) << "the exit was never reported";
  EXPECT_EQ(dead, std::vector<std::uint64_t>{42});
  EXPECT_EQ(watch->watched(), 0u);
  // Reported once: the next polls see nothing.
  dead.clear();
  EXPECT_EQ(watch->poll(dead, 0), 0u);
  EXPECT_TRUE(dead.empty());
  EXPECT_TRUE(test::exited_cleanly(child));
}

TEST(DeathWatch, ReportsOnlyTheProcessThatDied) {
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);
  Child first = Child::fork([] {
    pause();
    return 0;
  });
  Child second = Child::fork([] {
    pause();
    return 0;
  });
  ASSERT_GT(first.pid(), 0);
  ASSERT_GT(second.pid(), 0);
  ASSERT_TRUE(watch->watch(first.pid(), 1));
  ASSERT_TRUE(watch->watch(second.pid(), 2));
  EXPECT_EQ(watch->watched(), 2u);

  second.signal(SIGKILL);
  std::vector<std::uint64_t> dead;
  ASSERT_TRUE(test::wait_until([&] { return watch->poll(dead, 100) > 0; }));
  EXPECT_EQ(dead, std::vector<std::uint64_t>{2});
  EXPECT_EQ(watch->watched(), 1u);
  auto status = second.wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << test::describe_status(*status);

  first.signal(SIGKILL);
  dead.clear();
  ASSERT_TRUE(test::wait_until([&] { return watch->poll(dead, 100) > 0; }));
  EXPECT_EQ(dead, std::vector<std::uint64_t>{1});
}

// A key names one process: when a slot's new occupant is watched under the slot's key, the
// predecessor's death is not reported under it (it used to be, and the data plane then
// reclaimed the live successor's slot: a respawned worker that stayed `starting` for good).
TEST(DeathWatch, ANewProcessUnderAKeyReplacesTheOld) {
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);
  Child predecessor = Child::fork([] {
    pause();
    return 0;
  });
  Child successor = Child::fork([] {
    pause();
    return 0;
  });
  ASSERT_GT(predecessor.pid(), 0);
  ASSERT_GT(successor.pid(), 0);
  ASSERT_TRUE(watch->watch(predecessor.pid(), 3));
  ASSERT_TRUE(watch->watch(successor.pid(), 3));
  EXPECT_EQ(watch->watched(), 1u);

  predecessor.signal(SIGKILL);
  ASSERT_TRUE(predecessor.wait());
  std::vector<std::uint64_t> dead;
  EXPECT_EQ(watch->poll(dead, 200), 0u) << "the predecessor's death was reported under the successor's key";
  EXPECT_TRUE(dead.empty());
  EXPECT_EQ(watch->watched(), 1u);

  successor.signal(SIGKILL);
  ASSERT_TRUE(test::wait_until([&] { return watch->poll(dead, 100) > 0; }));
  EXPECT_EQ(dead, std::vector<std::uint64_t>{3});
  EXPECT_EQ(watch->watched(), 0u);
}

// A zombie (exited, not yet reaped) counts as dead at once.
TEST(DeathWatch, ReportsAnUnreapedZombie) {
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);
  Child child = Child::fork([] { return 0; });
  ASSERT_GT(child.pid(), 0);
  // Wait until it is a zombie without reaping it: waitid with WNOWAIT.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, id_t(child.pid()), &info, WEXITED | WNOWAIT), 0);
  ASSERT_TRUE(watch->watch(child.pid(), 5));
  std::vector<std::uint64_t> dead;
  ASSERT_TRUE(test::wait_until([&] { return watch->poll(dead, 100) > 0; }));
  EXPECT_EQ(dead, std::vector<std::uint64_t>{5});
}

TEST(DeathWatch, ForgetStopsReporting) {
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);
  Child child = Child::fork([] { return 0; });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(watch->watch(child.pid(), 8));
  watch->forget(8);
  EXPECT_EQ(watch->watched(), 0u);
  ASSERT_TRUE(test::exited_cleanly(child));
  std::vector<std::uint64_t> dead;
  EXPECT_EQ(watch->poll(dead, 50), 0u);
  EXPECT_TRUE(dead.empty());
  watch->forget(8);  // forgetting twice is harmless
}

TEST(DeathWatch, WatchingANonexistentPidFailsClearly) {
  auto watch = DeathWatch::create();
  ASSERT_TRUE(watch);
  // A pid that existed a moment ago and has been reaped.
  Child child = Child::fork([] { return 0; });
  const pid_t gone = child.pid();
  ASSERT_TRUE(test::exited_cleanly(child));
  auto watched = watch->watch(gone, 1);
  ASSERT_FALSE(watched);
  EXPECT_EQ(watched.code(), ShmError::watch_failed);
  EXPECT_THAT(watched.message(), HasSubstr("pidfd_open(" + std::to_string(gone) + ") failed"));
  EXPECT_THAT(watched.message(), HasSubstr("already exited"));
  EXPECT_EQ(watch->watched(), 0u);

  auto negative = watch->watch(-1, 2);
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.code(), ShmError::watch_failed);
  std::vector<std::uint64_t> dead;
  EXPECT_EQ(watch->poll(dead, 0), 0u);
}

}  // namespace
}  // namespace axon::shm

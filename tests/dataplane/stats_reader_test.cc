// The stats segment library (axon::dataplane_stats): the writer's file, the read-only
// StatsReader, its per-lcore totals, its layout check and its liveness (issue 11 item 12: a
// stats file left behind by a killed data plane must not read as ready). No root needed.
#include "axon/dataplane/stats_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace axon::dataplane {
namespace {

class StatsReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/axon-stats-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/dataplane.stats";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_, path_;
};

TEST_F(StatsReaderTest, TotalsSumEveryLcoreAndTheSizeMatchesTheLayout) {
  auto file = StatsFile::create(path_, 3, 5);
  ASSERT_TRUE(file.ok()) << file.message();
  const StatsView& w = file->view();
  for (std::uint32_t i = 0; i < 3; ++i) {
    count(w.lcores[i].rx_frames, 10 + i);
    count(w.lcores[i].responses, 2);
    count(w.lcores[i].errors_sent[std::size_t(protocol::ErrorCode::worker_failed)], 1);
    count(w.lcores[i].drops[std::size_t(protocol::Reason::bad_magic)], i);
    record(w.lcores[i].stage_latency[std::size_t(Stage::queue)][1], 1000 * (i + 1));
  }
  EXPECT_EQ(std::filesystem::file_size(path_), stats_file_size(3, 5));

  auto reader = StatsReader::open(path_);
  ASSERT_TRUE(reader.ok()) << reader.message();
  EXPECT_EQ(reader->lcore_count(), 3u);
  EXPECT_EQ(reader->worker_count(), 5u);
  const LcoreTotals t = reader->totals();
  EXPECT_EQ(t.rx_frames, 33u);
  EXPECT_EQ(t.responses, 6u);
  EXPECT_EQ(t.errors_sent[std::size_t(protocol::ErrorCode::worker_failed)], 3u);
  EXPECT_EQ(t.errors(), 3u);
  EXPECT_EQ(t.drops[std::size_t(protocol::Reason::bad_magic)], 3u);
  // Per-lcore histograms merge: three background queue samples (1, 2 and 3 us), none elsewhere.
  const StageTotals queue = reader->stage_latency(Stage::queue, 1);
  EXPECT_EQ(queue.count, 3u);
  EXPECT_EQ(queue.sum_ns, 6000u);
  EXPECT_EQ(queue.buckets[histogram_bucket(2000)], 1u);
  EXPECT_EQ(reader->stage_latency(Stage::queue, 0).count, 0u);
  EXPECT_EQ(reader->stage_latency(Stage::queue).count, 3u);
  EXPECT_EQ(reader->stage_latency(Stage::total).count, 0u);
  EXPECT_NEAR(queue.quantile_ns(0.5), 2000.0, 2000.0 / 64);
  EXPECT_EQ(queue.below(prometheus_edge_ns(4)), 0u);   // 512 ns: below every sample
  EXPECT_EQ(queue.below(prometheus_edge_ns(6)), 1u);   // 1024 ns: above the 1 us one
  EXPECT_EQ(queue.below(std::uint64_t{1} << 12), 3u);  // 4096 ns: above every sample
  EXPECT_EQ(reader->lcores(&LcoreStats::rx_frames), 33u);
  EXPECT_EQ(reader->lcore(2, &LcoreStats::rx_frames), 12u);
  EXPECT_EQ(reader->errors_sent(protocol::ErrorCode::worker_failed), 3u);
  EXPECT_EQ(reader->lcore_drops(protocol::Reason::bad_magic), 3u);
}

TEST_F(StatsReaderTest, ReadyOnlyWhileTheWriterLivesAndHasSetTheFlag) {
  auto file = StatsFile::create(path_, 1, 0);
  ASSERT_TRUE(file.ok()) << file.message();
  auto reader = StatsReader::open(path_);
  ASSERT_TRUE(reader.ok()) << reader.message();
  EXPECT_TRUE(reader->alive());
  EXPECT_FALSE(reader->ready()) << "alive but not yet ready";
  file->view().header->ready.store(1);
  EXPECT_TRUE(reader->ready());
  // Two readers probe the lock without disturbing each other or the writer.
  auto second = StatsReader::open(path_);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->ready());
  EXPECT_TRUE(reader->ready());
  {
    StatsFile gone = std::move(file).value();  // the writer stops: destroyed below
  }
  EXPECT_FALSE(reader->alive());
  EXPECT_FALSE(reader->ready());
  EXPECT_FALSE(second->ready());
}

// The defect of issue 11 item 12: after kill -9 the file still has ready = 1.
TEST_F(StatsReaderTest, AWriterKilledWithSigkillIsNotReadyAlthoughItsFlagStaysSet) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto file = StatsFile::create(path_, 1, 1);
    if (!file) _exit(1);
    file->view().header->ready.store(1);
    char c = 'r';
    if (write(pipe_fds[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
  }
  close(pipe_fds[1]);
  char c = 0;
  ASSERT_EQ(read(pipe_fds[0], &c, 1), 1) << "the child could not create the stats file";
  close(pipe_fds[0]);
  auto reader = StatsReader::open(path_);
  ASSERT_TRUE(reader.ok()) << reader.message();
  EXPECT_TRUE(reader->ready());
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(reader->header().ready.load(), 1u) << "the killed writer could not clear its flag";
  EXPECT_FALSE(reader->alive());
  EXPECT_FALSE(reader->ready()) << "a stats file whose writer was killed must not read as ready";
}

TEST_F(StatsReaderTest, RefusesFilesOfAnotherLayoutOrSize) {
  {
    auto file = StatsFile::create(path_, 2, 2);
    ASSERT_TRUE(file.ok());
  }
  // Another layout version.
  int fd = open(path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const std::uint32_t old_version = kStatsVersion - 1;
  ASSERT_EQ(pwrite(fd, &old_version, sizeof old_version, offsetof(StatsHeader, version)), 4);
  auto bad = StatsReader::open(path_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), StatsError::bad_file);
  EXPECT_NE(bad.message().find("unknown layout"), std::string::npos) << bad.message();
  // The right version, but shorter than its counts say.
  ASSERT_EQ(pwrite(fd, &kStatsVersion, sizeof kStatsVersion, offsetof(StatsHeader, version)), 4);
  ASSERT_EQ(ftruncate(fd, off_t(stats_file_size(2, 1))), 0);
  close(fd);
  auto truncated = StatsReader::open(path_);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.code(), StatsError::bad_file);
  // No file at all.
  auto missing = StatsReader::open(dir_ + "/nothing.stats");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.code(), StatsError::io_error);
  EXPECT_NE(missing.message().find("is axon-dataplane running?"), std::string::npos) << missing.message();
}

}  // namespace
}  // namespace axon::dataplane

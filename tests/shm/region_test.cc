// Tests of memfd regions: hugepage backing when pages are free, sealing, mapping by fd,
// and the 4 KiB fallback when no hugepage is left, which must work, never SIGBUS, and
// warn exactly once per process.
//
// This is its own binary on purpose: the fallback warning is once per process, so no
// other test may have triggered it first. The fallback itself runs in a forked child,
// which drains every free hugepage (and gives them back by exiting).
#include "axon/shm/region.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using test::Child;
using test::Fd;
using ::testing::HasSubstr;

constexpr std::size_t kHuge = 2u << 20;
constexpr std::size_t kPage = 4096;

// The distinctive part of region.cc's fallback warning.
constexpr const char* kFallbackWarning = "no 2 MiB hugepages available";

long read_long(const char* path) {
  std::ifstream in(path);
  long value = -1;
  in >> value;
  return value;
}

// Writes a page-specific word into every 4 KiB page and reads them all back: proves the
// whole region is backed (a hugetlb region short of pages would SIGBUS here).
bool touch_every_page(std::byte* base, std::size_t size, std::uint64_t salt) {
  for (std::size_t off = 0; off < size; off += kPage) {
    const std::uint64_t word = (off / kPage) ^ salt;
    std::memcpy(base + off, &word, sizeof word);
  }
  for (std::size_t off = 0; off < size; off += kPage) {
    std::uint64_t word = 0;
    std::memcpy(&word, base + off, sizeof word);
    if (word != ((off / kPage) ^ salt)) return false;
  }
  return true;
}

std::string fd_target(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[256] = {};
  ssize_t n = readlink(link, target, sizeof target - 1);
  return n > 0 ? std::string(target, std::size_t(n)) : std::string();
}

TEST(Region, ZeroSizeIsRejected) {
  RegionOptions options;
  options.size = 0;
  auto region = Region::create(options);
  ASSERT_FALSE(region);
  EXPECT_EQ(region.code(), ShmError::invalid_argument);
  EXPECT_THAT(region.message(), HasSubstr("size must be positive"));
}

TEST(Region, HugepageBackedSealedAndMappableByFd) {
  if (test::ensure_free_hugepages(2) < 2) {
    GTEST_SKIP() << "HugePages_Free is below 2 and vm.nr_hugepages could not be raised";
  }
  RegionOptions options;
  options.size = 3 * (1u << 20);  // rounded up to two hugepages
  options.allow_fallback = false;
  options.name = "axon-region-test";
  auto region = Region::create(options);
  ASSERT_TRUE(region) << region.message();
  EXPECT_EQ(region->backing(), SegmentBacking::hugetlb_2m);
  EXPECT_EQ(region->size(), 2 * kHuge);
  struct statfs fs {};
  ASSERT_EQ(fstatfs(region->fd(), &fs), 0);
  EXPECT_EQ(fs.f_type, HUGETLBFS_MAGIC) << "the memfd must live on hugetlbfs";
  // An anonymous memfd, never a named file in /dev/shm.
  EXPECT_THAT(fd_target(region->fd()), HasSubstr("/memfd:axon-region-test"));
  EXPECT_NE(fcntl(region->fd(), F_GETFD) & FD_CLOEXEC, 0);

  // Sealed: nobody (including a worker holding the fd) can resize it under the mapping.
  const int seals = fcntl(region->fd(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(ftruncate(region->fd(), 0), 0);
  EXPECT_EQ(errno, EPERM);

  ASSERT_TRUE(touch_every_page(region->base(), region->size(), 0xabcdef));

  // A second mapping through the fd (what a worker does) sees the same bytes, both ways.
  auto mapped = Region::map_fd(dup(region->fd()));
  ASSERT_TRUE(mapped) << mapped.message();
  EXPECT_EQ(mapped->backing(), SegmentBacking::hugetlb_2m);
  EXPECT_EQ(mapped->size(), region->size());
  EXPECT_NE(mapped->base(), region->base());
  EXPECT_EQ(std::memcmp(mapped->base(), region->base(), region->size()), 0);
  mapped->base()[12345] = std::byte{0x5a};
  EXPECT_EQ(region->base()[12345], std::byte{0x5a});

  // Moves hand over ownership; the moved-from region owns nothing.
  Region moved = std::move(region).value();
  EXPECT_EQ(moved.size(), 2 * kHuge);
  EXPECT_EQ(moved.base()[12345], std::byte{0x5a});
}

// With every hugepage taken, regions fall back to 4 KiB shared pages, are fully usable,
// and the process warns exactly once (saying how to reserve hugepages), however many
// regions fall back. A no-fallback request fails cleanly with no_memory instead of
// handing out a mapping that would SIGBUS on first touch.
TEST(Region, FallbackWorksAndWarnsOnce) {
  if (read_long("/proc/sys/vm/nr_overcommit_hugepages") > 0) {
    GTEST_SKIP() << "vm.nr_overcommit_hugepages > 0: the kernel would create surplus hugepages, so the pool cannot "
                    "be exhausted";
  }
  if (free_hugepages() < 0) GTEST_SKIP() << "this kernel reports no HugePages_Free";

  Fd log(memfd_create("axon-child-stderr", MFD_CLOEXEC));
  ASSERT_GE(log.get(), 0);
  const std::size_t fallback_size = 4 * (1u << 20) + 12345;

  Child child = Child::fork([&]() -> int {
    if (dup2(log.get(), STDERR_FILENO) < 0) return 2;
    // Drain the pool. Repeat in case another process frees pages while we take them.
    std::vector<Region> hoard;
    for (int round = 0; round < 20; ++round) {
      const long free = free_hugepages();
      if (free <= 0) break;
      RegionOptions options;
      options.size = std::size_t(free) * kHuge;
      options.allow_fallback = false;
      options.name = "axon-hoard";
      auto region = Region::create(options);
      if (!region) continue;  // someone took pages between reading and reserving: re-read
      if (region->backing() != SegmentBacking::hugetlb_2m) return 3;
      hoard.push_back(std::move(region).value());
    }
    if (free_hugepages() != 0) {
      std::fprintf(stderr, "child: could not drain the hugepage pool (%ld still free)\n", free_hugepages());
      return 4;
    }

    RegionOptions strict;
    strict.size = kHuge;
    strict.allow_fallback = false;
    auto refused = Region::create(strict);
    if (refused || refused.code() != ShmError::no_memory) return 5;

    std::vector<Region> fallbacks;
    for (int i = 0; i < 2; ++i) {
      RegionOptions options;
      options.size = fallback_size;
      options.allow_fallback = true;
      auto region = Region::create(options);
      if (!region) {
        std::fprintf(stderr, "child: fallback region %d failed: %s\n", i, region.message().c_str());
        return 10 + i;
      }
      if (region->backing() != SegmentBacking::shmem_4k) return 20 + i;
      if (region->size() != (fallback_size + kPage - 1) / kPage * kPage) return 30 + i;
      if (!touch_every_page(region->base(), region->size(), 0x1234 + std::uint64_t(i))) return 40 + i;
      // Sealed like a hugepage region, and a worker maps it with the right backing.
      if ((fcntl(region->fd(), F_GET_SEALS) & F_SEAL_SHRINK) == 0) return 50 + i;
      auto mapped = Region::map_fd(dup(region->fd()));
      if (!mapped || mapped->backing() != SegmentBacking::shmem_4k) return 60 + i;
      if (std::memcmp(mapped->base(), region->base(), region->size()) != 0) return 70 + i;
      fallbacks.push_back(std::move(region).value());
    }
    return 0;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(test::exited_cleanly(child, std::chrono::seconds(60)));

  std::string output;
  ASSERT_EQ(lseek(log.get(), 0, SEEK_SET), 0);
  char chunk[4096];
  for (ssize_t n; (n = read(log.get(), chunk, sizeof chunk)) > 0;) output.append(chunk, std::size_t(n));

  std::size_t warnings = 0;
  for (std::size_t at = output.find(kFallbackWarning); at != std::string::npos;
       at = output.find(kFallbackWarning, at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << "child stderr:\n" << output;
  // The warning says how to fix it.
  EXPECT_THAT(output, HasSubstr("/proc/sys/vm/nr_hugepages")) << output;
  EXPECT_THAT(output, HasSubstr("warn shm:")) << output;
}

}  // namespace
}  // namespace axon::shm

// memfd regions: hugetlb first, sealed, NUMA-bound, fully allocated before first touch.
//
// Allocation order matters: bind the mapping to the node before any page exists, then
// fallocate() so every page is reserved up front. A hugetlb mapping whose pages run out
// later would SIGBUS on first touch; fallocate turns that into an ENOSPC we can handle.
#include "axon/shm/region.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "axon/common/log.h"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

namespace axon::shm {
namespace {

constexpr std::size_t kHugePage = 2u << 20;
constexpr std::size_t kSmallPage = 4096;
constexpr unsigned kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

std::atomic<bool> g_fallback_warned{false};

std::size_t round_up(std::size_t value, std::size_t align) {
  return (value + align - 1) / align * align;
}

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

Error<ShmError> fail(ShmError code, std::string message) {
  return make_error(code, std::move(message));
}

// Binds [base, base+size) to one NUMA node before its pages are allocated.
ShmResult<Ok> bind_to_node(std::byte* base, std::size_t size, int node) {
  if (node < 0) return Ok{};
  if (numa_available() < 0) {
    AXON_LOG_WARN("shm", "NUMA node %d requested but this kernel has no NUMA support; memory is not bound", node);
    return Ok{};
  }
  if (node > numa_max_node()) {
    return fail(ShmError::invalid_argument, "NUMA node " + std::to_string(node) + " does not exist (highest is " +
                                                std::to_string(numa_max_node()) + "); fix numa_node in the config");
  }
  unsigned long mask = 1ul << unsigned(node);
  if (mbind(base, size, MPOL_BIND, &mask, sizeof(mask) * 8, 0) != 0) {
    return fail(ShmError::map_failed, "mbind to NUMA node " + std::to_string(node) + " failed: " + errno_text(errno));
  }
  return Ok{};
}

struct Attempt {
  int fd = -1;
  std::byte* base = nullptr;
  std::size_t size = 0;
};

void undo(Attempt& attempt) {
  if (attempt.base != nullptr) munmap(attempt.base, attempt.size);
  if (attempt.fd >= 0) close(attempt.fd);
  attempt = {};
}

// One try with one page size. Returns no_memory when the pages are not there, so the
// caller can fall back; any other error is final.
ShmResult<Attempt> try_create(const RegionOptions& options, bool huge) {
  Attempt attempt;
  attempt.size = round_up(options.size, huge ? kHugePage : kSmallPage);
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? (MFD_HUGETLB | MFD_HUGE_2MB) : 0u);
  attempt.fd = memfd_create(options.name.c_str(), flags);
  if (attempt.fd < 0) {
    int err = errno;
    if (huge && (err == EINVAL || err == ENOENT)) {
      return fail(ShmError::no_memory, "this kernel has no 2 MiB hugetlb support");
    }
    return fail(ShmError::memfd_failed, "memfd_create failed: " + errno_text(err));
  }
  if (ftruncate(attempt.fd, off_t(attempt.size)) != 0) {
    int err = errno;
    undo(attempt);
    return fail(ShmError::no_memory,
                "cannot size the region to " + std::to_string(options.size) + " bytes: " + errno_text(err));
  }
  void* mapped = mmap(nullptr, attempt.size, PROT_READ | PROT_WRITE, MAP_SHARED, attempt.fd, 0);
  if (mapped == MAP_FAILED) {
    int err = errno;
    undo(attempt);
    // hugetlb reserves its pages at mmap time, so ENOMEM here means "not enough free".
    return fail(err == ENOMEM ? ShmError::no_memory : ShmError::map_failed, "mmap failed: " + errno_text(err));
  }
  attempt.base = static_cast<std::byte*>(mapped);
  if (!huge) madvise(attempt.base, attempt.size, MADV_HUGEPAGE);  // best effort: THP for shmem
  if (auto bound = bind_to_node(attempt.base, attempt.size, options.numa_node); !bound) {
    undo(attempt);
    return bound.error();
  }
  if (fallocate(attempt.fd, 0, 0, off_t(attempt.size)) != 0) {
    int err = errno;
    const std::size_t wanted = attempt.size;  // undo() clears attempt
    undo(attempt);
    return fail(ShmError::no_memory, "cannot reserve " + std::to_string(wanted) + " bytes of " +
                                         (huge ? "hugepages" : "shared memory") + ": " + errno_text(err));
  }
  // Pre-fault our page tables so the first request does not pay for them.
  if (madvise(attempt.base, attempt.size, MADV_POPULATE_WRITE) != 0) {
    for (std::size_t off = 0; off < attempt.size; off += kSmallPage) {
      std::atomic_ref<std::byte>(attempt.base[off]).store(std::byte{0}, std::memory_order_relaxed);
    }
  }
  if (fcntl(attempt.fd, F_ADD_SEALS, kSeals) != 0) {
    int err = errno;
    undo(attempt);
    return fail(ShmError::seal_failed, "cannot seal the memfd: " + errno_text(err));
  }
  return attempt;
}

}  // namespace

long free_hugepages() noexcept {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  long value = -1;
  while (meminfo >> key) {
    if (key == "HugePages_Free:") {
      meminfo >> value;
      return value;
    }
    meminfo.ignore(1 << 10, '\n');
  }
  return -1;
}

ShmResult<Region> Region::create(const RegionOptions& options) {
  if (options.size == 0) return fail(ShmError::invalid_argument, "region size must be positive");
  auto created = try_create(options, /*huge=*/true);
  SegmentBacking backing = SegmentBacking::hugetlb_2m;
  if (!created && created.code() == ShmError::no_memory && options.allow_fallback) {
    std::string why = created.message();
    created = try_create(options, /*huge=*/false);
    backing = SegmentBacking::shmem_4k;
    if (created && !g_fallback_warned.exchange(true)) {
      std::size_t pages = round_up(options.size, kHugePage) / kHugePage;
      AXON_LOG_WARN("shm",
                    "no 2 MiB hugepages available (%s); using 4 KiB shared pages, which costs TLB misses. "
                    "Reserve hugepages with: echo %zu > /proc/sys/vm/nr_hugepages (per segment of this size; "
                    "HugePages_Free now %ld)",
                    why.c_str(), pages, free_hugepages());
    }
  }
  if (!created) return created.error();
  Attempt attempt = created.value();
  if (options.lock && mlock(attempt.base, attempt.size) != 0) {
    AXON_LOG_WARN("shm",
                  "mlock of %zu bytes failed (%s); the region may be swapped. Raise RLIMIT_MEMLOCK or grant "
                  "CAP_IPC_LOCK",
                  attempt.size, std::strerror(errno));
  }
  return Region(attempt.base, attempt.size, attempt.fd, backing);
}

ShmResult<Region> Region::map_fd(int fd) {
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    return fail(ShmError::bad_fd,
                "segment fd " + std::to_string(fd) + " is not open; the data plane must hand it over");
  }
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (unsigned(seals) & F_SEAL_SHRINK) == 0) {
    close(fd);
    return fail(ShmError::bad_fd, "fd " + std::to_string(fd) +
                                      " is not a sealed axon memfd; attach only to the fd the data plane handed over");
  }
  if (std::size_t(st.st_size) < sizeof(SegmentHeader)) {
    close(fd);
    return fail(ShmError::truncated, "segment is " + std::to_string(st.st_size) + " bytes, smaller than its " +
                                         std::to_string(sizeof(SegmentHeader)) + "-byte header");
  }
  struct statfs fs {};
  SegmentBacking backing =
      (fstatfs(fd, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC) ? SegmentBacking::hugetlb_2m : SegmentBacking::shmem_4k;
  std::size_t size = std::size_t(st.st_size);
  void* mapped = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (mapped == MAP_FAILED) {
    int err = errno;
    close(fd);
    return fail(ShmError::map_failed, "mmap of the segment failed: " + errno_text(err));
  }
  return Region(static_cast<std::byte*>(mapped), size, fd, backing);
}

Region::Region(Region&& other) noexcept
    : base_(other.base_), size_(other.size_), fd_(other.fd_), backing_(other.backing_) {
  other.base_ = nullptr;
  other.size_ = 0;
  other.fd_ = -1;
}

Region& Region::operator=(Region&& other) noexcept {
  if (this != &other) {
    reset();
    base_ = other.base_;
    size_ = other.size_;
    fd_ = other.fd_;
    backing_ = other.backing_;
    other.base_ = nullptr;
    other.size_ = 0;
    other.fd_ = -1;
  }
  return *this;
}

Region::~Region() {
  reset();
}

void Region::reset() noexcept {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
  base_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

const char* to_string(ShmError code) noexcept {
  switch (code) {
    case ShmError::invalid_argument: return "invalid_argument";
    case ShmError::memfd_failed: return "memfd_failed";
    case ShmError::no_memory: return "no_memory";
    case ShmError::map_failed: return "map_failed";
    case ShmError::seal_failed: return "seal_failed";
    case ShmError::bad_fd: return "bad_fd";
    case ShmError::truncated: return "truncated";
    case ShmError::bad_magic: return "bad_magic";
    case ShmError::version_mismatch: return "version_mismatch";
    case ShmError::generation_mismatch: return "generation_mismatch";
    case ShmError::corrupt_geometry: return "corrupt_geometry";
    case ShmError::handoff_failed: return "handoff_failed";
    case ShmError::watch_failed: return "watch_failed";
  }
  return "unknown";
}

}  // namespace axon::shm

// A shared-memory region backed by a memfd: hugepages first, 4 KiB pages as fallback.
//
// The memfd is never a named file: it is handed to the other process over a Unix socket,
// so nothing is left in /dev/shm after a crash. The creator seals it against shrinking
// and growing, so a hostile worker cannot truncate it and SIGBUS the data plane.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "axon/shm/error.h"
#include "axon/shm/layout.h"

namespace axon::shm {

struct RegionOptions {
  std::size_t size = 0;        // rounded up to the page size used
  int numa_node = -1;          // -1: no binding
  bool allow_fallback = true;  // fall back to 4 KiB pages when no hugepage is free
  bool lock = true;            // mlock the mapping
  std::string name = "axon";   // memfd name, shown in /proc/<pid>/fd
};

class Region {
 public:
  // Creates, sizes, seals, binds, populates and maps a fresh region.
  static ShmResult<Region> create(const RegionOptions& options);
  // Maps a region created by another process from its fd (takes ownership of the fd).
  static ShmResult<Region> map_fd(int fd);

  Region() noexcept = default;
  Region(Region&& other) noexcept;
  Region& operator=(Region&& other) noexcept;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region();

  [[nodiscard]] std::byte* base() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] SegmentBacking backing() const noexcept { return backing_; }

 private:
  Region(std::byte* base, std::size_t size, int fd, SegmentBacking backing) noexcept
      : base_(base), size_(size), fd_(fd), backing_(backing) {}
  void reset() noexcept;

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  SegmentBacking backing_ = SegmentBacking::shmem_4k;
};

// Free 2 MiB hugepages right now (HugePages_Free in /proc/meminfo), or -1 if unknown.
long free_hugepages() noexcept;

}  // namespace axon::shm

// The trace file (trace_ring.h): created by the data plane, consumed by the control plane.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "axon/dataplane/trace_ring.h"

namespace axon::dataplane {

TraceMapping::TraceMapping(TraceMapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), size_(other.size_), fd_(std::exchange(other.fd_, -1)) {}

TraceMapping& TraceMapping::operator=(TraceMapping&& other) noexcept {
  if (this != &other) {
    release();
    base_ = std::exchange(other.base_, nullptr);
    size_ = other.size_;
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

TraceMapping::~TraceMapping() {
  release();
}

void TraceMapping::release() noexcept {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
  base_ = nullptr;
  fd_ = -1;
}

Result<TraceMapping, StatsError> create_trace_file(const std::string& path, std::uint32_t lcores,
                                                   std::uint32_t capacity, std::uint32_t sample_ppm) {
  if (lcores == 0 || lcores > kMaxLcores || capacity == 0 || (capacity & (capacity - 1)) != 0) {
    return make_error(StatsError::bad_file, "trace file sizing out of range");
  }
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return make_error(StatsError::io_error, "cannot create " + tmp + ": " + std::strerror(errno) +
                                                "; check that run_dir exists and is writable");
  }
  const std::size_t size = trace_file_size(lcores, capacity);
  void* mapped = MAP_FAILED;
  if (ftruncate(fd, off_t(size)) == 0) mapped = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) {
    const std::string why = std::strerror(errno);
    close(fd);
    unlink(tmp.c_str());
    return make_error(StatsError::io_error, "cannot size or map " + tmp + ": " + why);
  }
  auto* base = static_cast<std::byte*>(mapped);
  std::memset(base, 0, size);
  auto* header = new (base) TraceFileHeader{};
  header->version = kTraceVersion;
  header->lcore_count = lcores;
  header->capacity = capacity;
  header->record_size = sizeof(SpanRecord);
  header->sample_ppm = sample_ppm;
  TraceMapping mapping(base, size, fd);
  for (std::uint32_t l = 0; l < lcores; ++l) {
    shm::RingHeader* ring = new (mapping.ring(l)) shm::RingHeader{};
    ring->geometry.capacity = capacity;
    ring->geometry.slot_size = sizeof(SpanRecord);
    ring->geometry.slots_offset = std::uint64_t(reinterpret_cast<std::byte*>(mapping.records(l)) - base);
  }
  std::atomic_ref<std::uint64_t>(header->magic).store(kTraceMagic, std::memory_order_release);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    unlink(tmp.c_str());
    return make_error(StatsError::io_error, "cannot publish " + path + ": " + why);
  }
  return mapping;
}

Result<TraceReader, StatsError> TraceReader::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return make_error(StatsError::io_error, "cannot open " + path + ": " + std::strerror(errno) +
                                                "; is the data plane running with this run_dir?");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || std::size_t(st.st_size) < sizeof(TraceFileHeader)) {
    close(fd);
    return make_error(StatsError::bad_file, path + " is too short to be a trace file");
  }
  void* mapped = mmap(nullptr, std::size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) {
    const std::string why = std::strerror(errno);
    close(fd);
    return make_error(StatsError::io_error, "cannot map " + path + ": " + why);
  }
  TraceMapping mapping(static_cast<std::byte*>(mapped), std::size_t(st.st_size), fd);
  const TraceFileHeader& h = mapping.header();
  const std::uint64_t magic =
      std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(h.magic)).load(std::memory_order_acquire);
  if (magic != kTraceMagic || h.version != kTraceVersion || h.record_size != sizeof(SpanRecord) || h.lcore_count == 0 ||
      h.lcore_count > kMaxLcores || h.capacity == 0 || (h.capacity & (h.capacity - 1)) != 0 ||
      std::size_t(st.st_size) < trace_file_size(h.lcore_count, h.capacity)) {
    return make_error(StatsError::bad_file, path + " is not a version " + std::to_string(kTraceVersion) +
                                                " trace file; the data plane and control plane must be the same "
                                                "axon release");
  }
  TraceReader reader;
  reader.mapping_ = std::move(mapping);
  reader.inode_ = std::uint64_t(st.st_ino);
  return reader;
}

std::uint64_t TraceReader::dropped() const noexcept {
  std::uint64_t n = 0;
  for (std::uint32_t l = 0; l < lcore_count(); ++l) {
    n += mapping_.ring(l)->producer.full_events.load(std::memory_order_relaxed);
  }
  return n;
}

std::uint64_t TraceReader::written() const noexcept {
  std::uint64_t n = 0;
  for (std::uint32_t l = 0; l < lcore_count(); ++l) {
    n += mapping_.ring(l)->producer.pushed_total.load(std::memory_order_relaxed);
  }
  return n;
}

}  // namespace axon::dataplane

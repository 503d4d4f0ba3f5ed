// Stats file creation (the data plane's side, with its liveness lock) and the read-only
// mapping every reader shares.
#include "axon/dataplane/stats.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "stats_map.h"

namespace axon::dataplane {
namespace {

StatsView view_of(std::byte* base, std::uint32_t lcores) {
  StatsView view;
  view.header = reinterpret_cast<StatsHeader*>(base);
  view.lcores = reinterpret_cast<LcoreStats*>(base + kStatsHeaderBytes);
  view.workers = reinterpret_cast<WorkerStats*>(base + kStatsHeaderBytes + lcores * sizeof(LcoreStats));
  return view;
}

}  // namespace

Result<StatsFile, StatsError> StatsFile::create(const std::string& path, std::uint32_t lcores, std::uint32_t workers) {
  if (lcores == 0 || lcores > kMaxLcores || workers > kMaxWorkers) {
    return make_error(StatsError::bad_file, "stats file sizing out of range");
  }
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(StatsError::io_error, "cannot create " + tmp + ": " + std::strerror(errno) +
                                                "; check that run_dir exists and is writable");
  }
  // Locked before it gets its name: no reader can see this file without a live writer.
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    return make_error(StatsError::io_error, "cannot lock " + tmp + ": " + why);
  }
  const std::size_t size = stats_file_size(lcores, workers);
  if (ftruncate(fd, off_t(size)) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    return make_error(StatsError::io_error, "cannot size " + tmp + ": " + why);
  }
  void* mapped = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) {
    std::string why = std::strerror(errno);
    close(fd);
    return make_error(StatsError::io_error, "cannot map " + tmp + ": " + why);
  }
  auto* base = static_cast<std::byte*>(mapped);
  std::memset(base, 0, size);
  StatsView view = view_of(base, lcores);
  new (view.header) StatsHeader{};
  for (std::uint32_t i = 0; i < lcores; ++i) new (&view.lcores[i]) LcoreStats{};
  for (std::uint32_t i = 0; i < workers; ++i) new (&view.workers[i]) WorkerStats{};
  view.header->version = kStatsVersion;
  view.header->lcore_count = lcores;
  view.header->worker_count = workers;
  view.header->reason_count = protocol::kReasonCount;
  view.header->error_count = protocol::kErrorCodeCount;
  view.header->latency_buckets = kHistogramBuckets;
  std::atomic_ref<std::uint64_t>(view.header->magic).store(kStatsMagic, std::memory_order_release);
  // Readers never see a half-initialised file: it appears under its name complete.
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    munmap(mapped, size);
    close(fd);
    return make_error(StatsError::io_error, "cannot publish " + path + ": " + why);
  }
  return StatsFile(StatsMapping(view, size, fd));
}

StatsMapping::StatsMapping(StatsMapping&& other) noexcept
    : view_(std::exchange(other.view_, {})), size_(std::exchange(other.size_, 0)), fd_(std::exchange(other.fd_, -1)) {}

StatsMapping& StatsMapping::operator=(StatsMapping&& other) noexcept {
  if (this != &other) {
    release();
    view_ = std::exchange(other.view_, {});
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

StatsMapping::~StatsMapping() {
  release();
}

void StatsMapping::release() noexcept {
  if (view_.header != nullptr) munmap(static_cast<void*>(view_.header), size_);
  if (fd_ >= 0) close(fd_);
  view_ = {};
  size_ = 0;
  fd_ = -1;
}

StatsFile::~StatsFile() {
  if (StatsHeader* header = mapping_.view().header) header->ready.store(0, std::memory_order_release);
}

namespace detail {

Result<MappedStats, StatsError> map_stats_readonly(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(StatsError::io_error,
                      "cannot open " + path + ": " + std::strerror(errno) + "; is axon-dataplane running?");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || std::size_t(st.st_size) < sizeof(StatsHeader)) {
    close(fd);
    return make_error(StatsError::bad_file, path + " is too small to be a stats file");
  }
  const auto size = std::size_t(st.st_size);
  void* mapped = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) {
    std::string why = std::strerror(errno);
    close(fd);
    return make_error(StatsError::io_error, "cannot map " + path + ": " + why);
  }
  const auto* header = static_cast<const StatsHeader*>(mapped);
  if (header->magic != kStatsMagic || header->version != kStatsVersion ||
      header->reason_count != protocol::kReasonCount || header->error_count != protocol::kErrorCodeCount ||
      header->latency_buckets != kHistogramBuckets || header->lcore_count > kMaxLcores ||
      header->worker_count > kMaxWorkers || stats_file_size(header->lcore_count, header->worker_count) > size) {
    const std::uint32_t version = header->version;
    munmap(mapped, size);
    close(fd);
    return make_error(StatsError::bad_file, path + " has an unknown layout (version " + std::to_string(version) +
                                                ", this reader knows " + std::to_string(kStatsVersion) +
                                                "); use the tools of the running axon-dataplane's release");
  }
  MappedStats out;
  out.view = view_of(static_cast<std::byte*>(mapped), header->lcore_count);
  out.size = size;
  out.fd = fd;
  return out;
}

}  // namespace detail

}  // namespace axon::dataplane

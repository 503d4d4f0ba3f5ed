// Stats file creation and read-only attach.
#include "axon/dataplane/stats.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace axon::dataplane {
namespace {

std::size_t file_size(std::uint32_t lcores, std::uint32_t workers) {
  std::size_t header = (sizeof(StatsHeader) + 127) / 128 * 128;
  return header + lcores * sizeof(LcoreStats) + workers * sizeof(WorkerStats);
}

StatsView view_of(std::byte* base, std::uint32_t lcores) {
  std::size_t header = (sizeof(StatsHeader) + 127) / 128 * 128;
  StatsView view;
  view.header = reinterpret_cast<StatsHeader*>(base);
  view.lcores = reinterpret_cast<LcoreStats*>(base + header);
  view.workers = reinterpret_cast<WorkerStats*>(base + header + lcores * sizeof(LcoreStats));
  return view;
}

}  // namespace

Result<StatsView, StatsError> create_stats_file(const std::string& path, std::uint32_t lcores, std::uint32_t workers) {
  if (lcores == 0 || lcores > kMaxLcores || workers > kMaxWorkers) {
    return make_error(StatsError::bad_file, "stats file sizing out of range");
  }
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(StatsError::io_error, "cannot create " + tmp + ": " + std::strerror(errno) +
                                                "; check that run_dir exists and is writable");
  }
  std::size_t size = file_size(lcores, workers);
  if (ftruncate(fd, off_t(size)) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    return make_error(StatsError::io_error, "cannot size " + tmp + ": " + why);
  }
  void* mapped = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mapped == MAP_FAILED) return make_error(StatsError::io_error, "cannot map " + tmp + ": " + std::strerror(errno));
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
  view.header->latency_buckets = kLatencyBuckets;
  std::atomic_ref<std::uint64_t>(view.header->magic).store(kStatsMagic, std::memory_order_release);
  // Readers never see a half-initialised file: it appears under its name complete.
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    munmap(mapped, size);
    return make_error(StatsError::io_error, "cannot publish " + path + ": " + std::strerror(errno));
  }
  return view;
}

Result<StatsView, StatsError> open_stats_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(StatsError::io_error,
                      "cannot open " + path + ": " + std::strerror(errno) + "; is axon-dataplane running?");
  }
  struct stat st {};
  fstat(fd, &st);
  if (std::size_t(st.st_size) < sizeof(StatsHeader)) {
    close(fd);
    return make_error(StatsError::bad_file, path + " is too small to be a stats file");
  }
  void* mapped = mmap(nullptr, std::size_t(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (mapped == MAP_FAILED) return make_error(StatsError::io_error, "cannot map " + path);
  auto* header = static_cast<StatsHeader*>(mapped);
  if (header->magic != kStatsMagic || header->version != kStatsVersion ||
      header->reason_count != protocol::kReasonCount || header->error_count != protocol::kErrorCodeCount ||
      file_size(header->lcore_count, header->worker_count) > std::size_t(st.st_size)) {
    munmap(mapped, std::size_t(st.st_size));
    return make_error(StatsError::bad_file, path + " has an unknown layout (version " +
                                                std::to_string(header->version) + ", this tool reads " +
                                                std::to_string(kStatsVersion) + ")");
  }
  return view_of(static_cast<std::byte*>(mapped), header->lcore_count);
}

}  // namespace axon::dataplane

// Private to axon::dataplane_stats: maps a stats file read-only and checks its header (for
// StatsReader; the layout helpers it needs live in stats.cc beside the writer).
#pragma once

#include <cstddef>
#include <string>

#include "axon/dataplane/stats.h"

namespace axon::dataplane::detail {

struct MappedStats {
  StatsView view;
  std::size_t size = 0;
  int fd = -1;  // open read-only (O_CLOEXEC), for the caller to keep or close
};

Result<MappedStats, StatsError> map_stats_readonly(const std::string& path);

}  // namespace axon::dataplane::detail

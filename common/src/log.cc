// stderr logger: one line per call, written with a single write(2) so lines from
// concurrent processes do not interleave.
#include "axon/common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace axon::log {
namespace {
std::atomic<Level> g_level{Level::info};

const char* level_name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level level) noexcept {
  g_level.store(level, std::memory_order_relaxed);
}
Level level() noexcept {
  return g_level.load(std::memory_order_relaxed);
}

void write(Level lvl, const char* component, const char* fmt, ...) noexcept {
  if (static_cast<int>(lvl) < static_cast<int>(level())) return;
  char line[1024];
  int used = std::snprintf(line, sizeof line, "axon[%d] %s %s: ", int(getpid()), level_name(lvl), component);
  if (used < 0) return;
  std::va_list args;
  va_start(args, fmt);
  int more = std::vsnprintf(line + used, sizeof line - std::size_t(used), fmt, args);
  va_end(args);
  if (more < 0) return;
  std::size_t len = std::size_t(used) + std::size_t(more);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

}  // namespace axon::log

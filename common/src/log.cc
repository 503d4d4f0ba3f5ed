// The log front end: formats a line and hands it to the current sink (stderr, or journald
// when running under systemd; see systemd.cc).
#include "axon/common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "axon/common/systemd.h"

namespace axon::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::atomic<Sink> g_sink{nullptr};
std::atomic<bool> g_sink_chosen{false};

const char* level_name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}

void vwrite(Level lvl, const char* file, int line, const char* component, const char* fmt, std::va_list args) noexcept {
  if (static_cast<int>(lvl) < static_cast<int>(level())) return;
  if (!g_sink_chosen.load(std::memory_order_acquire)) {
    // Racing first lines may both look at the environment; they pick the same sink.
    systemd::route_logs_by_environment();
  }
  char message[1024];
  int used = std::vsnprintf(message, sizeof message, fmt, args);
  if (used < 0) return;
  std::size_t len = std::size_t(used) < sizeof message ? std::size_t(used) : sizeof message - 1;
  while (len > 0 && message[len - 1] == '\n') --len;
  Sink sink = g_sink.load(std::memory_order_acquire);
  if (sink != nullptr) {
    sink(lvl, component, file, line, message, len);
  } else {
    write_stderr(lvl, component, message, len);
  }
}
}  // namespace

void set_level(Level level) noexcept {
  g_level.store(level, std::memory_order_relaxed);
}
Level level() noexcept {
  return g_level.load(std::memory_order_relaxed);
}

void set_sink(Sink sink) noexcept {
  g_sink.store(sink, std::memory_order_release);
  g_sink_chosen.store(true, std::memory_order_release);
}

void write_stderr(Level lvl, const char* component, const char* message, std::size_t length) noexcept {
  char line[1100];
  int used = std::snprintf(line, sizeof line, "axon[%d] %s %s: ", int(getpid()), level_name(lvl), component);
  if (used < 0) return;
  std::size_t len = std::size_t(used);
  if (len > sizeof line - 2) len = sizeof line - 2;
  std::size_t room = sizeof line - 1 - len;
  if (length > room) length = room;
  std::memcpy(line + len, message, length);
  len += length;
  line[len++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

void write(Level lvl, const char* component, const char* fmt, ...) noexcept {
  std::va_list args;
  va_start(args, fmt);
  vwrite(lvl, nullptr, 0, component, fmt, args);
  va_end(args);
}

void write_at(Level lvl, const char* file, int line, const char* component, const char* fmt, ...) noexcept {
  std::va_list args;
  va_start(args, fmt);
  vwrite(lvl, file, line, component, fmt, args);
  va_end(args);
}

}  // namespace axon::log

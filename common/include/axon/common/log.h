// Minimal leveled logging for setup and control paths (never the hot path): plain lines on
// stderr, or structured entries in journald when running under systemd (common/systemd.h).
#pragma once

#include <cstdarg>
#include <cstddef>

namespace axon::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level) noexcept;
Level level() noexcept;

// printf-style; prefixes the level and component, appends a newline.
void write(Level level, const char* component, const char* fmt, ...) noexcept __attribute__((format(printf, 3, 4)));
// The same with the caller's source location (the AXON_LOG_* macros use this one).
void write_at(Level level, const char* file, int line, const char* component, const char* fmt, ...) noexcept
    __attribute__((format(printf, 5, 6)));

// Where formatted lines go. `message` has no prefix and no trailing newline; `file` may be
// null. The first line logged picks a sink from the environment unless one was set.
using Sink = void (*)(Level level, const char* component, const char* file, int line, const char* message,
                      std::size_t length) noexcept;
void set_sink(Sink sink) noexcept;  // nullptr = stderr
// The stderr sink: "axon[pid] level component: message\n" with a single write(2), so lines
// from concurrent processes do not interleave.
void write_stderr(Level level, const char* component, const char* message, std::size_t length) noexcept;

}  // namespace axon::log

#define AXON_LOG_DEBUG(component, ...) \
  ::axon::log::write_at(::axon::log::Level::debug, __FILE__, __LINE__, component, __VA_ARGS__)
#define AXON_LOG_INFO(component, ...) \
  ::axon::log::write_at(::axon::log::Level::info, __FILE__, __LINE__, component, __VA_ARGS__)
#define AXON_LOG_WARN(component, ...) \
  ::axon::log::write_at(::axon::log::Level::warn, __FILE__, __LINE__, component, __VA_ARGS__)
#define AXON_LOG_ERROR(component, ...) \
  ::axon::log::write_at(::axon::log::Level::error, __FILE__, __LINE__, component, __VA_ARGS__)

// Minimal leveled logging to stderr for setup and control paths (never the hot path).
#pragma once

#include <cstdarg>

namespace axon::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level) noexcept;
Level level() noexcept;

// printf-style; prefixes the level and component, appends a newline.
void write(Level level, const char* component, const char* fmt, ...) noexcept __attribute__((format(printf, 3, 4)));

}  // namespace axon::log

#define AXON_LOG_DEBUG(component, ...) ::axon::log::write(::axon::log::Level::debug, component, __VA_ARGS__)
#define AXON_LOG_INFO(component, ...) ::axon::log::write(::axon::log::Level::info, component, __VA_ARGS__)
#define AXON_LOG_WARN(component, ...) ::axon::log::write(::axon::log::Level::warn, component, __VA_ARGS__)
#define AXON_LOG_ERROR(component, ...) ::axon::log::write(::axon::log::Level::error, component, __VA_ARGS__)

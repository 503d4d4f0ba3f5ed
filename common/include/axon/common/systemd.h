// systemd integration without libsystemd: the sd_notify datagram protocol (readiness, status,
// watchdog) and journald's native protocol for structured log lines.
//
// Both are a few lines of AF_UNIX datagram code; writing them here keeps the daemons free of
// a libsystemd dependency and lets the tests point them at sockets the tests create.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "axon/common/log.h"

namespace axon::systemd {

// Sends service state changes to the service manager ($NOTIFY_SOCKET). Every call is a
// no-op returning true when no notify socket is configured (not started by systemd, or a
// unit without Type=notify), so daemons call it unconditionally.
class Notifier {
 public:
  // Reads $NOTIFY_SOCKET: a filesystem path, or '@name' for an abstract socket.
  static Notifier from_environment();
  explicit Notifier(std::string socket_address);  // "" = disabled
  ~Notifier();
  Notifier(Notifier&& other) noexcept;
  Notifier& operator=(Notifier&& other) noexcept;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  bool enabled() const noexcept { return !address_.empty(); }
  const std::string& address() const noexcept { return address_; }

  bool ready() noexcept { return notify("READY=1"); }
  bool status(std::string_view text) noexcept;  // one line; newlines are replaced by spaces
  bool stopping() noexcept { return notify("STOPPING=1"); }
  bool reloading() noexcept;  // RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants
  bool watchdog() noexcept { return notify("WATCHDOG=1"); }

  // Sends `state` ("KEY=VALUE\n..." lines) as one datagram. False on a send failure.
  bool notify(std::string_view state) noexcept;

 private:
  std::string address_;
  int fd_ = -1;
};

// How often to send WATCHDOG=1: half of $WATCHDOG_USEC, or zero when the watchdog is off
// ($WATCHDOG_USEC unset or invalid, or $WATCHDOG_PID names another process).
std::chrono::microseconds watchdog_interval();

// --- journald ------------------------------------------------------------------------

inline constexpr const char* kJournalSocket = "/run/systemd/journal/socket";

struct JournalField {
  std::string_view name;  // upper case, digits and '_'; must not start with '_'
  std::string_view value;
};

// Appends one field in the native protocol's form: "NAME=value\n", or for a value with a
// newline the binary-safe "NAME\n" + 64-bit little-endian length + value + "\n".
void append_journal_field(std::string& entry, std::string_view name, std::string_view value);

// syslog priority (0 emerg .. 7 debug) of an axon log level.
int journal_priority(log::Level level) noexcept;

// One journal entry per send(), as one datagram to the journal socket.
class JournalWriter {
 public:
  explicit JournalWriter(std::string socket_path = kJournalSocket);
  ~JournalWriter();
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  bool send(std::span<const JournalField> fields) noexcept;
  const std::string& socket_path() const noexcept { return socket_path_; }

 private:
  std::string socket_path_;
  int fd_ = -1;
};

// True when our stderr is already the journal ($JOURNAL_STREAM names stderr's device and
// inode), or we run in a systemd unit ($INVOCATION_ID) and the journal socket exists.
bool running_under_journal() noexcept;

// Sends every axon::log line to the journal at socket_path, with MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER (identifier), AXON_COMPONENT and CODE_FILE/CODE_LINE. A line the
// journal does not take goes to stderr instead. Thread-safe; replaces any earlier sink.
void route_logs_to_journal(const std::string& socket_path, const std::string& identifier);

// Back to plain stderr lines.
void route_logs_to_stderr();

// Called by the log on its first line: picks the journal when running_under_journal()
// (or $AXON_LOG_TARGET=journal), stderr otherwise or with $AXON_LOG_TARGET=stderr.
void route_logs_by_environment();

}  // namespace axon::systemd

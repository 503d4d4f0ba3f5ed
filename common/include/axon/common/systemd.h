// systemd integration through libsystemd, as the design names it: readiness, status and the
// watchdog (sd_notify, sd_watchdog_enabled), structured log lines to the journal
// (sd_journal_sendv), and sockets passed by socket activation (sd_listen_fds).
//
// Everything here is best effort: a service manager or journal that is not there must never
// stop a daemon, so every call is a harmless no-op outside systemd.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "axon/common/log.h"

namespace axon::systemd {

// Sends service state changes to the service manager ($NOTIFY_SOCKET, read by libsystemd on
// every call). Every call is a no-op returning true when no notify socket is configured (not
// started by systemd, or a unit without Type=notify), so daemons call it unconditionally.
class Notifier {
 public:
  static Notifier from_environment();  // remembers $NOTIFY_SOCKET for enabled()/address()

  bool enabled() const noexcept { return !address_.empty(); }
  const std::string& address() const noexcept { return address_; }

  bool ready() noexcept { return notify("READY=1"); }
  bool status(std::string_view text) noexcept;  // one line; newlines are replaced by spaces
  bool stopping() noexcept { return notify("STOPPING=1"); }
  bool reloading() noexcept;  // RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants
  bool watchdog() noexcept { return notify("WATCHDOG=1"); }

  // Sends `state` ("KEY=VALUE\n..." lines) as one message (sd_notify). False on a failure.
  bool notify(std::string_view state) noexcept;

 private:
  std::string address_;
};

// How often to send WATCHDOG=1: half of the interval sd_watchdog_enabled() reports, or zero
// when the watchdog is off ($WATCHDOG_USEC unset or invalid, or $WATCHDOG_PID names another
// process).
std::chrono::microseconds watchdog_interval();

// --- socket activation -----------------------------------------------------------------

// The listening sockets the service manager passed ($LISTEN_FDS for this $LISTEN_PID, from
// fd 3 on; sd_listen_fds), sorted by kind. The variables are unset after the first call so
// that children do not inherit them. -1 = none of that kind.
struct ActivatedSockets {
  int tcp = -1;              // a listening SOCK_STREAM AF_INET/AF_INET6 socket
  int unix_stream = -1;      // a listening SOCK_STREAM AF_UNIX socket
  std::vector<int> unknown;  // anything else passed (the caller closes or reports them)
};
ActivatedSockets activated_sockets();

// --- journald ------------------------------------------------------------------------

inline constexpr const char* kJournalSocket = "/run/systemd/journal/socket";

struct JournalField {
  std::string_view name;  // upper case, digits and '_'; must not start with '_'
  std::string_view value;
};

// syslog priority (0 emerg .. 7 debug) of an axon log level.
int journal_priority(log::Level level) noexcept;

// One journal entry per call (sd_journal_sendv; multi-line values are sent binary-safe by
// libsystemd). False when the journal did not take it.
bool journal_send(std::span<const JournalField> fields) noexcept;

// True when our stderr is already the journal ($JOURNAL_STREAM names stderr's device and
// inode), or we run in a systemd unit ($INVOCATION_ID) and the journal socket exists.
bool running_under_journal() noexcept;

// Sends every axon::log line to the journal, with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER
// (identifier), AXON_COMPONENT and CODE_FILE/CODE_LINE. A line the journal does not take goes
// to stderr instead. Thread-safe; replaces any earlier sink.
void route_logs_to_journal(const std::string& identifier);

// Back to plain stderr lines.
void route_logs_to_stderr();

// Called by the log on its first line: picks the journal when running_under_journal()
// (or $AXON_LOG_TARGET=journal), stderr otherwise or with $AXON_LOG_TARGET=stderr.
void route_logs_by_environment();

}  // namespace axon::systemd

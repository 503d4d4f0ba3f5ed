// libsystemd for sd_notify, the watchdog, the journal and socket activation (see systemd.h).
#include "axon/common/systemd.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
// Our fields carry the caller's CODE_FILE/CODE_LINE; without this, sd_journal_sendv is a
// macro that adds this file's location instead.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace axon::systemd {
namespace {

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

}  // namespace

// --- Notifier ------------------------------------------------------------------------

Notifier Notifier::from_environment() {
  Notifier n;
  n.address_ = env_or_empty("NOTIFY_SOCKET");
  return n;
}

bool Notifier::notify(std::string_view state) noexcept {
  if (address_.empty()) return true;
  try {
    // sd_notify: > 0 sent, 0 no socket configured, < 0 failed.
    return sd_notify(0, std::string(state).c_str()) >= 0;
  } catch (...) {  // allocation failure
    return false;
  }
}

bool Notifier::status(std::string_view text) noexcept {
  if (address_.empty()) return true;
  char buffer[512];
  std::size_t len = 0;
  for (char c : text) {
    if (len + 1 >= sizeof buffer) break;
    buffer[len++] = (c == '\n' || c == '\r') ? ' ' : c;
  }
  buffer[len] = '\0';
  return sd_notifyf(0, "STATUS=%s", buffer) >= 0;
}

bool Notifier::reloading() noexcept {
  if (address_.empty()) return true;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  unsigned long long usec =
      static_cast<unsigned long long>(now.tv_sec) * 1000000ULL + static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
  return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec) >= 0;
}

std::chrono::microseconds watchdog_interval() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::chrono::microseconds{0};
  return std::chrono::microseconds{static_cast<std::int64_t>(usec / 2)};
}

// --- socket activation ------------------------------------------------------------------

ActivatedSockets activated_sockets() {
  ActivatedSockets out;
  const int n = sd_listen_fds(1);
  for (int i = 0; i < n; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    if (out.tcp < 0 && (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) > 0)) {
      out.tcp = fd;
    } else if (out.unix_stream < 0 && sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0) {
      out.unix_stream = fd;
    } else {
      out.unknown.push_back(fd);
    }
  }
  return out;
}

// --- journald ------------------------------------------------------------------------

int journal_priority(log::Level level) noexcept {
  switch (level) {
    case log::Level::debug: return 7;
    case log::Level::info: return 6;
    case log::Level::warn: return 4;
    case log::Level::error: return 3;
  }
  return 6;
}

bool journal_send(std::span<const JournalField> fields) noexcept {
  // libsystemd drops an entry silently when the journal socket is missing; we want to know,
  // so the line can go to stderr instead.
  struct stat st {};
  if (::stat(kJournalSocket, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  try {
    // "NAME=value" per field; libsystemd picks the binary-safe form for multi-line values.
    std::vector<std::string> items;
    items.reserve(fields.size());
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (const JournalField& f : fields) {
      items.push_back(std::string(f.name) + "=" + std::string(f.value));
      iov.push_back(iovec{items.back().data(), items.back().size()});
    }
    return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0;
  } catch (...) {  // allocation failure: the caller falls back to stderr
    return false;
  }
}

bool running_under_journal() noexcept {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream != nullptr) {
    unsigned long long dev = 0, ino = 0;
    struct stat st {};
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
        static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino) {
      return true;
    }
  }
  if (std::getenv("INVOCATION_ID") != nullptr) {
    struct stat st {};
    if (::stat(kJournalSocket, &st) == 0 && S_ISSOCK(st.st_mode)) return true;
  }
  return false;
}

namespace {

// The journal sink's identifier. Installed once and replaced under the mutex; the log calls
// the sink without the lock (sd_journal_sendv is thread-safe).
std::mutex g_journal_mutex;
std::atomic<const std::string*> g_identifier{nullptr};
// Replaced identifiers stay alive: a concurrent log call may still hold the old pointer.
// Only tests switch more than once, so this keeps a handful of small strings.
std::vector<std::unique_ptr<std::string>>* g_identifiers = nullptr;

void journal_sink(log::Level level, const char* component, const char* file, int line, const char* message,
                  std::size_t length) noexcept {
  const std::string* identifier = g_identifier.load(std::memory_order_acquire);
  if (identifier == nullptr) {
    log::write_stderr(level, component, message, length);
    return;
  }
  char priority[2] = {char('0' + journal_priority(level)), '\0'};
  char line_text[16];
  int line_len = std::snprintf(line_text, sizeof line_text, "%d", line);
  JournalField fields[6] = {
      {"MESSAGE", std::string_view(message, length)},
      {"PRIORITY", priority},
      {"SYSLOG_IDENTIFIER", *identifier},
      {"AXON_COMPONENT", component != nullptr ? component : ""},
      {"CODE_FILE", file != nullptr ? file : ""},
      {"CODE_LINE", std::string_view(line_text, std::size_t(line_len))},
  };
  std::size_t count = file != nullptr ? 6 : 4;
  if (!journal_send(std::span<const JournalField>(fields, count))) {
    log::write_stderr(level, component, message, length);
  }
}

std::string default_identifier() {
  return program_invocation_short_name != nullptr ? program_invocation_short_name : "axon";
}

}  // namespace

void route_logs_to_journal(const std::string& identifier) {
  std::lock_guard lock(g_journal_mutex);
  if (g_identifiers == nullptr) g_identifiers = new std::vector<std::unique_ptr<std::string>>();
  g_identifiers->push_back(std::make_unique<std::string>(identifier));
  g_identifier.store(g_identifiers->back().get(), std::memory_order_release);
  log::set_sink(&journal_sink);
}

void route_logs_to_stderr() {
  std::lock_guard lock(g_journal_mutex);
  log::set_sink(nullptr);
}

void route_logs_by_environment() {
  std::string target = env_or_empty("AXON_LOG_TARGET");
  if (target == "stderr") {
    route_logs_to_stderr();
  } else if (target == "journal" || (target.empty() && running_under_journal())) {
    route_logs_to_journal(default_identifier());
  } else {
    route_logs_to_stderr();
  }
}

}  // namespace axon::systemd

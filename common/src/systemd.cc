// sd_notify and journald's native protocol, written against the documented wire formats so
// the daemons need no libsystemd. Everything here is best effort: a service manager or
// journal that is not there must never stop a daemon.
#include "axon/common/systemd.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace axon::systemd {
namespace {

// Fills `addr` for a path or an '@abstract' name; returns the address length, 0 if too long.
socklen_t make_unix_address(const std::string& address, sockaddr_un& addr) {
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (address.empty() || address.size() >= sizeof addr.sun_path) return 0;
  std::memcpy(addr.sun_path, address.data(), address.size());
  if (address[0] == '@') addr.sun_path[0] = '\0';  // abstract: no terminating NUL counted
  socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + address.size());
  if (address[0] != '@') ++len;
  return len;
}

// Created up front (not on first send) so that concurrent senders never race on the fd.
int make_datagram_socket() noexcept {
  return ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

// MSG_DONTWAIT: a slow journal or service manager is not worth blocking a daemon for.
bool send_datagram(int fd, const std::string& address, const char* data, std::size_t size) noexcept {
  if (fd < 0) return false;
  sockaddr_un addr;
  socklen_t len = make_unix_address(address, addr);
  if (len == 0) return false;
  ssize_t sent;
  do {
    sent = ::sendto(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&addr), len);
  } while (sent < 0 && errno == EINTR);
  return sent == ssize_t(size);
}

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

}  // namespace

// --- Notifier ------------------------------------------------------------------------

Notifier Notifier::from_environment() {
  return Notifier(env_or_empty("NOTIFY_SOCKET"));
}

Notifier::Notifier(std::string socket_address) : address_(std::move(socket_address)) {
  if (!address_.empty()) fd_ = make_datagram_socket();
}

Notifier::~Notifier() {
  if (fd_ >= 0) ::close(fd_);
}

Notifier::Notifier(Notifier&& other) noexcept : address_(std::move(other.address_)), fd_(other.fd_) {
  other.fd_ = -1;
  other.address_.clear();
}

Notifier& Notifier::operator=(Notifier&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    address_ = std::move(other.address_);
    fd_ = other.fd_;
    other.fd_ = -1;
    other.address_.clear();
  }
  return *this;
}

bool Notifier::notify(std::string_view state) noexcept {
  if (address_.empty()) return true;
  return send_datagram(fd_, address_, state.data(), state.size());
}

bool Notifier::status(std::string_view text) noexcept {
  if (address_.empty()) return true;
  char buffer[512];
  int used = std::snprintf(buffer, sizeof buffer, "STATUS=");
  std::size_t len = std::size_t(used);
  for (char c : text) {
    if (len >= sizeof buffer) break;
    buffer[len++] = (c == '\n' || c == '\r') ? ' ' : c;
  }
  return send_datagram(fd_, address_, buffer, len);
}

bool Notifier::reloading() noexcept {
  if (address_.empty()) return true;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  unsigned long long usec =
      static_cast<unsigned long long>(now.tv_sec) * 1000000ULL + static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
  char buffer[64];
  int len = std::snprintf(buffer, sizeof buffer, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
  return send_datagram(fd_, address_, buffer, std::size_t(len));
}

std::chrono::microseconds watchdog_interval() {
  std::string usec_text = env_or_empty("WATCHDOG_USEC");
  if (usec_text.empty()) return std::chrono::microseconds{0};
  std::string pid_text = env_or_empty("WATCHDOG_PID");
  if (!pid_text.empty()) {
    char* end = nullptr;
    long pid = std::strtol(pid_text.c_str(), &end, 10);
    if (end == pid_text.c_str() || *end != '\0' || pid != long(getpid())) return std::chrono::microseconds{0};
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long usec = std::strtoull(usec_text.c_str(), &end, 10);
  if (errno != 0 || end == usec_text.c_str() || *end != '\0' || usec == 0 || usec_text[0] == '-') {
    return std::chrono::microseconds{0};
  }
  return std::chrono::microseconds{static_cast<std::int64_t>(usec / 2)};
}

// --- journald ------------------------------------------------------------------------

void append_journal_field(std::string& entry, std::string_view name, std::string_view value) {
  entry.append(name);
  if (value.find('\n') == std::string_view::npos) {
    entry.push_back('=');
    entry.append(value);
  } else {
    entry.push_back('\n');
    std::uint64_t size = value.size();
    for (int i = 0; i < 8; ++i) entry.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
    entry.append(value);
  }
  entry.push_back('\n');
}

int journal_priority(log::Level level) noexcept {
  switch (level) {
    case log::Level::debug: return 7;
    case log::Level::info: return 6;
    case log::Level::warn: return 4;
    case log::Level::error: return 3;
  }
  return 6;
}

JournalWriter::JournalWriter(std::string socket_path)
    : socket_path_(std::move(socket_path)), fd_(make_datagram_socket()) {}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) ::close(fd_);
}

bool JournalWriter::send(std::span<const JournalField> fields) noexcept {
  try {
    std::string entry;
    entry.reserve(256);
    for (const JournalField& f : fields) append_journal_field(entry, f.name, f.value);
    return send_datagram(fd_, socket_path_, entry.data(), entry.size());
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

// The journal sink's state. Installed once and replaced under the mutex; the log calls the
// sink without the lock because send() on a datagram socket is itself thread-safe.
struct JournalSink {
  JournalWriter writer;
  std::string identifier;
  JournalSink(const std::string& path, const std::string& ident) : writer(path), identifier(ident) {}
};

std::mutex g_journal_mutex;
std::atomic<JournalSink*> g_journal{nullptr};
// Replaced sinks stay alive: a concurrent log call may still hold the old pointer. Only
// tests switch more than once, so this keeps a handful of small objects.
std::vector<std::unique_ptr<JournalSink>>* g_journal_sinks = nullptr;

void journal_sink(log::Level level, const char* component, const char* file, int line, const char* message,
                  std::size_t length) noexcept {
  JournalSink* sink = g_journal.load(std::memory_order_acquire);
  if (sink == nullptr) {
    log::write_stderr(level, component, message, length);
    return;
  }
  char priority[2] = {char('0' + journal_priority(level)), '\0'};
  char line_text[16];
  int line_len = std::snprintf(line_text, sizeof line_text, "%d", line);
  JournalField fields[6] = {
      {"MESSAGE", std::string_view(message, length)}, {"PRIORITY", priority},
      {"SYSLOG_IDENTIFIER", sink->identifier},        {"AXON_COMPONENT", component != nullptr ? component : ""},
      {"CODE_FILE", file != nullptr ? file : ""},     {"CODE_LINE", std::string_view(line_text, std::size_t(line_len))},
  };
  std::size_t count = file != nullptr ? 6 : 4;
  if (!sink->writer.send(std::span<const JournalField>(fields, count))) {
    log::write_stderr(level, component, message, length);
  }
}

std::string default_identifier() {
  return program_invocation_short_name != nullptr ? program_invocation_short_name : "axon";
}

}  // namespace

void route_logs_to_journal(const std::string& socket_path, const std::string& identifier) {
  std::lock_guard lock(g_journal_mutex);
  if (g_journal_sinks == nullptr) g_journal_sinks = new std::vector<std::unique_ptr<JournalSink>>();
  g_journal_sinks->push_back(std::make_unique<JournalSink>(socket_path, identifier));
  g_journal.store(g_journal_sinks->back().get(), std::memory_order_release);
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
    route_logs_to_journal(kJournalSocket, default_identifier());
  } else {
    route_logs_to_stderr();
  }
}

}  // namespace axon::systemd

// systemd integration (libsystemd) against real AF_UNIX datagram sockets the test binds: a
// notify socket (filesystem path and abstract name) named by $NOTIFY_SOCKET, and the journal
// socket at its fixed path inside a private mount namespace (root only), so libsystemd's
// sd_journal_sendv reaches the test instead of the host's journal.
#include "axon/common/systemd.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "axon/common/log.h"

namespace axon::systemd {
namespace {

// A bound datagram socket; `address` is a path or '@abstract'.
class Listener {
 public:
  explicit Listener(std::string address) : address_(std::move(address)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, address_.data(), address_.size());
    socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + address_.size());
    if (address_[0] == '@') {
      addr.sun_path[0] = '\0';
    } else {
      ::unlink(address_.c_str());
      ++len;
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0) << std::strerror(errno);
  }
  ~Listener() {
    ::close(fd_);
    if (address_[0] != '@') ::unlink(address_.c_str());
  }
  const std::string& address() const { return address_; }

  // One datagram, or nullopt after 2 s.
  std::optional<std::string> receive() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return std::nullopt;
    char buffer[65536];
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0) return std::nullopt;
    return std::string(buffer, std::size_t(n));
  }
  bool idle() {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 100) == 0;
  }

 private:
  std::string address_;
  int fd_ = -1;
};

std::string temp_path(const char* name) {
  return "/tmp/axon-ops-" + std::to_string(getpid()) + "-" + name;
}

// Parses a native-protocol entry (both field forms) into name -> value; fails the test on
// malformed input.
std::map<std::string, std::string> parse_entry(const std::string& entry) {
  std::map<std::string, std::string> fields;
  std::size_t pos = 0;
  while (pos < entry.size()) {
    std::size_t eol = entry.find('\n', pos);
    std::size_t eq = entry.find('=', pos);
    if (eol == std::string::npos) {
      ADD_FAILURE() << "unterminated field at " << pos;
      break;
    }
    if (eq != std::string::npos && eq < eol) {
      fields[entry.substr(pos, eq - pos)] = entry.substr(eq + 1, eol - eq - 1);
      pos = eol + 1;
      continue;
    }
    std::string name = entry.substr(pos, eol - pos);
    pos = eol + 1;
    if (pos + 8 > entry.size()) {
      ADD_FAILURE() << "truncated length of " << name;
      break;
    }
    std::uint64_t size = 0;
    for (int i = 0; i < 8; ++i) size |= std::uint64_t(std::uint8_t(entry[pos + std::size_t(i)])) << (8 * i);
    pos += 8;
    if (pos + size + 1 > entry.size() || entry[pos + size] != '\n') {
      ADD_FAILURE() << "bad binary field " << name;
      break;
    }
    fields[name] = entry.substr(pos, size);
    pos += size + 1;
  }
  return fields;
}

class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    const char* v = std::getenv(name);
    if (v != nullptr) old_ = v;
  }
  ~EnvGuard() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Notifier, SendsEachStateToAPathSocket) {
  Listener listener(temp_path("notify.sock"));
  EnvGuard guard("NOTIFY_SOCKET");
  setenv("NOTIFY_SOCKET", listener.address().c_str(), 1);
  Notifier notifier = Notifier::from_environment();
  ASSERT_TRUE(notifier.enabled());

  ASSERT_TRUE(notifier.ready());
  EXPECT_EQ(listener.receive(), "READY=1");
  ASSERT_TRUE(notifier.status("xdp, 2 workers alive\n12 req/s"));
  EXPECT_EQ(listener.receive(), "STATUS=xdp, 2 workers alive 12 req/s");
  ASSERT_TRUE(notifier.watchdog());
  EXPECT_EQ(listener.receive(), "WATCHDOG=1");
  ASSERT_TRUE(notifier.stopping());
  EXPECT_EQ(listener.receive(), "STOPPING=1");

  timespec before{};
  clock_gettime(CLOCK_MONOTONIC, &before);
  ASSERT_TRUE(notifier.reloading());
  auto reloading = listener.receive();
  ASSERT_TRUE(reloading);
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  ASSERT_EQ(reloading->compare(0, prefix.size(), prefix), 0) << *reloading;
  unsigned long long usec = std::stoull(reloading->substr(prefix.size()));
  unsigned long long before_usec = static_cast<unsigned long long>(before.tv_sec) * 1000000ULL +
                                   static_cast<unsigned long long>(before.tv_nsec) / 1000ULL;
  EXPECT_GE(usec, before_usec);
  EXPECT_LT(usec, before_usec + 10'000'000ULL);
}

TEST(Notifier, SendsToAnAbstractSocketFromTheEnvironment) {
  Listener listener("@axon-ops-notify-" + std::to_string(getpid()));
  EnvGuard guard("NOTIFY_SOCKET");
  setenv("NOTIFY_SOCKET", listener.address().c_str(), 1);
  Notifier notifier = Notifier::from_environment();
  ASSERT_EQ(notifier.address(), listener.address());
  ASSERT_TRUE(notifier.ready());
  EXPECT_EQ(listener.receive(), "READY=1");
  ASSERT_TRUE(notifier.notify("STATUS=two\nWATCHDOG=1"));
  EXPECT_EQ(listener.receive(), "STATUS=two\nWATCHDOG=1");
  ASSERT_TRUE(notifier.watchdog());
  EXPECT_EQ(listener.receive(), "WATCHDOG=1");
}

TEST(Notifier, IsANoOpWithoutNotifySocketAndFailsOnAMissingOne) {
  EnvGuard guard("NOTIFY_SOCKET");
  unsetenv("NOTIFY_SOCKET");
  Notifier off = Notifier::from_environment();
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.ready());
  EXPECT_TRUE(off.status("x"));

  setenv("NOTIFY_SOCKET", temp_path("nobody-listens.sock").c_str(), 1);
  Notifier missing = Notifier::from_environment();
  EXPECT_TRUE(missing.enabled());
  EXPECT_FALSE(missing.ready());
}

TEST(Watchdog, IntervalIsHalfOfWatchdogUsecForThisProcess) {
  EnvGuard usec_guard("WATCHDOG_USEC");
  EnvGuard pid_guard("WATCHDOG_PID");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  EXPECT_EQ(watchdog_interval().count(), 0);

  setenv("WATCHDOG_USEC", "30000000", 1);
  EXPECT_EQ(watchdog_interval(), std::chrono::seconds(15));
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(watchdog_interval(), std::chrono::seconds(15));
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_EQ(watchdog_interval().count(), 0) << "the watchdog belongs to another process";
  unsetenv("WATCHDOG_PID");
  for (const char* bad : {"", "abc", "12x", "0", "-5"}) {
    setenv("WATCHDOG_USEC", bad, 1);
    EXPECT_EQ(watchdog_interval().count(), 0) << "WATCHDOG_USEC=" << bad;
  }
}

TEST(Journal, PrioritiesFollowSyslog) {
  EXPECT_EQ(journal_priority(log::Level::error), 3);
  EXPECT_EQ(journal_priority(log::Level::warn), 4);
  EXPECT_EQ(journal_priority(log::Level::info), 6);
  EXPECT_EQ(journal_priority(log::Level::debug), 7);
}

// libsystemd always writes to /run/systemd/journal/socket. A private mount namespace with
// its own /run lets the test bind that path without touching the host's journal.
bool enter_private_run() {
  static const bool done = [] {
    if (::unshare(CLONE_NEWNS) != 0) return false;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
    if (::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") != 0) return false;
    std::error_code ec;
    std::filesystem::create_directories("/run/systemd/journal", ec);
    return !ec;
  }();
  return done;
}

TEST(Journal, SendsOneEntryPerCall) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: a private mount namespace for the journal socket";
  ASSERT_TRUE(enter_private_run()) << std::strerror(errno);
  Listener journal(kJournalSocket);
  JournalField fields[] = {{"MESSAGE", "a=b\nc"}, {"PRIORITY", "6"}, {"SYSLOG_IDENTIFIER", "axon-test"}};
  ASSERT_TRUE(journal_send(fields));
  auto entry = journal.receive();
  ASSERT_TRUE(entry);
  auto parsed = parse_entry(*entry);
  EXPECT_EQ(parsed["MESSAGE"], "a=b\nc");  // multi-line: libsystemd's binary-safe form
  EXPECT_EQ(parsed["PRIORITY"], "6");
  EXPECT_EQ(parsed["SYSLOG_IDENTIFIER"], "axon-test");
  EXPECT_TRUE(journal.idle());
}

TEST(Journal, LogMacrosGoToTheJournalWithStructuredFields) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: a private mount namespace for the journal socket";
  ASSERT_TRUE(enter_private_run()) << std::strerror(errno);
  auto journal = std::make_unique<Listener>(kJournalSocket);
  route_logs_to_journal("axon-ops-test");
  const int line = __LINE__ + 1;
  AXON_LOG_WARN("unit", "disk %d%% full", 93);
  auto entry = journal->receive();
  ASSERT_TRUE(entry);
  auto fields = parse_entry(*entry);
  EXPECT_EQ(fields["MESSAGE"], "disk 93% full");
  EXPECT_EQ(fields["PRIORITY"], "4");
  EXPECT_EQ(fields["SYSLOG_IDENTIFIER"], "axon-ops-test");
  EXPECT_EQ(fields["AXON_COMPONENT"], "unit");
  EXPECT_NE(fields["CODE_FILE"].find("systemd_test.cc"), std::string::npos) << fields["CODE_FILE"];
  EXPECT_EQ(fields["CODE_LINE"], std::to_string(line));

  AXON_LOG_ERROR("unit", "first\nsecond");
  entry = journal->receive();
  ASSERT_TRUE(entry);
  fields = parse_entry(*entry);
  EXPECT_EQ(fields["MESSAGE"], "first\nsecond");
  EXPECT_EQ(fields["PRIORITY"], "3");

  // Below the level: nothing is sent.
  AXON_LOG_DEBUG("unit", "hidden");
  EXPECT_TRUE(journal->idle());

  // A journal that is gone: the line still reaches stderr.
  journal.reset();
  testing::internal::CaptureStderr();
  AXON_LOG_ERROR("unit", "still visible");
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("error unit: still visible"), std::string::npos) << err;

  journal = std::make_unique<Listener>(kJournalSocket);
  route_logs_to_stderr();
  testing::internal::CaptureStderr();
  AXON_LOG_INFO("unit", "plain");
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("info unit: plain\n"), std::string::npos) << err;
  EXPECT_TRUE(journal->idle());
}

TEST(Journal, DetectsAStderrConnectedToTheJournal) {
  EnvGuard stream_guard("JOURNAL_STREAM");
  EnvGuard invocation_guard("INVOCATION_ID");
  unsetenv("INVOCATION_ID");
  unsetenv("JOURNAL_STREAM");
  struct stat st {};
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  const bool journal_socket = ::access(kJournalSocket, F_OK) == 0;
  EXPECT_FALSE(running_under_journal());
  std::string matching = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  setenv("JOURNAL_STREAM", matching.c_str(), 1);
  EXPECT_TRUE(running_under_journal());
  std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  setenv("JOURNAL_STREAM", other.c_str(), 1);
  EXPECT_FALSE(running_under_journal()) << "stderr was redirected away from the journal";
  setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
  EXPECT_EQ(running_under_journal(), journal_socket);
}

}  // namespace
}  // namespace axon::systemd

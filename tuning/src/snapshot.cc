// Snapshot file and state lock (see snapshot.h). The file is JSON so an operator can read
// it; docs/tuning.md documents every field.
#include "snapshot.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

namespace axon::tuning {
namespace {

using nlohmann::json;

const char* format_name(FileFormat f) {
  switch (f) {
    case FileFormat::plain: return "plain";
    case FileFormat::bracket: return "bracket";
    case FileFormat::cpulist: return "cpulist";
    case FileFormat::cpumask: return "cpumask";
  }
  return "plain";
}

std::optional<FileFormat> format_from(const std::string& s) {
  if (s == "plain") return FileFormat::plain;
  if (s == "bracket") return FileFormat::bracket;
  if (s == "cpulist") return FileFormat::cpulist;
  if (s == "cpumask") return FileFormat::cpumask;
  return std::nullopt;
}

std::string utc_now() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Error<TuningError> io(const std::string& what, int err) {
  return make_error(TuningError::io_error, what + ": " + std::strerror(err) +
                                               " (the state directory must be writable by root; set it with "
                                               "--state-dir)");
}

TResult<Ok> make_dirs(const std::string& dir) {
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) return io("cannot create " + partial, errno);
  }
  return Ok{};
}

bool write_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += std::size_t(n);
  }
  return true;
}

json to_json(const Snapshot& s) {
  json entries = json::array();
  for (const auto& e : s.entries) {
    json j = {{"kind", e.knob.kind == KnobKind::ethtool ? "ethtool" : "file"},
              {"section", e.knob.section},
              {"knob", e.knob.label},
              {"original", e.original},
              {"netns", e.knob.netns_scoped}};
    if (e.knob.kind == KnobKind::ethtool) {
      j["interface"] = e.knob.ifname;
      j["param"] = to_string(e.knob.param);
    } else {
      j["path"] = e.knob.path;
      j["format"] = format_name(e.knob.format);
    }
    entries.push_back(std::move(j));
  }
  return json{
      {"format", Snapshot::kFormat}, {"profile", s.profile}, {"root", s.root}, {"netns", s.netns}, {"state", s.state},
      {"updated", s.updated},        {"entries", entries}};
}

TResult<Snapshot> from_json(const json& j, const std::string& path) {
  auto corrupt = [&](const std::string& what) {
    return make_error(TuningError::snapshot_corrupt,
                      path + " is not a valid snapshot (" + what +
                          "); it holds the values to restore: inspect it before moving it away");
  };
  if (!j.is_object() || !j.contains("format") || !j["format"].is_number_integer()) return corrupt("no format");
  if (j["format"].get<int>() != Snapshot::kFormat) {
    return corrupt("format " + std::to_string(j["format"].get<int>()) + ", this axon reads format " +
                   std::to_string(Snapshot::kFormat));
  }
  Snapshot s;
  try {
    s.profile = j.at("profile").get<std::string>();
    s.root = j.at("root").get<std::string>();
    s.netns = j.at("netns").get<std::string>();
    s.state = j.at("state").get<std::string>();
    s.updated = j.at("updated").get<std::string>();
    for (const auto& e : j.at("entries")) {
      SnapshotEntry entry;
      entry.knob.section = e.at("section").get<std::string>();
      entry.knob.label = e.at("knob").get<std::string>();
      entry.knob.group = entry.knob.label;
      entry.knob.netns_scoped = e.at("netns").get<bool>();
      entry.original = e.at("original").get<std::string>();
      const std::string kind = e.at("kind").get<std::string>();
      if (kind == "ethtool") {
        entry.knob.kind = KnobKind::ethtool;
        entry.knob.ifname = e.at("interface").get<std::string>();
        auto param = ethtool_param_from_string(e.at("param").get<std::string>());
        if (!param) return corrupt("unknown ethtool param in " + entry.knob.label);
        entry.knob.param = *param;
      } else if (kind == "file") {
        entry.knob.kind = KnobKind::file;
        entry.knob.path = e.at("path").get<std::string>();
        auto format = format_from(e.at("format").get<std::string>());
        if (!format || entry.knob.path.empty() || entry.knob.path.front() != '/' ||
            entry.knob.path.find("/../") != std::string::npos) {
          return corrupt("bad path or format in " + entry.knob.label);
        }
        entry.knob.format = *format;
      } else {
        return corrupt("unknown kind '" + kind + "'");
      }
      s.entries.push_back(std::move(entry));
    }
  } catch (const json::exception& e) {
    return corrupt(e.what());
  }
  return s;
}

}  // namespace

const SnapshotEntry* Snapshot::find(const std::string& key) const {
  for (const auto& e : entries) {
    if (e.knob.key() == key) return &e;
  }
  return nullptr;
}

bool Snapshot::has_netns_entries() const {
  for (const auto& e : entries) {
    if (e.knob.netns_scoped) return true;
  }
  return false;
}

std::string snapshot_path(const Options& options) {
  return options.state_dir + "/snapshot.json";
}

TResult<std::optional<Snapshot>> load_snapshot(const Options& options) {
  const std::string path = snapshot_path(options);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<Snapshot>{};
    return io("cannot open " + path, errno);
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return io("cannot read " + path, err);
    }
    if (n == 0) break;
    text.append(buf, std::size_t(n));
  }
  ::close(fd);
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return make_error(TuningError::snapshot_corrupt,
                      path + " is not valid JSON; it holds the values to restore: inspect it before moving it away");
  }
  auto s = from_json(j, path);
  if (!s) return s.error();
  return std::optional<Snapshot>(std::move(s.value()));
}

TResult<Ok> save_snapshot(const Options& options, const Snapshot& snapshot) {
  auto dirs = make_dirs(options.state_dir);
  if (!dirs) return dirs;
  Snapshot s = snapshot;
  s.updated = utc_now();
  const std::string path = snapshot_path(options);
  const std::string tmp = path + ".tmp";
  const std::string data = to_json(s).dump(2) + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io("cannot create " + tmp, errno);
  if (!write_all(fd, data) || ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return io("cannot write " + tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io("cannot rename " + tmp + " to " + path, err);
  }
  // The rename is durable only once the directory entry is.
  const int dfd = ::open(options.state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return io("cannot open " + options.state_dir, errno);
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return io("cannot fsync " + options.state_dir, err);
  return Ok{};
}

TResult<Ok> remove_snapshot(const Options& options) {
  const std::string path = snapshot_path(options);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return io("cannot remove " + path, errno);
  const int dfd = ::open(options.state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Ok{};
}

TResult<StateLock> StateLock::acquire(const Options& options) {
  auto dirs = make_dirs(options.state_dir);
  if (!dirs) return dirs.error();
  const std::string path = options.state_dir + "/lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io("cannot open " + path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return make_error(TuningError::locked, "another tuning apply or rollback holds " + path +
                                                 "; wait for it to finish (the control plane may be applying its "
                                                 "profile) and try again");
    }
    return io("cannot lock " + path, err);
  }
  return StateLock(fd);
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace axon::tuning

// Reading and writing knobs (see knobs.h): files below the root prefix, or ethtool netlink.
#include "knobs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "cpus.h"

namespace axon::tuning {
namespace {

std::string collapse_spaces(const std::string& text) {
  std::istringstream in(text);
  std::string word, out;
  while (in >> word) {
    if (!out.empty()) out += ' ';
    out += word;
  }
  return out;
}

// "always [madvise] never" -> "madvise"; a file without brackets is taken as it is.
std::string bracketed(const std::string& text) {
  const auto open = text.find('[');
  const auto close = text.find(']', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || close == std::string::npos) return collapse_spaces(text);
  return text.substr(open + 1, close - open - 1);
}

std::string canonical(const Knob& knob, const std::string& raw) {
  switch (knob.format) {
    case FileFormat::plain: return collapse_spaces(raw);
    case FileFormat::bracket: return bracketed(raw);
    case FileFormat::cpulist:
    case FileFormat::cpumask: return collapse_spaces(raw);
  }
  return raw;
}

// errno of a failed open/write -> missing (nothing there) or refused, with a reason that
// says what to do where there is something to do.
KnobError classify(int err, const std::string& path, const char* op, std::string& why) {
  why = std::string(op) + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENODEV:
      why = path + " does not exist on this host (this kernel or driver lacks the knob)";
      return KnobError::missing;
    case EROFS: why += " (read-only here: a container or a read-only /proc/sys mount)"; break;
    case EACCES:
    case EPERM: why += " (run as root, outside a container that masks it)"; break;
    case EOPNOTSUPP: why += " (the kernel or driver does not support this setting here)"; break;
    case EINVAL: why += " (the kernel refused this value)"; break;
    case EIO: why += " (the kernel refused: for an IRQ, a managed or per-CPU interrupt)"; break;
    default: break;
  }
  return KnobError::refused;
}

}  // namespace

std::string Knob::key() const {
  if (kind == KnobKind::ethtool) return "ethtool:" + ifname + ":" + to_string(param);
  return "file:" + path;
}

std::string Knob::where() const {
  if (kind == KnobKind::ethtool) return "ethtool-netlink:" + ifname;
  return path;
}

std::string join_root(const std::string& root, const std::string& path) {
  if (root.empty() || root == "/") return path;
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r + path;
}

std::optional<std::string> read_text(const std::string& root, const std::string& path) {
  const std::string full = join_root(root, path);
  const int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, std::size_t(n));
    if (out.size() > (1u << 22)) break;  // bounded: no knob is this large
  }
  ::close(fd);
  return out;
}

Result<std::string, KnobError> read_knob(const std::string& root, const Knob& knob, std::string& why) {
  if (knob.kind == KnobKind::ethtool) {
    auto v = ethtool_read(knob.ifname, knob.param, why);
    if (!v) return make_error(v.code() == EthtoolError::missing ? KnobError::missing : KnobError::refused, why);
    return std::to_string(v.value());
  }
  const std::string full = join_root(root, knob.path);
  const int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return make_error(classify(errno, knob.path, "cannot read", why), why);
  ::close(fd);
  auto text = read_text(root, knob.path);
  if (!text) return make_error(classify(errno, knob.path, "cannot read", why), why);
  return canonical(knob, *text);
}

Result<std::string, KnobError> read_original(const std::string& root, const Knob& knob, std::string& why) {
  if (knob.kind == KnobKind::ethtool || knob.format == FileFormat::bracket) return read_knob(root, knob, why);
  auto canonical_value = read_knob(root, knob, why);  // same errors, same missing/refused split
  if (!canonical_value) return canonical_value;
  auto text = read_text(root, knob.path);
  if (!text) return make_error(classify(errno, knob.path, "cannot read", why), why);
  if (!text->empty() && text->back() == '\n') text->pop_back();
  return *text;
}

Result<Ok, KnobError> write_knob(const std::string& root, const Knob& knob, const std::string& value,
                                 std::string& why) {
  if (knob.kind == KnobKind::ethtool) {
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || v > 0xffffffffUL) {
      why = "not a number: '" + value + "'";
      return make_error(KnobError::refused, why);
    }
    auto r = ethtool_write(knob.ifname, knob.param, std::uint32_t(v), why);
    if (!r) return make_error(r.code() == EthtoolError::missing ? KnobError::missing : KnobError::refused, why);
    return Ok{};
  }
  const std::string full = join_root(root, knob.path);
  // No O_CREAT: a knob that is not there is reported, never invented (also in a sandbox).
  // O_TRUNC as a shell's `>` does: kernel files ignore it, sandbox files are rewritten whole.
  const int fd = ::open(full.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return make_error(classify(errno, knob.path, "cannot open", why), why);
  const std::string line = value + "\n";
  ssize_t n;
  do {
    n = ::write(fd, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n < 0) return make_error(classify(err, knob.path, "cannot write", why), why);
  if (std::size_t(n) != line.size()) {
    why = "short write to " + knob.path;
    return make_error(KnobError::refused, why);
  }
  return Ok{};
}

bool same_value(const Knob& knob, const std::string& a, const std::string& b) {
  if (knob.kind == KnobKind::file && knob.format == FileFormat::cpulist) {
    auto x = parse_cpulist(a), y = parse_cpulist(b);
    if (x && y) return *x == *y;
  }
  if (knob.kind == KnobKind::file && knob.format == FileFormat::cpumask) {
    auto x = parse_cpumask(a), y = parse_cpumask(b);
    if (x && y) return *x == *y;
  }
  return collapse_spaces(a) == collapse_spaces(b);
}

}  // namespace axon::tuning

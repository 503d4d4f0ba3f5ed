// TokenStore: bearer tokens kept only as SHA-256 hashes in a line-based file.
//
// Why a fast, unsalted hash is right here: the tokens are 256 random bits we generate, not
// passwords people choose. Nobody can guess one, so slow hashing (bcrypt, argon2) and salts,
// which exist to slow down dictionary attacks on low-entropy secrets, would buy nothing and
// would cost milliseconds of CPU on every API request. A leaked tokens file yields only
// hashes whose preimages are out of reach.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

using Digest = std::array<unsigned char, 32>;

// nullopt only if OpenSSL itself fails (out of memory, a broken provider).
std::optional<Digest> sha256(const std::string& data) {
  Digest out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size()) {
    return std::nullopt;
  }
  return out;
}

std::string to_hex(const Digest& d) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

bool from_hex(const std::string& hex, Digest& out) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

std::string base64url(const unsigned char* data, std::size_t size) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < size; ++i) {
    acc = (acc << 8) | data[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += alphabet[(acc << (6 - bits)) & 63];
  return out;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == '@';
    if (!ok) return false;
  }
  return true;  // no ':', so a name never collides with the unix socket's "uid:N" identities
}

}  // namespace

Result<TokenStore, ApiServerError> TokenStore::load(const std::string& tokens_file) {
  TokenStore store;
  std::ifstream in(tokens_file);
  if (!in) {
    return make_error(ApiServerError::tokens_error,
                      "cannot read tokens file " + tokens_file + ": " + std::strerror(errno) +
                          " (create one: axon-controlplane token create --name <name> --role admin)");
  }
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string name, role, digest, extra;
    if (!(fields >> name)) continue;  // blank or comment
    const std::string where = tokens_file + ":" + std::to_string(line_no) + ": ";
    if (!(fields >> role >> digest) || (fields >> extra)) {
      return make_error(ApiServerError::tokens_error, where + "expected \"<name> <reader|admin> sha256:<hex>\"");
    }
    if (!valid_name(name)) {
      return make_error(ApiServerError::tokens_error,
                        where + "token name '" + name + "' must be 1-64 of [A-Za-z0-9._@-]");
    }
    Entry entry;
    entry.identity.name = name;
    if (role == "reader") {
      entry.identity.role = Role::reader;
    } else if (role == "admin") {
      entry.identity.role = Role::admin;
    } else {
      return make_error(ApiServerError::tokens_error, where + "role '" + role + "' must be reader or admin");
    }
    if (digest.rfind("sha256:", 0) != 0 || !from_hex(digest.substr(7), entry.sha256)) {
      return make_error(ApiServerError::tokens_error, where + "hash must be sha256: followed by 64 hex digits");
    }
    for (const auto& other : store.entries_) {
      if (other.identity.name == name) {
        return make_error(ApiServerError::tokens_error, where + "token name '" + name + "' appears twice");
      }
    }
    store.entries_.push_back(std::move(entry));
  }
  return store;
}

std::optional<TokenStore::Identity> TokenStore::lookup(const std::string& token) const {
  const auto hashed = sha256(token);
  if (!hashed) return std::nullopt;  // fail closed: a token we cannot hash matches nobody
  const Digest& presented = *hashed;
  // Compare against every entry, in constant time each, with no early exit: the time taken
  // says nothing about which entry (or how much of one) matched.
  std::size_t match = entries_.size();
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const int differs = CRYPTO_memcmp(presented.data(), entries_[i].sha256.data(), presented.size());
    match = differs == 0 ? i : match;
  }
  if (match == entries_.size()) return std::nullopt;
  return entries_[match].identity;
}

Result<std::string, ApiServerError> TokenStore::create(const std::string& tokens_file, const std::string& name,
                                                       Role role) {
  if (!valid_name(name)) {
    return make_error(ApiServerError::invalid_argument, "token name '" + name + "' must be 1-64 of [A-Za-z0-9._@-]");
  }
  // Refuse duplicates and a file we could not parse back.
  if (::access(tokens_file.c_str(), F_OK) == 0) {
    auto existing = load(tokens_file);
    if (!existing) return existing.error();
    for (const auto& e : existing->entries_) {
      if (e.identity.name == name) {
        return make_error(ApiServerError::invalid_argument,
                          "a token named '" + name + "' already exists in " + tokens_file + "; remove its line first");
      }
    }
  }
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) {
    return make_error(ApiServerError::tokens_error, "OpenSSL RAND_bytes failed; the system has no entropy source");
  }
  const std::string token = base64url(random, sizeof random);
  const auto hashed = sha256(token);
  if (!hashed)
    return make_error(ApiServerError::tokens_error, "OpenSSL SHA-256 failed; check the OpenSSL installation");
  const std::string line =
      name + " " + (role == Role::admin ? "admin" : "reader") + " sha256:" + to_hex(*hashed) + "\n";

  const int fd = ::open(tokens_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return make_error(ApiServerError::tokens_error,
                      "cannot open tokens file " + tokens_file + " for appending: " + std::strerror(errno));
  }
  // The file may predate us with a looser mode; hashes are not secrets, but names and roles
  // are nobody else's business either.
  (void)::fchmod(fd, 0600);
  const auto written = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(line.size())) {
    return make_error(ApiServerError::tokens_error,
                      "cannot write tokens file " + tokens_file + ": " + std::strerror(write_errno));
  }
  return token;
}

}  // namespace axon::controlplane

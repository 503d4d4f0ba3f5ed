// The etcd gateway's encodings: base64 keys and values, and prefix range ends (see etcd.h).
#include <openssl/evp.h>

#include <string>

#include "axon/fleet/etcd.h"

namespace axon::fleet {

std::string prefix_range_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// base64 through OpenSSL's EVP block coder (RFC 4648 alphabet, padded), as etcd's gateway speaks it.
std::string base64_encode(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : std::size_t(n));
  return out;
}

bool base64_decode(const std::string& text, std::string& out) {
  out.clear();
  // EVP_DecodeBlock takes whole quanta only, skips surrounding whitespace (etcd sends none) and
  // counts padding as zero bytes: both checked here, so "Zm9" and "Z=9v" are refused.
  if (text.size() % 4 != 0) return false;
  std::size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
  if (text.find('=') < text.size() - pad) return false;
  out.resize(text.size() / 4 * 3);
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || std::size_t(n) < pad) {
    out.clear();
    return false;
  }
  out.resize(std::size_t(n) - pad);
  return true;
}

}  // namespace axon::fleet

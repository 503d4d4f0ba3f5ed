// Writes the seed corpus for axp_fuzz: valid requests in every presentation mode, one seed per
// malformed-datagram rule of docs/protocol.md, and raw frames that break L2-L4 rules. Each file
// is <mode byte><bytes> (see axp_fuzz.cc). Usage: make_corpus <output directory>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "axon/protocol/axp.h"

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes request(std::size_t payload_size) {
  axon::protocol::Header h;
  h.type = axon::protocol::MessageType::request;
  h.tenant_id = 1;
  h.agent_id = 7;
  h.request_id = 0x1122334455667788ull;
  h.session_key = 42;
  h.deadline_us = 5000;
  h.trace_id[0] = 1;
  h.span_id[0] = 2;
  Bytes payload(payload_size);
  for (std::size_t i = 0; i < payload_size; ++i) payload[i] = std::uint8_t(i * 7);
  Bytes out(axon::protocol::kHeaderLen + payload_size);
  out.resize(axon::protocol::encode_datagram(h, payload, out));
  return out;
}

Bytes mutate(Bytes d, std::size_t offset, std::initializer_list<std::uint8_t> bytes) {
  std::size_t i = offset;
  for (std::uint8_t b : bytes) d[i++] = b;
  return d;
}

Bytes frame_v4(const Bytes& udp_payload, std::uint16_t frag = 0x4000, int udp_len_extra = 0, int ip_len_extra = 0) {
  Bytes f(14 + 20 + 8, 0);
  std::memset(f.data(), 0x02, 12);
  f[12] = 0x08;
  const std::size_t udp_len = 8 + udp_payload.size();
  const std::size_t total = 20 + udp_len + std::size_t(ip_len_extra);
  std::uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  ip[2] = std::uint8_t(total >> 8);
  ip[3] = std::uint8_t(total);
  ip[6] = std::uint8_t(frag >> 8);
  ip[7] = std::uint8_t(frag);
  ip[8] = 64;
  ip[9] = 17;
  ip[12] = 10;
  ip[15] = 2;
  ip[16] = 10;
  ip[19] = 1;
  std::uint8_t* udp = ip + 20;
  udp[0] = 0x9c;
  udp[1] = 0x40;
  udp[2] = std::uint8_t(axon::protocol::kDefaultPort >> 8);
  udp[3] = std::uint8_t(axon::protocol::kDefaultPort & 0xff);
  udp[4] = std::uint8_t((udp_len + std::size_t(udp_len_extra)) >> 8);
  udp[5] = std::uint8_t(udp_len + std::size_t(udp_len_extra));
  f.insert(f.end(), udp_payload.begin(), udp_payload.end());
  return f;
}

bool write_seed(const std::string& dir, const std::string& name, std::uint8_t mode, const Bytes& bytes) {
  const std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  bool ok = std::fwrite(&mode, 1, 1, f) == 1 && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const Bytes valid = request(16);
  const Bytes empty = request(0);
  struct Seed {
    const char* name;
    std::uint8_t mode;
    Bytes bytes;
  };
  std::vector<Seed> seeds = {
      {"valid-frame-v4", 0, frame_v4(valid)},
      {"valid-udp-v4", 1, valid},
      {"valid-udp-v6-vlan", 2, request(300)},
      {"valid-datagram", 3, valid},
      {"valid-empty-payload", 1, empty},
      {"bad-magic", 1, mutate(valid, 0, {'X', 'X', 'X', 'X'})},
      {"bad-version", 1, mutate(valid, 4, {2})},
      {"bad-type", 1, mutate(valid, 5, {9})},
      {"not-request", 1, mutate(valid, 5, {2})},
      {"bad-priority", 1, mutate(valid, 6, {7})},
      {"header-len-84", 1, mutate(valid, 8, {0, 84})},
      {"header-len-520", 1, mutate(valid, 8, {2, 8})},
      {"payload-len-long", 1, mutate(valid, 10, {0, 200})},
      {"payload-len-short", 1, mutate(valid, 10, {0, 4})},
      {"segment-count-0", 1, mutate(valid, 14, {0, 0})},
      {"segment-index-past", 1, mutate(valid, 12, {0, 3})},
      {"message-too-large", 1, mutate(valid, 68, {0, 1, 0x11, 0x70})},
      {"truncated-header", 1, Bytes(valid.begin(), valid.begin() + 40)},
      {"truncated-magic", 3, Bytes(valid.begin(), valid.begin() + 6)},
      {"ipv4-fragment", 0, frame_v4(valid, 0x2000)},
      {"udp-len-beyond-ip", 0, frame_v4(valid, 0x4000, 64)},
      {"ip-len-beyond-frame", 0, frame_v4(valid, 0x4000, 0, 64)},
      {"eth-truncated", 0, Bytes(10, 0xff)},
  };
  for (const Seed& s : seeds) {
    if (!write_seed(dir, s.name, s.mode, s.bytes)) {
      std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), s.name);
      return 1;
    }
  }
  std::printf("%zu seeds in %s\n", seeds.size(), dir.c_str());
  return 0;
}

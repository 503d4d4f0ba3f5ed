// axon-bench-dedup: what retransmit dedup costs per request on one lcore (dataplane/src/dedup.h),
// the table alone, no network: a miss (lookup, entered in flight) plus its settlement with a
// cached reply of --payload bytes, and a hit (lookup of an answered request, the reply found).
// Keys cycle over --keys distinct requests; the table holds --entries and the window never ends
// within the run, so the hit pass finds every key answered.
//
//   axon-bench-dedup [--entries N] [--keys N] [--payload BYTES] [--rounds N]
//
// Prints one JSON object: ns per miss+settle and ns per hit (the median of --rounds passes).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dedup.h"

namespace {

using axon::dataplane::DedupKey;
using axon::dataplane::DedupLimits;
using axon::dataplane::DedupPolicy;
using axon::dataplane::DedupTable;

std::uint64_t now_ns() {
  return std::uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

DedupKey key_of(std::uint64_t id) {
  DedupKey key;
  key.tenant_id = 1;
  key.src_port = std::uint16_t(40000 + id % 1000);
  key.src_addr[15] = std::uint8_t(id);
  key.src_addr[14] = std::uint8_t(id >> 8);
  key.request_id = id * 0x9e3779b97f4a7c15ull;
  return key;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t entries = 8192, keys = 4096, payload = 256, rounds = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const auto value = std::uint32_t(std::strtoul(argv[i + 1], nullptr, 10));
    if (arg == "--entries") {
      entries = value;
    } else if (arg == "--keys") {
      keys = value;
    } else if (arg == "--payload") {
      payload = value;
    } else if (arg == "--rounds") {
      rounds = value;
    } else {
      std::fprintf(stderr, "usage: %s [--entries N] [--keys N] [--payload BYTES] [--rounds N]\n", argv[0]);
      return 2;
    }
  }
  if (keys == 0 || keys > entries || rounds == 0) {
    std::fprintf(stderr, "axon-bench-dedup: use 1 <= --keys <= --entries and --rounds >= 1\n");
    return 2;
  }
  std::vector<DedupKey> all(keys);
  for (std::uint32_t i = 0; i < keys; ++i) all[i] = key_of(i + 1);
  const std::vector<std::uint8_t> body(payload, 0x5a);
  axon::protocol::Header reply;
  reply.type = axon::protocol::MessageType::response;
  DedupPolicy policy;
  policy.window_ns = 3600ull * 1'000'000'000ull;
  policy.cache_entries = keys;
  std::vector<double> miss_ns, hit_ns;
  std::uint64_t sink = 0;
  for (std::uint32_t r = 0; r < rounds; ++r) {
    auto created = DedupTable::create(DedupLimits{entries, std::max<std::uint32_t>(64u << 20, payload * keys)});
    if (!created) {
      std::fprintf(stderr, "axon-bench-dedup: %s\n", created.message().c_str());
      return 1;
    }
    DedupTable& t = *created.value();
    const std::uint64_t t0 = now_ns();
    for (std::uint32_t i = 0; i < keys; ++i) {
      const auto found = t.begin(all[i], 7, policy, 1);
      (void)t.settle(found.entry, found.generation, true, reply, body, 2);
    }
    const std::uint64_t t1 = now_ns();
    for (std::uint32_t i = 0; i < keys; ++i) {
      const auto found = t.begin(all[i], 7, policy, 3);
      sink += found.entry + t.payload(found.entry).size();
    }
    const std::uint64_t t2 = now_ns();
    miss_ns.push_back(double(t1 - t0) / keys);
    hit_ns.push_back(double(t2 - t1) / keys);
  }
  std::printf(
      "{\"entries\":%u,\"keys\":%u,\"payload\":%u,\"rounds\":%u,\"miss_and_settle_ns\":%.1f,\"hit_ns\":%.1f,"
      "\"check\":%llu}\n",
      entries, keys, payload, rounds, median(miss_ns), median(hit_ns), static_cast<unsigned long long>(sink % 7));
  return 0;
}

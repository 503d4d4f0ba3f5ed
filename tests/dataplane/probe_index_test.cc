// probe::Index, the linear-probing index under the dedup, reassembly and response-cache tables:
// after any mix of inserts and backward-shift deletions, every held element is found and no
// removed one is, checked against std::unordered_map on colliding hashes.
#include "probe_index.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

namespace axon::dataplane::probe {
namespace {

TEST(ProbeIndex, ChurnKeepsEveryHeldElementFindableAndNoRemovedOne) {
  constexpr std::uint32_t kElements = 64;
  Index index;
  index.allocate(kElements);
  // Few distinct hashes, so chains collide and wrap around the 128-slot table's end.
  std::vector<std::uint64_t> hash(kElements);
  std::mt19937_64 rng(7);
  for (auto& h : hash) h = 120 + rng() % 16;
  const auto hash_of = [&](std::uint32_t e) { return hash[e]; };
  std::unordered_map<std::uint32_t, bool> held;
  for (int step = 0; step < 20000; ++step) {
    const auto e = std::uint32_t(rng() % kElements);
    if (held[e]) {
      index.erase(e, hash[e], hash_of);
      held[e] = false;
    } else {
      index.insert(e, hash[e]);
      held[e] = true;
    }
    if (step % 97 != 0) continue;
    for (std::uint32_t x = 0; x < kElements; ++x) {
      const std::uint32_t found = index.find(hash[x], [x](std::uint32_t y) { return y == x; });
      ASSERT_EQ(found, held[x] ? x : Index::kEmpty) << "element " << x << " at step " << step;
    }
  }
}

TEST(ProbeIndex, CloseHoleMovesOnlyElementsWhoseHomeAllowsIt) {
  // Slots 6, 7, 0 (wrapping) hold homes 6, 6, 0 in an 8-slot table; emptying 6 moves the second
  // home-6 element back to 6 and leaves the home-0 element where it is.
  std::vector<int> home = {0, -1, -1, -1, -1, -1, 6, 6};
  home[6] = -1;  // the element just removed
  close_hole(
      6, 7, [&](std::uint32_t j) { return home[j] < 0; }, [&](std::uint32_t j) { return std::uint64_t(home[j]); },
      [&](std::uint32_t from, std::uint32_t to) {
        home[to] = home[from];
        home[from] = -1;
      });
  EXPECT_EQ(home, (std::vector<int>{0, -1, -1, -1, -1, -1, 6, -1}));
}

}  // namespace
}  // namespace axon::dataplane::probe

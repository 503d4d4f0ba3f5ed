// The tests' one hugepage helper (issue 12 item 7): how many 2 MiB hugepages are free (the
// shm library's own count, which the tests must agree with) and reserving more when a test
// needs them. Header only; target axon::test_support (links axon::shm).
#pragma once

#include <fstream>

#include "axon/shm/region.h"

namespace axon::testing {

// HugePages_Free from /proc/meminfo, or -1 when the kernel reports none.
inline long free_hugepages() noexcept {
  return shm::free_hugepages();
}

// Makes sure at least `pages` 2 MiB hugepages are free, raising vm.nr_hugepages if needed
// (the tests run as root). Returns how many are free afterwards.
inline long ensure_free_hugepages(long pages) {
  const long free = free_hugepages();
  if (free >= pages) return free;
  long total = 0;
  {
    std::ifstream in("/proc/sys/vm/nr_hugepages");
    in >> total;
  }
  {
    std::ofstream out("/proc/sys/vm/nr_hugepages");
    out << (total + pages - (free < 0 ? 0 : free)) << "\n";
  }
  return free_hugepages();
}

}  // namespace axon::testing

// Error codes for shm setup: creating, formatting, handing over and attaching segments.
#pragma once

#include "axon/common/result.h"

namespace axon::shm {

enum class ShmError {
  invalid_argument,     // a size or geometry that cannot work
  memfd_failed,         // memfd_create refused
  no_memory,            // neither hugepages nor regular shared memory could be reserved
  map_failed,           // mmap refused
  seal_failed,          // the segment could not be sealed against resizing
  bad_fd,               // the descriptor handed over is not a usable memfd
  truncated,            // the region is smaller than its header claims
  bad_magic,            // not an axon segment
  version_mismatch,     // layout version differs between the two sides
  generation_mismatch,  // attached to a recycled segment
  corrupt_geometry,     // offsets or sizes in the header do not fit the region
  handoff_failed,       // the Unix-socket handover of the fd failed
  watch_failed,         // pidfd_open or poll failed
};

const char* to_string(ShmError code) noexcept;

template <typename T>
using ShmResult = Result<T, ShmError>;

}  // namespace axon::shm

// The message format between axon-baseline-server and its worker processes, and the worker's
// main loop. One SOCK_SEQPACKET socketpair per worker keeps message boundaries, so a message is
// exactly one LinkHeader followed by the payload.
#pragma once

#include <cstddef>
#include <cstdint>

namespace axon::baseline {

struct LinkHeader {
  std::uint64_t token;        // the server's in-flight slot, echoed by the worker
  std::uint32_t payload_len;  // bytes after this header
  std::uint32_t reserved;
};
static_assert(sizeof(LinkHeader) == 16);

// Largest payload a request may carry through the baseline (a jumbo datagram); larger datagrams
// are dropped at the UDP socket as oversize.
inline constexpr std::size_t kMaxPayload = 16 * 1024 - 80;
inline constexpr std::size_t kLinkMessageMax = sizeof(LinkHeader) + kMaxPayload;

// The worker process: receives batches of requests on `fd`, echoes each payload into a reply
// (the same work axon's example echo worker does), sends the batch back. Returns when the
// server closes its end. `cpu` >= 0 pins the process.
int run_worker(int fd, int cpu, unsigned index);

}  // namespace axon::baseline

// The baseline's worker process: batched receive from the server's Unix socket, echo, batched
// send back. It blocks in recvmmsg when idle, as a conventional worker process would.
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <vector>

#include "axon/common/cpu.h"
#include "axon/common/log.h"

#include "worker_link.h"

namespace axon::baseline {
namespace {
constexpr unsigned kBatch = 64;
}

int run_worker(int fd, int cpu, unsigned index) {
  // The server decides when workers stop (it closes the socket); Ctrl-C on the terminal reaches
  // the whole process group, so ignore SIGINT here and let the server shut down in order.
  std::signal(SIGINT, SIG_IGN);
  // A server killed with -9 cannot close anything: follow it instead of lingering.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (cpu >= 0) {
    if (auto pinned = pin_this_thread(cpu); !pinned)
      AXON_LOG_WARN("baseline-worker", "worker %u: %s", index, pinned.message().c_str());
  }

  std::vector<std::uint8_t> in(kBatch * kLinkMessageMax);
  std::vector<std::uint8_t> out(kBatch * kLinkMessageMax);
  std::array<mmsghdr, kBatch> rx{};
  std::array<iovec, kBatch> rx_iov{};
  std::array<mmsghdr, kBatch> tx{};
  std::array<iovec, kBatch> tx_iov{};
  for (unsigned i = 0; i < kBatch; ++i) {
    rx_iov[i] = {in.data() + i * kLinkMessageMax, kLinkMessageMax};
    rx[i].msg_hdr.msg_iov = &rx_iov[i];
    rx[i].msg_hdr.msg_iovlen = 1;
    tx[i].msg_hdr.msg_iov = &tx_iov[i];
    tx[i].msg_hdr.msg_iovlen = 1;
  }

  bool running = true;
  while (running) {
    // MSG_WAITFORONE: sleep until one message arrives, then take whatever else is queued.
    int n = recvmmsg(fd, rx.data(), kBatch, MSG_WAITFORONE, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) break;  // the server closed its end
    unsigned replies = 0;
    for (int i = 0; i < n; ++i) {
      std::size_t len = rx[i].msg_len;
      if (len == 0) {  // EOF inside a batch: answer what came before it, then stop
        running = false;
        break;
      }
      if (len < sizeof(LinkHeader)) continue;
      const std::uint8_t* msg = in.data() + i * kLinkMessageMax;
      LinkHeader h;
      std::memcpy(&h, msg, sizeof h);
      if (h.payload_len > len - sizeof h) continue;
      // The "work": the reply payload is a copy of the request payload, written into the
      // reply buffer like a handler would produce its output.
      std::uint8_t* reply = out.data() + replies * kLinkMessageMax;
      std::memcpy(reply, &h, sizeof h);
      std::memcpy(reply + sizeof h, msg + sizeof h, h.payload_len);
      tx_iov[replies] = {reply, sizeof h + h.payload_len};
      ++replies;
    }
    unsigned sent = 0;
    while (sent < replies) {
      int m = sendmmsg(fd, tx.data() + sent, replies - sent, 0);
      if (m < 0) {
        if (errno == EINTR) continue;
        running = false;  // EPIPE: the server is gone
        break;
      }
      sent += static_cast<unsigned>(m);
    }
  }
  ::close(fd);
  return 0;
}

}  // namespace axon::baseline

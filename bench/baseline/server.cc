// axon-baseline-server: the traditional peer axon is measured against. An epoll loop reads AXP
// requests from a UDP socket with recvmmsg, hands each to one of N forked worker processes over
// a Unix SOCK_SEQPACKET socketpair (batched with sendmmsg), and sends the replies back with
// sendmmsg. It is what a careful engineer builds today without kernel bypass: nonblocking,
// batched in every direction, no copies on the server beyond what the sockets do.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/clock.h"
#include "axon/common/cpu.h"
#include "axon/common/log.h"
#include "axon/loadgen/id_list.h"
#include "axon/loadgen/net.h"
#include "axon/protocol/axp.h"

#include "worker_link.h"

namespace axon::baseline {
namespace {

namespace p = axon::protocol;
constexpr const char* kLog = "baseline";
constexpr unsigned kBatch = 64;                   // datagrams per recvmmsg/sendmmsg
constexpr unsigned kRxBatchesPerWakeup = 8;       // then serve the workers' replies too
constexpr std::size_t kRxSlot = kLinkMessageMax;  // a request datagram: 80 + kMaxPayload
constexpr std::size_t kTxSlot = p::kHeaderLen + kMaxPayload;

struct Options {
  std::string bind = "0.0.0.0";
  std::uint16_t port = p::kDefaultPort;
  unsigned workers = 1;
  int cpu = -1;
  int worker_cpu = -2;  // -2: follow --cpu
  double duration_s = 0;
  std::string tenants = "1";
  std::string agents = "1-1024";
  unsigned max_inflight = 65536;
  std::uint32_t busy_retry_us = 200;
  int worker_sndbuf = 0;  // 0: the kernel default for the worker sockets
  int udp_buffer = 4 << 20;
};

struct Counters {
  std::uint64_t rx = 0, forwarded = 0, responses = 0, busy = 0, errors = 0, tx = 0, tx_dropped = 0, oversize = 0;
  std::uint64_t deadline_exceeded = 0, stale_worker_replies = 0;
  std::array<std::uint64_t, p::kReasonCount> invalid{};
};

// Where a forwarded request waits for its worker's reply.
struct Inflight {
  p::Header request;
  loadgen::SockAddr client;
  std::uint64_t received_ns = 0;
  std::uint32_t generation = 0;
  std::uint32_t worker = 0;
  bool busy = false;
};

struct Worker {
  pid_t pid = -1;
  int fd = -1;
  bool alive = false;
  // Requests collected for this worker during one receive batch, sent with one sendmmsg.
  std::array<mmsghdr, kBatch> msgs{};
  std::array<std::array<iovec, 2>, kBatch> iov{};
  std::array<LinkHeader, kBatch> headers{};
  std::array<std::uint32_t, kBatch> slots{};
  unsigned pending = 0;
};

class Server {
 public:
  Server(const Options& o, loadgen::IdList tenants, loadgen::IdList agents)
      : o_(o), tenants_(std::move(tenants)), agents_(std::move(agents)) {}
  ~Server() { shutdown(); }

  bool start();
  int run();

 private:
  bool spawn_workers();
  bool open_udp();
  void on_udp();
  void on_worker(unsigned w);
  void worker_failed(unsigned w);
  void route(std::span<const std::uint8_t> dgram, const loadgen::SockAddr& from, std::uint64_t now);
  void flush_workers();
  void reply(const p::Header& h, std::span<const std::uint8_t> payload, const loadgen::SockAddr& to);
  void reply_error(const p::Header& request, p::ErrorCode code, const loadgen::SockAddr& to,
                   std::uint32_t retry_after_us = 0);
  void flush_tx();
  void reap_children(bool wait_all);
  void shutdown();
  void print_summary() const;

  Options o_;
  loadgen::IdList tenants_, agents_;
  int udp_ = -1, epoll_ = -1, sigfd_ = -1;
  std::vector<std::unique_ptr<Worker>> workers_;
  unsigned alive_ = 0;
  unsigned round_robin_ = 0;

  std::vector<Inflight> inflight_;
  std::vector<std::uint32_t> free_;

  // Receive side: one recvmmsg batch.
  std::vector<std::uint8_t> rx_buf_ = std::vector<std::uint8_t>(kBatch * kRxSlot);
  std::array<mmsghdr, kBatch> rx_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<loadgen::SockAddr, kBatch> rx_from_{};
  // Replies from one worker.
  std::vector<std::uint8_t> wrx_buf_ = std::vector<std::uint8_t>(kBatch * kLinkMessageMax);
  std::array<mmsghdr, kBatch> wrx_{};
  std::array<iovec, kBatch> wrx_iov_{};
  // Transmit side: AXP replies waiting for one sendmmsg.
  std::vector<std::uint8_t> tx_buf_ = std::vector<std::uint8_t>(kBatch * kTxSlot);
  std::array<mmsghdr, kBatch> tx_{};
  std::array<iovec, kBatch> tx_iov_{};
  std::array<loadgen::SockAddr, kBatch> tx_to_{};
  unsigned tx_pending_ = 0;

  Counters c_;
  bool stopping_ = false;
};

bool Server::spawn_workers() {
  int worker_cpu = o_.worker_cpu == -2 ? o_.cpu : o_.worker_cpu;
  std::vector<int> server_ends;
  for (unsigned i = 0; i < o_.workers; ++i) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      AXON_LOG_ERROR(kLog, "socketpair: %s", std::strerror(errno));
      return false;
    }
    if (o_.worker_sndbuf > 0) {
      // Both directions: the server's queue toward the worker decides when BUSY starts.
      for (int fd : sv) setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &o_.worker_sndbuf, sizeof o_.worker_sndbuf);
    }
    pid_t pid = fork();
    if (pid < 0) {
      AXON_LOG_ERROR(kLog, "fork: %s", std::strerror(errno));
      ::close(sv[0]);
      ::close(sv[1]);
      return false;
    }
    if (pid == 0) {
      // The child keeps only its own end; the signals the server blocked are its to handle.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      for (int fd : server_ends) ::close(fd);
      ::close(sv[0]);
      _exit(run_worker(sv[1], worker_cpu, i));
    }
    ::close(sv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    server_ends.push_back(sv[0]);
    auto w = std::make_unique<Worker>();
    w->pid = pid;
    w->fd = sv[0];
    w->alive = true;
    for (unsigned k = 0; k < kBatch; ++k) {
      w->msgs[k].msg_hdr.msg_iov = w->iov[k].data();
      w->msgs[k].msg_hdr.msg_iovlen = 2;
      w->iov[k][0] = {&w->headers[k], sizeof(LinkHeader)};
    }
    workers_.push_back(std::move(w));
    ++alive_;
  }
  return true;
}

bool Server::open_udp() {
  auto addr = loadgen::numeric_address(o_.bind, o_.port);
  if (!addr) {
    AXON_LOG_ERROR(kLog, "--bind: %s", addr.message().c_str());
    return false;
  }
  udp_ = ::socket(addr->family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp_ < 0) {
    AXON_LOG_ERROR(kLog, "socket: %s", std::strerror(errno));
    return false;
  }
  int one = 1, zero = 0;
  setsockopt(udp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr->family() == AF_INET6) setsockopt(udp_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  // Deep socket buffers absorb bursts; FORCE as root, the plain option (capped) otherwise.
  if (setsockopt(udp_, SOL_SOCKET, SO_RCVBUFFORCE, &o_.udp_buffer, sizeof o_.udp_buffer) != 0)
    setsockopt(udp_, SOL_SOCKET, SO_RCVBUF, &o_.udp_buffer, sizeof o_.udp_buffer);
  if (setsockopt(udp_, SOL_SOCKET, SO_SNDBUFFORCE, &o_.udp_buffer, sizeof o_.udp_buffer) != 0)
    setsockopt(udp_, SOL_SOCKET, SO_SNDBUF, &o_.udp_buffer, sizeof o_.udp_buffer);
  if (::bind(udp_, addr->get(), addr->len) != 0) {
    AXON_LOG_ERROR(kLog, "bind %s: %s", addr->to_string().c_str(), std::strerror(errno));
    return false;
  }
  loadgen::SockAddr bound;
  bound.len = sizeof bound.storage;
  getsockname(udp_, bound.get(), &bound.len);
  // The one line on stdout: scripts and tests wait for it (and read the port from it).
  std::printf("axon-baseline-server: listening on %s workers=%u\n", bound.to_string().c_str(), o_.workers);
  std::fflush(stdout);
  return true;
}

bool Server::start() {
  // Block the signals first: workers inherit the mask, and reset it themselves.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // Workers are forked before any other descriptor exists, so they inherit nothing else.
  if (!spawn_workers()) return false;
  if (o_.cpu >= 0) {
    if (auto pinned = pin_this_thread(o_.cpu); !pinned) {
      AXON_LOG_ERROR(kLog, "%s", pinned.message().c_str());
      return false;
    }
  }
  sigfd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  if (sigfd_ < 0 || epoll_ < 0 || !open_udp()) return false;

  inflight_.resize(o_.max_inflight);
  free_.reserve(o_.max_inflight);
  for (std::uint32_t i = o_.max_inflight; i > 0; --i) free_.push_back(i - 1);

  for (unsigned i = 0; i < kBatch; ++i) {
    rx_iov_[i] = {rx_buf_.data() + i * kRxSlot, kRxSlot};
    rx_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_[i].msg_hdr.msg_iovlen = 1;
    wrx_iov_[i] = {wrx_buf_.data() + i * kLinkMessageMax, kLinkMessageMax};
    wrx_[i].msg_hdr.msg_iov = &wrx_iov_[i];
    wrx_[i].msg_hdr.msg_iovlen = 1;
    tx_[i].msg_hdr.msg_iov = &tx_iov_[i];
    tx_[i].msg_hdr.msg_iovlen = 1;
  }

  // Event tags: 0 = UDP socket, 1 = signals, 2 + w = worker w.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, udp_, &ev);
  ev.data.u64 = 1;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, sigfd_, &ev);
  for (unsigned w = 0; w < workers_.size(); ++w) {
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = 2 + w;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, workers_[w]->fd, &ev);
  }
  return true;
}

void Server::route(std::span<const std::uint8_t> dgram, const loadgen::SockAddr& from, std::uint64_t now) {
  p::Reason reason = p::validate_request(dgram);
  if (reason != p::Reason::ok) {
    // docs/protocol.md §7: a v1 ERROR for another major version, only when it cannot amplify.
    if (reason == p::Reason::bad_version && dgram.size() >= p::kHeaderLen && dgram[5] == AXP_MSG_REQUEST) {
      p::Header h = p::decode_header(dgram);
      h.priority = p::Priority::interactive;  // a later version may number priorities differently
      reply_error(h, p::ErrorCode::unsupported_version, from);
    }
    ++c_.invalid[static_cast<std::size_t>(reason)];
    return;
  }
  p::Header h = p::decode_header(dgram);
  if (h.segment_count > 1) {  // no reassembly: one error per message, on segment 0 (§6)
    if (h.segment_index == 0) reply_error(h, p::ErrorCode::payload_too_large, from);
    return;
  }
  if (!tenants_.contains(h.tenant_id)) return reply_error(h, p::ErrorCode::unknown_tenant, from);
  if (!agents_.contains(h.agent_id)) return reply_error(h, p::ErrorCode::unknown_agent, from);
  if (alive_ == 0) return reply_error(h, p::ErrorCode::worker_failed, from);
  if (free_.empty()) {
    ++c_.busy;
    reply(p::make_busy_reply(h, o_.busy_retry_us, p::random_span_id()), {}, from);
    return;
  }

  // Sticky requests hash to a worker; the rest go round robin.
  unsigned w;
  if (h.session_key != 0) {
    std::uint64_t k = h.session_key ^ (std::uint64_t{h.tenant_id} << 32 | h.agent_id);
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    w = static_cast<unsigned>(k % workers_.size());
  } else {
    w = round_robin_++ % static_cast<unsigned>(workers_.size());
  }
  for (unsigned tries = 0; !workers_[w]->alive && tries < workers_.size(); ++tries)
    w = (w + 1) % static_cast<unsigned>(workers_.size());
  Worker& wk = *workers_[w];
  if (wk.pending == kBatch) flush_workers();

  std::uint32_t slot = free_.back();
  free_.pop_back();
  Inflight& f = inflight_[slot];
  f.request = h;
  f.client = from;
  f.received_ns = now;
  f.worker = w;
  f.busy = true;
  auto body = p::payload_of(dgram);
  unsigned k = wk.pending++;
  wk.headers[k] = LinkHeader{(std::uint64_t{f.generation} << 32) | slot, static_cast<std::uint32_t>(body.size()), 0};
  // The payload is sent straight from the receive buffer: no copy in the server.
  wk.iov[k][1] = {const_cast<std::uint8_t*>(body.data()), body.size()};
  wk.slots[k] = slot;
}

void Server::flush_workers() {
  for (unsigned w = 0; w < workers_.size(); ++w) {
    Worker& wk = *workers_[w];
    unsigned sent = 0;
    while (sent < wk.pending) {
      int n = sendmmsg(wk.fd, wk.msgs.data() + sent, wk.pending - sent, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: the worker's queue is full (or it died): the rest get BUSY
      }
      sent += static_cast<unsigned>(n);
    }
    c_.forwarded += sent;
    for (unsigned k = sent; k < wk.pending; ++k) {
      Inflight& f = inflight_[wk.slots[k]];
      f.busy = false;
      ++f.generation;
      free_.push_back(wk.slots[k]);
      ++c_.busy;
      reply(p::make_busy_reply(f.request, o_.busy_retry_us, p::random_span_id()), {}, f.client);
    }
    wk.pending = 0;
  }
}

void Server::on_udp() {
  for (unsigned round = 0; round < kRxBatchesPerWakeup; ++round) {
    for (unsigned i = 0; i < kBatch; ++i) {
      rx_[i].msg_hdr.msg_name = rx_from_[i].get();
      rx_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      rx_[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(udp_, rx_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    std::uint64_t now = monotonic_ns();
    for (int i = 0; i < n; ++i) {
      ++c_.rx;
      rx_from_[i].len = rx_[i].msg_hdr.msg_namelen;
      if (rx_[i].msg_hdr.msg_flags & MSG_TRUNC) {
        ++c_.oversize;
        continue;
      }
      route({rx_buf_.data() + i * kRxSlot, rx_[i].msg_len}, rx_from_[i], now);
    }
    // Forward before reading more: the payload iovecs point into this batch's buffers.
    flush_workers();
    if (static_cast<unsigned>(n) < kBatch) break;
  }
  flush_tx();
}

void Server::on_worker(unsigned w) {
  Worker& wk = *workers_[w];
  for (;;) {
    int n = recvmmsg(wk.fd, wrx_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) worker_failed(w);
      break;
    }
    if (n == 0) {
      worker_failed(w);
      break;
    }
    std::uint64_t now = monotonic_ns();
    for (int i = 0; i < n; ++i) {
      const std::uint8_t* msg = wrx_buf_.data() + i * kLinkMessageMax;
      if (wrx_[i].msg_len == 0) {  // EOF: the worker exited
        worker_failed(w);
        break;
      }
      LinkHeader h;
      if (wrx_[i].msg_len < sizeof h) continue;
      std::memcpy(&h, msg, sizeof h);
      auto slot = static_cast<std::uint32_t>(h.token);
      if (slot >= inflight_.size() || inflight_[slot].generation != (h.token >> 32) || !inflight_[slot].busy ||
          h.payload_len > wrx_[i].msg_len - sizeof h) {
        ++c_.stale_worker_replies;
        continue;
      }
      Inflight& f = inflight_[slot];
      std::uint64_t deadline_ns = std::uint64_t{f.request.deadline_us} * 1000;
      if (deadline_ns != 0 && now - f.received_ns > deadline_ns) {
        ++c_.deadline_exceeded;
        reply_error(f.request, p::ErrorCode::deadline_exceeded, f.client);
      } else {
        ++c_.responses;
        reply(p::make_reply(f.request, p::MessageType::response, p::random_span_id()), {msg + sizeof h, h.payload_len},
              f.client);
      }
      f.busy = false;
      ++f.generation;
      free_.push_back(slot);
    }
    if (!wk.alive || static_cast<unsigned>(n) < kBatch) break;
  }
  flush_tx();
}

void Server::worker_failed(unsigned w) {
  Worker& wk = *workers_[w];
  if (!wk.alive) return;
  wk.alive = false;
  --alive_;
  AXON_LOG_WARN(kLog, "worker %u (pid %d) is gone; its in-flight requests get ERROR worker_failed", w, wk.pid);
  epoll_ctl(epoll_, EPOLL_CTL_DEL, wk.fd, nullptr);
  // Rare and bounded by max_inflight: a scan is simpler than per-worker in-flight lists.
  for (std::uint32_t slot = 0; slot < inflight_.size(); ++slot) {
    Inflight& f = inflight_[slot];
    if (!f.busy || f.worker != w) continue;
    reply_error(f.request, p::ErrorCode::worker_failed, f.client);
    f.busy = false;
    ++f.generation;
    free_.push_back(slot);
  }
  flush_tx();
}

void Server::reply(const p::Header& h, std::span<const std::uint8_t> payload, const loadgen::SockAddr& to) {
  if (tx_pending_ == kBatch) flush_tx();
  unsigned k = tx_pending_;
  std::uint8_t* buf = tx_buf_.data() + k * kTxSlot;
  std::size_t len = p::encode_datagram(h, payload, {buf, kTxSlot});
  if (len == 0) return;
  tx_to_[k] = to;
  tx_iov_[k] = {buf, len};
  tx_[k].msg_hdr.msg_name = tx_to_[k].get();
  tx_[k].msg_hdr.msg_namelen = to.len;
  ++tx_pending_;
}

void Server::reply_error(const p::Header& request, p::ErrorCode code, const loadgen::SockAddr& to,
                         std::uint32_t retry_after_us) {
  ++c_.errors;
  reply(p::make_error_reply(request, code, p::random_span_id(), retry_after_us), {}, to);
}

void Server::flush_tx() {
  unsigned sent = 0;
  while (sent < tx_pending_) {
    int n = sendmmsg(udp_, tx_.data() + sent, tx_pending_ - sent, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        ++sent;  // an error specific to the first datagram (e.g. unreachable): skip it
        ++c_.tx_dropped;
        continue;
      }
      break;  // the socket buffer is full: the rest is dropped, as the kernel would
    }
    sent += static_cast<unsigned>(n);
    c_.tx += static_cast<unsigned>(n);
  }
  c_.tx_dropped += tx_pending_ - sent;
  tx_pending_ = 0;
}

void Server::reap_children(bool wait_all) {
  for (auto& w : workers_) {
    if (w->pid <= 0) continue;
    int status = 0;
    pid_t r = waitpid(w->pid, &status, wait_all ? 0 : WNOHANG);
    if (r == w->pid) {
      w->pid = -1;
      if (w->alive) {
        // Exited before its socket reported EOF; treat it the same way.
        for (unsigned i = 0; i < workers_.size(); ++i)
          if (workers_[i].get() == w.get()) worker_failed(i);
      }
    }
  }
}

int Server::run() {
  double stop_at = o_.duration_s > 0 ? static_cast<double>(monotonic_ns()) + o_.duration_s * 1e9 : 0;
  std::array<epoll_event, 32> events{};
  while (!stopping_) {
    int timeout_ms = -1;
    if (stop_at > 0) {
      double left = stop_at - static_cast<double>(monotonic_ns());
      if (left <= 0) break;
      timeout_ms = static_cast<int>(left / 1e6) + 1;
    }
    int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      AXON_LOG_ERROR(kLog, "epoll_wait: %s", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      std::uint64_t tag = events[i].data.u64;
      if (tag == 0) {
        on_udp();
      } else if (tag == 1) {
        signalfd_siginfo si;
        while (::read(sigfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          if (si.ssi_signo == SIGCHLD)
            reap_children(false);
          else
            stopping_ = true;
        }
      } else {
        unsigned w = static_cast<unsigned>(tag - 2);
        if (events[i].events & EPOLLIN) on_worker(w);
        if (events[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) {
          on_worker(w);  // take the replies it sent before it went away
          worker_failed(w);
        }
      }
    }
  }
  shutdown();
  print_summary();
  return 0;
}

void Server::shutdown() {
  if (epoll_ < 0 && workers_.empty()) return;
  // Closing the server's ends is the workers' signal to exit; SIGKILL only if one hangs.
  for (auto& w : workers_) {
    if (w->fd >= 0) ::close(w->fd);
    w->fd = -1;
  }
  std::uint64_t give_up = monotonic_ns() + 2'000'000'000ull;
  for (auto& w : workers_) {
    while (w->pid > 0) {
      int status = 0;
      pid_t r = waitpid(w->pid, &status, WNOHANG);
      if (r == w->pid || (r < 0 && errno == ECHILD)) {
        w->pid = -1;
      } else if (monotonic_ns() > give_up) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, &status, 0);
        w->pid = -1;
      } else {
        usleep(1000);
      }
    }
  }
  workers_.clear();
  for (int* fd : {&udp_, &epoll_, &sigfd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void Server::print_summary() const {
  std::string invalid;
  for (std::size_t r = 0; r < c_.invalid.size(); ++r)
    if (c_.invalid[r] != 0)
      invalid += std::string(" ") + p::to_string(static_cast<p::Reason>(r)) + "=" + std::to_string(c_.invalid[r]);
  AXON_LOG_INFO(kLog,
                "rx=%llu forwarded=%llu responses=%llu busy=%llu errors=%llu deadline_exceeded=%llu tx=%llu "
                "tx_dropped=%llu oversize=%llu stale=%llu invalid:%s",
                static_cast<unsigned long long>(c_.rx), static_cast<unsigned long long>(c_.forwarded),
                static_cast<unsigned long long>(c_.responses), static_cast<unsigned long long>(c_.busy),
                static_cast<unsigned long long>(c_.errors), static_cast<unsigned long long>(c_.deadline_exceeded),
                static_cast<unsigned long long>(c_.tx), static_cast<unsigned long long>(c_.tx_dropped),
                static_cast<unsigned long long>(c_.oversize), static_cast<unsigned long long>(c_.stale_worker_replies),
                invalid.empty() ? " none" : invalid.c_str());
}

}  // namespace
}  // namespace axon::baseline

int main(int argc, char** argv) {
  using namespace axon::baseline;
  Options o;
  CLI::App app{"axon-baseline-server: epoll + recvmmsg UDP front end with Unix-socket worker processes (echo)",
               "axon-baseline-server"};
  app.add_option("--port", o.port, "UDP port (0 = any; the chosen port is printed)")->capture_default_str();
  app.add_option("--bind", o.bind, "Local address (0.0.0.0, :: for dual stack, or one address)")->capture_default_str();
  app.add_option("--workers", o.workers, "Worker processes")->capture_default_str()->check(CLI::Range(1u, 256u));
  app.add_option("--cpu", o.cpu, "Pin the server to this CPU (-1 = no pinning)")->capture_default_str();
  app.add_option("--worker-cpu", o.worker_cpu, "Pin every worker to this CPU (default: --cpu, -1 = none)");
  app.add_option("--duration", o.duration_s, "Exit after this many seconds (0 = run until SIGTERM/SIGINT)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--tenants", o.tenants, "Known tenant ids, e.g. 1,2,5-8; others get ERROR unknown_tenant")
      ->capture_default_str();
  app.add_option("--agents", o.agents, "Known agent ids; others get ERROR unknown_agent")->capture_default_str();
  app.add_option("--max-inflight", o.max_inflight, "Requests in flight to workers before BUSY")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--busy-retry-us", o.busy_retry_us, "retry_after_us in BUSY replies")->capture_default_str();
  app.add_option("--worker-sndbuf", o.worker_sndbuf,
                 "SO_SNDBUF of the worker sockets in bytes: bounds each worker's queue (0 = kernel default)");
  app.add_option("--udp-buffer", o.udp_buffer, "UDP socket receive and send buffer in bytes")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto tenants = axon::loadgen::IdList::parse(o.tenants);
  auto agents = axon::loadgen::IdList::parse(o.agents);
  if (!tenants || !agents) {
    std::fprintf(stderr, "axon-baseline-server: %s\n", (!tenants ? tenants.message() : agents.message()).c_str());
    return 2;
  }
  Server server(o, std::move(tenants.value()), std::move(agents.value()));
  if (!server.start()) return 1;
  int rc = server.run();
  return rc;
}

// io_uring socket hot path: multishot receives into provided buffers, presented to the engine
// as Ethernet frames; replies parsed back into sendmsg SQEs, submitted once per burst.
//
// Why synthetic frames: the engine (parse, route, validate, reply building) works on Ethernet
// frames, and the AXP validator it runs is the shared classifier the XDP program runs. Rather
// than fork a second "datagram" path through the engine, each received datagram gets an
// Ethernet + IPv4/IPv6 + UDP header written into the headroom right in front of it (the
// addresses and ports come from the recvmsg name and the PKTINFO control message, the lengths
// from the datagram). The engine then cannot tell a socket datagram from an AF_XDP frame:
// malformed AXP is rejected by the same code with the same reason, and replies are built by
// the same builder. tx_burst undoes the trick: it reads the destination and payload back out
// of the frame the engine built. The header costs ~15 ns per datagram; no payload is copied.
#include <netinet/in.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "uring/uring_port.h"

namespace axon::dataplane {
namespace {

void put16(std::uint8_t* p, std::uint32_t host) noexcept {
  p[0] = std::uint8_t(host >> 8);
  p[1] = std::uint8_t(host);
}

std::uint16_t get16(const std::uint8_t* p) noexcept {
  return std::uint16_t(p[0] << 8 | p[1]);
}

bool is_v4_mapped(const in6_addr& a) noexcept {
  static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.s6_addr, prefix, sizeof prefix) == 0;
}

void map_v4(const std::uint8_t* v4, in6_addr& out) noexcept {
  std::memset(out.s6_addr, 0, 10);
  out.s6_addr[10] = 0xff;
  out.s6_addr[11] = 0xff;
  std::memcpy(out.s6_addr + 12, v4, 4);
}

}  // namespace

void UringPort::start() noexcept {
  started_ = true;
  // A single-issuer ring belongs to the thread that enables it: the lcore, not the control
  // thread that created it.
  // (liburing 2.3 declares io_uring_enable_rings but does not export it: call the kernel.)
  if (disabled_) (void)syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  for (std::uint32_t i = 0; i < sockets_.size(); ++i) arm(i);
  submit();
}

void UringPort::arm(std::uint32_t socket_index) noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    submit();
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return;  // tried again on the next rx_burst
  }
  UringSocket& s = sockets_[socket_index];
  io_uring_prep_recvmsg_multishot(sqe, s.fd, &s.recv_template, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  io_uring_sqe_set_data64(sqe, kUringRecvTag | socket_index);
  s.armed = true;
  ++pending_sqes_;
}

void UringPort::submit() noexcept {
  if (pending_sqes_ == 0) return;
  ++counters_.wakeups;
  (void)io_uring_submit(&ring_);
  pending_sqes_ = 0;
}

void UringPort::recycle(std::uint32_t bid, int offset) noexcept {
  io_uring_buf_ring_add(buf_ring_, rx_buffer(bid), buffer_size_, std::uint16_t(bid), io_uring_buf_ring_mask(buffers_),
                        offset);
}

bool UringPort::to_frame(const io_uring_cqe& cqe, Frame& frame) noexcept {
  const std::uint32_t socket_index = std::uint32_t(cqe.user_data & 0xffff);
  const std::uint32_t bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
  std::uint8_t* buf = rx_buffer(bid);
  UringSocket& sock = sockets_[socket_index];
  io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buf, cqe.res, &sock.recv_template);
  if (out == nullptr) return false;
  std::uint8_t* payload = static_cast<std::uint8_t*>(io_uring_recvmsg_payload(out, &sock.recv_template));
  const std::uint32_t stored = io_uring_recvmsg_payload_length(out, cqe.res, &sock.recv_template);
  // A datagram longer than the buffer arrives cut (MSG_TRUNC); the headers below still claim
  // its full length, so the classifier rejects it as truncated like any short frame.
  const std::uint32_t full = out->payloadlen;
  if (full > 65535 - 48) return false;

  // Read the addresses out of the name and control areas before the header overwrites them.
  bool v4 = false;
  std::uint8_t src[16], dst[16];
  std::uint16_t src_port = 0;
  std::memset(dst, 0, sizeof dst);
  const auto* name = static_cast<const sockaddr*>(io_uring_recvmsg_name(out));
  if (out->namelen >= sizeof(sockaddr_in6) && name->sa_family == AF_INET6) {
    sockaddr_in6 a;
    std::memcpy(&a, name, sizeof a);
    v4 = is_v4_mapped(a.sin6_addr);
    std::memcpy(src, v4 ? a.sin6_addr.s6_addr + 12 : a.sin6_addr.s6_addr, v4 ? 4 : 16);
    src_port = a.sin6_port;
  } else if (out->namelen >= sizeof(sockaddr_in) && name->sa_family == AF_INET) {
    sockaddr_in a;
    std::memcpy(&a, name, sizeof a);
    v4 = true;
    std::memcpy(src, &a.sin_addr, 4);
    src_port = a.sin_port;
  } else {
    return false;
  }
  for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(out, &sock.recv_template); c != nullptr;
       c = io_uring_recvmsg_cmsg_nexthdr(out, &sock.recv_template, c)) {
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      std::memcpy(dst, v4 ? info.ipi6_addr.s6_addr + 12 : info.ipi6_addr.s6_addr, v4 ? 4 : 16);
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      std::memcpy(dst, &info.ipi_addr, 4);
    }
  }

  const std::uint32_t ip_len = v4 ? 20 : 40;
  const std::uint32_t header_len = 14 + ip_len + 8;
  std::uint8_t* eth = payload - header_len;
  std::memset(eth, 0, 12);  // no MACs on a socket; the reply builder swaps zeros, tx_burst ignores L2
  put16(eth + 12, v4 ? 0x0800 : 0x86dd);
  std::uint8_t* ip = eth + 14;
  if (v4) {
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, 20 + 8 + full);
    put16(ip + 4, 0);
    put16(ip + 6, 0x4000);  // the kernel reassembled any fragments: present one DF datagram
    ip[8] = 64;
    ip[9] = 17;
    put16(ip + 10, 0);
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
  } else {
    put16(ip, 0x6000);
    put16(ip + 2, 0);
    put16(ip + 4, 8 + full);
    ip[6] = 17;
    ip[7] = 64;
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, dst, 16);
  }
  std::uint8_t* udp = ip + ip_len;
  std::memcpy(udp, &src_port, 2);
  put16(udp + 2, sock.port);
  put16(udp + 4, 8 + full);
  put16(udp + 6, 0);  // the kernel verified the checksum; the classifier does not read it
  frame.data = eth;
  frame.len = header_len + stored;
  frame.handle = bid;
  return true;
}

std::uint32_t UringPort::reap(Frame* frames, std::uint32_t max) noexcept {
  std::uint32_t seen = 0, n = 0, recycled = 0;
  unsigned head = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    const std::uint64_t tag = cqe->user_data & kUringTagMask;
    if (tag == kUringSendTag) {
      tx_pool_.push_back(std::uint32_t(cqe->user_data & 0xffffffffu));
      if (cqe->res < 0) ++counters_.tx_errors;
      ++seen;
      continue;
    }
    if (n == max) break;  // a receive, and no room left for it: the next rx_burst takes it
    ++seen;
    if (tag != kUringRecvTag) continue;
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) {
      // The kernel ended this multishot (buffers ran out, or an error): re-arm later.
      sockets_[cqe->user_data & 0xffff].armed = false;
    }
    if (cqe->res < 0 || (cqe->flags & IORING_CQE_F_BUFFER) == 0) continue;
    if (to_frame(*cqe, frames[n])) {
      ++n;
    } else {
      ++counters_.rx_dropped;
      recycle(cqe->flags >> IORING_CQE_BUFFER_SHIFT, int(recycled++));
    }
  }
  if (seen > 0) io_uring_cq_advance(&ring_, seen);
  if (recycled > 0) io_uring_buf_ring_advance(buf_ring_, int(recycled));
  counters_.rx_frames += n;
  return n;
}

std::uint32_t UringPort::rx_burst(Frame* frames, std::uint32_t max) noexcept {
  if (!started_) start();
  std::uint32_t n = reap(frames, max);
  if (n == 0) {
    // Completions the kernel deferred to us (DEFER_TASKRUN/COOP_TASKRUN) run only when we
    // enter the kernel; the SQ ring's TASKRUN flag says whether there are any.
    const bool work_waiting =
        !taskrun_flag_ || (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0 || pending_sqes_ > 0;
    if (work_waiting) {
      ++counters_.wakeups;
      (void)io_uring_submit_and_get_events(&ring_);
      pending_sqes_ = 0;
      n = reap(frames, max);
    }
  }
  // A receive the kernel ended (ENOBUFS when the engine fell behind and every buffer was
  // taken) is re-armed on the next burst, by which time the engine has released its frames.
  // Unconditionally: whatever ended it, a socket without a receive would go deaf for good.
  for (std::uint32_t i = 0; i < sockets_.size(); ++i) {
    if (!sockets_[i].armed) arm(i);
  }
  submit();
  return n;
}

void UringPort::rx_release(const Frame* frames, std::uint32_t n) noexcept {
  if (n == 0) return;
  for (std::uint32_t i = 0; i < n; ++i) recycle(std::uint32_t(frames[i].handle), int(i));
  io_uring_buf_ring_advance(buf_ring_, int(n));
}

std::uint32_t UringPort::tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept {
  if (tx_pool_.size() < n) poll_completions();
  std::uint32_t got = n < tx_pool_.size() ? n : std::uint32_t(tx_pool_.size());
  auto* base = reinterpret_cast<std::uint8_t*>(tx_area_.base());
  for (std::uint32_t i = 0; i < got; ++i) {
    const std::uint32_t index = tx_pool_.back();
    tx_pool_.pop_back();
    frames[i].data = base + std::size_t(index) * frame_size_;
    frames[i].len = frame_size_;
    frames[i].handle = index;
  }
  if (got < n) counters_.tx_pool_empty += n - got;
  return got;
}

void UringPort::tx_free(const Frame* frames, std::uint32_t n) noexcept {
  // tx_pool_ was reserved for every TX frame, so this never allocates.
  for (std::uint32_t i = 0; i < n; ++i) tx_pool_.push_back(std::uint32_t(frames[i].handle));
}

bool UringPort::prepare_send(const Frame& frame, io_uring_sqe* sqe) noexcept {
  // The frame is the engine's own reply (reply_builder.cc): Ethernet, optional VLAN tags,
  // IPv4 without options or IPv6 without extension headers, UDP. Checked anyway.
  const std::uint8_t* p = frame.data;
  const std::uint32_t len = frame.len;
  std::uint32_t off = 12;
  if (len < 14) return false;
  std::uint16_t proto = get16(p + off);
  off += 2;
  while ((proto == 0x8100 || proto == 0x88a8) && off + 4 <= len) {
    proto = get16(p + off + 2);
    off += 4;
  }
  UringTxSlot& slot = tx_slots_[frame.handle];
  std::memset(&slot.to, 0, sizeof slot.to);
  std::uint8_t src_addr[16];
  bool v4 = false;
  std::uint32_t udp_off = 0;
  if (proto == 0x0800) {
    if (off + 20 > len) return false;
    const std::uint32_t ihl = (p[off] & 0x0f) * 4u;
    if (ihl < 20 || off + ihl + 8 > len) return false;
    v4 = true;
    std::memcpy(src_addr, p + off + 12, 4);
    if (ipv6_socket_) {
      map_v4(p + off + 16, slot.to.sin6_addr);
    } else {
      auto* to = reinterpret_cast<sockaddr_in*>(&slot.to);
      std::memcpy(&to->sin_addr, p + off + 16, 4);
    }
    udp_off = off + ihl;
  } else if (proto == 0x86dd) {
    if (off + 40 + 8 > len || p[off + 6] != 17 || !ipv6_socket_) return false;
    std::memcpy(src_addr, p + off + 8, 16);
    std::memcpy(slot.to.sin6_addr.s6_addr, p + off + 24, 16);
    udp_off = off + 40;
  } else {
    return false;
  }
  const std::uint8_t* udp = p + udp_off;
  const std::uint16_t src_port = get16(udp);
  const std::uint32_t udp_len = get16(udp + 4);
  if (udp_len < 8 || udp_off + udp_len > len) return false;
  int fd = -1;
  for (const UringSocket& s : sockets_) {
    if (s.port == src_port) fd = s.fd;
  }
  if (fd < 0) return false;

  // The reply leaves from the address the request went to (PKTINFO), whatever the route says.
  std::memset(slot.control, 0, sizeof slot.control);
  slot.msg = msghdr{};
  slot.msg.msg_control = slot.control;
  auto* cmsg = reinterpret_cast<cmsghdr*>(slot.control);
  if (ipv6_socket_) {
    slot.to.sin6_family = AF_INET6;
    std::memcpy(&slot.to.sin6_port, udp + 2, 2);
    in6_pktinfo info{};
    if (v4) {
      map_v4(src_addr, info.ipi6_addr);
    } else {
      std::memcpy(info.ipi6_addr.s6_addr, src_addr, 16);
    }
    cmsg->cmsg_level = IPPROTO_IPV6;
    cmsg->cmsg_type = IPV6_PKTINFO;
    cmsg->cmsg_len = CMSG_LEN(sizeof info);
    std::memcpy(CMSG_DATA(cmsg), &info, sizeof info);
    slot.msg.msg_controllen = CMSG_SPACE(sizeof info);
    slot.msg.msg_namelen = sizeof(sockaddr_in6);
  } else {
    auto* to = reinterpret_cast<sockaddr_in*>(&slot.to);
    to->sin_family = AF_INET;
    std::memcpy(&to->sin_port, udp + 2, 2);
    in_pktinfo info{};
    std::memcpy(&info.ipi_spec_dst, src_addr, 4);
    cmsg->cmsg_level = IPPROTO_IP;
    cmsg->cmsg_type = IP_PKTINFO;
    cmsg->cmsg_len = CMSG_LEN(sizeof info);
    std::memcpy(CMSG_DATA(cmsg), &info, sizeof info);
    slot.msg.msg_controllen = CMSG_SPACE(sizeof info);
    slot.msg.msg_namelen = sizeof(sockaddr_in);
  }
  slot.msg.msg_name = &slot.to;
  slot.iov.iov_base = const_cast<std::uint8_t*>(udp + 8);
  slot.iov.iov_len = udp_len - 8;
  slot.msg.msg_iov = &slot.iov;
  slot.msg.msg_iovlen = 1;
  io_uring_prep_sendmsg(sqe, fd, &slot.msg, 0);
  io_uring_sqe_set_data64(sqe, kUringSendTag | frame.handle);
  return true;
}

std::uint32_t UringPort::tx_burst(const Frame* frames, std::uint32_t n) noexcept {
  if (n == 0) return 0;
  if (!started_) start();
  std::uint32_t taken = 0, queued = 0;
  for (; taken < n; ++taken) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      submit();
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
    }
    if (!prepare_send(frames[taken], sqe)) {
      // Not a frame this port can send: hand it back and count it; the SQE becomes a no-op.
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, 0);
      tx_pool_.push_back(std::uint32_t(frames[taken].handle));
      ++counters_.tx_errors;
    } else {
      ++queued;
    }
    ++pending_sqes_;
  }
  counters_.tx_frames += queued;
  if (taken < n) counters_.tx_ring_full += n - taken;
  submit();  // one system call for the whole burst
  return taken;
}

void UringPort::poll_completions() noexcept {
  if (!started_) return;
  if (taskrun_flag_ && (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0) {
    ++counters_.wakeups;
    (void)io_uring_get_events(&ring_);
  }
  (void)reap(nullptr, 0);
  submit();
}

}  // namespace axon::dataplane

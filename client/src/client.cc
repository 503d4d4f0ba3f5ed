// The AXP client: address resolution, request encoding, reply matching and BUSY retries.
#include "axon/client/client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "axon/common/clock.h"

namespace axon::client {
namespace {

namespace p = axon::protocol;

std::string errno_text(int err) {
  return std::strerror(err);
}

// "a.b.c.d:port" or "[v6]:port" for messages.
std::string format_address(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {};
  std::uint16_t port = 0;
  if (sa->sa_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
    port = ntohs(a6->sin6_port);
    std::string text = "[";  // built by appends: g++ 12 -O3 misreports operator+ chains (-Wrestrict)
    text.append(host).append("]:").append(std::to_string(port));
    return text;
  }
  const auto* a4 = reinterpret_cast<const sockaddr_in*>(sa);
  inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
  port = ntohs(a4->sin_port);
  std::string text(host);
  text.append(":").append(std::to_string(port));
  return text;
}

// Request ids start at a random point so that a reply meant for an earlier process that used the
// same source port is not mistaken for one of ours; then they count up, unique per Client.
std::uint64_t random_u64() noexcept {
  std::uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) v = monotonic_ns() * 0x9e3779b97f4a7c15ull;
  return v;
}

// Binds `fd` to a numeric source address of the given family (port 0: the kernel picks).
Result<Ok, ClientError> bind_source(int fd, int family, const std::string& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, address.c_str(), &a6->sin6_addr) != 1)
      return make_error(ClientError::invalid_argument, "bind address '" + address + "' is not an IPv6 address");
    len = sizeof *a6;
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    if (inet_pton(AF_INET, address.c_str(), &a4->sin_addr) != 1)
      return make_error(ClientError::invalid_argument, "bind address '" + address + "' is not an IPv4 address");
    len = sizeof *a4;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return make_error(ClientError::socket_failed, "cannot bind to " + address + ": " + errno_text(errno));
  return Ok{};
}

}  // namespace

const char* to_string(ClientError error) noexcept {
  switch (error) {
    case ClientError::invalid_argument: return "invalid_argument";
    case ClientError::resolve_failed: return "resolve_failed";
    case ClientError::socket_failed: return "socket_failed";
    case ClientError::send_failed: return "send_failed";
    case ClientError::connection_refused: return "connection_refused";
    case ClientError::receive_failed: return "receive_failed";
    case ClientError::timeout: return "timeout";
  }
  return "unknown";
}

TraceContext TraceContext::generate(bool sampled) noexcept {
  TraceContext t;
  t.trace_id = p::random_trace_id();
  t.span_id = p::random_span_id();
  t.flags = sampled ? p::kTraceSampled : 0;
  return t;
}

std::string Reply::traceparent() const {
  if (!has_trace()) return {};
  return p::to_traceparent(trace_id, span_id, trace_flags);
}

Result<HostPort, ClientError> parse_host_port(const std::string& text, std::uint16_t default_port) {
  HostPort out;
  std::string port_text;
  if (text.empty()) return make_error(ClientError::invalid_argument, "empty address");
  if (text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string::npos)
      return make_error(ClientError::invalid_argument, "'" + text + "': missing ']' after an IPv6 address");
    out.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':')
        return make_error(ClientError::invalid_argument, "'" + text + "': expected ':PORT' after ']'");
      port_text = text.substr(close + 2);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    std::size_t colon = text.find(':');
    out.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else {
    out.host = text;  // a name, an IPv4 address, or a bare IPv6 address without a port
  }
  if (out.host.empty()) return make_error(ClientError::invalid_argument, "'" + text + "': empty host");
  out.port = default_port;
  if (!port_text.empty()) {
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(port_text.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
      return make_error(ClientError::invalid_argument, "'" + text + "': port must be 1..65535");
    out.port = static_cast<std::uint16_t>(v);
  }
  return out;
}

Result<Client, ClientError> Client::open(const std::string& host, std::uint16_t port, const ClientOptions& options) {
  if (port == 0) return make_error(ClientError::invalid_argument, "port must be 1..65535");
  if (options.max_datagram_bytes < p::kHeaderLen || options.max_datagram_bytes > p::kMaxDatagramLen)
    return make_error(ClientError::invalid_argument, "max_datagram_bytes must be between 80 and 65507");

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY) {
    // AI_ADDRCONFIG hides loopback-only families (a namespace with only lo); retry without it.
    hints.ai_flags = 0;
    rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  }
  if (rc != 0) return make_error(ClientError::resolve_failed, "cannot resolve '" + host + "': " + gai_strerror(rc));

  std::string last_error = "no address";
  ClientError last_code = ClientError::resolve_failed;
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last_error = "socket: " + errno_text(errno);
      last_code = ClientError::socket_failed;
      continue;
    }
    if (options.receive_buffer_bytes > 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.receive_buffer_bytes, sizeof options.receive_buffer_bytes);
    if (!options.bind_address.empty()) {
      auto bound = bind_source(fd, ai->ai_family, options.bind_address);
      if (!bound) {
        ::close(fd);
        last_error = bound.message();
        last_code = bound.code();
        continue;
      }
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last_error = "connect to " + format_address(ai->ai_addr) + ": " + errno_text(errno);
      last_code = ClientError::socket_failed;
      ::close(fd);
      continue;
    }
    std::string peer = format_address(ai->ai_addr);
    freeaddrinfo(list);
    return Client(fd, std::move(peer), options);
  }
  freeaddrinfo(list);
  return make_error(last_code, "cannot open a UDP socket to '" + host + "': " + last_error);
}

Client::Client(int fd, std::string peer, const ClientOptions& options)
    : fd_(fd),
      peer_(std::move(peer)),
      options_(options),
      next_request_id_(random_u64()),
      tx_buffer_(options.max_datagram_bytes),
      rx_buffer_(p::kMaxDatagramLen + 1) {}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      peer_(std::move(other.peer_)),
      options_(std::move(other.options_)),
      next_request_id_(other.next_request_id_),
      outstanding_(std::move(other.outstanding_)),
      arrived_(std::move(other.arrived_)),
      partial_(std::move(other.partial_)),
      tx_buffer_(std::move(other.tx_buffer_)),
      rx_buffer_(std::move(other.rx_buffer_)),
      counters_(other.counters_) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    peer_ = std::move(other.peer_);
    options_ = std::move(other.options_);
    next_request_id_ = other.next_request_id_;
    outstanding_ = std::move(other.outstanding_);
    arrived_ = std::move(other.arrived_);
    partial_ = std::move(other.partial_);
    tx_buffer_ = std::move(other.tx_buffer_);
    rx_buffer_ = std::move(other.rx_buffer_);
    counters_ = other.counters_;
  }
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Result<SentRequest, ClientError> Client::send_request(const RequestOptions& request,
                                                      std::span<const std::uint8_t> payload) {
  std::uint64_t id = next_request_id_++;
  if (id == 0) id = next_request_id_++;  // 0 is legal on the wire, but reads as "unset" in logs
  return transmit(request, payload, id);
}

Result<SentRequest, ClientError> Client::transmit(const RequestOptions& request, std::span<const std::uint8_t> payload,
                                                  std::uint64_t request_id) {
  if (payload.size() > p::kMaxMessageLen || options_.max_datagram_bytes <= p::kHeaderLen) {
    return make_error(ClientError::invalid_argument,
                      "payload is " + std::to_string(payload.size()) + " bytes; an AXP message carries at most " +
                          std::to_string(p::kMaxMessageLen) + " (and max_datagram_bytes must exceed the " +
                          std::to_string(p::kHeaderLen) + "-byte header)");
  }
  p::Header h;
  h.type = p::MessageType::request;
  h.priority = request.priority;
  h.tenant_id = request.tenant;
  h.agent_id = request.agent;
  h.session_key = request.session_key;
  h.request_id = request_id;
  h.deadline_us = request.deadline_us;
  if (request.trace) {
    h.trace_id = request.trace->trace_id;
    h.span_id = request.trace->span_id;
    h.trace_flags = request.trace->flags;
  }
  std::uint64_t now = monotonic_ns();
  if (p::kHeaderLen + payload.size() > options_.max_datagram_bytes) {
    if (auto sent = send_segments(h, payload); !sent) return sent.error();
  } else {
    std::size_t len = p::encode_datagram(h, payload, tx_buffer_);
    if (len == 0) return make_error(ClientError::invalid_argument, "cannot encode the request");
    if (auto sent = send_datagram(len); !sent) return sent.error();
  }
  ++counters_.sent;
  outstanding_[request_id] = Outstanding{now, h.span_id};
  SentRequest sent;
  sent.request_id = request_id;
  sent.trace = request.trace;
  sent.sent_ns = now;
  return sent;
}

Result<Ok, ClientError> Client::send_datagram(std::size_t len) {
  ssize_t n = ::send(fd_, tx_buffer_.data(), len, 0);
  if (n < 0 && (errno == ECONNREFUSED)) {
    // An ICMP error left over from an earlier datagram; the kernel reports it once. Try again.
    n = ::send(fd_, tx_buffer_.data(), len, 0);
  }
  if (n < 0) {
    int err = errno;
    if (err == ECONNREFUSED)
      return make_error(ClientError::connection_refused, "nothing listens on " + peer_ + " (ICMP port unreachable)");
    return make_error(ClientError::send_failed, "send to " + peer_ + ": " + errno_text(err));
  }
  return Ok{};
}

// §6: count = ceil(len / M) datagrams with M the payload one datagram carries, S = ceil(len /
// count) bytes each, the last one the rest. Every segment carries the full header.
Result<Ok, ClientError> Client::send_segments(p::Header h, std::span<const std::uint8_t> payload) {
  const std::size_t most = options_.max_datagram_bytes - p::kHeaderLen;
  const std::size_t count = (payload.size() + most - 1) / most;
  const std::size_t size = (payload.size() + count - 1) / count;
  h.segment_count = static_cast<std::uint16_t>(count);
  h.message_len = static_cast<std::uint32_t>(payload.size());
  h.header_len = p::kHeaderLen;
  for (std::size_t i = 0; i < count; ++i) {
    const auto piece = payload.subspan(i * size, std::min(size, payload.size() - i * size));
    h.segment_index = static_cast<std::uint16_t>(i);
    h.payload_len = static_cast<std::uint16_t>(piece.size());
    if (p::encode_header(h, tx_buffer_) != p::kHeaderLen) {
      return make_error(ClientError::invalid_argument, "cannot encode the request");
    }
    std::memcpy(tx_buffer_.data() + p::kHeaderLen, piece.data(), piece.size());
    if (auto sent = send_datagram(p::kHeaderLen + piece.size()); !sent) return sent.error();
  }
  return Ok{};
}

bool Client::absorb_segment(const p::Header& h, std::span<const std::uint8_t> body,
                            std::vector<std::uint8_t>& message) {
  const std::uint32_t count = h.segment_count;
  const std::uint32_t len = h.message_len;
  const std::uint32_t size = (len + count - 1) / count;
  const std::uint32_t last = std::uint64_t(count - 1) * size < len ? len - (count - 1) * size : 0;
  const std::uint32_t expected = h.segment_index + 1u < count ? size : last;
  auto [it, fresh] = partial_.try_emplace(h.request_id);
  PartialReply& part = it->second;
  // Segments of one reply agree in these (§6); one that differs belongs to another reply (to
  // another attempt of the request): start over with it.
  const p::Header& f = part.first;
  if (!fresh && (f.segment_count != count || f.message_len != len || f.type != h.type || f.error_code != h.error_code ||
                 f.span_id != h.span_id)) {
    ++counters_.reply_restarts;
    part = PartialReply{};
    fresh = true;
  }
  if (fresh) {
    part.first = h;
    part.message.assign(len, 0);
    part.seen.assign(count, false);
  }
  if (last == 0 || body.size() != expected) {  // breaks the §6 rule: nothing to put together
    ++counters_.invalid;
    partial_.erase(it);
    return false;
  }
  if (part.seen[h.segment_index]) return false;  // a duplicate
  part.seen[h.segment_index] = true;
  std::memcpy(part.message.data() + std::size_t(h.segment_index) * size, body.data(), body.size());
  if (++part.received < count) return false;
  message = std::move(part.message);
  partial_.erase(it);
  return true;
}

Result<Reply, ClientError> Client::wait_reply(const SentRequest& sent, std::chrono::nanoseconds timeout) {
  std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(std::max<std::int64_t>(0, timeout.count()));
  return receive_until(sent.request_id, deadline);
}

Result<Reply, ClientError> Client::receive_until(std::uint64_t request_id, std::uint64_t deadline_ns, bool give_up) {
  if (auto it = arrived_.find(request_id); it != arrived_.end()) {
    Reply r = std::move(it->second);
    arrived_.erase(it);
    return r;
  }
  if (outstanding_.find(request_id) == outstanding_.end())
    return make_error(ClientError::invalid_argument,
                      "request id " + std::to_string(request_id) + " is not outstanding");

  for (;;) {
    // Drain whatever is queued before sleeping: replies can arrive in bursts.
    for (;;) {
      ssize_t n = ::recv(fd_, rx_buffer_.data(), rx_buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) break;
        if (err == EINTR) continue;
        if (err == ECONNREFUSED)
          return make_error(ClientError::connection_refused,
                            "nothing listens on " + peer_ + " (ICMP port unreachable)");
        return make_error(ClientError::receive_failed, "recv from " + peer_ + ": " + errno_text(err));
      }
      std::uint64_t now = monotonic_ns();
      if (static_cast<std::size_t>(n) > rx_buffer_.size()) {  // MSG_TRUNC: larger than any valid datagram
        ++counters_.invalid;
        continue;
      }
      std::span<const std::uint8_t> dgram(rx_buffer_.data(), static_cast<std::size_t>(n));
      // Replies are RESPONSE/BUSY/ERROR, so the any-type validator applies, plus "not a REQUEST".
      if (p::validate(dgram) != p::Reason::ok || dgram[5] == AXP_MSG_REQUEST) {
        ++counters_.invalid;
        continue;
      }
      p::Header h = p::decode_header(dgram);
      auto out = outstanding_.find(h.request_id);
      if (out == outstanding_.end()) {
        ++counters_.unmatched;
        continue;
      }
      Reply reply;
      auto body = p::payload_of(dgram);
      if (h.segment_count > 1) {
        if (!absorb_segment(h, body, reply.payload)) continue;
        h.segment_index = 0;
      } else {
        reply.payload.assign(body.begin(), body.end());
      }
      reply.type = h.type;
      reply.error_code = h.error_code;
      reply.retry_after_us = h.retry_after_us;
      reply.request_id = h.request_id;
      reply.trace_id = h.trace_id;
      reply.span_id = h.span_id;
      reply.parent_span_id = out->second.span_id;
      reply.trace_flags = h.trace_flags;
      reply.rtt_ns = now - out->second.sent_ns;
      reply.header = h;
      outstanding_.erase(out);
      ++counters_.replies;
      if (h.request_id == request_id) return reply;
      arrived_.emplace(h.request_id, std::move(reply));
    }

    std::uint64_t now = monotonic_ns();
    if (now >= deadline_ns) {
      if (!give_up) return make_error(ClientError::timeout, "no reply to this attempt yet");
      outstanding_.erase(request_id);
      partial_.erase(request_id);
      ++counters_.timeouts;
      return make_error(ClientError::timeout, "no reply from " + peer_ + " within the timeout");
    }
    std::uint64_t wait = deadline_ns - now;
    timespec ts{static_cast<time_t>(wait / 1'000'000'000ull), static_cast<long>(wait % 1'000'000'000ull)};
    pollfd pfd{fd_, POLLIN, 0};
    if (ppoll(&pfd, 1, &ts, nullptr) < 0 && errno != EINTR)
      return make_error(ClientError::receive_failed, "poll: " + errno_text(errno));
  }
}

Result<Reply, ClientError> Client::await_attempt(std::uint64_t request_id, std::uint64_t until_ns,
                                                 std::uint64_t deadline_ns) {
  const bool last = until_ns >= deadline_ns;
  return receive_until(request_id, last ? deadline_ns : until_ns, last);
}

namespace {

std::uint64_t to_ns(std::chrono::milliseconds d) noexcept {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count())) * 1'000'000ull;
}

// min(initial * 2^(k-1), max) after the k-th unanswered attempt (k >= 1).
std::uint64_t backoff_ns(const CallOptions& o, unsigned k) noexcept {
  const std::uint64_t cap = to_ns(o.backoff_max);
  std::uint64_t wait = to_ns(o.backoff_initial);
  for (unsigned i = 1; i < k && wait < cap; ++i) wait *= 2;
  return std::min(wait, cap);
}

}  // namespace

Result<Reply, ClientError> Client::call(const RequestOptions& request, std::span<const std::uint8_t> payload,
                                        const CallOptions& options) {
  if (options.timeout_retries > 0 && options.attempt_timeout.count() <= 0)
    return make_error(ClientError::invalid_argument, "attempt_timeout must be positive when timeout_retries > 0");
  const std::uint64_t deadline = monotonic_ns() + to_ns(options.timeout);
  if (options.request_id != 0 && outstanding_.count(options.request_id) != 0)
    return make_error(ClientError::invalid_argument,
                      "request id " + std::to_string(options.request_id) + " is already outstanding on this client");
  auto sent = options.request_id != 0 ? transmit(request, payload, options.request_id) : send_request(request, payload);
  if (!sent) return sent.error();
  // Every retry reuses the request id and the header (docs/protocol.md §1, §6): it is the same
  // request, and the data plane drops segments that differ from a partial message it holds.
  const std::uint64_t id = sent->request_id;
  unsigned sends = 1, busy = 0, unanswered = 0;
  for (;;) {
    std::uint64_t until = deadline;
    if (unanswered < options.timeout_retries)
      until = std::min(deadline, monotonic_ns() + to_ns(options.attempt_timeout));
    auto reply = await_attempt(id, until, deadline);
    if (!reply && reply.code() == ClientError::timeout && until < deadline) {
      // No reply to this attempt: back off (a late reply still counts), then send it again.
      ++unanswered;
      const std::uint64_t wake = std::min(deadline, monotonic_ns() + backoff_ns(options, unanswered));
      reply = await_attempt(id, wake, deadline);
      if (!reply && reply.code() == ClientError::timeout && wake < deadline) {
        auto again = transmit(request, payload, id);
        if (!again) return again.error();
        ++sends;
        ++counters_.retries;
        continue;
      }
    }
    if (!reply) {
      if (reply.code() == ClientError::timeout)
        return make_error(ClientError::timeout,
                          "no reply from " + peer_ + " within the timeout (" + std::to_string(sends) + " attempt(s))");
      return reply;
    }
    reply->attempts = sends;
    if (reply->type != p::MessageType::busy || busy >= options.busy_retries) return reply;
    ++busy;
    std::uint64_t wake = monotonic_ns() + std::uint64_t{reply->retry_after_us} * 1000;
    if (wake >= deadline) return reply;  // the hint outlasts the budget: report the BUSY itself
    if (std::uint64_t now = monotonic_ns(); wake > now)
      std::this_thread::sleep_for(std::chrono::nanoseconds(wake - now));
    auto again = transmit(request, payload, id);
    if (!again) return again.error();
    ++sends;
  }
}

}  // namespace axon::client

// axon::client: a blocking AXP client over one UDP socket (IPv4 or IPv6), for tools, tests and
// applications that talk to the appliance. docs/protocol.md is the wire contract.
//
// One Client owns one connected UDP socket. connect() makes the kernel drop datagrams from any
// other peer and report ICMP port-unreachable as ECONNREFUSED, so "nothing listens there" is an
// immediate error instead of a timeout. Not thread-safe: one thread per Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "axon/common/result.h"
#include "axon/protocol/axp.h"

namespace axon::client {

enum class ClientError {
  invalid_argument,    // bad host, port, option or payload size
  resolve_failed,      // getaddrinfo found no usable address
  socket_failed,       // socket(), bind() or connect() failed
  send_failed,         // the kernel refused the datagram
  connection_refused,  // ICMP port unreachable: nothing listens on the server address
  receive_failed,      // recv() failed for another reason
  timeout,             // no matching reply within the time budget
};

[[nodiscard]] const char* to_string(ClientError error) noexcept;

struct ClientOptions {
  // Source address to bind to (numeric, v4 or v6); empty lets the kernel choose.
  std::string bind_address;
  // Largest datagram this client sends. The default is the IPv4 budget of a 1500-byte Ethernet
  // path (docs/protocol.md §1): AXP has no IP fragmentation, so a larger datagram would be
  // dropped by the appliance. Raise it only for paths known to carry more (loopback).
  std::size_t max_datagram_bytes = 1472;
  // Receive buffer (SO_RCVBUF) in bytes; 0 keeps the kernel default.
  int receive_buffer_bytes = 0;
};

// A W3C trace context: the trace this request belongs to and the caller's current span.
struct TraceContext {
  protocol::TraceId trace_id{};
  protocol::SpanId span_id{};
  std::uint8_t flags = protocol::kTraceSampled;

  // A new trace with a random trace id and a random root span.
  [[nodiscard]] static TraceContext generate(bool sampled = true) noexcept;
  [[nodiscard]] std::string traceparent() const { return protocol::to_traceparent(trace_id, span_id, flags); }
};

struct RequestOptions {
  std::uint32_t tenant = 0;
  std::uint32_t agent = 0;
  std::uint64_t session_key = 0;  // 0 = no sticky routing
  protocol::Priority priority = protocol::Priority::interactive;
  std::uint32_t deadline_us = 0;  // 0 = no deadline
  // nullopt sends no trace context (all-zero ids); TraceContext::generate() starts a new trace.
  std::optional<TraceContext> trace;
};

struct CallOptions {
  // Total time budget of the call: every attempt, BUSY retry and backoff wait included. (The
  // appliance's own budget is RequestOptions::deadline_us, sent unchanged on every attempt.)
  std::chrono::milliseconds timeout{1000};
  // How many times a BUSY reply is retried (after its retry_after_us) before it is returned.
  unsigned busy_retries = 0;
  // How many times a request that got no reply is sent again (0: send once, wait the whole
  // timeout). A retry is the same request: same request id, same header (deadline_us and trace
  // context included), every segment again. The appliance absorbs a retry only for an agent
  // with a dedup window (`dedup_window_ms`, docs/protocol.md §1): for any other agent a retry
  // may run the handler again, so leave this 0 for handlers that are not idempotent.
  unsigned timeout_retries = 0;
  // With timeout_retries: wait this long for a reply to an attempt before a retry is due ...
  std::chrono::milliseconds attempt_timeout{500};
  // ... then, after the k-th unanswered attempt, a further min(backoff_initial * 2^(k-1),
  // backoff_max) (a late reply still counts), then resend.
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{1000};
  // The request id to send with (the same on every attempt); 0 lets the client pick a fresh one.
  // A FleetClient passes one id to every appliance it tries (fleet.h). It must not be
  // outstanding on this Client.
  std::uint64_t request_id = 0;
};

// What a send_request() put on the wire; identifies the reply to wait for.
struct SentRequest {
  std::uint64_t request_id = 0;
  std::optional<TraceContext> trace;
  std::uint64_t sent_ns = 0;  // CLOCK_MONOTONIC
};

struct Reply {
  protocol::MessageType type = protocol::MessageType::response;
  protocol::ErrorCode error_code = protocol::ErrorCode::none;
  std::uint32_t retry_after_us = 0;
  std::vector<std::uint8_t> payload;
  std::uint64_t request_id = 0;       // echoed by the server
  protocol::TraceId trace_id{};       // echoed by the server
  protocol::SpanId span_id{};         // the responder's new span (child of parent_span_id)
  protocol::SpanId parent_span_id{};  // the span this client sent
  std::uint8_t trace_flags = 0;
  std::uint64_t rtt_ns = 0;  // from the last send of this request to this reply
  unsigned attempts = 1;     // sends of this request: the first, BUSY retries and timeout retries
  protocol::Header header;   // the full decoded reply header

  [[nodiscard]] bool ok() const noexcept { return type == protocol::MessageType::response; }
  [[nodiscard]] bool has_trace() const noexcept { return protocol::is_valid_trace_id(trace_id); }
  // The responder's span as a traceparent, or "" when the reply carries no trace context.
  [[nodiscard]] std::string traceparent() const;
};

// Datagrams this client saw and did not hand to a caller.
struct ClientCounters {
  std::uint64_t sent = 0;
  std::uint64_t replies = 0;    // matched and returned
  std::uint64_t invalid = 0;    // failed protocol::validate(), or not a reply type
  std::uint64_t unmatched = 0;  // valid, but no outstanding request has that id (late or foreign)
  std::uint64_t timeouts = 0;   // calls and wait_reply()s that ended without a reply
  std::uint64_t retries = 0;    // requests sent again after an attempt got no reply in time
  // Reply segments that differed from the partial reply held for their request id (span_id,
  // lengths, type or error code: the reply to another attempt) and so replaced it, unmixed.
  std::uint64_t reply_restarts = 0;
};

class Client {
 public:
  // Resolves host (name or numeric v4/v6) and connects a UDP socket to host:port.
  [[nodiscard]] static Result<Client, ClientError> open(const std::string& host, std::uint16_t port,
                                                        const ClientOptions& options = {});

  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Sends one REQUEST and returns without waiting; pair with wait_reply(). A payload longer than
  // one datagram (max_datagram_bytes) is sent as segments by the rule of docs/protocol.md §6, up
  // to 65536 bytes; a segmented reply is reassembled before wait_reply() returns it.
  [[nodiscard]] Result<SentRequest, ClientError> send_request(const RequestOptions& request,
                                                              std::span<const std::uint8_t> payload);

  // Waits for the reply to `sent`, discarding (and counting) anything else that arrives. On
  // timeout the request stops being outstanding, so a late reply is counted as unmatched.
  [[nodiscard]] Result<Reply, ClientError> wait_reply(const SentRequest& sent, std::chrono::nanoseconds timeout);

  // send_request() + wait_reply(), retrying BUSY replies and unanswered attempts as CallOptions
  // allows, with the same request id. A BUSY or ERROR reply is a successful call: the caller
  // inspects Reply::type. No reply within CallOptions::timeout is ClientError::timeout.
  [[nodiscard]] Result<Reply, ClientError> call(const RequestOptions& request, std::span<const std::uint8_t> payload,
                                                const CallOptions& options = {});

  [[nodiscard]] const ClientCounters& counters() const noexcept { return counters_; }
  // The peer as "addr:port" ("[addr]:port" for IPv6), for messages.
  [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  Client(int fd, std::string peer, const ClientOptions& options);

  struct Outstanding {
    std::uint64_t sent_ns = 0;
    protocol::SpanId span_id{};
  };

  // Reads datagrams until the reply for `request_id` arrives or `deadline_ns` passes. With
  // give_up false a timeout leaves the request outstanding (a retry follows) and is not counted.
  Result<Reply, ClientError> receive_until(std::uint64_t request_id, std::uint64_t deadline_ns, bool give_up = true);
  // Waits up to `until_ns` for the reply (call()'s attempt wait); a timeout is final only at `deadline_ns`.
  Result<Reply, ClientError> await_attempt(std::uint64_t request_id, std::uint64_t until_ns, std::uint64_t deadline_ns);
  Result<SentRequest, ClientError> transmit(const RequestOptions& request, std::span<const std::uint8_t> payload,
                                            std::uint64_t request_id);
  // One datagram out; ECONNREFUSED (an ICMP error left over from an earlier datagram) is retried once.
  Result<Ok, ClientError> send_datagram(std::size_t len);
  // Segmentation (docs/protocol.md §6): the request cut into datagrams, and a reply segment
  // stored until its message is whole. absorb_segment returns true when `h`'s message is
  // complete in `message`; a segment that breaks the rule drops the partial reply.
  Result<Ok, ClientError> send_segments(protocol::Header h, std::span<const std::uint8_t> payload);
  bool absorb_segment(const protocol::Header& h, std::span<const std::uint8_t> body,
                      std::vector<std::uint8_t>& message);

  struct PartialReply {
    protocol::Header first{};
    std::vector<std::uint8_t> message;
    std::vector<bool> seen;
    std::uint32_t received = 0;
  };

  int fd_ = -1;
  std::string peer_;
  ClientOptions options_;
  std::uint64_t next_request_id_ = 0;
  std::unordered_map<std::uint64_t, Outstanding> outstanding_;
  // Replies that arrived for another outstanding request while waiting for one: kept so callers
  // may pipeline several send_request()s and collect them in any order.
  std::unordered_map<std::uint64_t, Reply> arrived_;
  std::unordered_map<std::uint64_t, PartialReply> partial_;  // segmented replies being reassembled
  std::vector<std::uint8_t> tx_buffer_;
  std::vector<std::uint8_t> rx_buffer_;
  ClientCounters counters_;
};

// "host", "host:port", "[v6]" or "[v6]:port" into host and port; the port defaults to
// `default_port`. Used by axonctl and the benchmarks so every tool reads addresses alike.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
[[nodiscard]] Result<HostPort, ClientError> parse_host_port(const std::string& text, std::uint16_t default_port);

}  // namespace axon::client

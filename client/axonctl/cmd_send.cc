// axonctl send: one or more AXP requests to an appliance, printing each reply as a readable line
// or as JSON (one object per line).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "axon/client/client.h"

#include "commands.h"

namespace axon::ctl {
namespace {

namespace p = axon::protocol;
using axon::client::ClientError;

struct SendOptions {
  std::string to = "127.0.0.1";
  std::uint32_t tenant = 0;
  std::uint32_t agent = 0;
  std::uint64_t session = 0;
  p::Priority priority = p::Priority::interactive;
  std::uint32_t deadline_us = 0;
  unsigned timeout_ms = 1000;
  unsigned busy_retries = 0;
  unsigned timeout_retries = 0;
  unsigned attempt_timeout_ms = 500;
  unsigned count = 1;
  bool json = false;
  bool no_trace = false;
  std::string traceparent;
  std::string bind;
  std::size_t max_datagram = 1472;
  std::string payload;  // positional; "-" = stdin
  std::string payload_file;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads exactly out.size() bytes of lowercase or uppercase hex from `text`.
bool parse_hex(const std::string& text, std::span<std::uint8_t> out) {
  if (text.size() != out.size() * 2) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(text[2 * i]);
    int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

// "00-<32 hex>-<16 hex>-<2 hex>": continue the caller's trace, with its span as our parent.
std::optional<client::TraceContext> parse_traceparent(const std::string& text) {
  if (text.size() != 55 || text.compare(0, 3, "00-") != 0 || text[35] != '-' || text[52] != '-') return std::nullopt;
  client::TraceContext t;
  std::array<std::uint8_t, 1> flags{};
  if (!parse_hex(text.substr(3, 32), t.trace_id) || !parse_hex(text.substr(36, 16), t.span_id) ||
      !parse_hex(text.substr(53, 2), flags))
    return std::nullopt;
  if (!p::is_valid_trace_id(t.trace_id)) return std::nullopt;
  bool span_zero = true;
  for (auto b : t.span_id) span_zero = span_zero && b == 0;
  if (span_zero) return std::nullopt;
  t.flags = flags[0];
  return t;
}

bool is_text(const std::vector<std::uint8_t>& bytes) {
  for (std::uint8_t b : bytes)
    if ((b < 0x20 && b != '\n' && b != '\r' && b != '\t') || b >= 0x7f) return false;
  return true;
}

std::string to_hex(const std::vector<std::uint8_t>& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0f]);
  }
  return out;
}

// The payload for a readable line: quoted text with escapes, or hex, cut at 512 characters.
std::string payload_for_line(const std::vector<std::uint8_t>& bytes) {
  constexpr std::size_t kMax = 512;
  std::string out;
  if (is_text(bytes)) {
    out.push_back('"');
    for (std::uint8_t b : bytes) {
      if (b == '"' || b == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(b));
      } else if (b == '\n') {
        out += "\\n";
      } else if (b == '\r') {
        out += "\\r";
      } else if (b == '\t') {
        out += "\\t";
      } else {
        out.push_back(static_cast<char>(b));
      }
      if (out.size() > kMax) return out + "\"...";
    }
    out.push_back('"');
    return out;
  }
  out = "0x" + to_hex(bytes);
  if (out.size() > kMax) out = out.substr(0, kMax) + "...";
  return out;
}

std::string id_hex(std::uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(id));
  return buf;
}

const char* type_name(p::MessageType type) {
  switch (type) {
    case p::MessageType::request: return "REQUEST";
    case p::MessageType::response: return "RESPONSE";
    case p::MessageType::busy: return "BUSY";
    case p::MessageType::error: return "ERROR";
  }
  return "UNKNOWN";
}

void print_reply(const client::Reply& r, bool as_json) {
  double rtt_us = static_cast<double>(r.rtt_ns) / 1000.0;
  if (as_json) {
    nlohmann::json j;
    j["type"] = type_name(r.type);
    j["request_id"] = id_hex(r.request_id);
    j["traceparent"] = r.has_trace() ? nlohmann::json(r.traceparent()) : nlohmann::json(nullptr);
    j["parent_span_id"] = r.has_trace() ? nlohmann::json(to_hex({r.parent_span_id.begin(), r.parent_span_id.end()}))
                                        : nlohmann::json(nullptr);
    j["rtt_us"] = rtt_us;
    j["attempts"] = r.attempts;
    if (r.type == p::MessageType::error) {
      j["error"] = p::to_string(r.error_code);
      j["error_code"] = static_cast<unsigned>(r.error_code);
    }
    if (r.type == p::MessageType::busy || r.retry_after_us != 0) j["retry_after_us"] = r.retry_after_us;
    if (is_text(r.payload))
      j["payload"] = std::string(r.payload.begin(), r.payload.end());
    else
      j["payload_hex"] = to_hex(r.payload);
    std::cout << j.dump() << '\n';
    return;
  }
  std::ostringstream line;
  line << type_name(r.type);
  if (r.type == p::MessageType::error)
    line << ' ' << p::to_string(r.error_code) << " (" << static_cast<unsigned>(r.error_code) << ')';
  line << " id=" << id_hex(r.request_id);
  line << " trace=" << (r.has_trace() ? r.traceparent() : std::string("none"));
  char rtt[32];
  std::snprintf(rtt, sizeof rtt, "%.1f", rtt_us);
  line << " rtt=" << rtt << "us";
  if (r.attempts > 1) line << " attempts=" << r.attempts;
  if (r.type == p::MessageType::busy) line << " retry_after=" << r.retry_after_us << "us";
  if (r.type == p::MessageType::response || !r.payload.empty()) line << " payload=" << payload_for_line(r.payload);
  std::cout << line.str() << '\n';
}

std::optional<std::vector<std::uint8_t>> read_payload(const SendOptions& o) {
  if (!o.payload_file.empty()) {
    std::ifstream in(o.payload_file, std::ios::binary);
    if (!in) {
      print_error("send: cannot read payload file '" + o.payload_file + "'");
      return std::nullopt;
    }
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (o.payload == "-") {
    std::vector<std::uint8_t> data;
    char buf[4096];
    ssize_t n;
    // Bounded: no message carries more than 64 KiB; read just past that so the client refuses
    // an oversized input instead of sending it cut short.
    while ((n = ::read(STDIN_FILENO, buf, sizeof buf)) > 0 && data.size() <= p::kMaxMessageLen)
      data.insert(data.end(), buf, buf + n);
    return data;
  }
  return std::vector<std::uint8_t>(o.payload.begin(), o.payload.end());
}

int exit_code_for(ClientError e) {
  switch (e) {
    case ClientError::timeout: return kExitTimeout;
    case ClientError::invalid_argument: return kExitUsage;
    case ClientError::resolve_failed:
    case ClientError::socket_failed:
    case ClientError::connection_refused: return kExitUnreachable;
    case ClientError::send_failed:
    case ClientError::receive_failed: return kExitFailure;
  }
  return kExitFailure;
}

int run_send(const SendOptions& o, const GlobalOptions& global) {
  auto where = client::parse_host_port(o.to, p::kDefaultPort);
  if (!where) {
    print_error("send: --to " + where.message());
    return kExitUsage;
  }
  auto payload = read_payload(o);
  if (!payload) return kExitUsage;

  std::optional<client::TraceContext> parent;
  if (!o.traceparent.empty()) {
    parent = parse_traceparent(o.traceparent);
    if (!parent) {
      print_error("send: --traceparent '" + o.traceparent +
                  "' is not a valid W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
      return kExitUsage;
    }
  }

  client::ClientOptions copts;
  copts.bind_address = o.bind;
  copts.max_datagram_bytes = o.max_datagram;
  auto opened = client::Client::open(where->host, where->port, copts);
  if (!opened) {
    print_error("send: " + opened.message());
    return exit_code_for(opened.code());
  }
  client::Client& c = opened.value();

  client::RequestOptions req;
  req.tenant = o.tenant;
  req.agent = o.agent;
  req.session_key = o.session;
  req.priority = o.priority;
  req.deadline_us = o.deadline_us;
  client::CallOptions call;
  call.timeout = std::chrono::milliseconds(o.timeout_ms);
  call.busy_retries = o.busy_retries;
  call.timeout_retries = o.timeout_retries;
  call.attempt_timeout = std::chrono::milliseconds(o.attempt_timeout_ms);

  int worst = kExitOk;
  for (unsigned i = 0; i < o.count; ++i) {
    if (parent) {
      // Continue the given trace: same trace id, a fresh span of ours as the request's parent.
      client::TraceContext t = *parent;
      t.span_id = p::random_span_id();
      req.trace = t;
    } else if (!o.no_trace) {
      req.trace = client::TraceContext::generate();
    }
    auto reply = c.call(req, *payload, call);
    int code = kExitOk;
    if (!reply) {
      code = exit_code_for(reply.code());
      if (reply.code() == ClientError::timeout)
        print_error("send: no reply from " + c.peer() + " within " + std::to_string(o.timeout_ms) + " ms");
      else
        print_error("send: " + reply.message());
      if (code == kExitUnreachable || code == kExitUsage) return code;  // the rest would fail alike
    } else {
      print_reply(*reply, o.json);
      if (reply->type == p::MessageType::error) code = kExitErrorReply;
      if (reply->type == p::MessageType::busy) code = kExitBusy;
    }
    if (worst == kExitOk) worst = code;
  }
  std::cout.flush();
  if (global.verbose) {
    const auto& k = c.counters();
    std::fprintf(stderr, "axonctl: sent=%llu replies=%llu invalid=%llu unmatched=%llu timeouts=%llu retries=%llu\n",
                 static_cast<unsigned long long>(k.sent), static_cast<unsigned long long>(k.replies),
                 static_cast<unsigned long long>(k.invalid), static_cast<unsigned long long>(k.unmatched),
                 static_cast<unsigned long long>(k.timeouts), static_cast<unsigned long long>(k.retries));
  }
  return worst;
}

}  // namespace

void add_send_command(CLI::App& app, const GlobalOptions& global, Runner& selected) {
  auto o = std::make_shared<SendOptions>();
  CLI::App* cmd = app.add_subcommand("send", "Send AXP requests and print the replies");
  cmd->add_option("--to", o->to, "Appliance address HOST[:PORT] ([v6]:PORT for IPv6; default port 7400)")
      ->capture_default_str();
  cmd->add_option("--tenant", o->tenant, "Tenant id")->required();
  cmd->add_option("--agent", o->agent, "Agent id")->required();
  cmd->add_option("--session", o->session, "Session key for sticky routing (0 = none)");
  // Parsed as text so --help and errors name the choices; the callback converts it to the enum.
  cmd->add_option_function<std::string>(
         "--priority",
         [o](const std::string& name) {
           o->priority = name == "background" ? p::Priority::background : p::Priority::interactive;
         },
         "interactive (default) or background")
      ->check(CLI::IsMember({"interactive", "background"}));
  cmd->add_option("--deadline-us", o->deadline_us, "Deadline budget in microseconds (0 = none)");
  cmd->add_option("--timeout-ms", o->timeout_ms, "Give up after this long, retries included")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3'600'000u));
  cmd->add_option("--retries", o->busy_retries, "Retry a BUSY reply this many times, after its retry-after hint")
      ->check(CLI::Range(0u, 100u));
  cmd->add_option("--timeout-retries", o->timeout_retries,
                  "Resend an unanswered request this many times (same id and header; idempotent handlers only)")
      ->check(CLI::Range(0u, 100u));
  cmd->add_option("--attempt-timeout-ms", o->attempt_timeout_ms, "With --timeout-retries: wait this long per attempt")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3'600'000u));
  cmd->add_option("--count", o->count, "Send this many requests, one after another")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1'000'000u));
  cmd->add_flag("--json", o->json, "Print each reply as one JSON object per line");
  auto* tp = cmd->add_option("--traceparent", o->traceparent, "Continue this W3C trace instead of starting one");
  cmd->add_flag("--no-trace", o->no_trace, "Send no trace context")->excludes(tp);
  cmd->add_option("--bind", o->bind, "Source address to send from");
  cmd->add_option("--max-datagram", o->max_datagram, "Largest datagram to send (path MTU budget)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{80}, p::kMaxDatagramLen));
  auto* file = cmd->add_option("--payload-file", o->payload_file, "Read the payload (up to 65536 bytes) from this file")
                   ->check(CLI::ExistingFile);
  cmd->add_option("payload", o->payload, "Payload text, or - to read it from stdin")->excludes(file);
  cmd->callback([o, &global, &selected] { selected = [o, &global] { return run_send(*o, global); }; });
}

}  // namespace axon::ctl

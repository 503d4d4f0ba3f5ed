// EtcdClient: etcd v3's JSON gateway over Boost.Beast (see etcd.h).
//
// One connection per request on a private io_context; every step runs asynchronously under
// one deadline (beast::tcp_stream's expiry), so a silent endpoint costs at most the timeout
// before the next endpoint is tried. The watch keeps its connection and reads the gateway's
// stream of newline-separated JSON objects until stopped or broken.
#include "axon/fleet/etcd.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

namespace axon::fleet {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using json = nlohmann::json;

struct Endpoint {
  std::string text;  // as configured
  std::string host;  // without brackets
  std::string port;
};

std::optional<Endpoint> parse_endpoint(const std::string& text, std::string& why) {
  Endpoint ep{text, "", ""};
  std::string_view rest = text;
  if (rest.substr(0, 7) != "http://") {
    why = "etcd endpoint '" + text + "' must start with http:// (e.g. http://127.0.0.1:2379)";
    return std::nullopt;
  }
  rest.remove_prefix(7);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      why = "etcd endpoint '" + text + "': write IPv6 as http://[addr]:port";
      return std::nullopt;
    }
    ep.host = std::string(rest.substr(1, close - 1));
    ep.port = std::string(rest.substr(close + 2));
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      why = "etcd endpoint '" + text + "' needs a port (etcd's client port is usually 2379)";
      return std::nullopt;
    }
    ep.host = std::string(rest.substr(0, colon));
    ep.port = std::string(rest.substr(colon + 1));
  }
  unsigned port = 0;
  const auto [p, e] = std::from_chars(ep.port.data(), ep.port.data() + ep.port.size(), port);
  if (ep.host.empty() || e != std::errc() || p != ep.port.data() + ep.port.size() || port == 0 || port > 65535) {
    why = "etcd endpoint '" + text + "': bad host or port";
    return std::nullopt;
  }
  return ep;
}

std::int64_t i64(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) return 0;  // proto3 JSON leaves zero values out
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    std::int64_t v = 0;
    const auto& s = it->get_ref<const std::string&>();
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  return 0;
}

std::string b64_field(const json& j, const char* key) {
  const auto it = j.find(key);
  std::string out;
  if (it != j.end() && it->is_string()) base64_decode(it->get<std::string>(), out);
  return out;
}

KeyValue kv_from_json(const json& j) {
  KeyValue kv;
  kv.key = b64_field(j, "key");
  kv.value = b64_field(j, "value");
  kv.create_revision = i64(j, "create_revision");
  kv.mod_revision = i64(j, "mod_revision");
  kv.version = i64(j, "version");
  kv.lease = i64(j, "lease");
  return kv;
}

std::int64_t header_revision(const json& j) {
  const auto h = j.find("header");
  return h != j.end() && h->is_object() ? i64(*h, "revision") : 0;
}

// The outcome of one exchange with one endpoint.
struct Reply {
  bool transport_ok = false;  // false: could not connect, timed out or the stream broke
  std::string why;            // transport failure
  int status = 0;
  std::string body;
};

Reply post_once(const Endpoint& ep, const std::string& path, const std::string& body,
                std::chrono::milliseconds timeout) {
  Reply out;
  net::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  error_code ec;
  const auto addresses = resolver.resolve(ep.host, ep.port, ec);
  if (ec) {
    out.why = "cannot resolve " + ep.host + ": " + ec.message();
    return out;
  }
  stream.expires_after(timeout);  // one deadline for connect, write and read
  stream.async_connect(addresses, [&](const error_code& e, const tcp::endpoint&) { ec = e; });
  io.run();
  if (ec) {
    out.why = ec == beast::error::timeout ? "connect timed out" : ec.message();
    return out;
  }
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, path, 11};
  req.set(bhttp::field::host, ep.host + ":" + ep.port);
  req.set(bhttp::field::content_type, "application/json");
  req.set(bhttp::field::connection, "close");
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64u << 20);
  io.restart();
  bhttp::async_write(stream, req, [&](const error_code& e, std::size_t) {
    ec = e;
    if (!e) bhttp::async_read(stream, buffer, parser, [&](const error_code& e2, std::size_t) { ec = e2; });
  });
  io.run();
  if (ec) {
    out.why =
        ec == beast::error::timeout ? "no answer within " + std::to_string(timeout.count()) + " ms" : ec.message();
    return out;
  }
  out.transport_ok = true;
  out.status = static_cast<int>(parser.get().result_int());
  out.body = std::move(parser.get().body());
  return out;
}

// The gateway's error body: {"error": "...", "code": <grpc code>, "message": "..."}.
std::string gateway_message(const std::string& body) {
  const auto j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    if (j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
    if (j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
  }
  return body.substr(0, 200);
}

}  // namespace

struct EtcdClient::Impl {
  EtcdOptions options;
  std::vector<Endpoint> endpoints;
  mutable std::mutex mu;
  mutable std::size_t preferred = 0;  // under mu

  std::size_t first() const {
    std::lock_guard lock(mu);
    return preferred;
  }
  void answered(std::size_t index) const {
    std::lock_guard lock(mu);
    preferred = index;
  }

  // POSTs `body` to `path` on the endpoints in turn; the parsed JSON of the first 200 answer.
  Result<json, EtcdError> call(const std::string& path, const json& body) const;
};

Result<json, EtcdError> EtcdClient::Impl::call(const std::string& path, const json& body) const {
  const std::string text = body.dump();
  const std::size_t start = first();
  std::string failures;
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    const std::size_t index = (start + i) % endpoints.size();
    const Endpoint& ep = endpoints[index];
    Reply reply = post_once(ep, path, text, options.timeout);
    if (!reply.transport_ok) {
      failures += (failures.empty() ? "" : "; ") + ep.text + ": " + reply.why;
      continue;
    }
    if (reply.status >= 500 && reply.status != 501) {
      // No leader, a member out of the quorum, or a gateway timeout: another member may answer.
      failures += (failures.empty() ? "" : "; ") + ep.text + ": HTTP " + std::to_string(reply.status) + " " +
                  gateway_message(reply.body);
      continue;
    }
    answered(index);
    if (reply.status == 404 && reply.body.find("lease not found") != std::string::npos) {
      return make_error(EtcdError::lease_not_found, "etcd: " + gateway_message(reply.body) + "; grant a new lease");
    }
    if (reply.status != 200) {
      return make_error(EtcdError::protocol, "etcd " + ep.text + path + " answered HTTP " +
                                                 std::to_string(reply.status) + ": " + gateway_message(reply.body) +
                                                 " (is it etcd 3.4 or newer with its JSON gateway?)");
    }
    // Streaming endpoints (lease keepalive) answer newline-separated objects: take the first.
    const auto nl = reply.body.find('\n');
    auto j = json::parse(nl == std::string::npos ? reply.body : reply.body.substr(0, nl), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return make_error(EtcdError::protocol, "etcd " + ep.text + path + " answered something that is not JSON");
    }
    return j;
  }
  return make_error(EtcdError::unavailable, "no etcd endpoint answered (" + failures +
                                                "); check that etcd runs and [fleet] etcd_endpoints is right");
}

EtcdClient::EtcdClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdClient::~EtcdClient() = default;
EtcdClient::EtcdClient(EtcdClient&&) noexcept = default;
EtcdClient& EtcdClient::operator=(EtcdClient&&) noexcept = default;

Result<EtcdClient, EtcdError> EtcdClient::create(EtcdOptions options) {
  if (options.endpoints.empty()) {
    return make_error(EtcdError::invalid_argument, "no etcd endpoints: give at least one (http://127.0.0.1:2379)");
  }
  if (options.timeout.count() <= 0) {
    return make_error(EtcdError::invalid_argument, "the etcd request timeout must be positive");
  }
  auto impl = std::make_unique<Impl>();
  for (const auto& text : options.endpoints) {
    std::string why;
    auto ep = parse_endpoint(text, why);
    if (!ep) return make_error(EtcdError::invalid_argument, why);
    impl->endpoints.push_back(*ep);
  }
  impl->options = std::move(options);
  return EtcdClient(std::move(impl));
}

std::string EtcdClient::current_endpoint() const {
  return impl_->endpoints[impl_->first()].text;
}

const EtcdOptions& EtcdClient::options() const {
  return impl_->options;
}

namespace {

Result<RangeReply, EtcdError> range_reply(Result<json, EtcdError> r) {
  if (!r) return r.error();
  RangeReply out;
  out.revision = header_revision(*r);
  if (const auto kvs = r->find("kvs"); kvs != r->end() && kvs->is_array()) {
    for (const auto& kv : *kvs) out.kvs.push_back(kv_from_json(kv));
  }
  return out;
}

Result<TxnReply, EtcdError> txn_reply(Result<json, EtcdError> r) {
  if (!r) return r.error();
  TxnReply out;
  out.revision = header_revision(*r);
  out.succeeded = r->value("succeeded", false);
  // The failure branch reads the key: its state explains the lost compare.
  if (const auto rs = r->find("responses"); !out.succeeded && rs != r->end() && rs->is_array() && !rs->empty()) {
    const auto& first = (*rs)[0];
    if (const auto range = first.find("response_range"); range != first.end()) {
      if (const auto kvs = range->find("kvs"); kvs != range->end() && kvs->is_array() && !kvs->empty()) {
        out.current = kv_from_json((*kvs)[0]);
      }
    }
  }
  return out;
}

json compare_mod(const std::string& key, std::int64_t mod_revision) {
  return json{{"key", base64_encode(key)},
              {"target", "MOD"},
              {"result", "EQUAL"},
              {"mod_revision", std::to_string(mod_revision)}};
}

}  // namespace

Result<RangeReply, EtcdError> EtcdClient::get(const std::string& key) const {
  if (key.empty()) return make_error(EtcdError::invalid_argument, "empty etcd key");
  return range_reply(impl_->call("/v3/kv/range", json{{"key", base64_encode(key)}}));
}

Result<RangeReply, EtcdError> EtcdClient::get_prefix(const std::string& prefix) const {
  if (prefix.empty()) return make_error(EtcdError::invalid_argument, "empty etcd prefix");
  return range_reply(impl_->call(
      "/v3/kv/range", json{{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_range_end(prefix))}}));
}

Result<std::int64_t, EtcdError> EtcdClient::put(const std::string& key, const std::string& value,
                                                std::int64_t lease) const {
  if (key.empty()) return make_error(EtcdError::invalid_argument, "empty etcd key");
  json body{{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  auto r = impl_->call("/v3/kv/put", body);
  if (!r) return r.error();
  return header_revision(*r);
}

Result<TxnReply, EtcdError> EtcdClient::put_if(const std::string& key, const std::string& value,
                                               std::int64_t expected_mod_revision, std::int64_t lease) const {
  if (key.empty()) return make_error(EtcdError::invalid_argument, "empty etcd key");
  json put{{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  const json body{{"compare", json::array({compare_mod(key, expected_mod_revision)})},
                  {"success", json::array({json{{"request_put", put}}})},
                  {"failure", json::array({json{{"request_range", json{{"key", base64_encode(key)}}}}})}};
  return txn_reply(impl_->call("/v3/kv/txn", body));
}

Result<TxnReply, EtcdError> EtcdClient::delete_if(const std::string& key, std::int64_t expected_mod_revision) const {
  if (key.empty()) return make_error(EtcdError::invalid_argument, "empty etcd key");
  const json body{{"compare", json::array({compare_mod(key, expected_mod_revision)})},
                  {"success", json::array({json{{"request_delete_range", json{{"key", base64_encode(key)}}}}})},
                  {"failure", json::array({json{{"request_range", json{{"key", base64_encode(key)}}}}})}};
  return txn_reply(impl_->call("/v3/kv/txn", body));
}

Result<std::int64_t, EtcdError> EtcdClient::remove(const std::string& key) const {
  if (key.empty()) return make_error(EtcdError::invalid_argument, "empty etcd key");
  auto r = impl_->call("/v3/kv/deleterange", json{{"key", base64_encode(key)}});
  if (!r) return r.error();
  return i64(*r, "deleted");
}

Result<std::int64_t, EtcdError> EtcdClient::remove_prefix(const std::string& prefix) const {
  if (prefix.empty()) return make_error(EtcdError::invalid_argument, "empty etcd prefix");
  auto r = impl_->call("/v3/kv/deleterange",
                       json{{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_range_end(prefix))}});
  if (!r) return r.error();
  return i64(*r, "deleted");
}

Result<Ok, EtcdError> EtcdClient::compact(std::int64_t revision) const {
  auto r = impl_->call("/v3/kv/compaction", json{{"revision", std::to_string(revision)}, {"physical", true}});
  if (!r) return r.error();
  return Ok{};
}

Result<std::int64_t, EtcdError> EtcdClient::grant_lease(std::int64_t ttl_seconds) const {
  if (ttl_seconds <= 0) return make_error(EtcdError::invalid_argument, "a lease TTL must be at least 1 s");
  auto r = impl_->call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_seconds)}, {"ID", "0"}});
  if (!r) return r.error();
  if (r->contains("error") && (*r)["error"].is_string() && !(*r)["error"].get<std::string>().empty()) {
    return make_error(EtcdError::protocol, "etcd refused the lease: " + (*r)["error"].get<std::string>());
  }
  const std::int64_t id = i64(*r, "ID");
  if (id == 0) return make_error(EtcdError::protocol, "etcd granted a lease without an ID");
  return id;
}

Result<std::int64_t, EtcdError> EtcdClient::keep_alive(std::int64_t lease) const {
  auto r = impl_->call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}});
  if (!r) return r.error();
  const auto result = r->find("result");
  const std::int64_t ttl = result != r->end() && result->is_object() ? i64(*result, "TTL") : 0;
  if (ttl <= 0) {
    return make_error(EtcdError::lease_not_found,
                      "etcd lease " + std::to_string(lease) + " expired or was revoked; grant a new one");
  }
  return ttl;
}

Result<Ok, EtcdError> EtcdClient::revoke_lease(std::int64_t lease) const {
  auto r = impl_->call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}});
  if (!r) return r.error();
  return Ok{};
}

// ---- watch ---------------------------------------------------------------------------------

namespace {

enum class WatchStep { more, stop, broken, compacted };

// One message of the watch stream; `why` explains broken/compacted.
WatchStep watch_message(const json& j, const std::function<bool(const WatchBatch&)>& on_batch, std::string& why) {
  if (const auto err = j.find("error"); err != j.end()) {
    why = "etcd ended the watch: " + (err->is_string() ? err->get<std::string>() : err->dump());
    return WatchStep::broken;
  }
  const auto result = j.find("result");
  if (result == j.end() || !result->is_object()) return WatchStep::more;
  if (result->value("canceled", false)) {
    if (const std::int64_t compact = i64(*result, "compact_revision"); compact > 0) {
      why = "the watch's start revision was compacted (oldest kept: " + std::to_string(compact) +
            "); re-list the prefix and watch from the listed revision";
      return WatchStep::compacted;
    }
    why = "etcd canceled the watch: " + result->value("cancel_reason", std::string("no reason given"));
    return WatchStep::broken;
  }
  const auto events = result->find("events");
  if (events == result->end() || !events->is_array() || events->empty()) return WatchStep::more;
  WatchBatch batch;
  batch.revision = header_revision(*result);
  for (const auto& e : *events) {
    WatchEvent event;
    event.type = e.value("type", std::string("PUT")) == "DELETE" ? WatchEvent::Type::del : WatchEvent::Type::put;
    if (const auto kv = e.find("kv"); kv != e.end() && kv->is_object()) event.kv = kv_from_json(*kv);
    batch.events.push_back(std::move(event));
  }
  return on_batch(batch) ? WatchStep::more : WatchStep::stop;
}

struct WatchOutcome {
  bool connected = false;  // false: try the next endpoint
  WatchStep step = WatchStep::broken;
  std::string why;
};

WatchOutcome watch_on(const Endpoint& ep, const std::string& body, std::chrono::milliseconds timeout,
                      const std::function<bool(const WatchBatch&)>& on_batch, const std::atomic<bool>& stop) {
  WatchOutcome out;
  net::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  error_code ec;
  const auto addresses = resolver.resolve(ep.host, ep.port, ec);
  if (ec) {
    out.why = ep.text + ": " + ec.message();
    return out;
  }
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, "/v3/watch", 11};
  req.set(bhttp::field::host, ep.host + ":" + ep.port);
  req.set(bhttp::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // the body is consumed as it arrives
  stream.expires_after(timeout);
  stream.async_connect(addresses, [&](const error_code& e, const tcp::endpoint&) {
    ec = e;
    if (e) return;
    bhttp::async_write(stream, req, [&](const error_code& e2, std::size_t) {
      ec = e2;
      if (!e2) bhttp::async_read_header(stream, buffer, parser, [&](const error_code& e3, std::size_t) { ec = e3; });
    });
  });
  io.run();
  if (ec || parser.get().result_int() != 200) {
    out.why = ep.text + ": " + (ec ? ec.message() : "HTTP " + std::to_string(parser.get().result_int()));
    return out;
  }
  out.connected = true;
  stream.expires_never();  // a quiet prefix sends nothing for as long as it stays quiet
  std::string pending;
  for (;;) {
    pending += parser.get().body();
    parser.get().body().clear();
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      const auto j = json::parse(pending.substr(0, nl), nullptr, false);
      pending.erase(0, nl + 1);
      if (j.is_discarded() || !j.is_object()) continue;
      out.step = watch_message(j, on_batch, out.why);
      if (out.step != WatchStep::more) return out;
    }
    if (stop.load()) {
      out.step = WatchStep::stop;
      return out;
    }
    if (parser.is_done()) {
      out.step = WatchStep::broken;
      out.why = ep.text + ": the watch stream ended";
      return out;
    }
    bool reading = true;
    io.restart();
    bhttp::async_read_some(stream, buffer, parser, [&](const error_code& e, std::size_t) {
      ec = e;
      reading = false;
    });
    while (reading) {
      io.run_for(std::chrono::milliseconds(100));
      if (reading && stop.load()) stream.socket().cancel();  // the handler then runs with operation_aborted
      if (io.stopped() && reading) io.restart();
    }
    if (stop.load()) {
      out.step = WatchStep::stop;
      return out;
    }
    if (ec) {
      out.step = WatchStep::broken;
      out.why = ep.text + ": the watch stream broke: " + ec.message();
      return out;
    }
  }
}

}  // namespace

Result<Ok, EtcdError> EtcdClient::watch_prefix(const std::string& prefix, std::int64_t start_revision,
                                               const std::function<bool(const WatchBatch&)>& on_batch,
                                               const std::atomic<bool>& stop) const {
  if (prefix.empty()) return make_error(EtcdError::invalid_argument, "empty etcd prefix");
  json create{{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_range_end(prefix))}};
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  const std::string body = json{{"create_request", create}}.dump();
  const std::size_t start = impl_->first();
  std::string failures;
  for (std::size_t i = 0; i < impl_->endpoints.size(); ++i) {
    const std::size_t index = (start + i) % impl_->endpoints.size();
    WatchOutcome outcome = watch_on(impl_->endpoints[index], body, impl_->options.timeout, on_batch, stop);
    if (!outcome.connected) {
      failures += (failures.empty() ? "" : "; ") + outcome.why;
      if (stop.load()) return Ok{};
      continue;
    }
    impl_->answered(index);
    switch (outcome.step) {
      case WatchStep::more:
      case WatchStep::stop: return Ok{};
      case WatchStep::compacted: return make_error(EtcdError::compacted, outcome.why);
      case WatchStep::broken: return make_error(EtcdError::unavailable, outcome.why + "; watch again");
    }
  }
  return make_error(EtcdError::unavailable,
                    "no etcd endpoint accepted the watch (" + failures + "); check that etcd runs");
}

}  // namespace axon::fleet

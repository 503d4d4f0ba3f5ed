// The etcd member source of FleetClient: a range read of <prefix>members/ through etcd's v3
// JSON gateway (POST /v3/kv/range, keys and values base64), and the source's loop, which lists
// the prefix and then watches it (axon::fleet's EtcdClient) so that a member key put or deleted
// (a lease that expired) reaches the client at once, re-listing after a broken watch. The
// appliances keep their member keys under a lease (docs/fleet.md).
#include "fleet_etcd.h"

#include <map>
#include <nlohmann/json.hpp>

#include "axon/client/rest.h"
#include "axon/fleet/etcd.h"

namespace axon::client {
namespace {

std::optional<std::string> decoded(const std::string& text) {
  std::string out;
  if (!fleet::base64_decode(text, out)) return std::nullopt;
  return out;
}

// One member value; nullopt when it has no usable AXP address or is draining. Nothing here
// throws on a value of another type (json::value() would): a bad member is skipped.
std::optional<FleetMember> member_of(const std::string& key, const nlohmann::json& v) {
  if (!v.is_object()) return std::nullopt;
  std::string health = "ok";
  if (const auto h = v.find("health"); h != v.end() && h->is_string()) health = h->get<std::string>();
  if (health == "draining") return std::nullopt;
  const auto axp = v.find("axp");
  if (axp == v.end() || !axp->is_array() || axp->empty()) return std::nullopt;
  const auto& first = axp->front();
  if (!first.is_object() || !first.contains("address") || !first["address"].is_string()) return std::nullopt;
  FleetMember m;
  m.host = first["address"].get<std::string>();
  m.port = protocol::kDefaultPort;
  if (first.contains("port")) {
    if (!first["port"].is_number_unsigned()) return std::nullopt;
    const auto port = first["port"].get<std::uint64_t>();
    if (port == 0 || port > 65535) return std::nullopt;
    m.port = static_cast<std::uint16_t>(port);
  }
  if (v.contains("id") && v["id"].is_string() && !v["id"].get<std::string>().empty()) {
    m.id = v["id"].get<std::string>();
  } else {
    m.id = key.substr(key.rfind('/') + 1);
  }
  if (m.host.empty() || m.id.empty()) return std::nullopt;
  m.degraded = health == "degraded";
  return m;
}

// The members among the member keys' values (key -> value, as etcd has them now).
std::vector<FleetMember> fleet_etcd_members_of(const std::map<std::string, std::string>& kvs) {
  std::vector<FleetMember> out;
  for (const auto& [key, value] : kvs) {
    nlohmann::json v = nlohmann::json::parse(value, nullptr, false);
    if (v.is_discarded()) continue;
    if (auto m = member_of(key, v)) out.push_back(std::move(*m));
  }
  return out;
}

// The fallback: a range read every poll_interval through the REST client.
void fleet_etcd_poll(const EtcdSourceOptions& source, const std::atomic<bool>& stop,
                     const detail::EtcdMemberSink& sink) {
  while (!stop.load() && sink.sleep(source.poll_interval)) {
    auto read = read_etcd_members(source);
    if (read) {
      sink.members(std::move(read.value()));
    } else {
      sink.error();  // the last list stays in use: the appliances outlive an etcd outage
    }
  }
}

}  // namespace

Result<std::vector<FleetMember>, ClientError> parse_etcd_members(std::string_view range_response) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(range_response);
  } catch (const nlohmann::json::exception& e) {
    return make_error(ClientError::receive_failed, std::string("etcd's range answer is not JSON: ") + e.what());
  }
  if (!doc.is_object()) return make_error(ClientError::receive_failed, "etcd's range answer is not a JSON object");
  if (doc.contains("error") || doc.contains("code"))
    return make_error(ClientError::receive_failed, "etcd answered an error: " + doc.dump());
  std::vector<FleetMember> out;
  if (!doc.contains("kvs")) return out;  // no member registered
  if (!doc["kvs"].is_array()) return make_error(ClientError::receive_failed, "etcd's range answer: kvs is not a list");
  for (const auto& kv : doc["kvs"]) {
    if (!kv.is_object() || !kv.contains("key") || !kv["key"].is_string()) continue;
    std::optional<std::string> key = decoded(kv["key"].get<std::string>());
    std::optional<std::string> value = decoded(kv.value("value", std::string()));
    if (!key || !value) continue;
    nlohmann::json v = nlohmann::json::parse(*value, nullptr, false);
    if (v.is_discarded()) continue;  // not ours to judge: skip a member we cannot read
    if (auto m = member_of(*key, v)) out.push_back(std::move(*m));
  }
  return out;
}

Result<std::vector<FleetMember>, ClientError> read_etcd_members(const EtcdSourceOptions& options) {
  const std::string prefix = options.prefix + "members/";
  nlohmann::json body;
  body["key"] = fleet::base64_encode(prefix);
  body["range_end"] = fleet::base64_encode(fleet::prefix_range_end(prefix));
  const std::string text = body.dump();
  std::string errors;
  for (const auto& endpoint : options.endpoints) {
    RestOptions ro;
    ro.url = endpoint;
    ro.timeout = options.request_timeout;
    ro.address_hint = "the etcd endpoints";
    auto rest = RestClient::create(ro);
    if (!rest) {
      errors += "; " + endpoint + ": " + rest.message();
      continue;
    }
    auto response = rest->request("POST", "/v3/kv/range", text);
    if (!response) {
      errors += "; " + endpoint + ": " + response.message();
      continue;
    }
    if (response->status != 200) {
      errors += "; " + endpoint + ": HTTP " + std::to_string(response->status) + " " + response->body;
      continue;
    }
    auto members = parse_etcd_members(response->body);
    if (members) return members;
    errors += "; " + endpoint + ": " + members.message();
  }
  return make_error(ClientError::receive_failed,
                    "no etcd endpoint answered for " + prefix + errors + " (is etcd running? check the endpoints)");
}

namespace detail {

void run_etcd_member_source(const EtcdSourceOptions& source, const std::atomic<bool>& stop,
                            const EtcdMemberSink& sink) {
  auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{source.endpoints, source.request_timeout});
  if (!etcd) return fleet_etcd_poll(source, stop, sink);
  const std::string prefix = source.prefix + "members/";
  bool listed_before = true;  // open_etcd has just read the list: watch from a fresh listing at once
  while (!stop.load()) {
    if (!listed_before && !sink.sleep(source.poll_interval)) return;
    listed_before = false;
    auto listed = etcd->get_prefix(prefix);
    if (!listed) {
      sink.error();
      continue;
    }
    std::map<std::string, std::string> kvs;
    for (auto& kv : listed->kvs) kvs[kv.key] = std::move(kv.value);
    sink.members(fleet_etcd_members_of(kvs));
    // Every change after the listing, in order: puts replace a member's value, deletes (an
    // expired lease, a revoked one) drop it.
    auto watched = etcd->watch_prefix(
        prefix, listed->revision + 1,
        [&](const fleet::WatchBatch& batch) {
          for (const auto& e : batch.events) {
            if (e.type == fleet::WatchEvent::Type::del) {
              kvs.erase(e.kv.key);
            } else {
              kvs[e.kv.key] = e.kv.value;
            }
          }
          sink.members(fleet_etcd_members_of(kvs));
          return true;
        },
        stop);
    if (!watched) sink.error();  // broken or compacted: list again after poll_interval
  }
}

}  // namespace detail
}  // namespace axon::client

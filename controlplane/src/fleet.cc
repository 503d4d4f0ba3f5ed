// Fleet membership through etcd (see fleet.h and docs/fleet.md).
#include "fleet.h"

#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "fleet";
constexpr std::chrono::milliseconds kRetry{500};  // after a failed etcd call
constexpr std::chrono::milliseconds kPoll{1000};  // the local view is checked at least this often
using json = nlohmann::json;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "10.0.0.1:7400" / "[fd00::1]:7400" -> {"address": ..., "port": ...} (checked by the config).
json front_door(const std::string& text) {
  const auto colon = text.rfind(':');
  std::string address = text.substr(0, colon);
  if (address.size() >= 2 && address.front() == '[') address = address.substr(1, address.size() - 2);
  return json{{"address", address}, {"port", std::stoi(text.substr(colon + 1))}};
}

}  // namespace

Result<std::unique_ptr<Fleet>, DaemonError> Fleet::create(const FleetSettings& settings, const ApiSettings& api,
                                                          LocalFn local) {
  auto etcd = fleet::EtcdClient::create(fleet::EtcdOptions{settings.etcd_endpoints, settings.request_timeout});
  if (!etcd) return make_error(DaemonError::fleet, "[fleet] etcd_endpoints: " + etcd.message());
  std::string id = settings.appliance_id;
  if (id.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
      return make_error(DaemonError::fleet, "cannot read the host name; set [fleet] appliance_id");
    }
    id = host;
  }
  std::string api_url = settings.api_url;
  if (api_url.empty() && !api.listen.empty()) api_url = "https://" + api.listen;
  return std::unique_ptr<Fleet>(
      new Fleet(settings, std::move(id), std::move(api_url), std::move(etcd).value(), std::move(local)));
}

Fleet::Fleet(const FleetSettings& settings, std::string id, std::string api_url, fleet::EtcdClient etcd, LocalFn local)
    : settings_(settings),
      id_(std::move(id)),
      api_url_(std::move(api_url)),
      etcd_(std::move(etcd)),
      local_(std::move(local)),
      started_unix_ms_(now_unix_ms()) {}

Fleet::~Fleet() {
  stop(false);
}

void Fleet::start() {
  AXON_LOG_INFO(kLog, "joining the fleet as %s (etcd %s, prefix %s, lease %u s)", id_.c_str(),
                etcd_.current_endpoint().c_str(), settings_.prefix.c_str(), settings_.lease_ttl_s);
  thread_ = std::thread([this] { run(); });
}

void Fleet::stop(bool revoke) {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (!thread_.joinable()) return;
  thread_.join();
  if (revoke && lease_ != 0) {
    if (auto r = etcd_.revoke_lease(lease_); r) {
      AXON_LOG_INFO(kLog, "left the fleet: member key %s removed", member_key().c_str());
    } else {
      AXON_LOG_WARN(kLog, "cannot remove member key %s (%s); it goes when its lease expires", member_key().c_str(),
                    r.message().c_str());
    }
    lease_ = 0;
  }
}

void Fleet::poke() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Fleet::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    const auto pause = step();
    lock.lock();
    cv_.wait_for(lock, pause, [this] { return stopping_ || wake_; });
    wake_ = false;
  }
}

std::chrono::milliseconds Fleet::step() {
  using Clock = std::chrono::steady_clock;
  const Local local = local_();
  const auto ttl = std::chrono::seconds(settings_.lease_ttl_s);
  if (lease_ == 0) {
    auto lease = etcd_.grant_lease(settings_.lease_ttl_s);
    if (!lease) {
      etcd_failed("lease_grant", lease.message());
      return kRetry;
    }
    lease_ = *lease;
    published_.clear();
    last_alive_ = Clock::now();
    next_keepalive_ = last_alive_ + ttl / 3;
  }
  const std::string member = member_json(local);
  if (member != published_) {
    auto put = etcd_.put(member_key(), member, lease_);
    if (!put) {
      if (put.code() == fleet::EtcdError::lease_not_found) lease_ = 0;
      etcd_failed("put_member", put.message());
      return kRetry;
    }
    etcd_answered();
    std::lock_guard lock(mu_);
    if (!registered_ || lease_shown_ != lease_) {
      ++registrations_;
      AXON_LOG_INFO(kLog, "registered as %s (lease %llx, health %s)", member_key().c_str(),
                    static_cast<unsigned long long>(lease_), local.health.c_str());
    }
    registered_ = true;
    lease_shown_ = lease_;
    health_shown_ = local.health;
    published_ = member;
  }
  if (Clock::now() >= next_keepalive_) {
    auto alive = etcd_.keep_alive(lease_);
    if (!alive) {
      if (alive.code() == fleet::EtcdError::lease_not_found) {
        // etcd was out of reach longer than the TTL: the member key is gone; register again.
        AXON_LOG_WARN(kLog, "lease %llx lost; registering again", static_cast<unsigned long long>(lease_));
        lease_ = 0;
        etcd_answered();  // etcd is there; only the lease is gone
        std::lock_guard lock(mu_);
        registered_ = false;
        return std::chrono::milliseconds(0);
      }
      etcd_failed("keepalive", alive.message());
      if (Clock::now() - last_alive_ >= ttl) {
        // Unrenewed for a whole TTL: etcd has most likely dropped the key by now.
        std::lock_guard lock(mu_);
        registered_ = false;
      }
      return kRetry;
    }
    etcd_answered();
    last_alive_ = Clock::now();
    next_keepalive_ = last_alive_ + ttl / 3;
    std::lock_guard lock(mu_);
    registered_ = true;  // again, after an outage the lease survived
  }
  const auto until_keepalive = std::chrono::duration_cast<std::chrono::milliseconds>(next_keepalive_ - Clock::now());
  return std::clamp(until_keepalive, std::chrono::milliseconds(1), kPoll);
}

std::string Fleet::member_json(const Local& local) const {
  json axp = json::array();
  for (const auto& a : settings_.advertise) axp.push_back(front_door(a));
  return json{{"id", id_},
              {"axp", axp},
              {"api", api_url_},
              {"capacity", json{{"workers", local.workers}, {"lcores", local.lcores}}},
              {"health", local.health},
              {"config_revision", config_revision_.load()},
              {"started_unix_ms", started_unix_ms_}}
      .dump();
}

void Fleet::etcd_failed(const char* op, const std::string& message) {
  const bool was_up = etcd_up_.exchange(false);
  std::lock_guard lock(mu_);
  ++errors_[op];
  if (was_up || last_error_ != message) AXON_LOG_WARN(kLog, "etcd %s failed: %s", op, message.c_str());
  last_error_ = message;
  last_error_unix_ms_ = now_unix_ms();
}

void Fleet::etcd_answered() {
  if (!etcd_up_.exchange(true)) AXON_LOG_INFO(kLog, "etcd reachable (%s)", etcd_.current_endpoint().c_str());
}

void Fleet::set_config_revision(std::int64_t revision) {
  config_revision_ = revision;
  poke();  // the member key carries it
}

std::string Fleet::view_json() {
  json members = json::array();
  auto listed = etcd_.get_prefix(settings_.prefix + "members/");
  if (listed) {
    etcd_answered();
    for (const auto& kv : listed->kvs) {
      auto m = json::parse(kv.value, nullptr, false);
      if (m.is_discarded() || !m.is_object()) {
        m = json{{"id", kv.key.substr(settings_.prefix.size() + 8)}, {"error", "the member value is not JSON"}};
      }
      m["mod_revision"] = kv.mod_revision;
      members.push_back(std::move(m));
    }
  } else {
    etcd_failed("list_members", listed.message());
  }
  std::lock_guard lock(mu_);
  json errors = json::object();
  for (const auto& [op, n] : errors_) errors[op] = n;
  json etcd{{"endpoints", settings_.etcd_endpoints},
            {"reachable", etcd_up_.load()},
            {"current_endpoint", etcd_.current_endpoint()},
            {"errors_total", errors}};
  if (!last_error_.empty()) {
    etcd["last_error"] = last_error_;
    etcd["last_error_unix_ms"] = last_error_unix_ms_;
  }
  json out{{"appliance_id", id_},
           {"prefix", settings_.prefix},
           {"registered", registered_},
           {"health", health_shown_.empty() ? "unknown" : health_shown_},
           {"lease_ttl_s", settings_.lease_ttl_s},
           {"config_revision", config_revision_.load()},
           {"etcd", etcd},
           {"members", members}};
  if (!listed) out["members_error"] = listed.message();
  return out.dump();
}

std::string Fleet::metrics() const {
  MetricsWriter w;
  w.family("axon_fleet_etcd_up", "gauge", "1 when the last etcd operation of this appliance succeeded");
  w.sample(etcd_up_.load() ? 1 : 0);
  w.family("axon_fleet_config_revision", "gauge", "The etcd revision of the shared configuration applied here");
  w.sample(double(config_revision_.load()));
  std::lock_guard lock(mu_);
  w.family("axon_fleet_registered", "gauge", "1 while this appliance's member key is in etcd under its lease");
  w.sample(registered_ ? 1 : 0);
  w.family("axon_fleet_registrations_total", "counter", "Member key written under a new lease (first or after loss)");
  w.sample(double(registrations_));
  w.family("axon_fleet_etcd_errors_total", "counter", "Failed etcd operations, by operation");
  for (const char* op :
       {"lease_grant", "put_member", "keepalive", "list_members", "config_list", "config_watch", "config_write"}) {
    const auto it = errors_.find(op);
    w.sample({{"op", op}}, double(it == errors_.end() ? 0 : it->second));
  }
  return w.str();
}

}  // namespace axon::controlplane

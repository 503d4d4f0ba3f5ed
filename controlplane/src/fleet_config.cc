// The fleet's shared configuration in etcd (see fleet_config.h and docs/fleet.md).
#include "fleet_config.h"

#include <algorithm>

#include "axon/common/log.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "fleet";
constexpr std::chrono::milliseconds kRetry{500};

const char* kind_dir(FleetConfig::Change::Kind kind) {
  switch (kind) {
    case FleetConfig::Change::Kind::tenant: return "tenants/";
    case FleetConfig::Change::Kind::agent: return "agents/";
    case FleetConfig::Change::Kind::tuning: return "tuning/";
  }
  return "";
}

const char* kind_name(FleetConfig::Change::Kind kind) {
  switch (kind) {
    case FleetConfig::Change::Kind::tenant: return "tenant";
    case FleetConfig::Change::Kind::agent: return "agent";
    case FleetConfig::Change::Kind::tuning: return "tuning";
  }
  return "";
}

}  // namespace

FleetConfig::FleetConfig(Fleet& fleet, ApplyFn apply, SeedFn seed)
    : fleet_(fleet), apply_(std::move(apply)), seed_(std::move(seed)), root_(fleet.settings().prefix + "config/") {}

FleetConfig::~FleetConfig() {
  stop();
}

void FleetConfig::start() {
  thread_ = std::thread([this] { run(); });
}

void FleetConfig::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string FleetConfig::key_of(Change::Kind kind, const std::string& name) const {
  return root_ + kind_dir(kind) + name;
}

bool FleetConfig::parse_key(const std::string& key, Change& change) const {
  if (key.rfind(root_, 0) != 0) return false;
  const std::string rest = key.substr(root_.size());
  for (auto kind : {Change::Kind::tenant, Change::Kind::agent, Change::Kind::tuning}) {
    const std::string dir = kind_dir(kind);
    if (rest.rfind(dir, 0) == 0 && rest.size() > dir.size()) {
      change.kind = kind;
      change.name = rest.substr(dir.size());
      return true;
    }
  }
  return false;
}

void FleetConfig::pause(std::chrono::milliseconds how_long) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, how_long, [this] { return stopping_.load(); });
}

void FleetConfig::applied(std::int64_t revision) {
  std::int64_t now = 0;
  {
    std::lock_guard lock(mu_);
    applied_ = std::max(applied_, revision);
    now = applied_;
  }
  cv_.notify_all();
  fleet_.set_config_revision(now);
}

std::int64_t FleetConfig::applied_revision() const {
  std::lock_guard lock(mu_);
  return applied_;
}

bool FleetConfig::wait_applied(std::int64_t revision, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return applied_ >= revision || stopping_.load(); }) && applied_ >= revision;
}

bool FleetConfig::list_and_apply(std::int64_t& revision) {
  auto listed = fleet_.etcd().get_prefix(root_);
  if (!listed) {
    fleet_.etcd_failed("config_list", listed.message());
    return false;
  }
  fleet_.etcd_answered();
  if (listed->kvs.empty() && applied_revision() == 0) {
    // A new fleet: this appliance's configuration becomes the fleet's (create-only, so two
    // first appliances cannot overwrite each other), then it is listed like any other.
    std::size_t published = 0;
    const auto seed = seed_();
    for (const auto& [suffix, value] : seed) {
      auto put = fleet_.etcd().put_if(root_ + suffix, value, 0);
      if (!put) {
        fleet_.etcd_failed("config_write", put.message());
        return false;
      }
      published += put->succeeded ? 1 : 0;
    }
    if (!seed.empty()) {
      // Listed again whether or not another appliance published first (lost compares).
      AXON_LOG_INFO(kLog, "%s was empty: published %zu of this appliance's %zu configuration key(s)", root_.c_str(),
                    published, seed.size());
      return list_and_apply(revision);
    }
  }
  std::vector<Change> changes;
  std::map<std::string, std::int64_t> revisions;
  std::int64_t newest = 0;  // the configuration's revision: its newest key's, the same on every appliance
  for (const auto& kv : listed->kvs) {
    Change c;
    if (!parse_key(kv.key, c)) continue;
    c.value = kv.value;
    c.mod_revision = kv.mod_revision;
    changes.push_back(std::move(c));
    revisions[kv.key] = kv.mod_revision;
    newest = std::max(newest, kv.mod_revision);
  }
  apply_(changes, true);
  {
    std::lock_guard lock(mu_);
    mod_revisions_ = std::move(revisions);
  }
  revision = listed->revision;  // the watch starts after the store revision listed
  applied(newest);
  AXON_LOG_INFO(kLog, "configuration of revision %lld applied (%zu key(s))", static_cast<long long>(newest),
                changes.size());
  return true;
}

void FleetConfig::run() {
  while (!stopping_) {
    std::int64_t revision = 0;
    if (!list_and_apply(revision)) {
      pause(kRetry);
      continue;
    }
    auto watched = fleet_.etcd().watch_prefix(
        root_, revision + 1,
        [this](const fleet::WatchBatch& batch) {
          std::vector<Change> changes;
          std::int64_t newest = 0;
          {
            std::lock_guard lock(mu_);
            for (const auto& e : batch.events) {
              newest = std::max(newest, e.kv.mod_revision);
              Change c;
              if (!parse_key(e.kv.key, c)) continue;
              c.deleted = e.type == fleet::WatchEvent::Type::del;
              c.value = e.kv.value;
              c.mod_revision = e.kv.mod_revision;
              if (c.deleted) {
                mod_revisions_.erase(e.kv.key);
              } else {
                mod_revisions_[e.kv.key] = e.kv.mod_revision;
              }
              changes.push_back(std::move(c));
            }
          }
          if (!changes.empty()) apply_(changes, false);
          applied(newest);
          return true;
        },
        stopping_);
    if (stopping_) break;
    if (!watched) {
      // etcd went away or compacted past us: list again (which catches up) and watch anew.
      fleet_.etcd_failed("config_watch", watched.message());
      pause(kRetry);
    }
  }
}

ApiResult<std::int64_t> FleetConfig::expected_revision(const std::string& key, const std::string& what,
                                                       const Precondition& pre) const {
  if (pre.kind == Precondition::Kind::revision) return pre.revision;
  std::lock_guard lock(mu_);
  const auto it = mod_revisions_.find(key);
  if (it != mod_revisions_.end()) return it->second;
  if (pre.kind == Precondition::Kind::exists) {
    return api_error(ApiErrorCode::conflict, what + " does not exist (If-Match: * writes only an existing one)");
  }
  return std::int64_t{0};
}

namespace {

ApiError etcd_unreachable(const std::string& why, std::int64_t applied) {
  return api_error(ApiErrorCode::unavailable,
                   "etcd is unreachable, and in a fleet configuration changes go through etcd (" + why +
                       "); this appliance serves on with the configuration of revision " + std::to_string(applied) +
                       ": retry when etcd is back");
}

// A lost compare: `now` is the key's mod_revision (0 = it does not exist).
ApiError changed_meanwhile(const std::string& what, std::int64_t now, std::int64_t expected, bool by_request) {
  return api_error(ApiErrorCode::conflict, what + " was changed meanwhile (its etcd revision is " +
                                               (now == 0 ? std::string("none: it was deleted") : std::to_string(now)) +
                                               ", " + (by_request ? "the request" : "this appliance") + " expected " +
                                               (expected == 0 ? "none" : std::to_string(expected)) +
                                               "): read it again and retry");
}

}  // namespace

ApiResult<std::int64_t> FleetConfig::put(Change::Kind kind, const std::string& name, const std::string& value,
                                         bool must_not_exist, const Precondition& pre) {
  const std::string key = key_of(kind, name);
  const std::string what = std::string(kind_name(kind)) + " '" + name + "'";
  std::int64_t expected = 0;
  if (!must_not_exist) {
    auto wanted = expected_revision(key, what, pre);
    if (!wanted) return wanted.error();
    expected = *wanted;
  }
  auto txn = fleet_.etcd().put_if(key, value, expected);
  if (!txn) {
    fleet_.etcd_failed("config_write", txn.message());
    return etcd_unreachable(txn.message(), applied_revision());
  }
  fleet_.etcd_answered();
  if (!txn->succeeded) {
    return changed_meanwhile(what, txn->current.mod_revision, expected, pre.kind == Precondition::Kind::revision);
  }
  return txn->revision;
}

ApiResult<std::int64_t> FleetConfig::remove(Change::Kind kind, const std::string& name, const Precondition& pre) {
  const std::string key = key_of(kind, name);
  const std::string what = std::string(kind_name(kind)) + " '" + name + "'";
  {
    std::lock_guard lock(mu_);
    if (!mod_revisions_.contains(key)) return api_error(ApiErrorCode::not_found, what + " is not in etcd");
  }
  auto expected = expected_revision(key, what, pre);
  if (!expected) return expected.error();
  auto txn = fleet_.etcd().delete_if(key, *expected);
  if (!txn) {
    fleet_.etcd_failed("config_write", txn.message());
    return etcd_unreachable(txn.message(), applied_revision());
  }
  fleet_.etcd_answered();
  if (!txn->succeeded) {
    return changed_meanwhile(what, txn->current.mod_revision, *expected, pre.kind == Precondition::Kind::revision);
  }
  return txn->revision;
}

}  // namespace axon::controlplane

// A small etcd v3 client over etcd's JSON gateway (etcd 3.4: /v3/kv/*, /v3/lease/*, /v3/watch),
// for the fleet: membership under a lease, shared configuration with compare-and-swap on a
// key's mod_revision, and a watch on a prefix.
//
// Keys and values are plain strings here; the client base64-encodes them on the wire. The
// endpoint list is tried in turn: a connection failure or timeout moves on to the next
// endpoint, and the one that answered is tried first next time. Every call is blocking and
// bounded by the per-request timeout (a watch by its stop flag). Thread-safe: calls may run
// on several threads at once (each opens its own connection). No Beast/Asio type leaks out
// of this header.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::fleet {

enum class EtcdError {
  invalid_argument,  // a bad endpoint, key or option: fix the caller's input
  unavailable,       // no endpoint answered (connect/timeout/5xx on every one)
  lease_not_found,   // the lease expired or was revoked: grant a new one
  compacted,         // a watch's start revision was compacted: re-list, then watch from the new revision
  protocol,          // etcd answered something this client does not understand
};

struct EtcdOptions {
  std::vector<std::string> endpoints;       // "http://host:port" (IPv6 as http://[::1]:2379)
  std::chrono::milliseconds timeout{2000};  // per request and endpoint (connect + write + read)
};

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

struct RangeReply {
  std::vector<KeyValue> kvs;
  std::int64_t revision = 0;  // the store's revision the range was read at
};

struct TxnReply {
  bool succeeded = false;     // false: the compare failed, nothing was written
  std::int64_t revision = 0;  // the store's revision after the txn
  // On a failed compare: the key's current state (mod_revision 0 = it does not exist).
  KeyValue current;
};

struct WatchEvent {
  enum class Type { put, del };
  Type type = Type::put;
  KeyValue kv;  // for del: key and mod_revision only
};

struct WatchBatch {
  std::int64_t revision = 0;  // header revision of this batch
  std::vector<WatchEvent> events;
};

class EtcdClient {
 public:
  // Checks the endpoints (http:// only; etcd's client TLS is not supported yet).
  static Result<EtcdClient, EtcdError> create(EtcdOptions options);
  ~EtcdClient();
  EtcdClient(EtcdClient&&) noexcept;
  EtcdClient& operator=(EtcdClient&&) noexcept;

  // One key (kvs empty when absent) or every key under a prefix, sorted by key.
  Result<RangeReply, EtcdError> get(const std::string& key) const;
  Result<RangeReply, EtcdError> get_prefix(const std::string& prefix) const;
  // Unconditional put; `lease` 0 = none. Returns the new store revision.
  Result<std::int64_t, EtcdError> put(const std::string& key, const std::string& value, std::int64_t lease = 0) const;
  // Compare-and-swap: writes only if the key's mod_revision equals `expected_mod_revision`
  // (0 = the key must not exist).
  Result<TxnReply, EtcdError> put_if(const std::string& key, const std::string& value,
                                     std::int64_t expected_mod_revision, std::int64_t lease = 0) const;
  // Deletes only if the key's mod_revision equals `expected_mod_revision`.
  Result<TxnReply, EtcdError> delete_if(const std::string& key, std::int64_t expected_mod_revision) const;
  // Deletes one key / every key under a prefix; returns how many were deleted.
  Result<std::int64_t, EtcdError> remove(const std::string& key) const;
  Result<std::int64_t, EtcdError> remove_prefix(const std::string& prefix) const;

  // Compacts the history up to `revision` (watches from older revisions then fail: compacted).
  Result<Ok, EtcdError> compact(std::int64_t revision) const;

  // A lease of `ttl_seconds`; returns its id.
  Result<std::int64_t, EtcdError> grant_lease(std::int64_t ttl_seconds) const;
  // One keepalive; returns the lease's renewed TTL, or lease_not_found when it expired.
  Result<std::int64_t, EtcdError> keep_alive(std::int64_t lease) const;
  Result<Ok, EtcdError> revoke_lease(std::int64_t lease) const;

  // Watches every key under `prefix` from `start_revision` (0 = from now), calling
  // `on_batch` for each batch of events in order. Returns Ok when `stop` became true or
  // on_batch returned false; unavailable when the stream broke (the caller re-lists and
  // watches again), compacted when start_revision is no longer available.
  Result<Ok, EtcdError> watch_prefix(const std::string& prefix, std::int64_t start_revision,
                                     const std::function<bool(const WatchBatch&)>& on_batch,
                                     const std::atomic<bool>& stop) const;

  // The endpoint that answered last (tried first next time).
  std::string current_endpoint() const;
  const EtcdOptions& options() const;

 private:
  struct Impl;
  explicit EtcdClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The end of the range of keys starting with `prefix` (etcd's range_end convention).
std::string prefix_range_end(const std::string& prefix);

// base64 (RFC 4648, with padding), as etcd's JSON gateway encodes bytes.
std::string base64_encode(const std::string& bytes);
bool base64_decode(const std::string& text, std::string& out);

}  // namespace axon::fleet

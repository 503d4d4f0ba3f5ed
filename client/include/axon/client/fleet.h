// axon::client::FleetClient: one AXP client over a fleet of appliances (docs/fleet.md,
// "Clients"). Each (tenant, agent, session_key) is placed on a member by rendezvous hashing
// (highest random weight), so adding or losing one of N members moves about 1/N of the keys;
// a request that its member cannot serve (no reply in time, nothing listening, ERROR
// worker_failed or overloaded) fails over to the next member in that key's order, within the
// call's time budget and with the same request id.
//
// The hash is part of the contract: the Python client (axon_client.fleet) computes the same
// placement byte for byte, so both place a key on the same member.
//
// Members come from a static list or from etcd (the members prefix that the appliances'
// control planes write, docs/fleet.md): listed, then watched through etcd's JSON gateway, so a
// member key put or deleted (an expired lease) is seen at once; after a broken watch the
// prefix is listed again. Not thread-safe (one thread per FleetClient, like Client); the etcd
// source is an internal thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "axon/client/client.h"
#include "axon/common/result.h"

namespace axon::client {

// ---- placement -------------------------------------------------------------------------

// The 64-bit finaliser of SplitMix64: a bijective mix whose every output bit depends on every
// input bit.
[[nodiscard]] std::uint64_t fleet_mix64(std::uint64_t x) noexcept;
// A member's hash: FNV-1a 64 over the member id's bytes, then fleet_mix64.
[[nodiscard]] std::uint64_t fleet_member_hash(std::string_view member_id) noexcept;
// The placement key of a request: mix64(mix64(mix64(tenant) ^ agent) ^ session_key).
[[nodiscard]] std::uint64_t fleet_key(std::uint32_t tenant, std::uint32_t agent, std::uint64_t session_key) noexcept;
// A member's weight for a key: mix64(member_hash ^ key). The highest weight wins.
[[nodiscard]] std::uint64_t fleet_weight(std::uint64_t member_hash, std::uint64_t key) noexcept;
// The member ids ranked for `key`: highest weight first, ties (never seen in practice) by id.
[[nodiscard]] std::vector<std::size_t> rendezvous_order(std::span<const std::string> member_ids, std::uint64_t key);

// ---- members ---------------------------------------------------------------------------

struct FleetMember {
  std::string id;  // what placement hashes: the appliance id (etcd), or "host:port" (static list)
  std::string host;
  std::uint16_t port = protocol::kDefaultPort;
  // Its health is "degraded" (etcd): its control plane is up but its data plane is not linked.
  // Placed after the healthy members (a last resort), like a member marked down.
  bool degraded = false;
};

// "host:port" strings (parse_host_port's forms; the port defaults to 7400) as members whose
// id is the string as given.
[[nodiscard]] Result<std::vector<FleetMember>, ClientError> parse_static_members(const std::vector<std::string>& list);

// Where an etcd member source reads. The appliances write <prefix>members/<appliance_id> =
// {"id", "axp": [{"address", "port"}, ...], "health", ...} under a lease (docs/fleet.md).
struct EtcdSourceOptions {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", ...: tried in turn
  std::string prefix = "/axon/";
  // The wait before listing the prefix again after a failed read or a broken watch (while the
  // watch stands, changes arrive as they happen). Endpoints that axon::fleet's client does not
  // take (it speaks http:// only) are polled this often instead of watched.
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds request_timeout{2000};
};

// The members in an etcd range response (the JSON gateway's /v3/kv/range answer for the
// members prefix): one per key whose value parses and has an AXP address, without those whose
// health is "draining" (they take no new sessions); "degraded" ones are flagged. Exposed for tests.
[[nodiscard]] Result<std::vector<FleetMember>, ClientError> parse_etcd_members(std::string_view range_response);
// One range read of the members prefix from the first endpoint that answers.
[[nodiscard]] Result<std::vector<FleetMember>, ClientError> read_etcd_members(const EtcdSourceOptions& options);

// ---- the client ------------------------------------------------------------------------

struct FleetOptions {
  ClientOptions client;  // for every member's Client
  // The most one member gets of a call's budget before the call fails over to the next one;
  // the last member tried gets all that is left.
  std::chrono::milliseconds member_timeout{300};
  // A member that failed (timeout, nothing listening) is left out of placement and tried again
  // (one probe request) after probe_after, doubled after every failed probe up to probe_max.
  std::chrono::milliseconds probe_after{1000};
  std::chrono::milliseconds probe_max{10000};
  // false: no failover; a call goes to the key's first live member only, with the whole
  // budget (for handlers that must not run twice: see call()).
  bool failover = true;
};

struct FleetCounters {
  std::uint64_t calls = 0;
  std::uint64_t failovers = 0;       // attempts moved to the next member
  std::uint64_t member_down = 0;     // members marked down (after a failure)
  std::uint64_t member_up = 0;       // down members that answered a probe
  std::uint64_t failed_calls = 0;    // calls that ended in a ClientError on every member tried
  std::uint64_t member_updates = 0;  // member lists applied (static or from etcd)
  std::uint64_t etcd_errors = 0;     // etcd reads and watches that failed (the last list stays in use)
};

// What a call got, and from where.
struct FleetReply {
  Reply reply;
  std::string member;  // the id of the member that answered
  unsigned members_tried = 1;
};

class FleetClient {
 public:
  // A fleet of fixed members.
  [[nodiscard]] static Result<FleetClient, ClientError> open(std::vector<FleetMember> members,
                                                             const FleetOptions& options = {});
  // A fleet whose members are read from etcd now (the call fails if no endpoint answers) and
  // then kept current by a background thread that watches the members prefix (created on the
  // calling thread, so in its network namespace: etcd must be reachable from there).
  [[nodiscard]] static Result<FleetClient, ClientError> open_etcd(const EtcdSourceOptions& source,
                                                                  const FleetOptions& options = {});

  FleetClient(FleetClient&&) noexcept;
  FleetClient& operator=(FleetClient&&) noexcept;
  ~FleetClient();

  // Replaces the member list. A member whose id stays keeps its socket and its up/down state.
  void set_members(std::vector<FleetMember> members);

  // Client::call on the key's member, failing over in rendezvous order (see the file comment).
  // options.timeout is the whole call's budget. A session_key of 0 is placed per request (the
  // calls spread over the members). Every member gets the same request id: on one appliance
  // that is its retry dedup (docs/protocol.md §1); on another it is a new request, so a
  // failover after a lost reply may run the handler twice.
  [[nodiscard]] Result<FleetReply, ClientError> call(const RequestOptions& request,
                                                     std::span<const std::uint8_t> payload,
                                                     const CallOptions& options = {});

  // The member ids in the order a call for `request` would try them now (the up members in
  // rendezvous order, then the down and the degraded ones).
  [[nodiscard]] std::vector<std::string> placement(const RequestOptions& request);

  [[nodiscard]] const FleetCounters& counters() const noexcept;
  [[nodiscard]] std::size_t members_up() const noexcept;
  [[nodiscard]] std::size_t members_down() const noexcept;
  [[nodiscard]] std::vector<std::string> member_ids() const;

  struct Impl;

 private:
  explicit FleetClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace axon::client

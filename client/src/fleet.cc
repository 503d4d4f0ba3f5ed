// FleetClient: rendezvous placement over the live members, failover in a key's rendezvous
// order within the call's budget, and members marked down with a bounded probe.
#include "axon/client/fleet.h"

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>

#include "axon/common/clock.h"

#include "fleet_etcd.h"

namespace axon::client {
namespace {

namespace p = axon::protocol;

std::uint64_t random_nonzero() noexcept {
  std::uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) v = fleet_mix64(monotonic_ns());
  return v == 0 ? 1 : v;
}

std::uint64_t to_ns(std::chrono::milliseconds d) noexcept {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count())) * 1'000'000ull;
}

// Errors that say "this member cannot be reached" (mark it down, try the next one), as opposed
// to a bad request (invalid_argument), which no other member would take either.
bool member_failure(ClientError e) noexcept {
  return e != ClientError::invalid_argument;
}

// ERROR codes that say "this appliance cannot serve it now" (docs/protocol.md §4): another
// member may. Every other code (handler_error, unknown_agent, deadline_exceeded, ...) would be
// the same answer elsewhere, or is the handler's own.
bool failover_code(p::ErrorCode code) noexcept {
  return code == p::ErrorCode::worker_failed || code == p::ErrorCode::overloaded;
}

}  // namespace

// ---- placement -------------------------------------------------------------------------

std::uint64_t fleet_mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t fleet_member_hash(std::string_view member_id) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : member_id) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return fleet_mix64(h);
}

std::uint64_t fleet_key(std::uint32_t tenant, std::uint32_t agent, std::uint64_t session_key) noexcept {
  return fleet_mix64(fleet_mix64(fleet_mix64(tenant) ^ agent) ^ session_key);
}

std::uint64_t fleet_weight(std::uint64_t member_hash, std::uint64_t key) noexcept {
  return fleet_mix64(member_hash ^ key);
}

std::vector<std::size_t> rendezvous_order(std::span<const std::string> member_ids, std::uint64_t key) {
  std::vector<std::pair<std::uint64_t, std::size_t>> ranked;
  ranked.reserve(member_ids.size());
  for (std::size_t i = 0; i < member_ids.size(); ++i)
    ranked.emplace_back(fleet_weight(fleet_member_hash(member_ids[i]), key), i);
  std::sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first > b.first;
    return member_ids[a.second] < member_ids[b.second];
  });
  std::vector<std::size_t> out;
  out.reserve(ranked.size());
  for (const auto& r : ranked) out.push_back(r.second);
  return out;
}

Result<std::vector<FleetMember>, ClientError> parse_static_members(const std::vector<std::string>& list) {
  std::vector<FleetMember> out;
  for (const auto& text : list) {
    auto hp = parse_host_port(text, p::kDefaultPort);
    if (!hp) return make_error(ClientError::invalid_argument, "fleet member '" + text + "': " + hp.message());
    out.push_back(FleetMember{text, hp->host, hp->port});
  }
  return out;
}

// ---- the client ------------------------------------------------------------------------

struct FleetClient::Impl {
  struct Member {
    FleetMember info;
    std::optional<Client> client;  // opened on first use
    bool down = false;
    std::uint64_t probe_at_ns = 0;    // a down member is tried again from then on
    std::uint64_t probe_wait_ns = 0;  // the wait after its next failure
  };

  FleetOptions options;
  std::vector<Member> members;
  std::vector<std::string> ids;  // members[i].info.id, for rendezvous_order
  FleetCounters counters;
  std::uint64_t spread = random_nonzero();  // placement of requests without a session key

  // The etcd source's thread hands member lists over here; call() and placement() apply them.
  std::mutex mu;
  std::optional<std::vector<FleetMember>> pending;
  std::uint64_t pending_errors = 0;
  std::condition_variable_any wake;
  std::atomic<bool> stopping{false};  // ends the source's watch (it checks this flag)
  std::jthread poller;

  void apply(std::vector<FleetMember> next);
  void apply_pending();
  std::vector<std::size_t> order_for(std::uint64_t key);
  void mark_down(Member& m, std::uint64_t now);
  void mark_up(Member& m);
};

void FleetClient::Impl::apply(std::vector<FleetMember> next) {
  std::vector<Member> kept;
  kept.reserve(next.size());
  for (auto& info : next) {
    auto same = std::find_if(members.begin(), members.end(), [&](const Member& m) {
      return m.info.id == info.id && m.info.host == info.host && m.info.port == info.port;
    });
    if (same != members.end()) {
      kept.push_back(std::move(*same));
      kept.back().info.degraded = info.degraded;
    } else {
      kept.push_back(Member{std::move(info), std::nullopt, false, 0, 0});
    }
  }
  members = std::move(kept);
  ids.clear();
  for (const auto& m : members) ids.push_back(m.info.id);
  ++counters.member_updates;
}

void FleetClient::Impl::apply_pending() {
  std::optional<std::vector<FleetMember>> next;
  {
    std::lock_guard lock(mu);
    next.swap(pending);
    counters.etcd_errors = pending_errors;
  }
  if (next) apply(std::move(*next));
}

// The up members (and the down ones due for a probe) in rendezvous order, then the other down
// ones and the degraded ones (their data plane is not linked), in rendezvous order: tried only
// when nothing else answered.
std::vector<std::size_t> FleetClient::Impl::order_for(std::uint64_t key) {
  const std::uint64_t now = monotonic_ns();
  std::vector<std::size_t> first, last;
  for (std::size_t i : rendezvous_order(ids, key)) {
    const Member& m = members[i];
    ((!m.down || m.probe_at_ns <= now) && !m.info.degraded ? first : last).push_back(i);
  }
  first.insert(first.end(), last.begin(), last.end());
  return first;
}

void FleetClient::Impl::mark_down(Member& m, std::uint64_t now) {
  const std::uint64_t base = std::max<std::uint64_t>(1, to_ns(options.probe_after));
  if (!m.down) {
    m.down = true;
    m.probe_wait_ns = base;
    ++counters.member_down;
  }
  m.probe_at_ns = now + m.probe_wait_ns;
  m.probe_wait_ns = std::min(m.probe_wait_ns * 2, std::max(base, to_ns(options.probe_max)));
  m.client.reset();  // a fresh socket for the probe: no stale ICMP error or outstanding ids
}

void FleetClient::Impl::mark_up(Member& m) {
  if (!m.down) return;
  m.down = false;
  m.probe_wait_ns = 0;
  ++counters.member_up;
}

FleetClient::FleetClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FleetClient::FleetClient(FleetClient&&) noexcept = default;
FleetClient& FleetClient::operator=(FleetClient&&) noexcept = default;
FleetClient::~FleetClient() {
  if (impl_ && impl_->poller.joinable()) {
    impl_->stopping = true;
    impl_->poller.request_stop();
    impl_->wake.notify_all();
    impl_->poller.join();
  }
}

Result<FleetClient, ClientError> FleetClient::open(std::vector<FleetMember> members, const FleetOptions& options) {
  if (options.member_timeout.count() <= 0)
    return make_error(ClientError::invalid_argument, "member_timeout must be positive");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->apply(std::move(members));
  return FleetClient(std::move(impl));
}

Result<FleetClient, ClientError> FleetClient::open_etcd(const EtcdSourceOptions& source, const FleetOptions& options) {
  if (source.endpoints.empty())
    return make_error(ClientError::invalid_argument, "no etcd endpoint given (e.g. http://127.0.0.1:2379)");
  auto first = read_etcd_members(source);
  if (!first) return first.error();
  auto fleet = open(std::move(first.value()), options);
  if (!fleet) return fleet;
  Impl* impl = fleet->impl_.get();
  // The thread is created here, in the caller's network namespace: etcd must be reachable
  // from it (the members' AXP sockets are opened later, by call()).
  impl->poller = std::jthread([impl, source](std::stop_token stop) {
    detail::EtcdMemberSink sink;
    sink.members = [impl](std::vector<FleetMember> members) {
      std::lock_guard lock(impl->mu);
      impl->pending = std::move(members);
    };
    sink.error = [impl] {
      std::lock_guard lock(impl->mu);
      ++impl->pending_errors;  // keep the last list: the appliances outlive an etcd outage
    };
    sink.sleep = [impl, &stop](std::chrono::milliseconds wait) {
      std::unique_lock lock(impl->mu);
      impl->wake.wait_for(lock, stop, wait, [] { return false; });
      return !stop.stop_requested();
    };
    detail::run_etcd_member_source(source, impl->stopping, sink);
  });
  return fleet;
}

void FleetClient::set_members(std::vector<FleetMember> members) {
  impl_->apply(std::move(members));
}

std::vector<std::string> FleetClient::placement(const RequestOptions& request) {
  impl_->apply_pending();
  std::vector<std::string> out;
  for (std::size_t i : impl_->order_for(fleet_key(request.tenant, request.agent, request.session_key)))
    out.push_back(impl_->members[i].info.id);
  return out;
}

Result<FleetReply, ClientError> FleetClient::call(const RequestOptions& request, std::span<const std::uint8_t> payload,
                                                  const CallOptions& options) {
  Impl& s = *impl_;
  s.apply_pending();
  ++s.counters.calls;
  const std::uint64_t deadline = monotonic_ns() + to_ns(options.timeout);
  const std::uint64_t session = request.session_key != 0 ? request.session_key : fleet_mix64(s.spread++);
  auto order = s.order_for(fleet_key(request.tenant, request.agent, session));
  if (!s.options.failover && order.size() > 1)
    order.erase(order.begin() + 1, order.end());  // not resize(): g++ 12 -Warray-bounds
  if (order.empty()) {
    ++s.counters.failed_calls;
    return make_error(ClientError::invalid_argument, "the fleet has no members (check the static list or etcd)");
  }
  CallOptions attempt = options;
  attempt.request_id = options.request_id != 0 ? options.request_id : random_nonzero();
  std::optional<FleetReply> answered;  // the last ERROR reply that made us fail over
  std::optional<Error<ClientError>> failed;
  unsigned tried = 0;
  for (std::size_t n = 0; n < order.size(); ++n) {
    Impl::Member& m = s.members[order[n]];
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline) break;
    const bool last = n + 1 == order.size();
    const std::uint64_t budget = last ? deadline - now : std::min(deadline - now, to_ns(s.options.member_timeout));
    attempt.timeout = std::chrono::milliseconds(std::max<std::uint64_t>(1, (budget + 999'999) / 1'000'000));
    if (tried++ > 0) ++s.counters.failovers;
    if (!m.client) {
      auto opened = Client::open(m.info.host, m.info.port, s.options.client);
      if (!opened) {
        failed = opened.error();
        s.mark_down(m, monotonic_ns());
        continue;
      }
      m.client.emplace(std::move(opened.value()));
    }
    auto reply = m.client->call(request, payload, attempt);
    if (!reply) {
      if (!member_failure(reply.code())) {
        ++s.counters.failed_calls;
        return reply.error();
      }
      failed = Error<ClientError>{reply.code(), "member " + m.info.id + ": " + reply.message()};
      s.mark_down(m, monotonic_ns());
      continue;
    }
    s.mark_up(m);
    FleetReply out{std::move(reply.value()), m.info.id, tried};
    if (out.reply.type == p::MessageType::error && failover_code(out.reply.error_code) && !last) {
      answered = std::move(out);
      continue;
    }
    return out;
  }
  if (answered) {
    answered->members_tried = tried;
    return std::move(*answered);
  }
  ++s.counters.failed_calls;
  if (!failed) return make_error(ClientError::timeout, "the call's timeout ran out before any member was tried");
  return make_error(failed->code, failed->message + " (" + std::to_string(tried) + " member(s) tried)");
}

const FleetCounters& FleetClient::counters() const noexcept {
  return impl_->counters;
}

std::size_t FleetClient::members_up() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(impl_->members.begin(), impl_->members.end(), [](const auto& m) { return !m.down; }));
}

std::size_t FleetClient::members_down() const noexcept {
  return impl_->members.size() - members_up();
}

std::vector<std::string> FleetClient::member_ids() const {
  return impl_->ids;
}

}  // namespace axon::client

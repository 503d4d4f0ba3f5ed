// XdpProgram's runtime tables (allowlist, rate limits, credits, AF_XDP sockets) and its
// observation calls (counters, test runs).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "axon/bpf/xdp_program.h"

#include "xdp_state.h"

namespace axon::bpf {

// ---------------------------------------------------------------------------------------------
// Runtime tables

namespace {

// The LPM key of a rule: tenant in the first 32 bits, then the address prefix.
template <typename Key>
Key make_allow_key(std::uint32_t tenant_id, const IpPrefix& prefix) {
  Key key{};
  key.prefixlen = 32 + prefix.length;
  key.tenant_id = axon_htonl(tenant_id);
  std::memcpy(key.addr, prefix.address.data(), sizeof key.addr);
  return key;
}

}  // namespace

XdpResult<Ok> XdpProgram::allow_prefix(std::uint32_t tenant_id, const IpPrefix& prefix) {
  if (!state_) return make_error(XdpError::not_loaded, "allow_prefix() on a moved-from XdpProgram");
  std::uint32_t present = 1;
  int err;
  if (prefix.family == AF_INET) {
    auto key = make_allow_key<axon_allow_v4_key>(tenant_id, prefix);
    err = bpf_map__update_elem(state_->skel->maps.axon_allow_v4, &key, sizeof key, &present, sizeof present, BPF_ANY);
  } else if (prefix.family == AF_INET6) {
    auto key = make_allow_key<axon_allow_v6_key>(tenant_id, prefix);
    err = bpf_map__update_elem(state_->skel->maps.axon_allow_v6, &key, sizeof key, &present, sizeof present, BPF_ANY);
  } else {
    return make_error(XdpError::invalid_argument, "prefix has no address family; build it with IpPrefix::parse()");
  }
  if (err != 0)
    return make_error(XdpError::map_update_failed,
                      "cannot allow " + prefix.to_string() + " for tenant " + std::to_string(tenant_id) + ": " +
                          errno_text(err) + (err == -E2BIG || err == -ENOMEM ? "; the allowlist is full" : ""));
  return Ok{};
}

XdpResult<Ok> XdpProgram::remove_prefix(std::uint32_t tenant_id, const IpPrefix& prefix) {
  if (!state_) return make_error(XdpError::not_loaded, "remove_prefix() on a moved-from XdpProgram");
  int err;
  if (prefix.family == AF_INET) {
    auto key = make_allow_key<axon_allow_v4_key>(tenant_id, prefix);
    err = bpf_map__delete_elem(state_->skel->maps.axon_allow_v4, &key, sizeof key, 0);
  } else if (prefix.family == AF_INET6) {
    auto key = make_allow_key<axon_allow_v6_key>(tenant_id, prefix);
    err = bpf_map__delete_elem(state_->skel->maps.axon_allow_v6, &key, sizeof key, 0);
  } else {
    return make_error(XdpError::invalid_argument, "prefix has no address family; build it with IpPrefix::parse()");
  }
  if (err != 0 && err != -ENOENT)
    return make_error(XdpError::map_update_failed, "cannot remove " + prefix.to_string() + " for tenant " +
                                                       std::to_string(tenant_id) + ": " + errno_text(err));
  return Ok{};
}

namespace {

const char* scope_name(RateScope scope) noexcept {
  switch (scope) {
    case RateScope::interactive: return "interactive ";
    case RateScope::background: return "background ";
    case RateScope::all: return "";
  }
  return "";
}

axon_rate_key rate_key(std::uint32_t tenant_id, RateScope scope) noexcept {
  axon_rate_key key{};
  key.tenant_id = axon_htonl(tenant_id);
  key.scope = static_cast<std::uint32_t>(scope);
  return key;
}

}  // namespace

XdpResult<Ok> XdpProgram::set_rate_limit(std::uint32_t tenant_id, std::uint32_t packets_per_second, std::uint32_t burst,
                                         RateScope scope) {
  if (!state_) return make_error(XdpError::not_loaded, "set_rate_limit() on a moved-from XdpProgram");
  if (packets_per_second == 0 || packets_per_second > 1'000'000'000u || burst == 0)
    return make_error(XdpError::invalid_argument,
                      std::string(scope_name(scope)) + "rate limit for tenant " + std::to_string(tenant_id) +
                          " needs 1..1e9 packets/s and a burst of at least 1; use clear_rate_limit() for none");
  if (static_cast<std::uint32_t>(scope) > AXON_SCOPE_ALL)
    return make_error(XdpError::invalid_argument, "rate scope must be interactive, background or all");
  axon_rate rate{};
  rate.interval_ns = 1'000'000'000ull / packets_per_second;
  rate.burst_ns = rate.interval_ns * burst;
  rate.tat_ns = 0;  // in the past: the bucket starts full
  axon_rate_key key = rate_key(tenant_id, scope);
  if (int err = bpf_map__update_elem(state_->skel->maps.axon_rates, &key, sizeof key, &rate, sizeof rate, BPF_ANY);
      err != 0)
    return make_error(XdpError::map_update_failed, "cannot set the " + std::string(scope_name(scope)) +
                                                       "rate limit of tenant " + std::to_string(tenant_id) + ": " +
                                                       errno_text(err) +
                                                       (err == -E2BIG ? "; the tenant table is full" : ""));
  return Ok{};
}

XdpResult<Ok> XdpProgram::clear_rate_limit(std::uint32_t tenant_id, RateScope scope) {
  if (!state_) return make_error(XdpError::not_loaded, "clear_rate_limit() on a moved-from XdpProgram");
  axon_rate_key key = rate_key(tenant_id, scope);
  int err = bpf_map__delete_elem(state_->skel->maps.axon_rates, &key, sizeof key, 0);
  if (err != 0 && err != -ENOENT)
    return make_error(XdpError::map_update_failed, "cannot clear the " + std::string(scope_name(scope)) +
                                                       "rate limit of tenant " + std::to_string(tenant_id) + ": " +
                                                       errno_text(err));
  return Ok{};
}

XdpResult<Ok> XdpProgram::set_credits(std::uint32_t tenant_id, std::int64_t credits, std::uint32_t retry_after_us) {
  if (!state_) return make_error(XdpError::not_loaded, "set_credits() on a moved-from XdpProgram");
  axon_credit value{};
  value.credits = credits;
  value.retry_after_us = retry_after_us;
  __be32 key = axon_htonl(tenant_id);
  if (int err = bpf_map__update_elem(state_->skel->maps.axon_credits, &key, sizeof key, &value, sizeof value, BPF_ANY);
      err != 0)
    return make_error(XdpError::map_update_failed, "cannot set the credits of tenant " + std::to_string(tenant_id) +
                                                       ": " + errno_text(err) +
                                                       (err == -E2BIG ? "; the tenant table is full" : ""));
  return Ok{};
}

XdpResult<Ok> XdpProgram::clear_credits(std::uint32_t tenant_id) {
  if (!state_) return make_error(XdpError::not_loaded, "clear_credits() on a moved-from XdpProgram");
  __be32 key = axon_htonl(tenant_id);
  int err = bpf_map__delete_elem(state_->skel->maps.axon_credits, &key, sizeof key, 0);
  if (err != 0 && err != -ENOENT)
    return make_error(XdpError::map_update_failed,
                      "cannot clear the credits of tenant " + std::to_string(tenant_id) + ": " + errno_text(err));
  return Ok{};
}

XdpResult<std::optional<std::int64_t>> XdpProgram::read_credits(std::uint32_t tenant_id) const {
  if (!state_) return make_error(XdpError::not_loaded, "read_credits() on a moved-from XdpProgram");
  __be32 key = axon_htonl(tenant_id);
  axon_credit value{};
  int err = bpf_map__lookup_elem(state_->skel->maps.axon_credits, &key, sizeof key, &value, sizeof value, 0);
  if (err == -ENOENT) return std::optional<std::int64_t>{};
  if (err != 0)
    return make_error(XdpError::map_read_failed,
                      "cannot read the credits of tenant " + std::to_string(tenant_id) + ": " + errno_text(err));
  return std::optional<std::int64_t>(value.credits);
}

XdpResult<Ok> XdpProgram::set_socket(std::uint32_t queue, int xsk_fd) {
  if (!state_) return make_error(XdpError::not_loaded, "set_socket() on a moved-from XdpProgram");
  if (queue >= state_->config.max_queues)
    return make_error(XdpError::invalid_argument, "queue " + std::to_string(queue) + " is beyond max_queues (" +
                                                      std::to_string(state_->config.max_queues) +
                                                      "); raise XdpConfig::max_queues");
  std::uint32_t fd = static_cast<std::uint32_t>(xsk_fd);
  if (int err = bpf_map__update_elem(state_->skel->maps.axon_xsks, &queue, sizeof queue, &fd, sizeof fd, BPF_ANY);
      err != 0)
    return make_error(XdpError::map_update_failed, "cannot register the AF_XDP socket for queue " +
                                                       std::to_string(queue) + ": " + errno_text(err) +
                                                       "; the fd must be an AF_XDP socket bound to that queue");
  return Ok{};
}

XdpResult<Ok> XdpProgram::clear_socket(std::uint32_t queue) {
  if (!state_) return make_error(XdpError::not_loaded, "clear_socket() on a moved-from XdpProgram");
  int err = bpf_map__delete_elem(state_->skel->maps.axon_xsks, &queue, sizeof queue, 0);
  if (err != 0 && err != -ENOENT)
    return make_error(XdpError::map_update_failed,
                      "cannot remove the AF_XDP socket of queue " + std::to_string(queue) + ": " + errno_text(err));
  return Ok{};
}

// ---------------------------------------------------------------------------------------------
// Observation

XdpResult<XdpCounters> XdpProgram::read_counters() const {
  if (!state_) return make_error(XdpError::not_loaded, "read_counters() on a moved-from XdpProgram");
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return make_error(XdpError::map_read_failed, "cannot count possible CPUs: " + errno_text(cpus));
  std::vector<axon_counter> per_cpu(static_cast<std::size_t>(cpus));
  XdpCounters totals;
  for (std::uint32_t key = 0; key < kReasonCount; ++key) {
    if (int err = bpf_map__lookup_elem(state_->skel->maps.axon_counters, &key, sizeof key, per_cpu.data(),
                                       per_cpu.size() * sizeof(axon_counter), 0);
        err != 0)
      return make_error(XdpError::map_read_failed,
                        "cannot read XDP counter " + std::to_string(key) + ": " + errno_text(err));
    for (const axon_counter& c : per_cpu) {
      totals.packets[key] += c.packets;
      totals.bytes[key] += c.bytes;
    }
  }
  for (std::uint32_t key = 0; key < AXON_CLASS_COUNTER_SLOTS; ++key) {
    if (int err = bpf_map__lookup_elem(state_->skel->maps.axon_class_counters, &key, sizeof key, per_cpu.data(),
                                       per_cpu.size() * sizeof(axon_counter), 0);
        err != 0)
      return make_error(XdpError::map_read_failed,
                        "cannot read XDP class counter " + std::to_string(key) + ": " + errno_text(err));
    for (const axon_counter& c : per_cpu) {
      totals.class_packets[key / kReasonCount][key % kReasonCount] += c.packets;
      totals.class_bytes[key / kReasonCount][key % kReasonCount] += c.bytes;
    }
  }
  return totals;
}

XdpResult<TestRunResult> XdpProgram::test_run(std::span<const std::uint8_t> frame,
                                              const TestRunOptions& options) const {
  if (!state_) return make_error(XdpError::not_loaded, "test_run() on a moved-from XdpProgram");
  xdp_md ctx{};
  ctx.data_end = static_cast<std::uint32_t>(frame.size());
  ctx.ingress_ifindex = options.ingress_ifindex;
  ctx.rx_queue_index = options.rx_queue;
  bool with_ctx = options.ingress_ifindex != 0 || options.rx_queue != 0;

  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<std::uint32_t>(frame.size());
  opts.ctx_in = with_ctx ? &ctx : nullptr;
  opts.ctx_size_in = with_ctx ? sizeof ctx : 0;
  // XDP_TX may rewrite and cut the frame, never grow it (the program only shrinks the tail); the
  // kernel returns the output from data_meta, so room for the metadata ([xdp] rx_stamp: the
  // hook's stamp in front of a redirected frame, at most 32 bytes) comes on top.
  std::vector<std::uint8_t> out(frame.size() + 32);
  opts.data_out = out.data();
  opts.data_size_out = static_cast<std::uint32_t>(out.size());
  opts.repeat = 1;
  if (int err = bpf_prog_test_run_opts(state_->prog_fd(), &opts); err != 0)
    return make_error(XdpError::test_run_failed,
                      "BPF_PROG_TEST_RUN refused a " + std::to_string(frame.size()) +
                          "-byte frame: " + errno_text(err) +
                          (frame.size() < 14 ? "; the kernel needs at least an Ethernet header (14 bytes)" : ""));
  out.resize(std::min<std::size_t>(opts.data_size_out, out.size()));
  return TestRunResult{opts.retval, std::move(out)};
}

}  // namespace axon::bpf

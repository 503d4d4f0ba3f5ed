/* axon_xdp_maps.h: every map of the XDP front door, in one place. Key and value types come from
 * axon_xdp.shared.h so userspace reads and writes them with the same structs. Sizes here are
 * defaults; the loader may resize a map before load (bpf_map__set_max_entries). */
#ifndef AXON_XDP_MAPS_H
#define AXON_XDP_MAPS_H

/* bpf_helpers.h uses the uapi types, so linux/bpf.h must come first. */
// clang-format off
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#include "axon_xdp.shared.h"

#define AXON_DEFAULT_MAX_QUEUES 64
#define AXON_MAX_TENANTS 4096
#define AXON_MAX_PREFIXES 16384

/* AF_XDP socket per receive queue (key: rx_queue_index); valid requests are redirected here. */
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, AXON_DEFAULT_MAX_QUEUES);
  __type(key, __u32);
  __type(value, __u32);
} axon_xsks SEC(".maps");

/* Per-CPU packet and byte counts, indexed by enum axon_reason; userspace sums the CPUs. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, AXON_REASON_COUNT);
  __type(key, __u32); /* array maps take only a u32 key, not the enum type */
  __type(value, struct axon_counter);
} axon_counters SEC(".maps");

/* The same counts per priority class (index class * AXON_REASON_COUNT + reason), for frames whose
 * AXP header validated; userspace sums the CPUs. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, AXON_CLASS_COUNTER_SLOTS);
  __type(key, __u32);
  __type(value, struct axon_counter);
} axon_class_counters SEC(".maps");

/* IPv4 source allowlist: (tenant, prefix) -> rule present; read when ENFORCE_ALLOWLIST is set. */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, AXON_MAX_PREFIXES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct axon_allow_v4_key);
  __type(value, __u32);
} axon_allow_v4 SEC(".maps");

/* IPv6 source allowlist: (tenant, prefix) -> rule present; read when ENFORCE_ALLOWLIST is set. */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, AXON_MAX_PREFIXES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct axon_allow_v6_key);
  __type(value, __u32);
} axon_allow_v6 SEC(".maps");

/* GCRA state per tenant and scope (one class, or all classes; none = unlimited); no prealloc:
 * replaced entries are RCU-freed. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, AXON_MAX_TENANTS * 3);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct axon_rate_key);
  __type(value, struct axon_rate);
} axon_rates SEC(".maps");

/* Credits per tenant (key: tenant, network order; none = no credits, unlimited), rewritten by
 * the data plane every refresh interval. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, AXON_MAX_TENANTS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __be32);
  __type(value, struct axon_credit);
} axon_credits SEC(".maps");

#endif /* AXON_XDP_MAPS_H */

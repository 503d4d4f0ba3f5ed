// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdp_drop.bpf.c: the reference point of the e2e drop-rate comparison. It drops every frame and
 * counts it in a per-CPU array, the least work an XDP program that still reports its drops can
 * do; axon's front door is measured against it on the same veth in the same run. */
/* bpf_helpers.h needs the types of linux/bpf.h, so include sorting must not reorder these. */
// clang-format off
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
// clang-format on

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} e2e_drop_count SEC(".maps");

SEC("xdp")
int xdp_drop_count(struct xdp_md* ctx) {
  __u32 key = 0;
  __u64* n = bpf_map_lookup_elem(&e2e_drop_count, &key);

  (void)ctx;
  if (n) *n += 1; /* per-CPU slot: no atomic needed */
  return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* axon_reflect.bpf.c: the machine's ceiling in the benchmark suite. Attached to the
 * appliance's veth end in place of axon, it answers every valid AXP request itself with
 * XDP_TX: Ethernet, IP addresses and UDP ports swapped, type RESPONSE, the payload echoed.
 * It validates each frame with the same classifier as axon's front door (axon_xdp.shared.h),
 * so it does the front door's work and nothing else: no AF_XDP hop, no data plane, no worker.
 * Its saturation and latency are what this VM and this load generator allow at all.
 *
 * Frames that are not AXP pass to the kernel (ARP keeps working); malformed AXP is dropped.
 * Per-CPU counters: [0] reflected, [1] passed, [2] dropped. */
/* bpf_helpers.h needs the types of linux/bpf.h, so include sorting must not reorder these. */
// clang-format off
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#include "axon_xdp.shared.h"

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 3);
  __type(key, __u32);
  __type(value, __u64);
} reflect_count SEC(".maps");

static __always_inline void count(__u32 key) {
  __u64* n = bpf_map_lookup_elem(&reflect_count, &key);

  if (n) *n += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline void swap_bytes(__u8* a, __u8* b, __u32 n) {
  __u8 tmp[16];

  __builtin_memcpy(tmp, a, n);
  __builtin_memcpy(a, b, n);
  __builtin_memcpy(b, tmp, n);
}

SEC("xdp")
int axon_reflect(struct xdp_md* ctx) {
  __u8* data = (__u8*)(long)ctx->data;
  __u8* end = (__u8*)(long)ctx->data_end;
  struct axon_config cfg = {{__builtin_bswap16(AXP_DEFAULT_PORT), 0, 0, 0}, AXON_CFG_REQUESTS_ONLY};
  struct axon_packet_info info = {};
  enum axon_reason reason = axon_classify_frame(data, end, &cfg, &info);
  struct axon_eth_hdr* eth = (struct axon_eth_hdr*)data;
  struct axon_udp_hdr* udp;
  struct axp_header* axp;
  __be16 port;

  if (reason == AXON_PASS_NOT_AXP) {
    count(1);
    return XDP_PASS;
  }
  /* IPv4 without VLAN tags only: what the suite sends. Anything else is dropped and counted. */
  if (reason != AXON_OK || info.ip_version != 4 || info.vlan_count != 0) {
    count(2);
    return XDP_DROP;
  }
  /* Constant offsets from here on, re-checked so the verifier sees the bounds. */
  if (!axon_fits(data, sizeof(struct axon_eth_hdr) + sizeof(struct axon_ipv4_hdr), end)) return XDP_DROP;
  if (info.axp_offset > 128) return XDP_DROP;
  udp = (struct axon_udp_hdr*)(data + info.l4_offset);
  axp = (struct axp_header*)(data + info.axp_offset);
  if (!axon_fits(udp, sizeof(*udp), end) || !axon_fits(axp, sizeof(*axp), end)) return XDP_DROP;

  swap_bytes(eth->dst, eth->src, 6);
  {
    struct axon_ipv4_hdr* ip = (struct axon_ipv4_hdr*)(data + sizeof(struct axon_eth_hdr));

    /* Swapping the addresses leaves the IP header checksum as it was. */
    swap_bytes(ip->saddr, ip->daddr, 4);
  }
  port = udp->source;
  udp->source = udp->dest;
  udp->dest = port;
  udp->check = 0; /* optional over IPv4; the type byte below would change it */
  axp->type = AXP_MSG_RESPONSE;
  count(0);
  return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

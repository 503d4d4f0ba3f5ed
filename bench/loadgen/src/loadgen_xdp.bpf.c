// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* loadgen_xdp.bpf.c: attached by axon-loadgen (--xdp-dev) to its own veth end. Replies to the
 * load generator (IPv4 UDP to its source port) go to its AF_XDP socket on the receive queue;
 * everything else (ARP, ICMP, other ports) goes to the kernel untouched, so the namespace's
 * stack keeps answering ARP for the load generator's address. */
/* bpf_helpers.h needs the types of linux/bpf.h, so include sorting must not reorder these. */
// clang-format off
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#include "axon_xdp.shared.h"

/* Written by axon-loadgen before load: its UDP source port, network order. */
const volatile __be16 loadgen_port = 0;

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} loadgen_xsks SEC(".maps");

SEC("xdp")
int loadgen_rx(struct xdp_md* ctx) {
  const __u8* data = (const __u8*)(long)ctx->data;
  const __u8* end = (const __u8*)(long)ctx->data_end;
  const struct axon_eth_hdr* eth = (const struct axon_eth_hdr*)data;
  const struct axon_ipv4_hdr* ip;
  const struct axon_udp_hdr* udp;
  __u32 ihl;

  if (!axon_fits(eth, sizeof(*eth), end) || eth->proto != axon_htons(AXON_ETH_P_IPV4)) return XDP_PASS;
  ip = (const struct axon_ipv4_hdr*)(data + sizeof(*eth));
  if (!axon_fits(ip, sizeof(*ip), end) || ip->protocol != AXON_IPPROTO_UDP) return XDP_PASS;
  ihl = (__u32)(ip->version_ihl & 0x0F) * 4;
  if (ihl < sizeof(*ip) || ihl > 60) return XDP_PASS;
  udp = (const struct axon_udp_hdr*)(data + sizeof(*eth) + ihl);
  if (!axon_fits(udp, sizeof(*udp), end) || udp->dest != loadgen_port) return XDP_PASS;
  return bpf_redirect_map(&loadgen_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

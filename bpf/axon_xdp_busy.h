/* axon_xdp_busy.h: the XDP program's BUSY reply, written in place over the request (BPF only).
 *
 * A tenant over its credits is answered in the driver: the frame that carried the request is
 * rewritten into the BUSY datagram docs/protocol.md §5 describes and sent back with XDP_TX. The
 * reply is byte for byte what the data plane's make_busy_reply + build_reply_frame produce for
 * the same request (the span id aside, which is random): the Ethernet header (VLAN tags kept) with
 * the MACs swapped, a fresh IPv4 header (20 bytes, DF, TTL 64, id 0) or IPv6 header (40 bytes,
 * hop limit 64, no extension headers), the UDP ports swapped, and the 80-byte AXP header with an
 * empty payload. The request's IPv4 options, IPv6 extension headers, header extensions beyond 80
 * bytes and payload are dropped, so the reply is never longer than the request: the tail is cut
 * with bpf_xdp_adjust_tail, never grown.
 */
#ifndef AXON_XDP_BUSY_H
#define AXON_XDP_BUSY_H

#include "axon_xdp_maps.h"

#define AXON_REPLY_TTL 64

/* UDP header and AXP header as one block: the part of the reply the UDP checksum covers. */
struct axon_busy_l4 {
  struct axon_udp_hdr udp;
  struct axp_header axp;
} __attribute__((packed));

AXON_STATIC_ASSERT(sizeof(struct axon_busy_l4) == 8 + AXP_HEADER_LEN, "UDP + AXP header");

/* The ones' complement sum of n bytes (n even, a constant at every call site) as 16-bit
 * big-endian words, the form RFC 1071 describes; the caller folds it. */
static __always_inline __u32 axon_sum16(const __u8* p, __u32 n, __u32 sum) {
  __u32 i;

#pragma clang loop unroll(disable)
  for (i = 0; i + 1 < n; i += 2) sum += ((__u32)p[i] << 8) | p[i + 1];
  return sum;
}

static __always_inline __u16 axon_fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

/* A new child span id for the reply when the request carries trace context (§5), else zero. */
static __always_inline void axon_busy_span(struct axp_header* reply, const struct axp_header* request) {
  __u32 hi, lo;
  int i, traced = 0;

#pragma unroll
  for (i = 0; i < 16; i++) traced |= request->trace_id[i];
  if (traced) {
    traced = 0;
#pragma unroll
    for (i = 0; i < 8; i++) traced |= request->span_id[i];
  }
  if (!traced) return; /* reply->span_id stays zero */
  hi = bpf_get_prandom_u32();
  lo = bpf_get_prandom_u32();
  if (hi == 0 && lo == 0) lo = 1; /* an all-zero span id means "none" */
  __builtin_memcpy(reply->span_id, &hi, 4);
  __builtin_memcpy(reply->span_id + 4, &lo, 4);
}

/* Fills the UDP + AXP block of the BUSY reply to `request`; the checksum is left for later. */
static __always_inline void axon_busy_l4_fill(struct axon_busy_l4* l4, const struct axp_header* request,
                                              const struct axon_packet_info* info, __u32 retry_after_us) {
  struct axp_header* r = &l4->axp;

  __builtin_memset(l4, 0, sizeof(*l4));
  l4->udp.source = info->dst_port;
  l4->udp.dest = info->src_port;
  l4->udp.len = axon_htons(sizeof(*l4));
  r->magic = axon_htonl(AXP_MAGIC);
  r->version = AXP_VERSION;
  r->type = AXP_MSG_BUSY;
  r->priority = request->priority;
  r->trace_flags = request->trace_flags;
  r->header_len = axon_htons(AXP_HEADER_LEN);
  r->segment_count = axon_htons(1); /* payload_len, segment_index, message_len: 0 */
  r->tenant_id = request->tenant_id;
  r->agent_id = request->agent_id;
  r->session_key = request->session_key;
  r->request_id = request->request_id;
  __builtin_memcpy(r->trace_id, request->trace_id, sizeof(r->trace_id));
  axon_busy_span(r, request);
  r->retry_after_us = axon_htonl(retry_after_us); /* deadline_us, error_code: 0 */
}

/* Rewrites the validated request frame described by `info` into its BUSY reply and cuts the
 * tail. Returns 0 when the frame is ready for XDP_TX, -1 when it could not be rewritten (the
 * caller drops it). Packet pointers are re-derived after every helper that may move them. */
static __always_inline int axon_write_busy(struct xdp_md* ctx, const struct axon_packet_info* info,
                                           __u32 retry_after_us) {
  __u8* data = (__u8*)(long)ctx->data;
  const __u8* end = (const __u8*)(long)ctx->data_end;
  const struct axp_header* request;
  struct axon_busy_l4 l4;
  union {
    struct axon_ipv4_hdr v4;
    struct axon_ipv6_hdr v6;
  } h;
  __u32 l3 = info->l3_offset & 0x3f; /* Ethernet + at most 2 VLAN tags: < 64 */
  __u32 axp = info->axp_offset;
  __u32 ip_len = info->ip_version == 6 ? 40 : 20;
  __u32 pseudo, reply_len, frame_len;
  __u16 check;
  __u8 mac[6];
  __u8* ip;

  if (l3 != info->l3_offset || axp > 0xffff) return -1;
  /* The reply's UDP and AXP headers are built on the stack from the request's before anything
   * is written: the reply's bytes overlap the request's. */
  request = (const struct axp_header*)(data + axp);
  if ((const __u8*)(request + 1) > end) return -1;
  axon_busy_l4_fill(&l4, request, info, retry_after_us);

  reply_len = l3 + ip_len + sizeof(l4);
  frame_len = (__u32)(end - data);
  if (reply_len > frame_len) return -1; /* cannot happen for a valid request; never grow */
  if (data + 14 > end) return -1;
  __builtin_memcpy(mac, data, 6); /* Ethernet: swap the MACs, keep type and VLAN tags */
  __builtin_memcpy(data, data + 6, 6);
  __builtin_memcpy(data + 6, mac, 6);

  ip = data + l3;
  if (info->ip_version == 6) {
    struct axon_ipv6_hdr* h6 = &h.v6;

    if (ip + sizeof(*h6) + sizeof(l4) > end) return -1;
    __builtin_memset(h6, 0, sizeof(*h6));
    h6->version_class_flow = axon_htonl(0x60000000u);
    h6->payload_len = axon_htons(sizeof(l4));
    h6->nexthdr = AXON_IPPROTO_UDP;
    h6->hop_limit = AXON_REPLY_TTL;
    __builtin_memcpy(h6->saddr, info->dst_addr, 16);
    __builtin_memcpy(h6->daddr, info->src_addr, 16);
    pseudo = axon_sum16(h6->saddr, 32, AXON_IPPROTO_UDP + sizeof(l4));
    __builtin_memcpy(ip, h6, sizeof(*h6));
  } else {
    struct axon_ipv4_hdr* h4 = &h.v4;

    if (ip + sizeof(*h4) + sizeof(l4) > end) return -1;
    __builtin_memset(h4, 0, sizeof(*h4));
    h4->version_ihl = 0x45;
    h4->tot_len = axon_htons(sizeof(*h4) + sizeof(l4));
    h4->frag_off = axon_htons(0x4000); /* DF: replies are never fragmented */
    h4->ttl = AXON_REPLY_TTL;
    h4->protocol = AXON_IPPROTO_UDP;
    __builtin_memcpy(h4->saddr, info->dst_addr, 4);
    __builtin_memcpy(h4->daddr, info->src_addr, 4);
    h4->check = axon_htons(axon_fold(axon_sum16((const __u8*)h4, sizeof(*h4), 0)));
    pseudo = axon_sum16(h4->saddr, 8, AXON_IPPROTO_UDP + sizeof(l4));
    __builtin_memcpy(ip, h4, sizeof(*h4));
  }
  check = axon_fold(axon_sum16((const __u8*)&l4, sizeof(l4), pseudo));
  l4.udp.check = axon_htons(check == 0 ? 0xffff : check); /* 0 would mean "no checksum" */
  if (ip + ip_len + sizeof(l4) > end) return -1;
  __builtin_memcpy(ip + ip_len, &l4, sizeof(l4));

  if (reply_len < frame_len && bpf_xdp_adjust_tail(ctx, (int)reply_len - (int)frame_len) != 0) return -1;
  return 0;
}

#endif /* AXON_XDP_BUSY_H */

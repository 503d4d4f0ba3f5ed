// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* axon_xdp.bpf.c: the appliance's front door. Every frame is classified once by the shared
 * classifier (axon_xdp.shared.h); non-AXP traffic goes to the kernel untouched, malformed or
 * unwanted AXP is dropped and counted by reason, and valid requests that pass the tenant's
 * allowlist and rate limit are redirected to the AF_XDP socket of their receive queue.
 *
 * Verdicts:
 *   AXON_PASS_NOT_AXP        XDP_PASS      (ssh, ARP, everything that is not ours)
 *   AXON_DROP_*              XDP_DROP
 *   AXON_BUSY_NO_CREDITS     XDP_TX        the frame rewritten into a BUSY reply (axon_xdp_busy.h)
 *   AXON_OK                  XDP_REDIRECT  into axon_xsks[rx_queue_index]
 *                            XDP_PASS      instead, when AXON_CFG_DELIVER_TO_KERNEL is set
 *   no socket on the queue   XDP_DROP, counted as AXON_DROP_NO_SOCKET (never a silent loss; a
 *                            kernel-stack fallback would answer with ICMP port unreachable)
 *
 * Policy order for a valid request: allowlist, then rate limits (the class's bucket, then the
 * all-classes bucket; over either: a silent drop), then credits (none left: BUSY). Every frame is
 * counted once under its reason, and once more per class when its AXP header validated.
 */
#include "axon_xdp_busy.h"

/* Written by the loader before load; `volatile` stops clang from folding the defaults in, and
 * the verifier then prunes the branches of disabled features because rodata is frozen. */
const volatile struct axon_config axon_cfg = {
    .ports = {__builtin_bswap16(AXP_DEFAULT_PORT), 0, 0, 0},
    .flags = AXON_CFG_REQUESTS_ONLY,
};

/* Bounded compare-and-swap retries per packet: with a handful of CPUs contending for one
 * tenant, one retry almost always suffices; failing closed after that keeps the bound hard. */
#define AXON_RATE_CAS_ATTEMPTS 4

static __always_inline void count(enum axon_reason reason, const struct axon_packet_info* info, __u64 bytes) {
  __u32 key = reason;
  struct axon_counter* c = bpf_map_lookup_elem(&axon_counters, &key);

  if (c) { /* per-CPU slot: no other writer, plain adds suffice */
    c->packets++;
    c->bytes += bytes;
  }
  if (!info->has_class) return;
  key = (__u32)(info->priority & 1) * AXON_REASON_COUNT + reason;
  c = bpf_map_lookup_elem(&axon_class_counters, &key);
  if (c) {
    c->packets++;
    c->bytes += bytes;
  }
}

static __always_inline enum axon_reason check_allowlist(const struct axon_packet_info* info) {
  if (info->ip_version == 4) {
    struct axon_allow_v4_key key = {.prefixlen = 32 + 32, .tenant_id = info->tenant_id};

    __builtin_memcpy(key.addr, info->src_addr, sizeof(key.addr));
    return bpf_map_lookup_elem(&axon_allow_v4, &key) ? AXON_OK : AXON_DROP_PREFIX_DENIED;
  } else {
    struct axon_allow_v6_key key = {.prefixlen = 32 + 128, .tenant_id = info->tenant_id};

    __builtin_memcpy(key.addr, info->src_addr, sizeof(key.addr));
    return bpf_map_lookup_elem(&axon_allow_v6, &key) ? AXON_OK : AXON_DROP_PREFIX_DENIED;
  }
}

/* GCRA: the bucket is full when tat <= now; each packet pushes tat one interval further, and a
 * packet is refused when that would put tat more than burst intervals ahead of now. The state
 * is one shared word per tenant updated with cmpxchg: exact across CPUs, no lock, and at worst
 * one cache-line transfer per packet of that tenant. (Per-CPU buckets would avoid the transfer
 * but split the rate by RSS luck, which makes the configured limit meaningless.) */
static __always_inline enum axon_reason check_bucket(__be32 tenant_id, __u32 scope, __u64* now) {
  struct axon_rate_key key = {.tenant_id = tenant_id, .scope = scope};
  struct axon_rate* rate = bpf_map_lookup_elem(&axon_rates, &key);
  __u64 tat, next;
  int attempt;

  if (!rate) return AXON_OK;
  if (*now == 0) *now = bpf_ktime_get_ns();
  for (attempt = 0; attempt < AXON_RATE_CAS_ATTEMPTS; attempt++) {
    tat = *(volatile __u64*)&rate->tat_ns;
    next = (tat > *now ? tat : *now) + rate->interval_ns;
    if (next - *now > rate->burst_ns) return AXON_DROP_RATE_LIMITED;
    if (__sync_val_compare_and_swap(&rate->tat_ns, tat, next) == tat) return AXON_OK;
  }
  return AXON_DROP_RATE_LIMITED;
}

/* The class's own limit first, then the tenant's limit over all classes. A request refused by
 * the second has spent a slot of the first: the class limit is then met slightly early, never
 * exceeded. */
static __always_inline enum axon_reason check_rate(const struct axon_packet_info* info) {
  __u64 now = 0;
  enum axon_reason reason = check_bucket(info->tenant_id, info->priority & 1, &now);

  if (reason != AXON_OK) return reason;
  return check_bucket(info->tenant_id, AXON_SCOPE_ALL, &now);
}

/* Spends one of the tenant's credits. Reading first keeps a BUSY storm from bouncing the
 * counter's cache line between CPUs: once it is empty, requests only read it. */
static __always_inline enum axon_reason spend_credit(__be32 tenant_id, __u32* retry_after_us) {
  struct axon_credit* credit = bpf_map_lookup_elem(&axon_credits, &tenant_id);

  if (!credit) return AXON_OK;
  *retry_after_us = credit->retry_after_us;
  if (*(volatile __s64*)&credit->credits <= 0) return AXON_BUSY_NO_CREDITS;
  if (__sync_fetch_and_add(&credit->credits, -1) <= 0) return AXON_BUSY_NO_CREDITS;
  return AXON_OK;
}

/* Puts the hook's stamp in front of the frame. A driver without metadata support refuses the
 * adjustment: the frame then goes unstamped and the data plane stamps it when it first sees it. */
static __always_inline void stamp_rx(struct xdp_md* ctx, __u64 rx_ns) {
  struct axon_rx_meta* meta;

  if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta)) != 0) return;
  meta = (struct axon_rx_meta*)(long)ctx->data_meta;
  if ((void*)(meta + 1) > (void*)(long)ctx->data) return;
  meta->rx_ns = rx_ns;
  meta->magic = AXON_RX_META_MAGIC;
  meta->reserved = 0;
}

SEC("xdp")
int axon_xdp_filter(struct xdp_md* ctx) {
  const void* data = (const void*)(long)ctx->data;
  const void* data_end = (const void*)(long)ctx->data_end;
  __u64 bytes = ctx->data_end - ctx->data;
  struct axon_config cfg = axon_cfg;
  struct axon_packet_info info = {};
  __u32 retry_after_us = 0;
  enum axon_reason reason;
  int action;
  /* Taken first: the closest this program gets to the NIC's receive. */
  const __u64 rx_ns = (cfg.flags & AXON_CFG_RX_STAMP) ? bpf_ktime_get_ns() : 0;

  reason = axon_classify_frame(data, data_end, &cfg, &info);
  if (reason == AXON_OK && (cfg.flags & AXON_CFG_ENFORCE_ALLOWLIST)) reason = check_allowlist(&info);
  if (reason == AXON_OK && (cfg.flags & AXON_CFG_ENFORCE_RATE)) reason = check_rate(&info);
  if (reason == AXON_OK && (cfg.flags & AXON_CFG_ENFORCE_CREDITS))
    reason = spend_credit(info.tenant_id, &retry_after_us);

  if (reason == AXON_PASS_NOT_AXP) {
    action = XDP_PASS;
  } else if (reason == AXON_BUSY_NO_CREDITS) {
    /* A frame that cannot be rewritten (not expected for a valid request) is dropped, still
     * counted here: the credits said no either way. */
    action = axon_write_busy(ctx, &info, retry_after_us) == 0 ? XDP_TX : XDP_DROP;
  } else if (reason != AXON_OK) {
    action = XDP_DROP;
  } else if (cfg.flags & AXON_CFG_DELIVER_TO_KERNEL) {
    action = XDP_PASS;
  } else {
    /* The stamp goes in before the redirect: adjusting the metadata invalidates the packet
     * pointers, which nothing reads after this point. */
    if (cfg.flags & AXON_CFG_RX_STAMP) stamp_rx(ctx, rx_ns);
    /* The flags argument is the action returned when the queue has no socket. */
    action = bpf_redirect_map(&axon_xsks, ctx->rx_queue_index, XDP_DROP);
    if (action != XDP_REDIRECT) reason = AXON_DROP_NO_SOCKET;
  }
  count(reason, &info, bytes);
  return action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* axon_xdp.shared.h: the AXP wire format and the packet classifier, shared verbatim by the XDP
 * program (clang -target bpf) and by userspace C and C++ (gcc, g++).
 *
 * One source of truth: the header struct, every enum that crosses the kernel/user boundary and
 * the validation code itself live here, so the XDP front door and the userspace parser cannot
 * drift apart. docs/protocol.md is the prose form of this file; keep the two in step.
 *
 * Rules for this file, so that it stays valid for all three compilers:
 *  - plain C11 that is also valid C++20: no designated initializers, no implicit void* casts,
 *    no bool (BPF C has no <stdbool.h> guarantee), only __u8/__u16/... from linux/types.h;
 *  - no libc and no kernel networking headers: glibc's <netinet/in.h> and the kernel's
 *    <linux/in.h>/<linux/in6.h> clash when both are included, so the few wire headers needed
 *    are described here;
 *  - every access to packet memory is preceded by an axon_fits() check against the buffer end,
 *    because the BPF verifier rejects anything else and userspace gets untrusted bytes too.
 */
#ifndef AXON_XDP_SHARED_H
#define AXON_XDP_SHARED_H

#include <linux/types.h>

#ifdef __cplusplus
/* C casts are the only casts C has; C++ code that includes this header keeps -Wold-style-cast
 * for its own code. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#define AXON_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define AXON_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define AXON_INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------------------------------
 * AXP constants (docs/protocol.md, "Constants")
 * ------------------------------------------------------------------------------------------- */

#define AXP_MAGIC 0x41585021u      /* "AXP!" as the first four bytes on the wire */
#define AXP_VERSION 1u             /* major version; minor additions grow header_len */
#define AXP_HEADER_LEN 80u         /* fixed header of version 1, a multiple of 8 */
#define AXP_MAX_HEADER_LEN 512u    /* largest header_len a receiver accepts */
#define AXP_MAX_MESSAGE_LEN 65536u /* largest reassembled message payload (64 KiB) */
#define AXP_DEFAULT_PORT 7400u     /* UDP port, configurable */

/* Message type (header byte 5). */
enum axp_msg_type {
  AXP_MSG_REQUEST = 1,  /* client -> appliance */
  AXP_MSG_RESPONSE = 2, /* handler's reply */
  AXP_MSG_BUSY = 3,     /* not accepted now; retry after retry_after_us */
  AXP_MSG_ERROR = 4,    /* not served; error_code says why */
};

/* Priority class (header byte 6). */
enum axp_priority {
  AXP_PRIO_INTERACTIVE = 0, /* a user waits on it: scheduled first */
  AXP_PRIO_BACKGROUND = 1,  /* batch work: yields to interactive */
};

/* Trace flags (header byte 7), as W3C traceparent flags. */
#define AXP_TRACE_SAMPLED 0x01u

/* Error codes carried by ERROR messages (header bytes 72..73). Values never change meaning. */
enum axp_error_code {
  AXP_ERR_NONE = 0,
  AXP_ERR_MALFORMED = 1,           /* the request broke a validation rule */
  AXP_ERR_UNSUPPORTED_VERSION = 2, /* major version not spoken by this receiver */
  AXP_ERR_PAYLOAD_TOO_LARGE = 3,   /* message above 64 KiB, or segmented and not reassembled */
  AXP_ERR_UNKNOWN_AGENT = 4,       /* no worker serves this tenant/agent */
  AXP_ERR_OVERLOADED = 5,          /* queues full for longer than BUSY can express */
  AXP_ERR_WORKER_FAILED = 6,       /* the worker died with the request in flight */
  AXP_ERR_DEADLINE_EXCEEDED = 7,   /* the deadline budget ran out before a reply */
  AXP_ERR_RATE_LIMITED = 8,        /* the tenant's rate limit rejected the request */
  AXP_ERR_HANDLER_ERROR = 9,       /* the handler ran and reported failure */
  AXP_ERR_UNKNOWN_TENANT = 10,     /* the tenant id is not configured */
  AXP_ERR_INTERNAL = 11,           /* a bug or resource failure in the appliance */
  /* a retry within the agent's dedup window whose cached reply was given up (not run again) */
  AXP_ERR_DUPLICATE_REPLY_EVICTED = 12,
  AXP_ERR_COUNT
};

/* ---------------------------------------------------------------------------------------------
 * The AXP header, version 1: 80 bytes, all multi-byte fields big-endian (network order).
 * packed: the header follows 42..62 bytes of L2-L4 headers, so it is only 2-byte aligned in a
 * frame; packed makes every field access alignment-safe in C++ and in BPF.
 * ------------------------------------------------------------------------------------------- */
struct axp_header {
  __be32 magic;          /*  0 AXP_MAGIC */
  __u8 version;          /*  4 AXP_VERSION */
  __u8 type;             /*  5 enum axp_msg_type */
  __u8 priority;         /*  6 enum axp_priority */
  __u8 trace_flags;      /*  7 W3C trace flags */
  __be16 header_len;     /*  8 bytes from the start of this header to the payload */
  __be16 payload_len;    /* 10 payload bytes in this datagram */
  __be16 segment_index;  /* 12 0-based index of this datagram in the message */
  __be16 segment_count;  /* 14 datagrams in the message, >= 1 */
  __be32 tenant_id;      /* 16 */
  __be32 agent_id;       /* 20 */
  __be64 session_key;    /* 24 sticky-routing key, 0 = none */
  __be64 request_id;     /* 32 chosen by the client, echoed in every reply */
  __u8 trace_id[16];     /* 40 W3C trace id, all zero = no trace */
  __u8 span_id[8];       /* 56 request: caller's span; reply: responder's new child span */
  __be32 deadline_us;    /* 64 budget from receipt, 0 = none */
  __be32 message_len;    /* 68 total payload bytes across all segments */
  __be16 error_code;     /* 72 enum axp_error_code for ERROR, else 0 */
  __be16 reserved;       /* 74 sent as 0, ignored on receipt */
  __be32 retry_after_us; /* 76 BUSY (and rate_limited/overloaded ERROR) hint, else 0 */
} __attribute__((packed));

AXON_STATIC_ASSERT(sizeof(struct axp_header) == AXP_HEADER_LEN, "AXP v1 header is 80 bytes");
AXON_STATIC_ASSERT(AXP_HEADER_LEN % 8 == 0, "the fixed header stays a multiple of 8 bytes");
AXON_STATIC_ASSERT(__builtin_offsetof(struct axp_header, request_id) == 32, "request_id offset is invariant");
AXON_STATIC_ASSERT(__builtin_offsetof(struct axp_header, trace_id) == 40, "trace_id offset");
AXON_STATIC_ASSERT(__builtin_offsetof(struct axp_header, deadline_us) == 64, "deadline_us offset");
AXON_STATIC_ASSERT(__builtin_offsetof(struct axp_header, retry_after_us) == 76, "retry_after_us offset");

/* ---------------------------------------------------------------------------------------------
 * Verdict reasons: what the classifier concluded about one frame. The XDP program counts every
 * frame under exactly one reason (per-CPU array indexed by this enum), and the userspace parser
 * returns the same values. Append only; never renumber (dashboards and stored counters key on
 * the numbers). docs/protocol.md, "Validation", lists the rule behind each one.
 * ------------------------------------------------------------------------------------------- */
enum axon_reason {
  AXON_OK = 0,                  /* valid AXP request: handed on (AF_XDP or kernel, per config) */
  AXON_PASS_NOT_AXP = 1,        /* not AXP (other port, protocol or ethertype): XDP_PASS */
  AXON_DROP_ETH_TRUNCATED,      /* frame ends inside the Ethernet or a VLAN header */
  AXON_DROP_IP_TRUNCATED,       /* frame ends inside the IP header or before the IP datagram does */
  AXON_DROP_IP_MALFORMED,       /* bad IP version, IHL, total length or extension header length */
  AXON_DROP_IP_FRAGMENT,        /* an IP fragment of AXP traffic (AXP never relies on IP fragments) */
  AXON_DROP_UDP_TRUNCATED,      /* frame ends inside the UDP header */
  AXON_DROP_UDP_BAD_LENGTH,     /* UDP length below 8 or beyond the IP payload */
  AXON_DROP_AXP_TRUNCATED,      /* datagram or frame too short for the AXP header or payload */
  AXON_DROP_AXP_BAD_MAGIC,      /* first four bytes are not AXP_MAGIC */
  AXON_DROP_AXP_BAD_VERSION,    /* major version is not AXP_VERSION */
  AXON_DROP_AXP_BAD_HEADER_LEN, /* header_len below 80, not a multiple of 8, or above 512 */
  AXON_DROP_AXP_BAD_LENGTH,     /* header_len + payload_len disagree with the datagram or message */
  AXON_DROP_AXP_BAD_TYPE,       /* message type outside enum axp_msg_type */
  AXON_DROP_AXP_BAD_PRIORITY,   /* priority outside enum axp_priority */
  AXON_DROP_AXP_BAD_SEGMENT,    /* segment_count 0 or segment_index >= segment_count */
  AXON_DROP_AXP_TOO_LARGE,      /* message_len above AXP_MAX_MESSAGE_LEN */
  AXON_DROP_AXP_NOT_REQUEST,    /* a valid non-REQUEST message sent to the appliance */
  AXON_DROP_PREFIX_DENIED,      /* source address outside the tenant's allowlist (XDP only) */
  AXON_DROP_RATE_LIMITED,       /* tenant token bucket empty (XDP only) */
  AXON_DROP_NO_SOCKET,          /* no AF_XDP socket on the receive queue (XDP only) */
  AXON_BUSY_NO_CREDITS,         /* tenant over its credits: answered BUSY, not dropped (XDP: in place,
                                 * XDP_TX; userspace backends: a BUSY reply from the lcore) */
  /* Reassembly of segmented requests (data plane only; the XDP program never returns these). */
  AXON_DROP_REASM_TIMEOUT,      /* a message's segments did not all arrive in time (counted once per message) */
  AXON_DROP_REASM_MEMORY,       /* the lcore's reassembly memory or message table is full */
  AXON_DROP_REASM_TENANT,       /* the tenant's share of the lcore's reassembly memory is used up */
  AXON_DROP_SEGMENT_MISMATCH,   /* a segment disagrees with the held ones (lengths, count or header) */
  AXON_DROP_SEGMENT_OFFSET,     /* payload_len impossible for its segment_index (section 6 rule) */
  AXON_DROP_SEGMENT_DUPLICATE,  /* a segment already held: ignored */
  AXON_DROP_REASM_TOO_LARGE,    /* a message larger than a worker buffer, or of too many segments */
  AXON_REASON_COUNT
};

/* Priority classes counted separately (enum axp_priority values index them). */
#define AXON_CLASS_COUNT 2

/* ---------------------------------------------------------------------------------------------
 * Classifier configuration. In the XDP program this is `const volatile` rodata written by the
 * loader before load, so the verifier prunes disabled features; userspace passes it directly.
 * ------------------------------------------------------------------------------------------- */
#define AXON_MAX_PORTS 4

enum axon_config_flag {
  AXON_CFG_REQUESTS_ONLY = 1u << 0,      /* only REQUEST is valid inbound (the appliance side) */
  AXON_CFG_DROP_ALL_FRAGMENTS = 1u << 1, /* drop every IP fragment, not only attributable AXP */
  AXON_CFG_ENFORCE_ALLOWLIST = 1u << 2,  /* XDP: source must match the tenant's prefixes */
  AXON_CFG_ENFORCE_RATE = 1u << 3,       /* XDP: per-tenant token bucket */
  AXON_CFG_DELIVER_TO_KERNEL = 1u << 4,  /* XDP: valid AXP goes to the kernel stack (XDP_PASS)
                                          * instead of AF_XDP; the filter-only deployment */
  AXON_CFG_ENFORCE_CREDITS = 1u << 5,    /* XDP: per-tenant credits; over them, BUSY via XDP_TX */
  AXON_CFG_RX_STAMP = 1u << 6,           /* XDP: stamp redirected frames (struct axon_rx_meta) */
};

/* The hook's receive stamp, written into the metadata area just in front of a frame redirected to
 * AF_XDP (the kernel copies the metadata with the frame, in copy mode too): the data plane's first
 * hop ("NIC receive", docs/observability.md) is then the XDP hook's time instead of the time the
 * lcore first saw the frame. rx_ns is bpf_ktime_get_ns(): CLOCK_MONOTONIC, the clock the data
 * plane's hop clock is fitted to. magic tells a stamped frame from whatever the frame's headroom
 * held before; the data plane clears it when it reads the stamp. */
#define AXON_RX_META_MAGIC 0x54535841u /* "AXST" little-endian */
struct axon_rx_meta {
  __u64 rx_ns;
  __u32 magic;
  __u32 reserved;
};

struct axon_config {
  __be16 ports[AXON_MAX_PORTS]; /* AXP UDP destination ports, network order; 0 = unused slot */
  __u32 flags;                  /* enum axon_config_flag bits */
};

/* ---------------------------------------------------------------------------------------------
 * Map keys and values shared with userspace (maps themselves: axon_xdp_maps.h).
 * Tenant ids in keys are in network order, exactly as on the wire, so the program never swaps.
 * ------------------------------------------------------------------------------------------- */

/* One per-CPU counter slot per enum axon_reason. */
struct axon_counter {
  __u64 packets;
  __u64 bytes;
};

/* LPM trie keys: the first 32 prefix bits are the tenant id, so a rule always names exactly one
 * tenant; prefixlen = 32 + address prefix length. */
struct axon_allow_v4_key {
  __u32 prefixlen;
  __be32 tenant_id;
  __u8 addr[4];
};

struct axon_allow_v6_key {
  __u32 prefixlen;
  __be32 tenant_id;
  __u8 addr[16];
};

/* Per-class counters: one slot per (class, reason), index class * AXON_REASON_COUNT + reason,
 * for every frame whose AXP header validated (earlier drops have no class). */
#define AXON_CLASS_COUNTER_SLOTS (AXON_CLASS_COUNT * AXON_REASON_COUNT)

/* Which requests of a tenant a rate limit applies to: one class (the AXP priority value) or all
 * classes together. A request must pass its class's bucket and the all-classes bucket. */
enum axon_rate_scope {
  AXON_SCOPE_INTERACTIVE = AXP_PRIO_INTERACTIVE,
  AXON_SCOPE_BACKGROUND = AXP_PRIO_BACKGROUND,
  AXON_SCOPE_ALL = 2,
};

struct axon_rate_key {
  __be32 tenant_id;
  __u32 scope; /* enum axon_rate_scope */
};

/* Per-tenant credits (Breakwater-style admission control). The data plane rewrites the whole
 * value every refresh interval with the tenant's new budget; each admitted request spends one
 * credit with an atomic add. A request that finds none is answered BUSY in the driver with
 * retry_after_us. No entry: the tenant has no credits (unlimited). */
struct axon_credit {
  __s64 credits;        /* may go below 0 by the requests racing for the last credit */
  __u32 retry_after_us; /* what BUSY tells the client: when new credits are expected */
  __u32 reserved;
};

/* Per-tenant rate limit as GCRA (a token bucket expressed as a "theoretical arrival time"):
 * one 64-bit word of state, updated with compare-and-swap so every CPU shares one exact
 * bucket without a lock. interval_ns = 1e9 / rate; burst_ns = burst * interval_ns. */
struct axon_rate {
  __u64 interval_ns; /* time one packet "costs" */
  __u64 burst_ns;    /* how far ahead of now the arrival time may run: burst packets */
  __u64 tat_ns;      /* state: the theoretical arrival time; loader writes 0 */
};

/* ---------------------------------------------------------------------------------------------
 * Wire headers below AXP, described here rather than taken from <linux/ip.h> and friends (see
 * the rules at the top). packed: frames give no alignment guarantee past the Ethernet header.
 * ------------------------------------------------------------------------------------------- */
#define AXON_ETH_P_IPV4 0x0800u
#define AXON_ETH_P_IPV6 0x86DDu
#define AXON_ETH_P_8021Q 0x8100u
#define AXON_ETH_P_8021AD 0x88A8u
#define AXON_IPPROTO_UDP 17u
#define AXON_IPV6_HOPOPTS 0u
#define AXON_IPV6_ROUTING 43u
#define AXON_IPV6_FRAGMENT 44u
#define AXON_IPV6_DSTOPTS 60u
#define AXON_MAX_VLAN_TAGS 2
#define AXON_MAX_IPV6_EXT_HEADERS 4

struct axon_eth_hdr {
  __u8 dst[6];
  __u8 src[6];
  __be16 proto;
} __attribute__((packed));

struct axon_vlan_hdr {
  __be16 tci;
  __be16 proto; /* the encapsulated ethertype */
} __attribute__((packed));

struct axon_ipv4_hdr {
  __u8 version_ihl;
  __u8 tos;
  __be16 tot_len;
  __be16 id;
  __be16 frag_off; /* flags (3 bits: reserved, DF, MF) and offset in 8-byte units */
  __u8 ttl;
  __u8 protocol;
  __be16 check;
  __u8 saddr[4];
  __u8 daddr[4];
} __attribute__((packed));

struct axon_ipv6_hdr {
  __be32 version_class_flow;
  __be16 payload_len;
  __u8 nexthdr;
  __u8 hop_limit;
  __u8 saddr[16];
  __u8 daddr[16];
} __attribute__((packed));

struct axon_udp_hdr {
  __be16 source;
  __be16 dest;
  __be16 len;
  __be16 check;
} __attribute__((packed));

AXON_STATIC_ASSERT(sizeof(struct axon_eth_hdr) == 14, "Ethernet header");
AXON_STATIC_ASSERT(sizeof(struct axon_vlan_hdr) == 4, "VLAN tag");
AXON_STATIC_ASSERT(sizeof(struct axon_ipv4_hdr) == 20, "IPv4 header without options");
AXON_STATIC_ASSERT(sizeof(struct axon_ipv6_hdr) == 40, "IPv6 fixed header");
AXON_STATIC_ASSERT(sizeof(struct axon_udp_hdr) == 8, "UDP header");

#define AXON_IPV4_MF 0x2000u
#define AXON_IPV4_OFFSET_MASK 0x1FFFu

/* What the classifier learned about a frame; every field is filled as far as parsing got. */
struct axon_packet_info {
  __u16 l3_offset;    /* IP header, from the start of the frame */
  __u16 l4_offset;    /* UDP header */
  __u16 axp_offset;   /* AXP header */
  __u16 datagram_len; /* UDP payload bytes: AXP header + payload, per the UDP length field */
  __u8 ip_version;    /* 4 or 6, 0 before the IP header is reached */
  __u8 vlan_count;    /* VLAN tags skipped, 0..AXON_MAX_VLAN_TAGS */
  __be16 src_port;
  __be16 dst_port;
  __u8 has_class;    /* 1 once the AXP header validated: priority is then the request's class */
  __u8 priority;     /* enum axp_priority */
  __be32 tenant_id;  /* as on the wire; set once the AXP header is valid */
  __u8 src_addr[16]; /* IPv4 addresses use the first 4 bytes */
  __u8 dst_addr[16];
};

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

AXON_INLINE __u16 axon_ntohs(__be16 v) {
  return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? __builtin_bswap16(v) : v;
}

AXON_INLINE __u32 axon_ntohl(__be32 v) {
  return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? __builtin_bswap32(v) : v;
}

AXON_INLINE __u64 axon_ntohll(__be64 v) {
  return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? __builtin_bswap64(v) : v;
}

/* Host-to-network is the same swap; separate names keep call sites readable. */
#define axon_htons(v) axon_ntohs(v)
#define axon_htonl(v) axon_ntohl(v)
#define axon_htonll(v) axon_ntohll(v)

/* Nonzero when the n bytes starting at p lie inside the buffer ending at end.
 * p may lie past end: the IPv6 extension walk advances by lengths checked only against the
 * declared payload length, so its next header can start beyond the frame. */
AXON_INLINE int axon_fits(const void* p, __u32 n, const void* end) {
#if defined(__bpf__)
  /* The verifier learns packet bounds only from a pointer comparison against data_end. */
  return (const __u8*)p + n <= (const __u8*)end;
#else
  /* Userspace compares sizes; a p past end must fail, not wrap to a huge unsigned size (the
   * wrap let the parser read past the frame: axp_fuzz under ASan, packet case
   * ipv6_extension_header_past_frame_end). */
  return (const __u8*)p <= (const __u8*)end && (__u64)((const __u8*)end - (const __u8*)p) >= n;
#endif
}

AXON_INLINE void axon_copy_bytes(__u8* dst, const __u8* src, __u32 n) {
  /* n is a compile-time constant at every call site, so both compilers inline the copy. */
  __builtin_memcpy(dst, src, n);
}

/* ---------------------------------------------------------------------------------------------
 * axp_validate: is [hdr, hdr + datagram_len) a well-formed AXP message of any type?
 *
 * hdr points at the first byte of the UDP payload, end at the end of the readable buffer, and
 * datagram_len is the UDP payload length the UDP header claims. The checks run in the order
 * documented in docs/protocol.md, so every malformed datagram maps to one deterministic reason.
 * Reads nothing outside [hdr, end).
 * ------------------------------------------------------------------------------------------- */
AXON_INLINE enum axon_reason axp_validate(const void* hdr_start, const void* end, __u32 datagram_len) {
  const struct axp_header* hdr = (const struct axp_header*)hdr_start;
  __u32 header_len, payload_len, segment_count, message_len;

  /* Magic and version first: they tell "not ours" and "newer than us" apart from "broken". */
  if (datagram_len < 8 || !axon_fits(hdr, 8, end)) return AXON_DROP_AXP_TRUNCATED;
  if (hdr->magic != axon_htonl(AXP_MAGIC)) return AXON_DROP_AXP_BAD_MAGIC;
  if (hdr->version != AXP_VERSION) return AXON_DROP_AXP_BAD_VERSION;
  if (datagram_len < AXP_HEADER_LEN || !axon_fits(hdr, AXP_HEADER_LEN, end)) return AXON_DROP_AXP_TRUNCATED;

  header_len = axon_ntohs(hdr->header_len);
  if (header_len < AXP_HEADER_LEN || header_len % 8 != 0 || header_len > AXP_MAX_HEADER_LEN)
    return AXON_DROP_AXP_BAD_HEADER_LEN;
  payload_len = axon_ntohs(hdr->payload_len);
  if (header_len + payload_len != datagram_len) return AXON_DROP_AXP_BAD_LENGTH;
  if (!axon_fits(hdr, datagram_len, end)) return AXON_DROP_AXP_TRUNCATED;

  if (hdr->type < AXP_MSG_REQUEST || hdr->type > AXP_MSG_ERROR) return AXON_DROP_AXP_BAD_TYPE;
  if (hdr->priority > AXP_PRIO_BACKGROUND) return AXON_DROP_AXP_BAD_PRIORITY;
  segment_count = axon_ntohs(hdr->segment_count);
  if (segment_count == 0 || axon_ntohs(hdr->segment_index) >= segment_count) return AXON_DROP_AXP_BAD_SEGMENT;
  message_len = axon_ntohl(hdr->message_len);
  if (message_len > AXP_MAX_MESSAGE_LEN) return AXON_DROP_AXP_TOO_LARGE;
  if (payload_len > message_len || (segment_count == 1 && payload_len != message_len)) return AXON_DROP_AXP_BAD_LENGTH;
  return AXON_OK;
}

AXON_INLINE int axon_is_axp_port(__be16 port, const struct axon_config* cfg) {
  int i;

  if (port == 0) return 0; /* 0 marks an unused slot, and is never a valid destination port */
  for (i = 0; i < AXON_MAX_PORTS; i++)
    if (cfg->ports[i] == port) return 1;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * axon_classify_frame: Ethernet (+ up to 2 VLAN tags) -> IPv4/IPv6 -> UDP -> AXP.
 *
 * Returns AXON_OK for a valid AXP message on a configured port, AXON_PASS_NOT_AXP for traffic
 * that is not AXP, or the AXON_DROP_* reason for the first rule the frame breaks. It never
 * returns the policy reasons (PREFIX_DENIED, RATE_LIMITED, NO_SOCKET): those are decided by the
 * XDP program from maps. Reads nothing outside [data, end).
 * ------------------------------------------------------------------------------------------- */
AXON_INLINE enum axon_reason axon_classify_frame(const void* data, const void* end, const struct axon_config* cfg,
                                                 struct axon_packet_info* info) {
  const __u8* frame = (const __u8*)data;
  const struct axon_eth_hdr* eth = (const struct axon_eth_hdr*)frame;
  const struct axon_udp_hdr* udp;
  const struct axp_header* axp;
  enum axon_reason reason;
  __u32 off, l3_len, l4_len, udp_len;
  int first_fragment = 0;
  __be16 proto;
  int i;

  if (!axon_fits(eth, sizeof(*eth), end)) return AXON_DROP_ETH_TRUNCATED;
  proto = eth->proto;
  off = sizeof(*eth);

  for (i = 0; i < AXON_MAX_VLAN_TAGS; i++) {
    const struct axon_vlan_hdr* vlan = (const struct axon_vlan_hdr*)(frame + off);

    if (proto != axon_htons(AXON_ETH_P_8021Q) && proto != axon_htons(AXON_ETH_P_8021AD)) break;
    if (!axon_fits(vlan, sizeof(*vlan), end)) return AXON_DROP_ETH_TRUNCATED;
    proto = vlan->proto;
    off += sizeof(*vlan);
    info->vlan_count++;
  }
  info->l3_offset = (__u16)off;

  if (proto == axon_htons(AXON_ETH_P_IPV4)) {
    const struct axon_ipv4_hdr* ip4 = (const struct axon_ipv4_hdr*)(frame + off);
    __u32 ihl_bytes, frag;

    if (!axon_fits(ip4, sizeof(*ip4), end)) return AXON_DROP_IP_TRUNCATED;
    info->ip_version = 4;
    if ((ip4->version_ihl >> 4) != 4) return AXON_DROP_IP_MALFORMED;
    ihl_bytes = (__u32)(ip4->version_ihl & 0x0F) * 4;
    if (ihl_bytes < sizeof(*ip4)) return AXON_DROP_IP_MALFORMED;
    if (!axon_fits(ip4, ihl_bytes, end)) return AXON_DROP_IP_TRUNCATED;
    l3_len = axon_ntohs(ip4->tot_len);
    if (l3_len < ihl_bytes) return AXON_DROP_IP_MALFORMED;
    axon_copy_bytes(info->src_addr, ip4->saddr, 4);
    axon_copy_bytes(info->dst_addr, ip4->daddr, 4);

    frag = axon_ntohs(ip4->frag_off);
    if (frag & (AXON_IPV4_MF | AXON_IPV4_OFFSET_MASK)) {
      if (cfg->flags & AXON_CFG_DROP_ALL_FRAGMENTS) return AXON_DROP_IP_FRAGMENT;
      /* A later fragment has no UDP header, so nothing says it is AXP: the kernel
       * reassembles it, and without its first fragment (dropped below) it expires. */
      if (frag & AXON_IPV4_OFFSET_MASK) return AXON_PASS_NOT_AXP;
      first_fragment = 1;
    }
    if (ip4->protocol != AXON_IPPROTO_UDP) return AXON_PASS_NOT_AXP;
    off += ihl_bytes;
    l4_len = l3_len - ihl_bytes;
  } else if (proto == axon_htons(AXON_ETH_P_IPV6)) {
    const struct axon_ipv6_hdr* ip6 = (const struct axon_ipv6_hdr*)(frame + off);
    __u8 nexthdr;

    if (!axon_fits(ip6, sizeof(*ip6), end)) return AXON_DROP_IP_TRUNCATED;
    info->ip_version = 6;
    if ((axon_ntohl(ip6->version_class_flow) >> 28) != 6) return AXON_DROP_IP_MALFORMED;
    l4_len = axon_ntohs(ip6->payload_len);
    l3_len = sizeof(*ip6) + l4_len;
    nexthdr = ip6->nexthdr;
    axon_copy_bytes(info->src_addr, ip6->saddr, 16);
    axon_copy_bytes(info->dst_addr, ip6->daddr, 16);
    off += sizeof(*ip6);

    /* Walk a bounded number of extension headers; AXP senders normally send none. */
    for (i = 0; i < AXON_MAX_IPV6_EXT_HEADERS; i++) {
      const __u8* ext = frame + off;
      __u32 ext_len;

      if (nexthdr != AXON_IPV6_HOPOPTS && nexthdr != AXON_IPV6_ROUTING && nexthdr != AXON_IPV6_DSTOPTS &&
          nexthdr != AXON_IPV6_FRAGMENT)
        break;
      if (!axon_fits(ext, 8, end)) return AXON_DROP_IP_TRUNCATED;
      if (nexthdr == AXON_IPV6_FRAGMENT) {
        __u32 frag = ((__u32)ext[2] << 8) | ext[3]; /* offset << 3 | M */

        ext_len = 8;
        if (frag & 0xFFF9u) { /* nonzero offset or M set: a real fragment */
          if (cfg->flags & AXON_CFG_DROP_ALL_FRAGMENTS) return AXON_DROP_IP_FRAGMENT;
          if (frag & 0xFFF8u) return AXON_PASS_NOT_AXP;
          first_fragment = 1;
        }
      } else {
        ext_len = ((__u32)ext[1] + 1) * 8;
      }
      if (ext_len > l4_len) return AXON_DROP_IP_MALFORMED;
      nexthdr = ext[0];
      off += ext_len;
      l4_len -= ext_len;
    }
    if (nexthdr != AXON_IPPROTO_UDP) return AXON_PASS_NOT_AXP;
  } else {
    return AXON_PASS_NOT_AXP;
  }

  info->l4_offset = (__u16)off;
  udp = (const struct axon_udp_hdr*)(frame + off);
  if (!axon_fits(udp, sizeof(*udp), end)) return AXON_DROP_UDP_TRUNCATED;
  info->src_port = udp->source;
  info->dst_port = udp->dest;
  if (!axon_is_axp_port(udp->dest, cfg)) return AXON_PASS_NOT_AXP;
  if (first_fragment) return AXON_DROP_IP_FRAGMENT;
  udp_len = axon_ntohs(udp->len);
  if (udp_len < sizeof(*udp) || udp_len > l4_len) return AXON_DROP_UDP_BAD_LENGTH;

  off += sizeof(*udp);
  info->axp_offset = (__u16)off;
  info->datagram_len = (__u16)(udp_len - sizeof(*udp));
  axp = (const struct axp_header*)(frame + off);
  reason = axp_validate(axp, end, udp_len - sizeof(*udp));
  if (reason != AXON_OK) return reason;
  info->has_class = 1;
  info->priority = axp->priority;
  if ((cfg->flags & AXON_CFG_REQUESTS_ONLY) && axp->type != AXP_MSG_REQUEST) return AXON_DROP_AXP_NOT_REQUEST;
  /* The UDP datagram fits, but IP may claim trailing bytes the frame does not have. */
  if (!axon_fits(frame + info->l3_offset, l3_len, end)) return AXON_DROP_IP_TRUNCATED;
  info->tenant_id = axp->tenant_id;
  return AXON_OK;
}

#ifdef __cplusplus
#pragma GCC diagnostic pop
#endif

#endif /* AXON_XDP_SHARED_H */

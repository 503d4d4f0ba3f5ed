// What the data plane remembers about a request in order to answer it, and how it turns
// that into a reply frame: addresses swapped, VLAN tags kept, checksums recomputed.
#pragma once

#include <cstdint>
#include <span>

#include "axon/protocol/axp.h"
#include "axon/protocol/packet.h"

namespace axon::dataplane {

class DedupTable;

// Captured at receive time, kept by the data plane (never in worker-writable memory), and
// used for the RESPONSE, BUSY or ERROR that answers the request. This is the truth about a
// request in flight (docs/architecture.md, "A request in flight").
struct ReplyContext {
  std::uint8_t l2[14 + 4 * AXON_MAX_VLAN_TAGS];  // Ethernet + VLAN tags as received
  std::uint8_t l2_len = 0;
  std::uint8_t ip_version = 0;
  std::uint8_t answered = 0;  // an ERROR already went out (deadline sweep); drop the late reply
  std::uint8_t has_deadline = 0;
  std::uint8_t live = 0;  // a worker holds this request
  // A request of a cacheable agent (response_cache.h): its successful reply is stored under
  // (tenant, agent, cache_hash) with the agent's cache generation read at dispatch.
  std::uint8_t cacheable = 0;
  std::uint32_t cache_gen = 0;
  std::uint64_t cache_hash[2] = {0, 0};
  std::uint8_t src_addr[16];
  std::uint8_t dst_addr[16];
  std::uint16_t src_port = 0;  // network order, as received
  std::uint16_t dst_port = 0;
  std::uint64_t deadline_ns = 0;  // receive time + deadline_us (when has_deadline)
  // The request as received: the one record of it the data plane keeps and answers from.
  // The worker's Descriptor is a copy made for the worker; the channel keeps only its key.
  protocol::Header request{};
  // The request's dedup entry (dedup.h), settled by the reply; reset by capture_context.
  DedupTable* dedup = nullptr;
  std::uint32_t dedup_entry = 0;
  std::uint32_t dedup_generation = 0;
};

// Fills ctx from a frame that parsed ok. Returns false if the L2 header is too long to keep.
[[nodiscard]] bool capture_context(std::span<const std::uint8_t> frame, const protocol::ParsedFrame& parsed,
                                   const protocol::Header& request, std::uint64_t rx_ns, ReplyContext& ctx) noexcept;

// Largest payload one reply frame of `frame_capacity` bytes can carry for this context.
[[nodiscard]] std::uint32_t max_reply_payload(const ReplyContext& ctx, std::uint32_t frame_capacity) noexcept;

// Writes one reply datagram (header + payload chunk) into out. Returns the frame length,
// or 0 if it does not fit.
[[nodiscard]] std::uint32_t build_reply_frame(const ReplyContext& ctx, const protocol::Header& reply,
                                              std::span<const std::uint8_t> payload,
                                              std::span<std::uint8_t> out) noexcept;

}  // namespace axon::dataplane

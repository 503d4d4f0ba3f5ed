// PacketConfig -> the C configuration of the shared classifier.
#include "axon/protocol/packet.h"

namespace axon::protocol {

axon_config PacketConfig::to_c() const noexcept {
  axon_config c{};
  for (std::size_t i = 0; i < ports.size(); ++i) c.ports[i] = axon_htons(ports[i]);
  if (requests_only) c.flags |= AXON_CFG_REQUESTS_ONLY;
  if (drop_all_fragments) c.flags |= AXON_CFG_DROP_ALL_FRAGMENTS;
  return c;
}

}  // namespace axon::protocol

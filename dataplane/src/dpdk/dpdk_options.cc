// Maps the validated configuration onto the DPDK backend's options.
#include "dpdk/dpdk_options.h"

namespace axon::dataplane {

DpdkOptions dpdk_options_from(const DataplaneConfig& config) {
  DpdkOptions options;
  options.queues = std::uint32_t(config.queues.size());
  options.cores = config.cores;
  options.allow = config.dpdk.allow;
  options.vdevs = config.dpdk.vdevs;
  options.socket_mem = config.dpdk.socket_mem;
  options.in_memory = config.dpdk.in_memory;
  options.file_prefix = config.dpdk.file_prefix;
  options.mbufs = config.dpdk.mbufs;
  options.mbuf_cache = config.dpdk.mbuf_cache;
  options.rx_descriptors = std::uint16_t(config.dpdk.rx_descriptors);
  options.tx_descriptors = std::uint16_t(config.dpdk.tx_descriptors);
  options.telemetry = config.dpdk.telemetry;
  options.extra_args = config.dpdk.eal_args;
  return options;
}

}  // namespace axon::dataplane

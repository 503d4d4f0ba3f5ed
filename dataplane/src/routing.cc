// Route table construction and quiescent-state publication.
#include "axon/dataplane/routing.h"

#include <unistd.h>

#include <bit>
#include <map>

#include "axon/common/clock.h"
#include "axon/common/log.h"

namespace axon::dataplane {

Result<std::unique_ptr<RouteTable>, ConfigError> RouteTable::build(const DataplaneConfig& config) {
  std::map<std::string, std::uint16_t> index;
  for (std::size_t i = 0; i < config.workers.size(); ++i) index[config.workers[i].name] = std::uint16_t(i);
  auto table = std::make_unique<RouteTable>();
  for (const AgentConfig& agent : config.agents) {
    AgentRoute route;
    route.agent_id = agent.id;
    route.tenant_id = agent.tenant;
    if (agent.workers.size() > kMaxWorkersPerAgent) {
      return make_error(ConfigError::invalid_value, "agent " + std::to_string(agent.id) + " lists more than " +
                                                        std::to_string(kMaxWorkersPerAgent) + " workers");
    }
    for (const std::string& name : agent.workers) {
      auto it = index.find(name);
      if (it == index.end()) {
        return make_error(ConfigError::unknown_reference,
                          "agent " + std::to_string(agent.id) + " names unknown worker '" + name + "'");
      }
      route.workers[route.worker_count++] = it->second;
    }
    table->routes_.push_back(route);
  }
  std::size_t slots = std::bit_ceil(std::max<std::size_t>(16, table->routes_.size() * 2));
  table->slots_.assign(slots, -1);
  for (std::size_t i = 0; i < table->routes_.size(); ++i) {
    std::uint32_t mask = std::uint32_t(slots - 1);
    std::uint32_t at = hash(table->routes_[i].agent_id) & mask;
    while (table->slots_[at] >= 0) at = (at + 1) & mask;
    table->slots_[at] = std::int32_t(i);
  }
  return table;
}

RouteHolder::RouteHolder(std::uint32_t readers) : epochs_(new Epoch[readers]), readers_(readers) {}

RouteHolder::~RouteHolder() {
  delete current_.load(std::memory_order_acquire);
}

void RouteHolder::publish(std::unique_ptr<RouteTable> table, int timeout_ms) {
  const RouteTable* old = current_.exchange(table.release(), std::memory_order_acq_rel);
  if (old == nullptr) return;
  std::vector<std::uint64_t> seen(readers_);
  for (std::uint32_t i = 0; i < readers_; ++i) seen[i] = epochs_[i].value.load(std::memory_order_acquire);
  const std::uint64_t deadline = monotonic_ns() + std::uint64_t(timeout_ms) * 1'000'000u;
  for (;;) {
    bool all_moved = true;
    for (std::uint32_t i = 0; i < readers_; ++i) {
      if (!epochs_[i].offline.load(std::memory_order_acquire) &&
          epochs_[i].value.load(std::memory_order_acquire) == seen[i]) {
        all_moved = false;
      }
    }
    if (all_moved) {
      delete old;
      return;
    }
    if (monotonic_ns() > deadline) {
      AXON_LOG_WARN("routing",
                    "an lcore did not pass a quiescent point within %d ms; keeping the old route table "
                    "allocated (a few KiB) rather than risk freeing it under a reader",
                    timeout_ms);
      return;
    }
    usleep(100);
  }
}

}  // namespace axon::dataplane

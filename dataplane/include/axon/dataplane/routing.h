// Agent -> worker routing, swappable at run time without stopping traffic.
//
// A RouteTable is immutable once built. Lcores read the current one through an atomic
// pointer once per burst; a new table is published with one store, and the old one is
// freed only after every lcore has passed a quiescent point (it finished the loop
// iteration that might have read it), so readers never lock and never see a freed table.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/result.h"
#include "axon/dataplane/config.h"

namespace axon::dataplane {

inline constexpr std::size_t kMaxWorkersPerAgent = 64;

struct AgentRoute {
  std::uint32_t agent_id = 0;
  std::uint32_t tenant_id = 0;
  std::uint16_t worker_count = 0;
  std::uint16_t workers[kMaxWorkersPerAgent] = {};  // worker slot indices
};

class RouteTable {
 public:
  // Builds the table from config; worker names resolve to their index in config.workers.
  static Result<std::unique_ptr<RouteTable>, ConfigError> build(const DataplaneConfig& config);

  [[nodiscard]] const AgentRoute* find(std::uint32_t agent_id) const noexcept {
    std::uint32_t mask = std::uint32_t(slots_.size() - 1);
    for (std::uint32_t i = hash(agent_id) & mask, probes = 0; probes <= mask; i = (i + 1) & mask, ++probes) {
      std::int32_t at = slots_[i];
      if (at < 0) return nullptr;
      if (routes_[std::size_t(at)].agent_id == agent_id) return &routes_[std::size_t(at)];
    }
    return nullptr;
  }
  [[nodiscard]] std::size_t size() const noexcept { return routes_.size(); }
  [[nodiscard]] const std::vector<AgentRoute>& routes() const noexcept { return routes_; }

 private:
  static std::uint32_t hash(std::uint32_t v) noexcept {
    v ^= v >> 16;
    v *= 0x7feb352du;
    v ^= v >> 15;
    return v;
  }
  std::vector<AgentRoute> routes_;
  std::vector<std::int32_t> slots_;  // open addressing, -1 = empty
};

// The published table plus the quiescent-state bookkeeping that makes freeing safe.
class RouteHolder {
 public:
  explicit RouteHolder(std::uint32_t readers);
  ~RouteHolder();

  [[nodiscard]] const RouteTable* current() const noexcept { return current_.load(std::memory_order_acquire); }
  // Reader `id` announces it holds no table pointer from before this call.
  void quiescent(std::uint32_t id) noexcept {
    epochs_[id].value.store(epochs_[id].value.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // Reader `id` stopped reading for good (its lcore exited).
  void offline(std::uint32_t id) noexcept { epochs_[id].offline.store(true, std::memory_order_release); }
  // Publishes `table` and frees the previous one once all online readers moved on (waits at
  // most timeout_ms; past that the old table is leaked rather than freed under a reader).
  void publish(std::unique_ptr<RouteTable> table, int timeout_ms = 1000);

 private:
  struct alignas(128) Epoch {
    std::atomic<std::uint64_t> value{0};
    std::atomic<bool> offline{false};
  };
  std::atomic<const RouteTable*> current_{nullptr};
  std::unique_ptr<Epoch[]> epochs_;
  std::uint32_t readers_;
};

}  // namespace axon::dataplane

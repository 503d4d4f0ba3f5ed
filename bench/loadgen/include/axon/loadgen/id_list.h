// Id lists such as "1,2,5-8" for tenants and agents, shared by the load generator (which spreads
// requests over them) and the baseline server (which answers unknown ones with ERROR).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "axon/common/result.h"

namespace axon::loadgen {

enum class IdListError { invalid };

class IdList {
 public:
  // Comma-separated ids and inclusive ranges; whitespace is not allowed. At most kMaxIds ids
  // in total, so expanding the list is always cheap.
  static constexpr std::size_t kMaxIds = 1u << 20;
  [[nodiscard]] static Result<IdList, IdListError> parse(const std::string& text);

  [[nodiscard]] bool contains(std::uint32_t id) const noexcept;
  // Every id in the list, in the order written (duplicates kept), for round-robin spreading.
  [[nodiscard]] std::vector<std::uint32_t> expand() const;
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

 private:
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges_;  // inclusive
  std::size_t size_ = 0;
};

}  // namespace axon::loadgen

// IdList parsing: "1,2,5-8" into inclusive ranges.
#include "axon/loadgen/id_list.h"

#include <cerrno>
#include <cstdlib>

namespace axon::loadgen {
namespace {

bool parse_u32(const std::string& text, std::uint32_t& out) {
  if (text.empty() || text.front() == '-' || text.front() == '+') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 0);  // base 0: 0x... is accepted
  if (errno != 0 || *end != '\0' || v > UINT32_MAX) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

}  // namespace

Result<IdList, IdListError> IdList::parse(const std::string& text) {
  IdList list;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    std::uint32_t lo = 0, hi = 0;
    std::size_t dash = item.find('-');
    bool ok = dash == std::string::npos ? parse_u32(item, lo) && parse_u32(item, hi)
                                        : parse_u32(item.substr(0, dash), lo) && parse_u32(item.substr(dash + 1), hi);
    if (!ok || hi < lo)
      return make_error(IdListError::invalid,
                        "'" + text + "': expected ids or ranges like 1,2,5-8 (got '" + item + "')");
    list.size_ += std::size_t{hi} - lo + 1;
    if (list.size_ > kMaxIds)
      return make_error(IdListError::invalid, "'" + text + "': more than " + std::to_string(kMaxIds) + " ids");
    list.ranges_.emplace_back(lo, hi);
    pos = comma + 1;
  }
  return list;
}

bool IdList::contains(std::uint32_t id) const noexcept {
  for (const auto& [lo, hi] : ranges_)
    if (id >= lo && id <= hi) return true;
  return false;
}

std::vector<std::uint32_t> IdList::expand() const {
  std::vector<std::uint32_t> out;
  out.reserve(size_);
  for (const auto& [lo, hi] : ranges_)
    for (std::uint64_t v = lo; v <= hi; ++v) out.push_back(static_cast<std::uint32_t>(v));
  return out;
}

}  // namespace axon::loadgen

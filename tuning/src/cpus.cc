// CPU list and mask conversions (see cpus.h).
#include "cpus.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <iterator>

#include "axon/tuning/tuning.h"

namespace axon::tuning {
namespace {

constexpr int kMaxCpu = 1 << 16;  // far above any host; bounds a hostile "0-4000000000"

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::optional<int> parse_cpu(const std::string& s) {
  if (s.empty() || s.size() > 6) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v >= kMaxCpu) return std::nullopt;
  return v;
}

void normalise(CpuSet& cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
}

}  // namespace

std::optional<CpuSet> parse_cpulist(const std::string& text) {
  const std::string s = trim(text);
  CpuSet cpus;
  if (s.empty()) return cpus;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const std::string part = s.substr(pos, comma - pos);
    const std::size_t dash = part.find('-');
    if (dash == std::string::npos) {
      auto cpu = parse_cpu(part);
      if (!cpu) return std::nullopt;
      cpus.push_back(*cpu);
    } else {
      auto lo = parse_cpu(part.substr(0, dash));
      auto hi = parse_cpu(part.substr(dash + 1));
      if (!lo || !hi || *hi < *lo) return std::nullopt;
      for (int c = *lo; c <= *hi; ++c) cpus.push_back(c);
    }
    pos = comma + 1;
  }
  normalise(cpus);
  return cpus;
}

std::string format_cpulist(const CpuSet& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

std::optional<CpuSet> parse_cpumask(const std::string& text) {
  std::string hex;
  for (char c : trim(text)) {
    if (c == ',') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    hex += c;
  }
  if (hex.empty() || hex.size() * 4 > std::size_t(kMaxCpu)) return std::nullopt;
  CpuSet cpus;
  int bit = 0;
  for (auto it = hex.rbegin(); it != hex.rend(); ++it, bit += 4) {
    const char c = char(std::tolower(static_cast<unsigned char>(*it)));
    const int nibble = c <= '9' ? c - '0' : c - 'a' + 10;
    for (int b = 0; b < 4; ++b) {
      if (nibble & (1 << b)) cpus.push_back(bit + b);
    }
  }
  normalise(cpus);
  return cpus;
}

std::string format_cpumask(const CpuSet& cpus, int ncpus) {
  int highest = ncpus - 1;
  for (int c : cpus) highest = std::max(highest, c);
  const int groups = std::max(1, highest / 32 + 1);
  std::vector<std::uint32_t> words(std::size_t(groups), 0);
  for (int c : cpus) words[std::size_t(c / 32)] |= std::uint32_t(1) << (c % 32);
  std::string out;
  static const char* digits = "0123456789abcdef";
  for (int g = groups - 1; g >= 0; --g) {
    if (!out.empty()) out += ',';
    for (int shift = 28; shift >= 0; shift -= 4) out += digits[(words[std::size_t(g)] >> shift) & 0xf];
  }
  return out;
}

CpuSet set_minus(const CpuSet& a, const CpuSet& b) {
  CpuSet out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

CpuSet set_and(const CpuSet& a, const CpuSet& b) {
  CpuSet out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

std::optional<std::vector<int>> parse_cpu_list(const std::string& text) {
  return parse_cpulist(text);
}

}  // namespace axon::tuning

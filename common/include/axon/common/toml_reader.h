// Strict reading of one TOML table for the daemons' config loaders: every key must be
// known (a typo must never fall back to a default silently), every value is range
// checked, and the first problem is kept with its file:line:column and a fix.
//
// Header-only so components that never read TOML do not pull toml++ in.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace axon::toml_config {

struct Problem {
  enum class Kind { invalid_value, missing_field, unknown_key };
  Kind kind;
  std::string message;  // "<file>:<line>:<col>: [table] key: what is wrong and what to do"
};

inline std::string where_of(const std::string& file, const toml::node& node) {
  const auto& src = node.source();
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

class TableReader {
 public:
  // `example` names the annotated example file the unknown-key message points at.
  TableReader(std::string file, const toml::table& table, std::string name, std::string example)
      : file_(std::move(file)), table_(table), name_(std::move(name)), example_(std::move(example)) {}

  std::optional<Problem> problem;

  // Reads `key` into `out` when present; returns whether it was present and valid.
  template <typename T>
  bool read(const char* key, T& out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr || problem) return false;
    return convert(*node, key, out);
  }

  template <typename T>
  bool read(const char* key, std::optional<T>& out) {
    T value{};
    if (!read(key, value)) return false;
    out = value;
    return true;
  }

  template <typename T>
  bool read_list(const char* key, std::vector<T>& out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr || problem) return false;
    const toml::array* array = node->as_array();
    if (array == nullptr) return wrong(*node, key, "an array");
    std::vector<T> values;
    for (const toml::node& element : *array) {
      T value{};
      if (!convert(element, key, value)) return false;
      values.push_back(std::move(value));
    }
    out = std::move(values);
    return true;
  }

  // The raw node for values with their own syntax (sizes like "512M"); marks `key` known.
  const toml::node* node(const char* key) {
    seen_.insert(key);
    return problem ? nullptr : table_.get(key);
  }

  // A sub-table (e.g. [cgroup_profiles.default]); nullptr when absent or not a table.
  const toml::table* table(const char* key) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr || problem) return nullptr;
    if (const toml::table* t = node->as_table()) return t;
    wrong(*node, key, "a table");
    return nullptr;
  }

  // An array of tables (e.g. [[agents]]); empty when absent.
  const toml::array* table_array(const char* key) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr || problem) return nullptr;
    const toml::array* array = node->as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
      wrong(*node, key, "an array of tables ([[" + std::string(key) + "]])");
      return nullptr;
    }
    return array;
  }

  void require(const char* key) {
    if (!problem && table_.get(key) == nullptr) {
      problem = Problem{Problem::Kind::missing_field,
                        where_of(file_, table_) + ": [" + name_ + "] needs '" + key + "'; see " + example_};
    }
  }

  void invalid(const char* key, const std::string& what) {
    if (problem) return;
    const toml::node* node = table_.get(key);
    std::string where = node != nullptr ? where_of(file_, *node) : where_of(file_, table_);
    problem = Problem{Problem::Kind::invalid_value, where + ": [" + name_ + "] " + key + ": " + what};
  }

  // Call after every read: any key not read is a typo or a setting from another version.
  void reject_unknown() {
    if (problem) return;
    for (const auto& [key, node] : table_) {
      if (!seen_.contains(std::string(key.str()))) {
        problem =
            Problem{Problem::Kind::unknown_key, where_of(file_, node) + ": unknown key '" + std::string(key.str()) +
                                                    "' in [" + name_ + "]; check the spelling against " + example_};
        return;
      }
    }
  }

  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  template <typename T>
  bool convert(const toml::node& node, const char* key, T& out) {
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = node.value_exact<std::string>()) {
        out = *v;
        return true;
      }
      return wrong(node, key, "a string");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node.value_exact<bool>()) {
        out = *v;
        return true;
      }
      return wrong(node, key, "true or false");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (auto v = node.value<double>()) {
        out = T(*v);
        return true;
      }
      return wrong(node, key, "a number");
    } else {
      static_assert(std::is_integral_v<T>);
      auto v = node.value_exact<std::int64_t>();
      if (!v || !in_range<T>(*v)) {
        return wrong(node, key,
                     "an integer in [" + std::to_string(std::numeric_limits<T>::min()) + ", " +
                         std::to_string(std::numeric_limits<T>::max()) + "]");
      }
      out = T(*v);
      return true;
    }
  }

  template <typename T>
  static bool in_range(std::int64_t v) {
    if constexpr (std::is_unsigned_v<T>) {
      return v >= 0 && std::uint64_t(v) <= std::uint64_t(std::numeric_limits<T>::max());
    } else {
      return v >= std::int64_t(std::numeric_limits<T>::min()) && v <= std::int64_t(std::numeric_limits<T>::max());
    }
  }

  bool wrong(const toml::node& node, const char* key, const std::string& expected) {
    problem = Problem{Problem::Kind::invalid_value,
                      where_of(file_, node) + ": [" + name_ + "] " + key + " must be " + expected};
    return false;
  }

  std::string file_;
  const toml::table& table_;
  std::string name_;
  std::string example_;
  std::set<std::string> seen_;
};

}  // namespace axon::toml_config

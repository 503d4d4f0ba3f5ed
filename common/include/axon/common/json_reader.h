// The one strict JSON object reader (on nlohmann-json) for everything axon reads as JSON:
// REST bodies, state files, the data plane's control messages.
//
// Strict: a field of the wrong type, a missing required field and an unknown field are
// errors whose message names the field ("field 'pool.min' in agent must be ..."), so a typo
// never silently becomes a default. It never throws: the first error is kept, every later
// read is skipped, and the caller checks error() once at the end.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace axon {

class JsonReader {
 public:
  using json = nlohmann::json;

  // Reads the object `j`; `what` names the document ("agent", "tenant"), `prefix` the
  // dotted path of this object inside it ("" at the top, "pool" for a nested object).
  JsonReader(const json& j, std::string what, std::string prefix = "")
      : j_(j), what_(std::move(what)), prefix_(std::move(prefix)) {
    if (!j_.is_object()) {
      fail(prefix_.empty() ? what_ + " must be a JSON object"
                           : "field '" + prefix_ + "' in " + what_ + " must be an object");
    }
  }

  // Reads `key` into `out`; a missing field is an error. Returns whether it read a value.
  template <typename T>
  bool required(const char* key, T& out) {
    known_.insert(key);
    if (error_) return false;
    const auto it = j_.find(key);
    if (it == j_.end()) {
      fail("missing required field '" + path(key) + "' in " + what_);
      return false;
    }
    return read(*it, path(key), out);
  }

  // Reads `key` into `out` if present (`out` keeps its default otherwise).
  template <typename T>
  bool optional(const char* key, T& out) {
    known_.insert(key);
    if (error_) return false;
    const auto it = j_.find(key);
    if (it == j_.end()) return false;
    return read(*it, path(key), out);
  }

  // Reads the object at `key` with read_nested(JsonReader&) (a struct inside this one); its
  // errors become this reader's. Returns whether the field was present and read.
  template <typename ReadNested>
  bool nested(const char* key, bool is_required, ReadNested&& read_nested) {
    known_.insert(key);
    if (error_) return false;
    const auto it = j_.find(key);
    if (it == j_.end()) {
      if (is_required) fail("missing required field '" + path(key) + "' in " + what_);
      return false;
    }
    JsonReader inner(*it, what_, path(key));
    if (!inner.error_) {
      read_nested(inner);
      if (!inner.error_) inner.finish();
    }
    if (inner.error_) error_ = inner.error_;
    return !error_;
  }

  // A check of the caller's; the message should name the field.
  void fail(std::string message) {
    if (!error_) error_ = std::move(message);
  }

  // Rejects the fields nobody read. Call after the last read.
  void finish() {
    if (error_) return;
    for (const auto& [key, value] : j_.items()) {
      if (!known_.contains(key)) {
        fail("unknown field '" + path(key) + "' in " + what_);
        return;
      }
    }
  }

  bool ok() const { return !error_; }
  const std::optional<std::string>& error() const { return error_; }
  const std::string& what() const { return what_; }
  std::string path(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

 private:
  bool wrong_type(const std::string& field, const char* expected) {
    fail("field '" + field + "' in " + what_ + " must be " + expected);
    return false;
  }

  bool read(const json& v, const std::string& field, std::string& out) {
    if (!v.is_string()) return wrong_type(field, "a string");
    out = v.get<std::string>();
    return true;
  }

  bool read(const json& v, const std::string& field, bool& out) {
    if (!v.is_boolean()) return wrong_type(field, "true or false");
    out = v.get<bool>();
    return true;
  }

  // Any JSON number (integer or not); NaN and infinities cannot occur in JSON text.
  bool read(const json& v, const std::string& field, double& out) {
    if (!v.is_number()) return wrong_type(field, "a number");
    out = v.get<double>();
    return true;
  }

  template <typename Int>
  requires(std::is_integral_v<Int> && !std::is_same_v<Int, bool>) bool read(const json& v, const std::string& field,
                                                                            Int& out) {
    if constexpr (std::is_unsigned_v<Int>) {
      const char* expected = sizeof(Int) == 8   ? "an unsigned integer below 2^64"
                             : sizeof(Int) == 4 ? "an unsigned integer below 2^32"
                                                : "a small unsigned integer";
      // The parser stores non-negative literals as unsigned; json built in code may hold
      // them signed. Both are fine if non-negative; floats never are.
      if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<std::int64_t>() < 0)) {
        return wrong_type(field, expected);
      }
      const auto n = v.get<std::uint64_t>();
      if (n > std::numeric_limits<Int>::max()) return wrong_type(field, expected);
      out = static_cast<Int>(n);
    } else {
      const char* expected = sizeof(Int) == 8 ? "a 64-bit integer" : "a 32-bit integer";
      if (v.is_number_unsigned()) {
        const auto n = v.get<std::uint64_t>();
        if (n > static_cast<std::uint64_t>(std::numeric_limits<Int>::max())) return wrong_type(field, expected);
        out = static_cast<Int>(n);
        return true;
      }
      if (!v.is_number_integer()) return wrong_type(field, expected);
      const auto n = v.get<std::int64_t>();
      if (n < std::numeric_limits<Int>::min() || n > std::numeric_limits<Int>::max()) {
        return wrong_type(field, expected);
      }
      out = static_cast<Int>(n);
    }
    return true;
  }

  bool read(const json& v, const std::string& field, std::vector<std::string>& out) {
    if (!v.is_array()) return wrong_type(field, "an array of strings");
    out.clear();
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::string s;
      if (!read(v[i], field + "[" + std::to_string(i) + "]", s)) return false;
      out.push_back(std::move(s));
    }
    return true;
  }

  bool read(const json& v, const std::string& field, std::map<std::string, std::string>& out) {
    if (!v.is_object()) return wrong_type(field, "an object of strings");
    out.clear();
    for (const auto& [key, value] : v.items()) {
      std::string s;
      if (!read(value, field + "." + key, s)) return false;
      out.emplace(key, std::move(s));
    }
    return true;
  }

  // An enum reads from its name: enum_names(Enum{}) (found by ADL, in the enum's namespace)
  // returns its names in value order, e.g. std::array<const char*, 3>.
  template <typename Enum>
  requires std::is_enum_v<Enum>
  bool read(const json& v, const std::string& field, Enum& out) {
    const auto& names = enum_names(Enum{});
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (s == names[i]) {
          out = static_cast<Enum>(i);
          return true;
        }
      }
    }
    std::string expected = "one of ";
    for (std::size_t i = 0; i < names.size(); ++i) {
      expected += (i == 0 ? "\"" : ", \"") + std::string(names[i]) + "\"";
    }
    return wrong_type(field, expected.c_str());
  }

  // null reads as "absent" for optional values.
  template <typename T>
  bool read(const json& v, const std::string& field, std::optional<T>& out) {
    if (v.is_null()) {
      out.reset();
      return true;
    }
    T value{};
    if (!read(v, field, value)) return false;
    out = std::move(value);
    return true;
  }

  const json& j_;
  std::string what_;
  std::string prefix_;
  std::set<std::string> known_;
  std::optional<std::string> error_;
};

}  // namespace axon

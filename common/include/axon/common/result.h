// Result<T, E>: the error channel of every axon setup function.
//
// g++ 12 has no std::expected, so this is a deliberately small stand-in with the same
// shape: a value or an error, never both, and callers must look at it ([[nodiscard]]).
// Hot paths never use it; they return bool from try_*() instead.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace axon {

// An error code from a component's enum class plus a message that tells the operator
// what happened and what to do about it.
template <typename Code>
struct Error {
  Code code;
  std::string message;
};

template <typename T, typename Code>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error<Code> error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(state_));
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(state_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error<Code>& error() const& {
    assert(!ok());
    return std::get<1>(state_);
  }
  Code code() const { return error().code; }
  const std::string& message() const { return error().message; }

 private:
  std::variant<T, Error<Code>> state_;
};

// Result<void>: success carries nothing.
struct Ok {};

template <typename Code>
Error<Code> make_error(Code code, std::string message) {
  return Error<Code>{code, std::move(message)};
}

}  // namespace axon

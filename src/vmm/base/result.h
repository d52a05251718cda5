// Result<T>: either a value or an Error (an expected-like type; C++20 has no std::expected).
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

#include "vmm/base/error.h"

namespace petrel {

template <typename T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

  // Adds context to the error, if any; passes a value through.
  Result&& context(std::string ctx) && {
    if (!ok()) {
      std::get<1>(v_).context(std::move(ctx));
    }
    return std::move(*this);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), has_error_(true) {}  // NOLINT: implicit

  bool ok() const { return !has_error_; }
  explicit operator bool() const { return ok(); }
  void value() const {}

  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

  Result&& context(std::string ctx) && {
    if (has_error_) {
      error_.context(std::move(ctx));
    }
    return std::move(*this);
  }

 private:
  Error error_{ErrorCode::kInternal, ""};
  bool has_error_ = false;
};

inline Result<void> ok() {
  return {};
}

}  // namespace petrel

#define PETREL_CONCAT_INNER(a, b) a##b
#define PETREL_CONCAT(a, b) PETREL_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result) from the enclosing function.
#define PETREL_TRY(expr)                            \
  do {                                              \
    auto petrel_try_result_ = (expr);               \
    if (!petrel_try_result_.ok()) {                 \
      return std::move(petrel_try_result_).error(); \
    }                                               \
  } while (false)

// Declares/assigns `lhs` from the value of `expr`, or returns its error.
#define PETREL_TRY_ASSIGN(lhs, expr)                                \
  auto PETREL_CONCAT(petrel_try_, __LINE__) = (expr);               \
  if (!PETREL_CONCAT(petrel_try_, __LINE__).ok()) {                 \
    return std::move(PETREL_CONCAT(petrel_try_, __LINE__)).error(); \
  }                                                                 \
  lhs = std::move(PETREL_CONCAT(petrel_try_, __LINE__)).value()

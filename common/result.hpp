// A small value-or-error type for library code (models/, pipelines/, store/).
// Library code never throws across its API: LibTorch, OpenCV and SQLite errors
// are caught where they are called and turned into a `failure`.
#pragma once
#include <string>
#include <utility>
#include <variant>

#include "common/errc.hpp"

namespace rookery {

struct failure {
  errc code = errc::internal;
  std::string message;
};

template <class T>
class result {
public:
  result(T value) : v_(std::move(value)) {}
  result(failure f) : v_(std::move(f)) {}
  explicit operator bool() const noexcept { return v_.index() == 0; }
  bool ok() const noexcept { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const failure& error() const { return std::get<1>(v_); }

private:
  std::variant<T, failure> v_;
};

/// result<void>: success or a failure.
class status {
public:
  status() = default;
  status(failure f) : f_(std::move(f)), ok_(false) {}
  explicit operator bool() const noexcept { return ok_; }
  bool ok() const noexcept { return ok_; }
  const failure& error() const { return f_; }

private:
  failure f_;
  bool ok_ = true;
};

inline failure fail(errc code, std::string message) {
  return failure{code, std::move(message)};
}

} // namespace rookery

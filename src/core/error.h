// Throwing helpers: TANDEM_CHECK(cond, code, fmt, args...) raises tandem::Error with a
// formatted message when cond is false; error_code_of(e) reads an exception's code.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tandem/status.h"

namespace tandem {

template <typename... Args>
[[noreturn]] void raise(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(code, fmt::format(f, std::forward<Args>(args)...));
}

// The code of a tandem::Error; kRuntime for any other exception (bad_alloc, a library's own).
inline ErrorCode error_code_of(const std::exception& e) {
  const auto* error = dynamic_cast<const Error*>(&e);
  return error ? error->code() : ErrorCode::kRuntime;
}

}  // namespace tandem

#define TANDEM_CHECK(cond, code, ...)                \
  do {                                               \
    if (!(cond)) ::tandem::raise(code, __VA_ARGS__); \
  } while (0)

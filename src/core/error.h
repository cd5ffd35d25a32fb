// Throwing helpers: TANDEM_CHECK(cond, code, fmt, args...) raises tandem::Error with a
// formatted message when cond is false.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tandem/status.h"

namespace tandem {

template <typename... Args>
[[noreturn]] void raise(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(code, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tandem

#define TANDEM_CHECK(cond, code, ...)                  \
  do {                                                 \
    if (!(cond)) ::tandem::raise(code, __VA_ARGS__);   \
  } while (0)

// Bad-input assertions shared by the unit tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tandem/status.h"

namespace tandem::testing {

// Expects `fn` to throw tandem::Error with `code` and every fragment in its message.
template <typename F>
void expect_error(F&& fn, ErrorCode code, std::vector<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
          << "message '" << e.what() << "' lacks '" << f << "'";
  }
}

}  // namespace tandem::testing

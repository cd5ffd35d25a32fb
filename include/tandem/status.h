// Errors. Tandem's C++ API reports every failure by throwing tandem::Error; the code says what
// kind of failure it was and the message says what to do about it (which file, node, input...).
#pragma once

#include <stdexcept>
#include <string>

namespace tandem {

enum class ErrorCode {
  kInvalidArgument,  // the caller passed something wrong (input name, shape, dtype, option)
  kInvalidModel,     // the model file is unreadable, malformed or inconsistent
  kUnsupported,      // valid ONNX that Tandem does not implement (op, opset, dtype, attribute)
  kNotFound,         // a file that should exist does not
  kRuntime,          // a failure while executing (e.g. a kernel met an impossible value)
  kInternal,         // a bug in Tandem
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace tandem

#include "format/npy.h"

#include <cstring>
#include <fstream>
#include <string_view>

#include "core/checked.h"
#include "core/error.h"
#include "onnx/safe_file.h"

namespace tandem {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
// NumPy itself refuses headers past 10 000 bytes unless told otherwise; a shape of rank 64
// needs far less.
constexpr size_t kMaxHeader = 1 << 16;

struct Descr {
  const char* text;  // as NumPy writes it
  DataType dtype;
};
constexpr Descr kDescrs[] = {
    {"<f4", DataType::kFloat32}, {"<f8", DataType::kFloat64}, {"<f2", DataType::kFloat16},
    {"|i1", DataType::kInt8},    {"<i2", DataType::kInt16},   {"<i4", DataType::kInt32},
    {"<i8", DataType::kInt64},   {"|u1", DataType::kUInt8},   {"<u2", DataType::kUInt16},
    {"<u4", DataType::kUInt32},  {"<u8", DataType::kUInt64},  {"|b1", DataType::kBool},
};

// The header dict, parsed by hand: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// with the keys in any order and Python's spacing.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  void parse(DataType& dtype, bool& fortran, Shape& shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      std::string key = quoted();
      expect(':');
      skip_space();
      if (key == "descr") {
        std::string d = quoted();
        dtype = DataType::kUndefined;
        for (const Descr& x : kDescrs)
          if (d == x.text || (d.size() == 3 && d[0] == '=' && d.substr(1) == x.text + 1))
            dtype = x.dtype;
        TANDEM_CHECK(dtype != DataType::kUndefined, ErrorCode::kInvalidArgument,
                     "{}: dtype '{}' is not supported (little-endian numbers and bools only)",
                     what_, d);
        have_descr = true;
      } else if (key == "fortran_order") {
        if (take("False")) {
          fortran = false;
        } else if (take("True")) {
          fortran = true;
        } else {
          fail("fortran_order is neither True nor False");
        }
        have_order = true;
      } else if (key == "shape") {
        expect('(');
        for (;;) {
          skip_space();
          if (peek() == ')') break;
          TANDEM_CHECK(shape.size() < 64, ErrorCode::kInvalidArgument,
                       "{}: shape has more than 64 dims", what_);
          shape.push_back(integer());
          skip_space();
          if (peek() == ',') ++pos_;
        }
        expect(')');
        have_shape = true;
      } else {
        fail("unknown key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') ++pos_;
    }
    expect('}');
    TANDEM_CHECK(have_descr && have_order && have_shape, ErrorCode::kInvalidArgument,
                 "{}: the header lacks {}", what_,
                 !have_descr   ? "'descr'"
                 : !have_order ? "'fortran_order'"
                               : "'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    raise(ErrorCode::kInvalidArgument, "{}: bad .npy header at byte {}: {}", what_, pos_, why);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  char peek() {
    if (pos_ >= s_.size()) fail("it ends early");
    return s_[pos_];
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool take(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  std::string quoted() {
    char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    size_t end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  int64_t integer() {
    int64_t v = 0;
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      v = checked_add(checked_mul(v, 10, what_), s_[pos_] - '0', what_);
      ++pos_;
    }
    if (pos_ == start) fail("expected a dimension");
    if (pos_ < s_.size() && s_[pos_] == 'L') ++pos_;  // Python 2's long suffix
    return v;
  }

  std::string_view s_;
  const std::string& what_;
  size_t pos_ = 0;
};

uint32_t read_le(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

Tensor npy_from_bytes(const void* data, size_t size, const std::string& what,
                      size_t max_tensor_bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  TANDEM_CHECK(size >= kMagicLen + 2 && std::memcmp(p, kMagic, kMagicLen) == 0,
               ErrorCode::kInvalidArgument, "{}: not a .npy file (no \\x93NUMPY magic)", what);
  const int major = p[6];
  TANDEM_CHECK(major >= 1 && major <= 3, ErrorCode::kInvalidArgument,
               "{}: .npy format version {}.{} (1.0 to 3.0 are read)", what, major, p[7]);
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  TANDEM_CHECK(size >= prefix, ErrorCode::kInvalidArgument, "{}: ends inside its preamble", what);
  const size_t header_len = read_le(p + kMagicLen + 2, len_bytes);
  TANDEM_CHECK(header_len <= kMaxHeader && header_len <= size - prefix, ErrorCode::kInvalidArgument,
               "{}: header of {} bytes, in a file of {} (at most {} are read)", what, header_len,
               size, kMaxHeader);
  DataType dtype = DataType::kUndefined;
  bool fortran = false;
  Shape shape;
  HeaderParser(std::string_view(reinterpret_cast<const char*>(p + prefix), header_len), what)
      .parse(dtype, fortran, shape);
  TANDEM_CHECK(!fortran || shape.size() <= 1, ErrorCode::kInvalidArgument,
               "{}: Fortran order is not read; save the array with C order "
               "(numpy.ascontiguousarray)",
               what);
  const size_t bytes = checked_nbytes(dtype, shape, what);
  check_tensor_cap(bytes, max_tensor_bytes, what, shape);
  const size_t body = size - prefix - header_len;
  TANDEM_CHECK(body == bytes, ErrorCode::kInvalidArgument,
               "{}: shape {} of {} needs {} bytes of data, the file holds {}", what,
               shape_str(shape), dtype_name(dtype), bytes, body);
  return Tensor::copy_of(dtype, shape, p + prefix + header_len);
}

Tensor read_npy_file(const std::string& path, size_t max_tensor_bytes) {
  const std::string what = "tensor file '" + path + "'";
  RegularFile file(path, what);
  std::string bytes(static_cast<size_t>(file.size()), '\0');
  file.read_at(0, file.size(), bytes.data());
  return npy_from_bytes(bytes.data(), bytes.size(), what, max_tensor_bytes);
}

std::string npy_to_bytes(const Tensor& tensor) {
  const char* descr = nullptr;
  for (const Descr& x : kDescrs)
    if (x.dtype == tensor.dtype()) descr = x.text;
  TANDEM_CHECK(descr != nullptr, ErrorCode::kUnsupported, "tensor '{}': dtype {} has no .npy form",
               tensor.name(), dtype_name(tensor.dtype()));
  std::string dims;
  for (int64_t d : tensor.shape()) dims += std::to_string(d) + ", ";
  if (tensor.rank() > 1) dims.erase(dims.size() - 2);  // (2, 3) but (5,)
  if (tensor.rank() == 1) dims.pop_back();
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Padded with spaces and a newline so that the data starts at a multiple of 64 bytes.
  size_t len_bytes = header.size() + 1 + kMagicLen + 4 > 65535 ? 4 : 2;
  size_t prefix = kMagicLen + 2 + len_bytes;
  size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(len_bytes == 2 ? 1 : 2));
  out.push_back(0);
  for (size_t i = 0; i < len_bytes; ++i) out.push_back(static_cast<char>(header.size() >> (8 * i)));
  out += header;
  if (tensor.nbytes() > 0) out.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  return out;
}

void write_npy_file(const Tensor& tensor, const std::string& path) {
  std::string bytes = npy_to_bytes(tensor);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  TANDEM_CHECK(out.good(), ErrorCode::kRuntime, "could not write tensor file '{}'", path);
}

}  // namespace tandem

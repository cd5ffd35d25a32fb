// The .npy reader and writer (src/format/npy.h): NumPy's own bytes read back, every dtype round
// trips, and broken or unsupported files are refused with a message naming the field.
#include "format/npy.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"

namespace tandem {
namespace {

std::string npy(const std::string& header, size_t data_bytes, int version = 1) {
  std::string h = header;
  size_t len_bytes = version == 1 ? 2 : 4;
  while ((6 + 2 + len_bytes + h.size() + 1) % 64 != 0) h.push_back(' ');
  h.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(version));
  out.push_back(0);
  for (size_t i = 0; i < len_bytes; ++i) out.push_back(static_cast<char>(h.size() >> (8 * i)));
  return out + h + std::string(data_bytes, '\x01');
}

std::string error_of(const std::string& bytes, size_t cap = 0) {
  try {
    npy_from_bytes(bytes.data(), bytes.size(), "f.npy", cap);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Npy, ReadsNumpysHeaders) {
  // As numpy.save writes them: versions 1 and 2, key order and spacing as NumPy prints.
  Tensor t = [] {
    std::string b = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    return npy_from_bytes(b.data(), b.size(), "f.npy");
  }();
  EXPECT_EQ(t.dtype(), DataType::kFloat32);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  std::string v2 = npy("{'shape': (5,), 'fortran_order': False, 'descr': '|b1'}", 5, 2);
  Tensor b = npy_from_bytes(v2.data(), v2.size(), "f.npy");
  EXPECT_EQ(b.dtype(), DataType::kBool);
  EXPECT_EQ(b.shape(), Shape{5});
  std::string scalar = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", 8);
  EXPECT_EQ(npy_from_bytes(scalar.data(), scalar.size(), "f.npy").shape(), Shape{});
}

TEST(Npy, EveryDtypeRoundTrips) {
  for (DataType d : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kInt8,
                     DataType::kInt16, DataType::kInt32, DataType::kInt64, DataType::kUInt8,
                     DataType::kUInt16, DataType::kUInt32, DataType::kUInt64, DataType::kBool}) {
    for (Shape s : {Shape{}, Shape{7}, Shape{2, 0, 3}, Shape{3, 4, 5}}) {
      Tensor t(d, s);
      for (size_t i = 0; i < t.nbytes(); ++i) static_cast<uint8_t*>(t.raw())[i] = (i * 7) & 1;
      std::string bytes = npy_to_bytes(t);
      Tensor u = npy_from_bytes(bytes.data(), bytes.size(), "f.npy");
      EXPECT_EQ(u.dtype(), d);
      EXPECT_EQ(u.shape(), s);
      EXPECT_TRUE(t.nbytes() == 0 || std::memcmp(u.raw(), t.raw(), t.nbytes()) == 0);
      EXPECT_EQ((bytes.size() - t.nbytes()) % 64, 0u) << "data not 64-byte aligned";
    }
  }
}

TEST(Npy, BadFilesAreRefusedByName) {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  EXPECT_NE(error_of("hello").find("not a .npy file"), std::string::npos);
  EXPECT_NE(error_of(npy(ok, 24, 9)).find("version 9"), std::string::npos);
  EXPECT_NE(error_of(npy(ok, 23)).find("needs 24 bytes of data, the file holds 23"),
            std::string::npos);
  EXPECT_NE(error_of(npy(ok, 25)).find("the file holds 25"), std::string::npos);
  EXPECT_NE(error_of(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8))
                .find("'>f4' is not supported"),
            std::string::npos);
  EXPECT_NE(error_of(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24))
                .find("Fortran order"),
            std::string::npos);
  EXPECT_NE(error_of(npy("{'descr': '<f4', 'shape': (2, 3), }", 24)).find("'fortran_order'"),
            std::string::npos);
  EXPECT_NE(error_of(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 24))
                .find("bad .npy header"),
            std::string::npos);
  EXPECT_NE(error_of(npy("{'descr': '<f4', 'fortran_order': False, 'shape': "
                         "(99999999999, 99999999999, 99999999999), }",
                         0))
                .find("overflow"),
            std::string::npos);
  EXPECT_NE(error_of(npy(ok, 24), 16).find("per-tensor limit"), std::string::npos);
  std::string cut = npy(ok, 24);
  for (size_t n = 0; n < cut.size(); ++n) EXPECT_NE(error_of(cut.substr(0, n)), "") << n;
}

}  // namespace
}  // namespace tandem

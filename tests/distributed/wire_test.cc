// The MPI request and reply headers (src/distributed/wire.h): round trips, and every way a
// header from another rank can be wrong is refused with a message naming the field.
#include "distributed/wire.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace tandem::distributed {
namespace {

Request sample_request() {
  Request q;
  q.id = 7;
  q.batch = 5;
  q.counts = {2, 3};
  q.inputs = {{DataType::kFloat32, {5, 4, 8, 8}, true},
              {DataType::kInt64, {1}, false},
              {DataType::kFloat16, {5, 77, 16}, true}};
  return q;
}

std::string error_of(const std::vector<int64_t>& words, int ranks = 2, size_t cap = 0) {
  try {
    decode_request(words, ranks, cap);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MpiWire, RequestRoundTrip) {
  Request q = sample_request();
  Request back = decode_request(encode_request(q), 2, 0);
  EXPECT_EQ(back.command, Command::kPredict);
  EXPECT_EQ(back.id, 7);
  EXPECT_EQ(back.batch, 5);
  EXPECT_EQ(back.counts, q.counts);
  ASSERT_EQ(back.inputs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back.inputs[i].dtype, q.inputs[i].dtype);
    EXPECT_EQ(back.inputs[i].shape, q.inputs[i].shape);
    EXPECT_EQ(back.inputs[i].batched, q.inputs[i].batched);
  }
  Request exit;
  exit.command = Command::kExit;
  exit.id = 9;
  EXPECT_EQ(decode_request(encode_request(exit), 3, 0).command, Command::kExit);
}

TEST(MpiWire, ReplyRoundTrip) {
  Reply p;
  p.id = 42;
  p.ok = true;
  p.compute_us = 1234;
  p.outputs = {{DataType::kFloat32, {2, 4, 8, 8}, false}, {DataType::kBool, {}, false}};
  Reply back = decode_reply(encode_reply(p), 0);
  EXPECT_EQ(back.id, 42);
  EXPECT_TRUE(back.ok);
  EXPECT_EQ(back.compute_us, 1234);
  ASSERT_EQ(back.outputs.size(), 2u);
  EXPECT_EQ(back.outputs[0].shape, (Shape{2, 4, 8, 8}));
  EXPECT_EQ(back.outputs[1].shape, Shape{});
}

TEST(MpiWire, EveryTruncationIsRefused) {
  std::vector<int64_t> words = encode_request(sample_request());
  for (size_t n = 0; n < words.size(); ++n) {
    std::vector<int64_t> cut(words.begin(), words.begin() + n);
    EXPECT_NE(error_of(cut), "") << "accepted the first " << n << " words";
  }
  std::vector<int64_t> reply = encode_reply({9, true, 5, {{DataType::kInt32, {3, 2}, false}}});
  for (size_t n = 0; n < reply.size(); ++n) {
    std::vector<int64_t> cut(reply.begin(), reply.begin() + n);
    EXPECT_THROW(decode_reply(cut, 0), Error) << "accepted the first " << n << " words";
  }
  words.push_back(0);
  EXPECT_NE(error_of(words).find("left over"), std::string::npos);
}

TEST(MpiWire, BadFieldsAreNamed) {
  std::vector<int64_t> w = encode_request(sample_request());
  auto with = [&](size_t at, int64_t v) {
    std::vector<int64_t> c = w;
    c[at] = v;
    return error_of(c);
  };
  EXPECT_NE(with(0, 1).find("wrong magic"), std::string::npos);
  EXPECT_NE(with(1, 99).find("wire version 99"), std::string::npos);
  EXPECT_NE(with(2, 3).find("command"), std::string::npos);
  EXPECT_NE(with(4, -1).find("batch"), std::string::npos);
  EXPECT_NE(with(5, 3).find("counts for 3 ranks, the job has 2"), std::string::npos);
  EXPECT_NE(with(6, 3).find("sum to 6, expected 5"), std::string::npos);
  EXPECT_NE(with(6, -2).find("item count"), std::string::npos);
  // The first input: dtype at 9, batched flag at 10, rank at 11, dims from 12.
  EXPECT_NE(with(9, int64_t(DataType::kString)).find("dtype 8"), std::string::npos);
  EXPECT_NE(with(10, 2).find("batched flag"), std::string::npos);
  EXPECT_NE(with(11, 65).find("tensor rank"), std::string::npos);
  EXPECT_NE(with(12, 6).find("batched input 0 has 6 items, the request 5"), std::string::npos);
  EXPECT_NE(with(13, -4).find("dim"), std::string::npos);
}

TEST(MpiWire, SizesAreOverflowCheckedAndCapped) {
  Request q = sample_request();
  q.inputs[1].shape = {int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_NE(error_of(encode_request(q)).find("tensor 1"), std::string::npos);
  q = sample_request();
  // 5 x 4 x 8 x 8 floats = 5120 bytes: over a 4096-byte cap.
  EXPECT_NE(error_of(encode_request(q), 2, 4096).find("per-tensor limit"), std::string::npos);
  EXPECT_EQ(error_of(encode_request(q), 2, 1 << 20), "");
}

TEST(MpiWire, UnbatchedRequestGoesToOneRank) {
  Request q;
  q.batch = 1;
  q.counts = {0, 1};
  q.inputs = {{DataType::kFloat32, {1, 3}, false}};
  EXPECT_EQ(error_of(encode_request(q)), "");
  q.counts = {1, 1};
  EXPECT_NE(error_of(encode_request(q)).find("expected 1"), std::string::npos);
}

}  // namespace
}  // namespace tandem::distributed

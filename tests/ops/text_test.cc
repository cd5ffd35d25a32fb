// Text family: TfIdfVectorizer. Expected counts are worked out by hand from the n-gram
// definition (tokens start, start + (skip+1), ...), not from the kernel.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_int;
using testing::attr_ints;
using testing::attr_string;
using testing::i32;
using testing::i64;
using testing::OpTest;
std::vector<float> values(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

using Attrs = std::map<std::string, Attribute>;

TEST(TfIdfVectorizer, CountsUnigramsAndBigrams) {
  // Pool: unigrams 1, 3; bigrams (1,2), (2,3). X = 1 2 1 2 3.
  // 1 occurs twice, 3 once; (1,2) twice, (2,3) once; 2 is not in the pool.
  const Attrs attrs = {{"mode", attr_string("TF")},
                       {"min_gram_length", attr_int(1)},
                       {"max_gram_length", attr_int(2)},
                       {"max_skip_count", attr_int(0)},
                       {"ngram_counts", attr_ints({0, 2})},
                       {"ngram_indexes", attr_ints({0, 1, 2, 3})},
                       {"pool_int64s", attr_ints({1, 3, 1, 2, 2, 3})}};
  Tensor out = OpTest("TfIdfVectorizer").input(i64({5}, {1, 2, 1, 2, 3})).attrs(attrs).run_ref()[0];
  ASSERT_EQ(out.dtype(), DataType::kFloat32);
  ASSERT_EQ(out.shape(), (Shape{4}));
  EXPECT_EQ(values(out), (std::vector<float>{2, 1, 2, 1}));

  // Only bigrams (min_gram_length 2): the unigram columns stay 0.
  Attrs bigrams = attrs;
  bigrams["min_gram_length"] = attr_int(2);
  out = OpTest("TfIdfVectorizer").input(i64({5}, {1, 2, 1, 2, 3})).attrs(bigrams).run_ref()[0];
  EXPECT_EQ(values(out), (std::vector<float>{0, 0, 2, 1}));
}

TEST(TfIdfVectorizer, SkipsAndUnigramsCountedOnce) {
  // Bigram (1,2) only (no unigram block: ngram_counts {0, 0}). X = 1 5 2 1 2.
  // skip 0: (1,5) (5,2) (2,1) (1,2) -> 1; skip 1: (1,2) (5,1) (2,2) -> 1.
  Attrs attrs = {{"mode", attr_string("TF")},         {"min_gram_length", attr_int(2)},
                 {"max_gram_length", attr_int(2)},    {"max_skip_count", attr_int(0)},
                 {"ngram_counts", attr_ints({0, 0})}, {"ngram_indexes", attr_ints({0})},
                 {"pool_int64s", attr_ints({1, 2})}};
  const Tensor x = i64({5}, {1, 5, 2, 1, 2});
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0]),
            (std::vector<float>{1}));
  attrs["max_skip_count"] = attr_int(1);
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0]),
            (std::vector<float>{2}));
  // skip 2: (1,1) (5,2) -> 0; skip 3: (1,2) -> 1 more; skip 4 and 5 fit no bigram.
  attrs["max_skip_count"] = attr_int(5);
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0]),
            (std::vector<float>{3}));

  // Unigram 7 in X = 7 7 with max_skip_count 3: counted twice, not once per skip value.
  const Attrs uni = {{"mode", attr_string("TF")},      {"min_gram_length", attr_int(1)},
                     {"max_gram_length", attr_int(1)}, {"max_skip_count", attr_int(3)},
                     {"ngram_counts", attr_ints({0})}, {"ngram_indexes", attr_ints({0})},
                     {"pool_int64s", attr_ints({7})}};
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(i64({2}, {7, 7})).attrs(uni).run_ref()[0]),
            (std::vector<float>{2}));
}

TEST(TfIdfVectorizer, BatchModesAndWeights) {
  // Unigrams 1 -> column 1 and 2 -> column 0 (weights 0.5 and 3). Rows: 1 1 2 | 2 0 0.
  Attrs attrs = {{"min_gram_length", attr_int(1)},
                 {"max_gram_length", attr_int(1)},
                 {"ngram_counts", attr_ints({0})},
                 {"ngram_indexes", attr_ints({1, 0})},
                 {"pool_int64s", attr_ints({1, 2})}};
  Attribute weights;
  weights.kind = Attribute::Kind::kFloats;
  weights.floats = {0.5f, 3.0f};
  attrs["weights"] = weights;
  const Tensor x = i32({2, 3}, {1, 1, 2, 2, 0, 0});

  attrs["mode"] = attr_string("TF");  // row 0: 1 twice (column 1), 2 once (column 0)
  Tensor out = OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0];
  ASSERT_EQ(out.shape(), (Shape{2, 2}));
  EXPECT_EQ(values(out), (std::vector<float>{1, 2, 1, 0}));
  attrs["mode"] = attr_string("IDF");  // weight where the count is > 0
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0]),
            (std::vector<float>{3, 0.5f, 3, 0}));
  attrs["mode"] = attr_string("TFIDF");  // count * weight
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0]),
            (std::vector<float>{3, 1, 3, 0}));

  // Output columns run to max(ngram_indexes): unused columns are 0.
  attrs.erase("weights");
  attrs["mode"] = attr_string("TF");
  attrs["ngram_indexes"] = attr_ints({3, 1});
  EXPECT_EQ(values(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref()[0]),
            (std::vector<float>{0, 1, 0, 2, 0, 1, 0, 0}));
}

TEST(TfIdfVectorizer, Errors) {
  const Attrs attrs = {{"mode", attr_string("TF")},
                       {"ngram_counts", attr_ints({0})},
                       {"ngram_indexes", attr_ints({0, 1})},
                       {"pool_int64s", attr_ints({1, 2})}};
  const Tensor x = i64({3}, {1, 2, 3});
  EXPECT_NO_THROW(OpTest("TfIdfVectorizer").input(x).attrs(attrs).run_ref());
  // Float input; string input (unsupported, with a clear code).
  EXPECT_THROW(OpTest("TfIdfVectorizer")
                   .input(Tensor::from_vector(DataType::kFloat32, {1}, std::vector<float>{1}))
                   .attrs(attrs)
                   .run_ref(),
               Error);
  try {
    OpTest("TfIdfVectorizer").input(Tensor(DataType::kString, {2})).attrs(attrs).run_ref();
    ADD_FAILURE() << "string input accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
  // String pool.
  Attrs strings = attrs;
  Attribute pool;
  pool.kind = Attribute::Kind::kStrings;
  pool.strings = {"a", "b"};
  strings["pool_strings"] = pool;
  EXPECT_THROW(OpTest("TfIdfVectorizer").input(x).attrs(strings).run_ref(), Error);
  // Pool and ngram_indexes disagree; bad mode; min > max.
  Attrs bad = attrs;
  bad["ngram_indexes"] = attr_ints({0, 1, 2});
  EXPECT_THROW(OpTest("TfIdfVectorizer").input(x).attrs(bad).run_ref(), Error);
  bad = attrs;
  bad["ngram_counts"] = attr_ints({0, 1});  // one 2-gram block of 1 value
  EXPECT_THROW(OpTest("TfIdfVectorizer").input(x).attrs(bad).run_ref(), Error);
  bad = attrs;
  bad["mode"] = attr_string("BM25");
  EXPECT_THROW(OpTest("TfIdfVectorizer").input(x).attrs(bad).run_ref(), Error);
  bad = attrs;
  bad["min_gram_length"] = attr_int(3);
  EXPECT_THROW(OpTest("TfIdfVectorizer").input(x).attrs(bad).run_ref(), Error);
  // 3-D input.
  EXPECT_THROW(OpTest("TfIdfVectorizer").input(i64({1, 1, 3}, {1, 2, 3})).attrs(attrs).run_ref(),
               Error);
}

}  // namespace
}  // namespace tandem

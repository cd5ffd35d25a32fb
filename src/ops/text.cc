// Schemas of the text family: TfIdfVectorizer. Its output has one column per n-gram index
// (max(ngram_indexes) + 1), float32, with a leading batch dim when X is 2-D.
#include "ops/text.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/schema.h"

namespace tandem {

TfIdfAttrs TfIdfAttrs::parse(const Node& node) {
  TfIdfAttrs a;
  TANDEM_CHECK(node.attr_strings_or("pool_strings", {}).empty(), ErrorCode::kUnsupported,
               "{}: pool_strings (string n-grams) is not supported", node.describe());
  a.mode = node.attr_string_or("mode", "TF");
  TANDEM_CHECK(a.mode == "TF" || a.mode == "IDF" || a.mode == "TFIDF", ErrorCode::kInvalidModel,
               "{}: mode '{}' is not one of TF, IDF, TFIDF", node.describe(), a.mode);
  a.min_gram = node.attr_int_or("min_gram_length", 1);
  a.max_gram = node.attr_int_or("max_gram_length", 1);
  a.max_skip = node.attr_int_or("max_skip_count", 0);
  // The kernel reads token start + (n - 1) * (skip + 1): with both bounded by 2^31 that cannot
  // wrap (an n-gram or a skip that long matches nothing in any real input anyway).
  constexpr int64_t kMaxGram = int64_t{1} << 31;
  TANDEM_CHECK(a.min_gram >= 1 && a.max_gram >= a.min_gram && a.max_gram <= kMaxGram &&
                   a.max_skip >= 0 && a.max_skip <= kMaxGram,
               ErrorCode::kInvalidModel,
               "{}: need 1 <= min_gram_length ({}) <= max_gram_length ({}) <= 2^31 and "
               "0 <= max_skip_count ({}) <= 2^31",
               node.describe(), a.min_gram, a.max_gram, a.max_skip);
  a.ngram_indexes = node.attr_ints_or("ngram_indexes", {});
  TANDEM_CHECK(!a.ngram_indexes.empty(), ErrorCode::kInvalidModel, "{}: ngram_indexes is empty",
               node.describe());
  for (int64_t c : a.ngram_indexes) {
    TANDEM_CHECK(c >= 0, ErrorCode::kInvalidModel, "{}: ngram_indexes has a negative entry {}",
                 node.describe(), c);
    TANDEM_CHECK(c < INT64_MAX, ErrorCode::kInvalidModel,
                 "{}: ngram_indexes entry {} leaves no room for the column count", node.describe(),
                 c);
    a.columns = std::max(a.columns, c + 1);
  }
  a.weights = node.attr_floats_or("weights", std::vector<float>(a.ngram_indexes.size(), 1.0f));
  TANDEM_CHECK(a.weights.size() == a.ngram_indexes.size(), ErrorCode::kInvalidModel,
               "{}: weights has {} entries but ngram_indexes has {}", node.describe(),
               a.weights.size(), a.ngram_indexes.size());
  a.pool = node.attr_ints_or("pool_int64s", {});
  a.ngram_counts = node.attr_ints_or("ngram_counts", {});
  return a;
}

namespace {

std::vector<TensorType> infer_tfidf(const InferContext& ctx, const TfIdfAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.dtype != DataType::kString, ErrorCode::kUnsupported,
               "{}: string input is not supported (integer token ids only)", node.describe());
  TANDEM_CHECK(x.dtype == DataType::kInt32 || x.dtype == DataType::kInt64, ErrorCode::kUnsupported,
               "{}: input has dtype {}, expected int32 or int64", node.describe(),
               dtype_name(x.dtype));
  TANDEM_CHECK(x.shape.size() == 1 || x.shape.size() == 2, ErrorCode::kInvalidModel,
               "{}: input must be 1-D [C] or 2-D [N, C], got shape {}", node.describe(),
               shape_str(x.shape));
  Shape out_shape{a.columns};
  if (x.shape.size() == 2) out_shape.insert(out_shape.begin(), x.shape[0]);
  return {{DataType::kFloat32, out_shape}};
}

}  // namespace

void register_text_schemas(SchemaRegistry& r) {
  r.add({"TfIdfVectorizer", 1, 1, with_attrs(infer_tfidf)});
}

}  // namespace tandem

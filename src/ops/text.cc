// Schemas of the text family: TfIdfVectorizer. Its output has one column per n-gram index
// (max(ngram_indexes) + 1), float32, with a leading batch dim when X is 2-D.
#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/schema.h"

namespace tandem {
namespace {

std::vector<TensorType> infer_tfidf(const InferContext& ctx) {
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
  TANDEM_CHECK(node.attr_strings_or("pool_strings", {}).empty(), ErrorCode::kUnsupported,
               "{}: pool_strings (string n-grams) is not supported", node.describe());

  const std::string mode = node.attr_string_or("mode", "TF");
  TANDEM_CHECK(mode == "TF" || mode == "IDF" || mode == "TFIDF", ErrorCode::kInvalidModel,
               "{}: mode '{}' is not one of TF, IDF, TFIDF", node.describe(), mode);
  const int64_t min_gram = node.attr_int_or("min_gram_length", 1);
  const int64_t max_gram = node.attr_int_or("max_gram_length", 1);
  const int64_t max_skip = node.attr_int_or("max_skip_count", 0);
  TANDEM_CHECK(min_gram >= 1 && max_gram >= min_gram && max_skip >= 0, ErrorCode::kInvalidModel,
               "{}: need 1 <= min_gram_length ({}) <= max_gram_length ({}) and max_skip_count "
               "({}) >= 0",
               node.describe(), min_gram, max_gram, max_skip);

  const std::vector<int64_t> indexes = node.attr_ints_or("ngram_indexes", {});
  TANDEM_CHECK(!indexes.empty(), ErrorCode::kInvalidModel, "{}: ngram_indexes is empty",
               node.describe());
  const int64_t lowest = *std::min_element(indexes.begin(), indexes.end());
  TANDEM_CHECK(lowest >= 0, ErrorCode::kInvalidModel, "{}: ngram_indexes has a negative entry {}",
               node.describe(), lowest);
  const int64_t columns = *std::max_element(indexes.begin(), indexes.end()) + 1;

  Shape out_shape{columns};
  if (x.shape.size() == 2) out_shape.insert(out_shape.begin(), x.shape[0]);
  return {{DataType::kFloat32, out_shape}};
}

}  // namespace

void register_text_schemas(SchemaRegistry& r) {
  r.add({"TfIdfVectorizer", 1, 1, infer_tfidf});
}

}  // namespace tandem

// Reference kernel of TfIdfVectorizer over integer token ids.
//
// The pool holds the n-grams to count, grouped by length: ngram_counts[i] is where the
// (i+1)-grams start in pool_int64s, and the k-th n-gram of the pool (in pool order) is counted
// in output column ngram_indexes[k]. For each row of X, an n-gram of length n with skip s is the
// tokens at start, start + (s+1), ..., start + (n-1)(s+1); every n in [min_gram_length,
// max_gram_length] and every s in [0, max_skip_count] is tried. Unigrams do not depend on the
// skip, so they are counted once (at s = 0), not once per skip value. Then:
//   TF: the count;  IDF: weight if the count > 0, else 0;  TFIDF: count * weight
// with weight = weights[k] (1 when `weights` is absent).
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/error.h"

namespace tandem {
namespace {

enum class Mode { kTF, kIDF, kTFIDF };

class TfIdfKernel : public Kernel {
 public:
  explicit TfIdfKernel(const Node& node) {
    const std::string mode = node.attr_string_or("mode", "TF");
    if (mode == "TF") {
      mode_ = Mode::kTF;
    } else if (mode == "IDF") {
      mode_ = Mode::kIDF;
    } else if (mode == "TFIDF") {
      mode_ = Mode::kTFIDF;
    } else {
      raise(ErrorCode::kInvalidModel, "{}: mode '{}' is not one of TF, IDF, TFIDF", node.describe(),
            mode);
    }
    TANDEM_CHECK(node.attr_strings_or("pool_strings", {}).empty(), ErrorCode::kUnsupported,
                 "{}: pool_strings (string n-grams) is not supported", node.describe());
    min_gram_ = node.attr_int_or("min_gram_length", 1);
    max_gram_ = node.attr_int_or("max_gram_length", 1);
    max_skip_ = node.attr_int_or("max_skip_count", 0);
    TANDEM_CHECK(min_gram_ >= 1 && max_gram_ >= min_gram_ && max_skip_ >= 0,
                 ErrorCode::kInvalidModel,
                 "{}: need 1 <= min_gram_length ({}) <= max_gram_length ({}) and "
                 "max_skip_count ({}) >= 0",
                 node.describe(), min_gram_, max_gram_, max_skip_);

    indexes_ = node.attr_ints_or("ngram_indexes", {});
    for (int64_t c : indexes_) {
      TANDEM_CHECK(c >= 0, ErrorCode::kInvalidModel, "{}: ngram_indexes has a negative entry {}",
                   node.describe(), c);
      columns_ = std::max(columns_, c + 1);
    }
    weights_ = node.attr_floats_or("weights", std::vector<float>(indexes_.size(), 1.0f));
    TANDEM_CHECK(weights_.size() == indexes_.size(), ErrorCode::kInvalidModel,
                 "{}: weights has {} entries but ngram_indexes has {}", node.describe(),
                 weights_.size(), indexes_.size());

    // Split the pool into n-grams: the block of (i+1)-grams runs from ngram_counts[i] to the
    // next block's start (or the pool's end).
    const std::vector<int64_t> pool = node.attr_ints_or("pool_int64s", {});
    const std::vector<int64_t> starts = node.attr_ints_or("ngram_counts", {});
    const auto pool_size = static_cast<int64_t>(pool.size());
    size_t k = 0;  // n-grams read so far
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t n = static_cast<int64_t>(i) + 1;
      const int64_t begin = starts[i];
      const int64_t end = i + 1 < starts.size() ? starts[i + 1] : pool_size;
      TANDEM_CHECK(begin >= 0 && begin <= end && end <= pool_size && (end - begin) % n == 0,
                   ErrorCode::kInvalidModel,
                   "{}: ngram_counts {} does not split pool_int64s ({} values) into blocks of "
                   "{}-grams",
                   node.describe(), shape_str(starts), pool_size, n);
      for (int64_t p = begin; p < end; p += n, ++k) {
        TANDEM_CHECK(k < indexes_.size(), ErrorCode::kInvalidModel,
                     "{}: the pool holds more n-grams than ngram_indexes has entries ({})",
                     node.describe(), indexes_.size());
        // A repeated pool n-gram keeps its first position.
        pool_ids_.emplace(std::vector<int64_t>(pool.begin() + p, pool.begin() + p + n), k);
      }
    }
    TANDEM_CHECK(k == indexes_.size(), ErrorCode::kInvalidModel,
                 "{}: the pool holds {} n-grams but ngram_indexes has {} entries", node.describe(),
                 k, indexes_.size());
  }

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor& x = *inputs[0];
    Tensor& y = *outputs[0];
    TANDEM_CHECK(x.dtype() == DataType::kInt32 || x.dtype() == DataType::kInt64,
                 ErrorCode::kUnsupported, "{}: input has dtype {}, expected int32 or int64",
                 ctx.node.describe(), dtype_name(x.dtype()));
    TANDEM_CHECK(x.rank() == 1 || x.rank() == 2, ErrorCode::kInvalidModel,
                 "{}: input must be 1-D or 2-D, got shape {}", ctx.node.describe(),
                 shape_str(x.shape()));
    const int64_t rows = x.rank() == 2 ? x.dim(0) : 1;
    const int64_t len = x.rank() == 2 ? x.dim(1) : x.dim(0);
    TANDEM_CHECK(y.dtype() == DataType::kFloat32 && y.numel() == rows * columns_,
                 ErrorCode::kInternal, "{}: output {} {} does not hold {} rows of {} columns",
                 ctx.node.describe(), dtype_name(y.dtype()), shape_str(y.shape()), rows, columns_);

    // Token ids as int64 whatever the input's integer type.
    std::vector<int64_t> tokens(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i)
      tokens[i] = x.dtype() == DataType::kInt32 ? x.data<int32_t>()[i] : x.data<int64_t>()[i];

    float* out = y.data<float>();
    if (rows == 0) return;
    ctx.pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> gram;
      for (int64_t r = begin; r < end; ++r) {
        const int64_t* row = tokens.data() + r * len;
        std::vector<int64_t> counts(indexes_.size(), 0);  // per pool n-gram
        for (int64_t skip = 0; skip <= max_skip_; ++skip) {
          const int64_t step = skip + 1;
          // Unigrams are the same for every skip: count them at skip 0 only.
          const int64_t first_n = skip > 0 ? std::max<int64_t>(min_gram_, 2) : min_gram_;
          for (int64_t start = 0; start < len; ++start) {
            for (int64_t n = first_n; n <= max_gram_; ++n) {
              if (start + (n - 1) * step >= len) break;  // longer n-grams do not fit either
              gram.clear();
              for (int64_t j = 0; j < n; ++j) gram.push_back(row[start + j * step]);
              auto hit = pool_ids_.find(gram);
              if (hit != pool_ids_.end()) ++counts[hit->second];
            }
          }
        }
        float* out_row = out + r * columns_;
        for (size_t k = 0; k < indexes_.size(); ++k) {
          const auto count = static_cast<float>(counts[k]);
          float v = count;
          if (mode_ == Mode::kIDF) v = counts[k] > 0 ? weights_[k] : 0.0f;
          if (mode_ == Mode::kTFIDF) v = count * weights_[k];
          out_row[indexes_[k]] += v;
        }
      }
    });
  }

 private:
  Mode mode_ = Mode::kTF;
  int64_t min_gram_ = 1, max_gram_ = 1, max_skip_ = 0;
  std::vector<int64_t> indexes_;  // output column of each pool n-gram
  std::vector<float> weights_;    // weight of each pool n-gram
  int64_t columns_ = 0;
  std::map<std::vector<int64_t>, size_t> pool_ids_;  // n-gram -> its position in the pool
};

}  // namespace

void register_text_ref_kernels(KernelRegistry& r) {
  r.add("TfIdfVectorizer", KernelFactory([](const Node& node) -> std::unique_ptr<Kernel> {
          return std::make_unique<TfIdfKernel>(node);
        }));
}

}  // namespace tandem

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
#include "ops/text.h"

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
  explicit TfIdfKernel(const Node& node) : a_(TfIdfAttrs::parse(node)) {
    const TfIdfAttrs& a = a_;
    mode_ = a.mode == "TF" ? Mode::kTF : a.mode == "IDF" ? Mode::kIDF : Mode::kTFIDF;

    // Split the pool into n-grams: the block of (i+1)-grams runs from ngram_counts[i] to the
    // next block's start (or the pool's end).
    const std::vector<int64_t>& pool = a.pool;
    const std::vector<int64_t>& starts = a.ngram_counts;
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
        TANDEM_CHECK(k < a_.ngram_indexes.size(), ErrorCode::kInvalidModel,
                     "{}: the pool holds more n-grams than ngram_indexes has entries ({})",
                     node.describe(), a_.ngram_indexes.size());
        // A repeated pool n-gram keeps its first position.
        pool_ids_.emplace(std::vector<int64_t>(pool.begin() + p, pool.begin() + p + n), k);
      }
    }
    TANDEM_CHECK(k == a_.ngram_indexes.size(), ErrorCode::kInvalidModel,
                 "{}: the pool holds {} n-grams but ngram_indexes has {} entries", node.describe(),
                 k, a_.ngram_indexes.size());
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
    TANDEM_CHECK(y.dtype() == DataType::kFloat32 && y.numel() == rows * a_.columns,
                 ErrorCode::kInternal, "{}: output {} {} does not hold {} rows of {} columns",
                 ctx.node.describe(), dtype_name(y.dtype()), shape_str(y.shape()), rows,
                 a_.columns);

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
        std::vector<int64_t> counts(a_.ngram_indexes.size(), 0);  // per pool n-gram
        for (int64_t skip = 0; skip <= a_.max_skip; ++skip) {
          const int64_t step = skip + 1;
          // Unigrams are the same for every skip: count them at skip 0 only.
          const int64_t first_n = skip > 0 ? std::max<int64_t>(a_.min_gram, 2) : a_.min_gram;
          for (int64_t start = 0; start < len; ++start) {
            for (int64_t n = first_n; n <= a_.max_gram; ++n) {
              if (start + (n - 1) * step >= len) break;  // longer n-grams do not fit either
              gram.clear();
              for (int64_t j = 0; j < n; ++j) gram.push_back(row[start + j * step]);
              auto hit = pool_ids_.find(gram);
              if (hit != pool_ids_.end()) ++counts[hit->second];
            }
          }
        }
        float* out_row = out + r * a_.columns;
        for (size_t k = 0; k < a_.ngram_indexes.size(); ++k) {
          const auto count = static_cast<float>(counts[k]);
          float v = count;
          if (mode_ == Mode::kIDF) v = counts[k] > 0 ? a_.weights[k] : 0.0f;
          if (mode_ == Mode::kTFIDF) v = count * a_.weights[k];
          out_row[a_.ngram_indexes[k]] += v;
        }
      }
    });
  }

 private:
  Mode mode_ = Mode::kTF;
  TfIdfAttrs a_;  // ngram_indexes: the output column of each pool n-gram; weights: its weight
  std::map<std::vector<int64_t>, size_t> pool_ids_;  // n-gram -> its position in the pool
};

}  // namespace

void register_text_ref_kernels(KernelRegistry& r) {
  r.add("TfIdfVectorizer", KernelFactory([](const Node& node) -> std::unique_ptr<Kernel> {
          return std::make_unique<TfIdfKernel>(node);
        }));
}

}  // namespace tandem

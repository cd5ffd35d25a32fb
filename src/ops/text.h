// The attributes of TfIdfVectorizer, parsed once from the node and handed to the schema and to
// the reference kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct TfIdfAttrs {
  std::string mode = "TF";  // TF, IDF or TFIDF
  int64_t min_gram = 1, max_gram = 1, max_skip = 0;
  std::vector<int64_t> ngram_indexes;  // the output column of each pool n-gram
  std::vector<float> weights;          // one per ngram_indexes entry (default 1)
  std::vector<int64_t> pool;           // pool_int64s
  std::vector<int64_t> ngram_counts;   // where the block of (i+1)-grams starts in the pool
  int64_t columns = 0;                 // max(ngram_indexes) + 1

  // Checks mode, the gram lengths, ngram_indexes (non-empty, no negative entry) and weights;
  // string pools are refused. Throws naming the node.
  static TfIdfAttrs parse(const Node& node);
};

}  // namespace tandem

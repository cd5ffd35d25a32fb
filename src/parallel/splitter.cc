#include "parallel/splitter.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace tandem::parallel {

std::vector<ShardPlan> split_batch(int64_t batch, const std::vector<double>& speeds,
                                   int64_t fixed_batch) {
  TANDEM_CHECK(batch >= 1, ErrorCode::kInvalidArgument, "batch must be >= 1, got {}", batch);
  std::vector<int> live;
  for (size_t i = 0; i < speeds.size(); ++i)
    if (speeds[i] > 0) live.push_back(static_cast<int>(i));
  TANDEM_CHECK(!live.empty(), ErrorCode::kRuntime, "no worker is available to take the batch");

  std::vector<ShardPlan> shards;
  if (fixed_batch > 0) {
    int64_t n = (batch + fixed_batch - 1) / fixed_batch;
    std::vector<double> finish(speeds.size(), 0.0);
    for (int64_t s = 0; s < n; ++s) {
      int best = live[0];
      for (int w : live)
        if (finish[w] + fixed_batch / speeds[w] < finish[best] + fixed_batch / speeds[best])
          best = w;
      finish[best] += fixed_batch / speeds[best];
      shards.push_back({best, s * fixed_batch, fixed_batch});
    }
    return shards;
  }

  // The fastest min(batch, workers) workers, kept in worker order so shards stay contiguous.
  std::vector<int> chosen = live;
  if (static_cast<int64_t>(chosen.size()) > batch) {
    std::stable_sort(chosen.begin(), chosen.end(),
                     [&](int a, int b) { return speeds[a] > speeds[b]; });
    chosen.resize(static_cast<size_t>(batch));
    std::sort(chosen.begin(), chosen.end());
  }
  double total = 0;
  for (int w : chosen) total += speeds[w];
  // Every chosen worker gets one item, the rest goes by largest remainder of its fair share.
  int64_t rest = batch - static_cast<int64_t>(chosen.size());
  std::vector<int64_t> counts(chosen.size(), 1);
  std::vector<std::pair<double, size_t>> remainders;
  int64_t given = 0;
  for (size_t i = 0; i < chosen.size(); ++i) {
    double share = rest * speeds[chosen[i]] / total;
    int64_t whole = static_cast<int64_t>(std::floor(share));
    counts[i] += whole;
    given += whole;
    remainders.emplace_back(share - whole, i);
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](auto& a, auto& b) { return a.first > b.first; });
  for (int64_t r = 0; r < rest - given; ++r) counts[remainders[r % remainders.size()].second]++;
  int64_t begin = 0;
  for (size_t i = 0; i < chosen.size(); ++i) {
    shards.push_back({chosen[i], begin, counts[i]});
    begin += counts[i];
  }
  return shards;
}

}  // namespace tandem::parallel

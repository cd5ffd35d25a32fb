// Counters and histograms for `tandem serve`'s /metrics, in Prometheus's text exposition format.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tandem::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // Appends the _bucket, _sum and _count lines of metric `name` with `labels` ("a=\"x\"" pairs,
  // no braces; may be empty).
  void render(std::string& out, const std::string& name, const std::string& labels) const;
  // Observations so far and their sum.
  std::pair<uint64_t, double> count_and_sum() const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ModelMetrics {
  ModelMetrics();
  std::atomic<uint64_t> requests{0};  // infer requests that reached the model
  std::atomic<uint64_t> failures{0};  // of those, the ones answered with an error
  std::atomic<uint64_t> batches{0};   // runs on the ParallelPredictor
  Histogram queue_seconds;            // per request: enqueued -> its batch submitted
  Histogram compute_seconds;          // per batch: submitted -> outputs back
  Histogram batch_size;               // per batch: items in it
};

// A Prometheus label value, escaped (backslash, double quote, newline).
std::string label_value(const std::string& text);

// "# HELP" and "# TYPE" lines.
void metric_header(std::string& out, const std::string& name, const std::string& type,
                   const std::string& help);

}  // namespace tandem::server

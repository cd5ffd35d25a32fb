#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace tandem::server {

namespace {

std::vector<double> seconds_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

std::vector<double> batch_buckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256};
}

std::string number(double v) {
  return fmt::format("{}", v);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t b = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                 bounds_.begin());
  std::lock_guard lock(mutex_);
  ++counts_[b];
  sum_ += value;
  ++count_;
}

std::pair<uint64_t, double> Histogram::count_and_sum() const {
  std::lock_guard lock(mutex_);
  return {count_, sum_};
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mutex_);
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, le, cumulative);
  }
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out +=
      fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, number(sum_), name, braces, count_);
}

ModelMetrics::ModelMetrics()
    : queue_seconds(seconds_buckets()),
      compute_seconds(seconds_buckets()),
      batch_size(batch_buckets()) {}

std::string label_value(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void metric_header(std::string& out, const std::string& name, const std::string& type,
                   const std::string& help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace tandem::server

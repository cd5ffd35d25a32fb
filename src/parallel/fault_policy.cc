#include "parallel/fault_policy.h"

#include <algorithm>

namespace tandem::parallel {

void RestartPolicy::prune(Clock::time_point now) {
  while (!recent_.empty() && now - recent_.front() >= o_.restart_window) recent_.pop_front();
}

int RestartPolicy::restarts_in_window(Clock::time_point now) {
  prune(now);
  return static_cast<int>(recent_.size());
}

RestartPolicy::Clock::time_point RestartPolicy::on_death(Clock::time_point now) {
  prune(now);
  if (down_ || probing_) {
    // A failed probe: wait twice as long before the next one.
    probe_wait_ = std::min(o_.max_probe_interval, probe_wait_ * 2);
    down_ = true;
    probing_ = false;
    next_start_ = now + probe_wait_;
    return *next_start_;
  }
  if (static_cast<int>(recent_.size()) >= o_.max_restarts) {
    down_ = true;
    probe_wait_ = o_.probe_interval;
    next_start_ = now + probe_wait_;
    return *next_start_;
  }
  // The k-th restart in the window waits restart_backoff * 2^(k-2) (the first one none).
  std::chrono::milliseconds wait{0};
  if (!recent_.empty()) {
    wait = o_.restart_backoff;
    for (size_t k = 1; k < recent_.size() && wait < kMaxRestartBackoff; ++k) wait *= 2;
    wait = std::min(wait, kMaxRestartBackoff);
  }
  recent_.push_back(now);
  ++total_;
  next_start_ = now + wait;
  return *next_start_;
}

void RestartPolicy::on_built() {
  if (down_) {
    // The probe built: the device rejoins with a clean slate.
    recent_.clear();
    down_ = false;
  }
  probing_ = false;
}

}  // namespace tandem::parallel

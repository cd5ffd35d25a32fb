// The fault policy's rate limit, back-off and probes, on a clock the test drives.
#include "parallel/fault_policy.h"

#include <gtest/gtest.h>

namespace tandem::parallel {
namespace {

using namespace std::chrono_literals;
using Clock = RestartPolicy::Clock;

TEST(FaultPolicy, RestartsBackOffThenTheDeviceGoesDownAndIsProbed) {
  FaultPolicyOptions o;
  o.max_restarts = 4;
  o.restart_window = 60s;
  o.restart_backoff = 100ms;
  o.probe_interval = 5s;
  o.max_probe_interval = 12s;
  RestartPolicy p(o);
  auto t = Clock::time_point{} + 1000s;
  // First restart at once, then 100, 200, 400 ms.
  EXPECT_EQ(p.on_death(t) - t, 0ms);
  EXPECT_EQ(p.on_death(t) - t, 100ms);
  EXPECT_EQ(p.on_death(t) - t, 200ms);
  EXPECT_EQ(p.on_death(t) - t, 400ms);
  EXPECT_FALSE(p.down());
  EXPECT_EQ(p.restarts_in_window(t), 4);
  // The fifth death within the window: down, probed after probe_interval.
  EXPECT_EQ(p.on_death(t) - t, 5s);
  EXPECT_TRUE(p.down());
  // Failed probes double the wait, up to the maximum.
  EXPECT_EQ(p.on_death(t) - t, 10s);
  EXPECT_EQ(p.on_death(t) - t, 12s);
  // A probe that builds: up again with a fresh window.
  p.on_built();
  EXPECT_FALSE(p.down());
  EXPECT_EQ(p.on_death(t) - t, 0ms);
}

TEST(FaultPolicy, RestartsSpreadOverTimeNeverExhaustIt) {
  RestartPolicy p;  // defaults: 10 per 60 s
  auto t = Clock::time_point{} + 1000s;
  for (int k = 0; k < 1000; ++k) {
    t += 7s;  // a crash every 7 s, forever
    p.on_death(t);
    ASSERT_FALSE(p.down()) << "after " << k + 1 << " crashes";
  }
  EXPECT_EQ(p.total_restarts(), 1000);
}

}  // namespace
}  // namespace tandem::parallel

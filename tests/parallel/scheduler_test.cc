// The scheduler both engines share, on its own: admission, queues and stealing, re-runs,
// answering once, speeds for the split. No worker runs here; the test plays the engine.
#include "parallel/scheduler.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/error.h"

namespace tandem::parallel {
namespace {

std::shared_ptr<RequestBase> request(std::vector<ShardPlan> shards) {
  auto r = std::make_shared<RequestBase>();
  r->shards = std::move(shards);
  return r;
}

TEST(Scheduler, AdmissionNeedsOpenRespectsCapacityAndStops) {
  Scheduler s(2);
  auto a = request({{0, 0, 1}});
  EXPECT_THROW(s.admit(a), Error);  // not built yet
  s.open(1);
  s.admit(a);
  auto b = request({{0, 0, 1}});
  s.admit(b);
  EXPECT_NE(a->id, b->id);
  auto c = request({{0, 0, 1}});
  try {
    s.admit(c);
    FAIL() << "a third request fits a queue of 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("queue is full"), std::string::npos) << e.what();
  }
  // The engine's own refusal is passed through as is.
  s.withdraw(*b);
  try {
    s.admit(c, "all workers are down: x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all workers are down: x"), std::string::npos);
  }
  s.stop();
  EXPECT_THROW(s.admit(c), Error);
  ParallelStats st;
  s.fill_stats(st);
  EXPECT_EQ(st.failed_requests, 1);  // the withdrawn one
  EXPECT_FALSE(s.idle());            // `a` is still in flight
}

TEST(Scheduler, OwnQueueThenSharedThenStealsFromTheMostLoaded) {
  Scheduler s(8);
  s.open(3);
  auto r = request({{0, 0, 1}, {1, 1, 1}, {1, 2, 1}, {1, 3, 1}, {2, 4, 1}});
  s.admit(r);
  for (int i = 0; i < 5; ++i) s.enqueue(r->shards[i].worker, {r, i, 0, 0});
  ShardTask t;
  ASSERT_TRUE(s.take(0, t));
  EXPECT_EQ(t.shard, 0);  // its own first
  s.enqueue_shared({r, 9, 0, 1});
  ASSERT_TRUE(s.take(0, t));
  EXPECT_EQ(t.shard, 9);  // then shared work
  ASSERT_TRUE(s.take(0, t));
  EXPECT_EQ(t.shard, 3);  // then the back of worker 1's queue, the longest
  ASSERT_TRUE(s.take(2, t));
  EXPECT_EQ(t.shard, 4);
  ASSERT_TRUE(s.take(2, t));
  EXPECT_EQ(t.shard, 2);
  ASSERT_TRUE(s.take(1, t));
  EXPECT_EQ(t.shard, 1);
  EXPECT_FALSE(s.take(1, t));
}

TEST(Scheduler, ADeadWorkersQueueAndShardGoToTheOthers) {
  Scheduler s(8);
  s.open(2);
  auto r = request({{0, 0, 1}, {0, 1, 1}, {0, 2, 1}});
  s.admit(r);
  for (int i = 0; i < 3; ++i) s.enqueue(0, {r, i, 0, 0});
  ShardTask running;
  ASSERT_TRUE(s.take(0, running));
  // Worker 0 dies while running shard 0. As the engine does: its queue goes to the others, then
  // the shard it ran is re-run ahead of it (it has waited longest).
  s.release_queue(0);
  EXPECT_TRUE(s.rerun(running));
  ShardTask t;
  std::vector<int> order;
  while (s.take(1, t)) order.push_back(t.shard);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  ParallelStats st;
  s.fill_stats(st);
  EXPECT_EQ(st.shards_rerun, 1);
}

TEST(Scheduler, AShardThatKillsEveryWorkerFailsAfterTheLimit) {
  Scheduler s(8);
  s.open(1);
  auto r = request({{0, 0, 1}});
  s.admit(r);
  ShardTask t{r, 0, 0, 0};
  for (int i = 1; i < kMaxShardAttempts; ++i) {
    ASSERT_TRUE(s.rerun(t)) << i;
    ASSERT_TRUE(s.take(0, t));
    EXPECT_EQ(t.attempts, i);
  }
  EXPECT_FALSE(s.rerun(t));  // the engine fails the request now
}

TEST(Scheduler, ARequestIsAnsweredOnceAndItsOtherShardsAreDropped) {
  Scheduler s(8);
  s.open(2);
  auto r = request({{0, 0, 2}, {1, 2, 2}});
  s.admit(r);
  auto f = r->promise.get_future();
  s.enqueue(0, {r, 0, 0, 0});
  s.enqueue(1, {r, 1, 0, 0});
  s.fail(*r, "request 1: boom");
  s.fail(*r, "again");  // no second answer
  s.complete(*r, {});   // nor a late value
  EXPECT_TRUE(s.answered(*r));
  ShardTask t;
  EXPECT_FALSE(s.take(0, t));  // both tasks dropped
  EXPECT_FALSE(s.take(1, t));
  EXPECT_FALSE(s.shard_done(*r, 0, 0, 5));
  EXPECT_THROW(f.get(), Error);
  EXPECT_TRUE(s.idle());
  ParallelStats st;
  st.devices.resize(2);
  s.fill_stats(st);
  EXPECT_EQ(st.failed_requests, 1);
  EXPECT_EQ(st.requests, 0);
  EXPECT_EQ(st.devices[0].items, 0);
}

TEST(Scheduler, LastShardCompletesAndSpeedsFeedTheNextSplit) {
  Scheduler s(8);
  s.open(3);
  EXPECT_EQ(s.split_speeds(), (std::vector<double>{1, 1, 1}));  // nothing measured yet
  auto r = request({{0, 0, 4}, {1, 4, 2}});
  s.admit(r);
  auto f = r->promise.get_future();
  EXPECT_FALSE(s.shard_done(*r, 0, 0, 100));  // 4 items in 100 ms: 40/s
  EXPECT_FALSE(s.shard_done(*r, 0, 0, 100));  // the same shard again (a raced re-run): ignored
  EXPECT_TRUE(s.shard_done(*r, 1, 1, 100));   // 2 items in 100 ms: 20/s, the last shard
  s.complete(*r, {Tensor(DataType::kFloat32, {1})});
  EXPECT_EQ(f.get().size(), 1u);
  // Worker 2 has no measurement: planned at the mean of the others. Worker 1 is not usable.
  s.set_usable(1, false);
  EXPECT_EQ(s.split_speeds(), (std::vector<double>{40, 0, 30}));
  ParallelStats st;
  st.devices.resize(3);
  s.fill_stats(st);
  EXPECT_EQ(st.requests, 1);
  EXPECT_EQ(st.devices[0].items, 4);
  EXPECT_EQ(st.devices[1].items, 2);
  EXPECT_DOUBLE_EQ(st.devices[0].busy_ms, 100);
  EXPECT_GE(st.overhead_ms_last, 0);
}

TEST(Scheduler, FailAllAnswersEveryAdmittedRequest) {
  Scheduler s(8);
  s.open(1);
  auto a = request({{0, 0, 1}});
  auto b = request({{0, 0, 1}});
  s.admit(a);
  s.admit(b);
  auto fa = a->promise.get_future();
  auto fb = b->promise.get_future();
  s.fail_all("all workers are down");
  for (auto* f : {&fa, &fb}) {
    try {
      f->get();
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("all workers are down"), std::string::npos);
    }
  }
  EXPECT_TRUE(s.idle());
}

TEST(Scheduler, WaitingWorkersWakeForWorkAndLeaveOnStop) {
  Scheduler s(8);
  s.open(2);
  std::vector<int> ran(2, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w)
    threads.emplace_back([&, w] {
      ShardTask t;
      while (s.wait_take(w, t)) {
        ++ran[w];
        if (s.shard_done(*t.req, t.shard, w, 1)) s.complete(*t.req, {});
        t = {};
      }
    });
  auto r = request({{0, 0, 1}, {1, 1, 1}});
  s.admit(r);
  auto f = r->promise.get_future();
  s.enqueue(0, {r, 0, 0, 0});
  s.enqueue(1, {r, 1, 0, 0});
  f.get();
  s.stop();  // nothing admitted: both leave
  for (auto& t : threads) t.join();
  EXPECT_EQ(ran[0] + ran[1], 2);
}

}  // namespace
}  // namespace tandem::parallel

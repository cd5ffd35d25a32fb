// The parallel runner end to end: equivalence with one device, faults, cleanliness.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "../unit/onnx_builder.h"
#include "parallel_test_util.h"
#include "tandem/model.h"
#include "tandem/parallel.h"

#ifndef TANDEM_MODELS_DIR
#error "TANDEM_MODELS_DIR must point at the committed models"
#endif

namespace tandem {
namespace {

using test::options;
using test::random_inputs;

using Clock = std::chrono::steady_clock;
const std::string kModels = TANDEM_MODELS_DIR;
const std::string kResnet = kModels + "/resnet_tiny/model.onnx";
const std::string kUnet = kModels + "/sd_unet_tiny/model.onnx";

double max_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t o = 0; o < a.size() && o < b.size(); ++o) {
    EXPECT_EQ(a[o].shape(), b[o].shape()) << a[o].name();
    if (a[o].shape() != b[o].shape()) return INFINITY;
    for (int64_t i = 0; i < a[o].numel(); ++i)
      worst = std::max(
          worst, static_cast<double>(std::abs(a[o].data<float>()[i] - b[o].data<float>()[i])));
  }
  return worst;
}

// A Model built on one thread and run on others (threads mode, a Python thread pool): oneDNN's
// default scratchpad is per thread and sized when a primitive is created, so this crashed before
// the CPU backend gave every primitive its own scratch memory. The flagship at batch 4 has
// convolutions that need scratch.
TEST(ModelThreads, BuiltOnOneThreadRunOnOthers) {
  Context ctx;
  ctx.thread_num = 1;
  Model m = Model::build_from_file(kUnet, ctx);
  const std::vector<Tensor> in = random_inputs(m.inputs(), 4, 77);
  const std::vector<Tensor> expected = m.predict(in);
  for (int t = 0; t < 2; ++t) {
    std::vector<Tensor> got;
    std::thread other([&] { got = m.predict(in); });
    other.join();
    EXPECT_EQ(max_diff(expected, got), 0.0);
  }
}

// Child processes of this process (by scanning /proc), zombies included.
std::set<int> children() {
  std::set<int> kids;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    int ppid;
    rest >> state >> ppid;
    if (ppid == getpid()) kids.insert(pid);
  }
  closedir(d);
  return kids;
}

int open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}

int shm_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) n += line.find("tandem-shm") != std::string::npos;
  return n;
}

// One device running the whole batch, with the same kernels.
std::vector<Tensor> single_device(Model& m, const std::vector<Tensor>& in) {
  return m.predict(in);
}

void check_equivalence(const std::string& model_path, const std::string& mode) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(model_path, ctx);
  std::vector<std::vector<Tensor>> inputs, expected;
  for (int64_t batch = 1; batch <= 9; ++batch) {
    inputs.push_back(random_inputs(reference.inputs(), batch, static_cast<uint32_t>(batch)));
    expected.push_back(single_device(reference, inputs.back()));
  }
  for (int workers = 1; workers <= 4; ++workers) {
    ParallelOptions o = options(model_path, workers);
    o.mode = mode;
    ParallelPredictor p(o);
    p.build();
    for (int64_t batch = 1; batch <= 9; ++batch) {
      auto got = p.predict(inputs[batch - 1]);
      EXPECT_LE(max_diff(got, expected[batch - 1]), 1e-5)
          << mode << " workers " << workers << " batch " << batch;
    }
    p.finalize();
  }
}

TEST(ParallelEquivalence, CnnOneToFourWorkersBatchOneToNine) {
  check_equivalence(kResnet, "processes");
}
TEST(ParallelEquivalence, FlagshipOneToFourWorkersBatchOneToNine) {
  check_equivalence(kUnet, "processes");
}
TEST(ParallelEquivalence, ThreadModeCnn) {
  check_equivalence(kResnet, "threads");
}

TEST(ParallelEquivalence, FixedBatchLikeTheSeedsConverter) {
  // The seed converts the model to batch 1 and feeds batch 2; here batch 5 in shards of 2.
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(kResnet, ctx);
  auto in = random_inputs(reference.inputs(), 5, 7);
  auto want = reference.predict(in);
  for (int64_t b : {1, 2}) {
    ParallelOptions o = options(kResnet, 2);
    o.input_shapes = {{"input", {b, 3, 64, 64}}};
    ParallelPredictor p(o);
    p.build();
    EXPECT_LE(max_diff(p.predict(in), want), 1e-5) << "fixed batch " << b;
  }
}

TEST(ParallelFaults, KillDashNineDuringAStreamLosesNothing) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(kResnet, ctx);
  std::vector<std::vector<Tensor>> inputs;
  std::vector<std::vector<Tensor>> expected;
  for (int k = 0; k < 4; ++k) {
    inputs.push_back(random_inputs(reference.inputs(), 3, 100 + k));
    expected.push_back(reference.predict(inputs.back()));
  }
  ParallelOptions o = options(kResnet, 2);
  o.max_restarts = 5;
  ParallelPredictor p(o);
  p.build();
  std::mt19937 rng(3);
  std::deque<std::pair<int, std::future<std::vector<Tensor>>>> inflight;
  int completed = 0, kills = 0;
  for (int i = 0; i < 200 || !inflight.empty();) {
    while (i < 200 && inflight.size() < 4) {
      inflight.emplace_back(i, p.submit(inputs[i % 4]));
      ++i;
      if (i == 60 || i == 140) {
        auto st = p.stats();
        int victim = st.devices[rng() % st.devices.size()].pid;
        if (victim > 0 && ::kill(victim, SIGKILL) == 0) ++kills;
      }
    }
    auto [idx, fut] = std::move(inflight.front());
    inflight.pop_front();
    auto got = fut.get();  // throws on a lost request: the test fails
    EXPECT_LE(max_diff(got, expected[idx % 4]), 1e-5) << "request " << idx;
    ++completed;
  }
  EXPECT_EQ(completed, 200);
  EXPECT_GE(kills, 1);
  auto st = p.stats();
  int restarts = 0;
  for (auto& d : st.devices) restarts += d.restarts;
  EXPECT_GE(restarts, kills);
  EXPECT_EQ(st.failed_requests, 0);
}

TEST(ParallelFaults, StoppedWorkerItsRequestsFinishElsewhereWithinTheDeadline) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(kResnet, ctx);
  auto in = random_inputs(reference.inputs(), 2, 9);
  auto want = reference.predict(in);
  ParallelOptions o = options(kResnet, 2);
  o.deadline = std::chrono::milliseconds(1500);
  ParallelPredictor p(o);
  p.build();
  p.predict(in);
  int victim = p.stats().devices[1].pid;
  ASSERT_GT(victim, 0);
  ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  auto start = Clock::now();
  auto got = p.predict(in);
  double waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_LE(max_diff(got, want), 1e-5);
  EXPECT_LE(waited, 1.5 + 1.0);
  EXPECT_GE(p.stats().shards_rerun, 1);
  // And it keeps serving, with the stopped worker replaced.
  EXPECT_LE(max_diff(p.predict(in), want), 1e-5);
}

TEST(ParallelFaults, ImpossibleCoreListFailsFastAndLeavesNoProcess) {
  auto before = children();
  ParallelOptions o = options(kResnet, 2);
  o.core_lists = {{0}, {4096}};
  ParallelPredictor p(o);
  auto start = Clock::now();
  try {
    p.build();
    FAIL() << "build should fail";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("cpu:1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4096"), std::string::npos) << msg;
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
  EXPECT_EQ(children(), before);
}

TEST(ParallelFaults, GarbageModelIsAClearError) {
  std::string dir = testing::temp_dir("parallel_garbage");
  std::ofstream(dir + "/model.onnx") << "definitely not onnx";
  ParallelPredictor p(options(dir + "/model.onnx", 2));
  try {
    p.build();
    FAIL() << "build should fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a valid ONNX model"), std::string::npos) << e.what();
  }
  ParallelPredictor missing(options(dir + "/none.onnx", 1));
  EXPECT_THROW(missing.build(), Error);
}

// The engines share one scheduler (admission, queues, answers): what it decides is tested in
// both modes.
const char* const kModes[] = {"processes", "threads"};

ParallelOptions options(const std::string& model, int devices, const char* mode) {
  ParallelOptions o = options(model, devices);
  o.mode = mode;
  return o;
}

TEST(ParallelFaults, WrongInputIsRefusedAndTheNextIsServed) {
  for (const char* mode : kModes) {
    ParallelPredictor p(options(kResnet, 2, mode));
    p.build();
    auto good = random_inputs(p.inputs(), 2, 1);
    EXPECT_THROW(p.predict({Tensor(DataType::kFloat32, {2, 4, 64, 64}, "input")}), Error) << mode;
    EXPECT_THROW(p.predict({Tensor(DataType::kInt64, {2, 3, 64, 64}, "input")}), Error) << mode;
    EXPECT_THROW(p.predict({Tensor(DataType::kFloat32, {2, 3, 64, 64}, "pixels")}), Error) << mode;
    EXPECT_EQ(p.predict(good)[0].shape(), (Shape{2, 10})) << mode;
    EXPECT_EQ(p.stats().failed_requests, 3) << mode;
    EXPECT_EQ(p.stats().requests, 1) << mode;
  }
}

TEST(ParallelFaults, AWorkerErrorDoesNotPoisonLaterRequests) {
  // Reshape to a shape given as an input: only the worker can find out it does not fit.
  testing::OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 6});
  b.input("shape", DataType::kInt64, {2});
  b.output("y", DataType::kFloat32, {-1, -1});
  b.node("Reshape", {"x", "shape"}, {"y"}, "reshaper");
  std::string path = b.save(testing::temp_dir("parallel_worker_error"));
  for (const char* mode : kModes) {
    ParallelPredictor p(options(path, 1, mode));
    p.build();
    Tensor x(DataType::kFloat32, {2, 6}, "x");
    auto shape = [](int64_t a, int64_t c) {
      return Tensor::from_vector(DataType::kInt64, {2}, std::vector<int64_t>{a, c}, "shape");
    };
    try {
      p.predict({x, shape(5, 5)});
      ADD_FAILURE() << mode << ": expected a worker error";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("cpu:0"), std::string::npos) << mode << ": " << msg;
      EXPECT_NE(msg.find("reshaper"), std::string::npos) << mode << ": " << msg;
    }
    EXPECT_EQ(p.predict({x, shape(3, 4)})[0].shape(), (Shape{3, 4})) << mode;
  }
}

TEST(ParallelLifecycle, QueueFullIsAClearErrorNotAHang) {
  for (const char* mode : kModes) {
    ParallelOptions o = options(kResnet, 1, mode);
    o.queue_capacity = 2;
    ParallelPredictor p(o);
    p.build();
    // Large enough that two requests are still in flight when the third comes.
    auto in = random_inputs(p.inputs(), 64, 2);
    auto a = p.submit(in);
    auto b = p.submit(in);
    try {
      p.submit(in);
      ADD_FAILURE() << mode << ": third submit should be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("queue is full"), std::string::npos) << mode;
    }
    a.get();
    b.get();
    EXPECT_NO_THROW(p.predict(in)) << mode;
  }
}

TEST(ParallelLifecycle, UseBeforeBuildAndAfterFinalize) {
  for (const char* mode : kModes) {
    ParallelPredictor p(options(kResnet, 1, mode));
    Tensor x(DataType::kFloat32, {1, 3, 64, 64}, "input");
    EXPECT_THROW(p.predict({x}), Error) << mode;
    p.build();
    p.finalize();
    p.finalize();  // idempotent
    EXPECT_THROW(p.predict({x}), Error) << mode;
  }
}

// Many requests in flight over three workers, then finalize() while some still run: every one
// is answered with exactly what one Model gives, in both modes, and the counters agree.
TEST(ParallelLifecycle, FinalizeAnswersEveryRequestInFlightInBothModes) {
  Context ctx;
  ctx.thread_num = 1;
  Model single = Model::build_from_file(kResnet, ctx);
  for (const char* mode : kModes) {
    ParallelPredictor p(options(kResnet, 3, mode));
    p.build();
    std::vector<std::vector<Tensor>> inputs;
    std::vector<std::future<std::vector<Tensor>>> futures;
    for (int k = 0; k < 12; ++k) {
      inputs.push_back(random_inputs(p.inputs(), 1 + k % 5, 100 + k));
      futures.push_back(p.submit(inputs.back()));
    }
    p.finalize();
    for (int k = 0; k < 12; ++k) {
      std::vector<Tensor> got = futures[k].get();
      EXPECT_LT(max_diff(single.predict(inputs[k]), got), 1e-4) << mode << " request " << k;
    }
    ParallelStats st = p.stats();
    EXPECT_EQ(st.requests, 12) << mode;
    EXPECT_EQ(st.failed_requests, 0) << mode;
    int64_t items = 0;
    for (const DeviceStats& d : st.devices) items += d.items;
    EXPECT_EQ(items, 1 + 2 + 3 + 4 + 5 + 1 + 2 + 3 + 4 + 5 + 1 + 2) << mode;
  }
}

TEST(ParallelLifecycle, FinalizeLeavesNoZombieFdOrSharedMemory) {
  auto kids_before = children();
  int fds_before = open_fds();
  {
    ParallelPredictor p(options(kResnet, 2));
    p.build();
    auto in = random_inputs(p.inputs(), 4, 5);
    for (int i = 0; i < 5; ++i) p.predict(in);
    auto st = p.stats();
    ::kill(st.devices[0].pid, SIGKILL);  // a restart on the way must not leak either
    for (int i = 0; i < 5; ++i) p.predict(in);
    p.finalize();
    EXPECT_EQ(children(), kids_before);
  }
  EXPECT_EQ(open_fds(), fds_before);
  EXPECT_EQ(shm_mappings(), 0);
}

}  // namespace
}  // namespace tandem

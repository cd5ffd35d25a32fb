// The parallel runner against hostile or failing workers (issue 10): buffers a stale shard could
// write into, unchecked gathers, malformed worker messages, a replaced model file, workers tied
// to a short-lived thread, a fault policy that gives up, stopped workers.
//
// ParallelMemory.* are the memory-safety cases: tools/test.sh runs them under ASan + UBSan too.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "../unit/onnx_builder.h"
#include "parallel/protocol.h"
#include "parallel_test_util.h"
#include "runtime/convert.h"
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
using namespace std::chrono_literals;
const std::string kResnet = std::string(TANDEM_MODELS_DIR) + "/resnet_tiny/model.onnx";

// Byte-for-byte equality of two output lists (the same kernels on the same items give the same
// bits; a stale write or a mixed model does not).
::testing::AssertionResult same(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size();
  for (size_t o = 0; o < a.size(); ++o) {
    if (a[o].shape() != b[o].shape() || a[o].dtype() != b[o].dtype())
      return ::testing::AssertionFailure() << "output " << o << " shape/dtype differ";
    if (std::memcmp(a[o].raw(), b[o].raw(), a[o].nbytes()) != 0)
      return ::testing::AssertionFailure() << "output " << o << " differs";
  }
  return ::testing::AssertionSuccess();
}

std::vector<Tensor> deep_copy(const std::vector<Tensor>& v) {
  std::vector<Tensor> out;
  for (const Tensor& t : v) out.push_back(t.clone());
  return out;
}

// Sets the worker fault-injection variables for the workers started while it lives (build()
// and every restart), each fault firing once per `once_dir`.
class WorkerFault {
 public:
  explicit WorkerFault(const std::string& spec, bool once = true) {
    ::setenv("TANDEM_TEST_WORKER_FAULT", spec.c_str(), 1);
    if (once) {
      dir_ = testing::temp_dir("fault_once");
      ::setenv("TANDEM_TEST_WORKER_FAULT_ONCE", dir_.c_str(), 1);
    }
  }
  ~WorkerFault() {
    ::unsetenv("TANDEM_TEST_WORKER_FAULT");
    ::unsetenv("TANDEM_TEST_WORKER_FAULT_ONCE");
  }

 private:
  std::string dir_;
};

// y = x * k, x: [batch, 4] float.
std::string scale_model(const std::string& dir, float k) {
  testing::OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 4});
  b.initializer("k", Tensor::from_vector(DataType::kFloat32, {1}, std::vector<float>{k}, "k"));
  b.output("y", DataType::kFloat32, {-1, 4});
  b.node("Mul", {"x", "k"}, {"y"});
  return b.save(dir);
}

// y = NonZero(x): [2, count of non-zeros], which depends on the values. Declared with a symbolic
// dim 0, so the runner takes it for batched and must find out that the shards disagree.
std::string nonzero_model(const std::string& dir, int64_t width) {
  testing::OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, width});
  b.output("y", DataType::kInt64, {-1, -1});
  b.node("NonZero", {"x"}, {"y"});
  return b.save(dir);
}

// ---- defect 4: a delivered result never changes ------------------------------------------

TEST(ParallelMemory, StaleShardNeverWritesIntoADeliveredResult) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(kResnet, ctx);
  auto first = random_inputs(reference.inputs(), 2, 41);
  auto second = random_inputs(reference.inputs(), 3, 42);
  auto want = reference.predict(second);
  // Batch 2 over two workers: shard 0 on worker 0 fails at once, shard 1 on worker 1 is slow
  // and still running when the request has failed and the next one has been served.
  WorkerFault fault("0:error;1:delay:1500", /*once=*/false);
  ParallelPredictor p(options(kResnet, 2));
  p.build();
  EXPECT_THROW(p.predict(first), Error);
  auto got = p.predict(second);  // served by worker 0 while worker 1 sleeps
  ASSERT_TRUE(same(got, want));
  auto delivered = deep_copy(got);
  std::this_thread::sleep_for(2500ms);  // worker 1 wakes and writes its stale shard
  EXPECT_TRUE(same(got, delivered)) << "a stale shard wrote into a delivered result";
  EXPECT_TRUE(same(p.predict(second), want));
}

// ---- defect 5: threads mode gathers checked, like process mode ---------------------------

TEST(ParallelMemory, ShardsWithDifferentOutputSizesAreAnErrorInBothModes) {
  const int64_t width = 64;
  std::string path = nonzero_model(testing::temp_dir("nonzero_gather"), width);
  // Row 0 all non-zero, row 1 one non-zero: the two shards give [2, 64] and [2, 1].
  Tensor x(DataType::kFloat32, {2, width}, "x");
  for (int64_t i = 0; i < width; ++i) {
    x.data<float>()[i] = 1.f;
    x.data<float>()[width + i] = i == 0 ? 1.f : 0.f;
  }
  for (const char* mode : {"threads", "processes"}) {
    ParallelOptions o = options(path, 2);
    o.mode = mode;
    ParallelPredictor p(o);
    p.build();
    for (int k = 0; k < 20; ++k) {
      try {
        p.predict({x});
        ADD_FAILURE() << mode << ": shards of different output widths were gathered";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot be gathered"), std::string::npos)
            << mode << ": " << e.what();
      }
    }
    // And a request of one item (one shard) still works.
    Tensor one(DataType::kFloat32, {1, width}, "x");
    for (int64_t i = 0; i < width; ++i) one.data<float>()[i] = i % 2 ? 1.f : 0.f;
    EXPECT_EQ(p.predict({one})[0].shape(), (Shape{2, width / 2})) << mode;
  }
}

// ---- defect 8: the parent never trusts a worker message ----------------------------------

TEST(ParallelMemory, DecoderRefusesMalformedPackets) {
  parallel::Message m;
  m.type = parallel::MsgType::kReply;
  m.text = "x";
  m.code = ErrorCode::kInvalidArgument;
  std::vector<uint8_t> ok = parallel::encode_message(m);
  EXPECT_EQ(parallel::decode_message(ok.data(), ok.size(), {}).text, "x");
  EXPECT_EQ(parallel::decode_message(ok.data(), ok.size(), {}).code, ErrorCode::kInvalidArgument);
  // Layout at the end: text length (8), text (1), error code (4), descriptor count (4).
  // A text length that wraps `pos + len`.
  std::vector<uint8_t> wrap = ok;
  uint64_t huge = ~uint64_t{0} - 8;
  std::memcpy(wrap.data() + wrap.size() - 17, &huge, 8);
  EXPECT_THROW(parallel::decode_message(wrap.data(), wrap.size(), {}), Error);
  // An error code past the last one.
  std::vector<uint8_t> bad_code = ok;
  const uint32_t code = 99;
  std::memcpy(bad_code.data() + bad_code.size() - 8, &code, 4);
  EXPECT_THROW(parallel::decode_message(bad_code.data(), bad_code.size(), {}), Error);
  // Every truncation.
  for (size_t n = 0; n < ok.size(); ++n)
    EXPECT_THROW(parallel::decode_message(ok.data(), n, {}), Error) << n;
  // A descriptor with a negative dim, one too large, an unknown dtype.
  for (auto [dtype, shape] : std::vector<std::pair<DataType, Shape>>{
           {DataType::kFloat32, {-1}},
           {DataType::kFloat32, {int64_t{1} << 40, int64_t{1} << 40}},
           {static_cast<DataType>(99), {1}}}) {
    parallel::Message bad;
    bad.outputs.push_back({dtype, shape, 0});
    auto bytes = parallel::encode_message(bad);
    EXPECT_THROW(parallel::decode_message(bytes.data(), bytes.size(), {}), Error);
  }
  // A NaN compute time.
  parallel::Message nan;
  nan.compute_ms = std::nan("");
  auto bytes = parallel::encode_message(nan);
  EXPECT_THROW(parallel::decode_message(bytes.data(), bytes.size(), {}), Error);
}

void expect_survives(const std::string& model, const std::string& fault, int64_t batch,
                     const std::vector<Tensor>& in) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(model, ctx);
  auto want = reference.predict(in);
  WorkerFault f("*:" + fault);
  ParallelPredictor p(options(model, 2));
  p.build();
  std::vector<Tensor> got;
  auto start = Clock::now();
  ASSERT_NO_THROW(got = p.predict(in)) << fault;
  // Re-run at once, not after the 120 s deadline of a worker left waiting.
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 10.0) << fault;
  EXPECT_TRUE(same(got, want)) << fault;
  EXPECT_TRUE(same(p.predict(in), want)) << fault;
  (void)batch;
}

TEST(ParallelMemory, MalformedRepliesKillTheWorkerAndTheShardIsRerun) {
  Context ctx;
  ctx.thread_num = 1;
  Model m = Model::build_from_file(kResnet, ctx);
  auto in = random_inputs(m.inputs(), 3, 5);
  for (const char* fault : {"bad-string", "wrong-shard", "shapes-zero-outputs", "shapes-huge",
                            "shapes-wrong-dtype", "truncate"}) {
    SCOPED_TRACE(fault);
    expect_survives(kResnet, fault, 3, in);
  }
}

TEST(ParallelMemory, MalformedOwnBufferRepliesKillTheWorkerAndTheShardIsRerun) {
  const int64_t width = 8;
  std::string path = nonzero_model(testing::temp_dir("nonzero_spill"), width);
  Tensor x(DataType::kFloat32, {1, width}, "x");  // one item: one shard, gathered as is
  for (int64_t i = 0; i < width; ++i) x.data<float>()[i] = i % 3 ? 1.f : 0.f;
  for (const char* fault : {"spill-zero-outputs", "spill-bad-offset", "spill-unsealed"}) {
    SCOPED_TRACE(fault);
    expect_survives(path, fault, 1, {x});
  }
}

// ---- defect 6: workers run the bytes the predictor was built from ------------------------

TEST(ParallelFaults, ReplacedModelFileIsNeverMixedIn) {
  std::string dir = testing::temp_dir("replaced_model");
  std::string path = scale_model(dir, 2.f);
  ParallelOptions o = options(path, 2);
  o.convert_once = false;  // the workers read the file itself: the digest guards it
  ParallelPredictor p(o);
  p.build();
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 4},
                                 std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}, "x");
  auto want = p.predict({x});
  EXPECT_EQ(want[0].data<float>()[7], 16.f);
  // The file is replaced by a model with the same inputs and outputs but other weights, then a
  // worker restarts: it must not serve the new file.
  scale_model(dir, 3.f);
  int victim = p.stats().devices[1].pid;
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  auto until = Clock::now() + 3s;
  int served = 0;
  while (Clock::now() < until) {
    try {
      EXPECT_TRUE(same(p.predict({x}), want)) << "a batch mixed two models";
      ++served;
    } catch (const Error& e) {
      ADD_FAILURE() << "worker 0 still serves the original: " << e.what();
    }
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(served, 10);
  std::string why = p.stats().devices[1].last_error;
  EXPECT_NE(why.find("changed since the predictor was built"), std::string::npos) << why;
}

// A .tandem file's checksum is checked once, by the predictor, and its workers are told to skip
// it (each would read every byte of the weights again). A damaged file fails that check: the
// workers then check it themselves and report it.
TEST(ParallelFaults, TandemChecksumIsCheckedOnceByThePredictor) {
  std::string dir = testing::temp_dir("tandem_checksum_once");
  convert_to_tandem(scale_model(dir, 2.f), dir + "/m.tandem", {});
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 4},
                                 std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}, "x");
  {
    ParallelPredictor p(options(dir + "/m.tandem", 2));
    p.build();
    for (const auto& d : p.stats().devices) {
      std::ifstream f("/proc/" + std::to_string(d.pid) + "/cmdline");
      std::string cmd((std::istreambuf_iterator<char>(f)), {});
      EXPECT_NE(cmd.find("--checksum-verified"), std::string::npos) << d.device;
    }
    EXPECT_EQ(p.predict({x})[0].data<float>()[7], 16.f);
  }
  std::ifstream in(dir + "/m.tandem", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  bytes[bytes.size() - 1] ^= 0x40;  // k's last byte; the header keeps its checksum
  std::ofstream(dir + "/bad.tandem", std::ios::binary) << bytes;
  ParallelPredictor bad(options(dir + "/bad.tandem", 2));
  try {
    bad.build();
    ADD_FAILURE() << "a damaged .tandem file was served";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is corrupt"), std::string::npos) << e.what();
  }
  // verify_checksum = false trusts the file: nobody reads it all, and the flipped bit is served.
  ParallelOptions trusting = options(dir + "/bad.tandem", 2);
  trusting.verify_checksum = false;
  ParallelPredictor unchecked(trusting);
  unchecked.build();
  EXPECT_NE(unchecked.predict({x})[0].data<float>()[7], 16.f);
}

// With convert_once the workers map one sealed memfd the predictor converted the file into: all
// of them map the same bytes, and a restarted worker gets those bytes too, whatever became of the
// file.
TEST(ParallelFaults, ConvertOnceWorkersShareOneSealedCopy) {
  std::string dir = testing::temp_dir("convert_once");
  std::string path = scale_model(dir, 2.f);
  ParallelOptions o = options(path, 2);
  o.convert_once = true;
  ParallelPredictor p(o);
  p.build();
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 4},
                                 std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}, "x");
  auto want = p.predict({x});
  EXPECT_EQ(want[0].data<float>()[7], 16.f);
  auto maps_memfd = [](int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
    std::string maps((std::istreambuf_iterator<char>(f)), {});
    return maps.find("memfd:tandem-converted-model") != std::string::npos;
  };
  for (const auto& d : p.stats().devices) EXPECT_TRUE(maps_memfd(d.pid)) << d.device;
  scale_model(dir, 3.f);
  int victim = p.stats().devices[1].pid;
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  auto until = Clock::now() + 10s;
  while (Clock::now() < until &&
         (p.stats().devices[1].pid == victim || p.stats().devices[1].state != "up"))
    std::this_thread::sleep_for(50ms);
  ASSERT_EQ(p.stats().devices[1].state, "up") << p.stats().devices[1].last_error;
  EXPECT_TRUE(maps_memfd(p.stats().devices[1].pid));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(same(p.predict({x}), want)) << "a batch mixed two models";
  // finalize() lets go of the memfd.
  auto holds_memfd = [] {
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      if (std::filesystem::read_symlink(e.path(), ec).string().find("tandem-converted-model") !=
          std::string::npos)
        return true;
    }
    return false;
  };
  EXPECT_TRUE(holds_memfd());
  p.finalize();
  EXPECT_FALSE(holds_memfd());
}

// ---- defect 7: workers outlive the thread that built them --------------------------------

TEST(ParallelLifecycle, BuiltInAShortLivedThreadKeepsItsWorkers) {
  ParallelPredictor p(options(kResnet, 2));
  std::thread builder([&] { p.build(); });
  builder.join();
  std::vector<int> pids;
  for (auto& d : p.stats().devices) pids.push_back(d.pid);
  std::this_thread::sleep_for(500ms);  // PR_SET_PDEATHSIG would have fired by now
  auto in = random_inputs(p.inputs(), 4, 3);
  EXPECT_NO_THROW(p.predict(in));
  auto st = p.stats();
  for (size_t i = 0; i < st.devices.size(); ++i) {
    EXPECT_EQ(st.devices[i].restarts, 0) << st.devices[i].last_error;
    EXPECT_EQ(st.devices[i].pid, pids[i]);
  }
}

// ---- defect 10 (C++ side): a second build() is a no-op -----------------------------------

TEST(ParallelLifecycle, SecondBuildIsANoOp) {
  for (const char* mode : {"processes", "threads"}) {
    ParallelOptions o = options(kResnet, 1);
    o.mode = mode;
    ParallelPredictor p(o);
    p.build();
    EXPECT_NO_THROW(p.build()) << mode;
    EXPECT_NO_THROW(p.predict(random_inputs(p.inputs(), 2, 1))) << mode;
    p.finalize();
    EXPECT_THROW(p.build(), Error) << mode;
  }
}

// ---- defect 9: a fault policy that lasts -------------------------------------------------

// Waits until every device serves again.
void wait_all_up(ParallelPredictor& p, std::chrono::milliseconds limit = 20s) {
  auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    bool up = true;
    for (auto& d : p.stats().devices) up = up && d.state == "up" && d.pid > 0;
    if (up) return;
    std::this_thread::sleep_for(20ms);
  }
  FAIL() << "devices did not come back";
}

TEST(ParallelFaults, TwelveKillsWithDefaultOptionsStillServing) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(kResnet, ctx);
  auto in = random_inputs(reference.inputs(), 3, 12);
  auto want = reference.predict(in);
  ParallelPredictor p(options(kResnet, 2));  // default fault policy
  p.build();
  for (int k = 0; k < 12; ++k) {
    wait_all_up(p);
    int victim = p.stats().devices[k % 2].pid;
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    std::vector<Tensor> got;
    ASSERT_NO_THROW(got = p.predict(in)) << "after kill " << k + 1;
    EXPECT_TRUE(same(got, want));
    // The death seen (the pid changes) before the next kill, so no kill hits a zombie.
    auto until = Clock::now() + 5s;
    while (p.stats().devices[k % 2].pid == victim && Clock::now() < until)
      std::this_thread::sleep_for(5ms);
  }
  wait_all_up(p);
  auto st = p.stats();
  EXPECT_EQ(st.devices[0].restarts + st.devices[1].restarts, 12);
  EXPECT_EQ(st.failed_requests, 0);
}

TEST(ParallelFaults, DeviceMarkedDownIsProbedAndRejoins) {
  ParallelOptions o = options(kResnet, 2);
  o.max_restarts = 1;
  o.restart_backoff = 10ms;
  o.probe_interval = 500ms;
  ParallelPredictor p(o);
  p.build();
  auto in = random_inputs(p.inputs(), 2, 8);
  int first = p.stats().devices[1].pid;
  ASSERT_EQ(::kill(first, SIGKILL), 0);  // restart 1: allowed
  auto seen = Clock::now() + 5s;
  while (p.stats().devices[1].pid == first && Clock::now() < seen) std::this_thread::sleep_for(5ms);
  wait_all_up(p);
  ASSERT_EQ(::kill(p.stats().devices[1].pid, SIGKILL), 0);  // beyond the limit: down
  auto until = Clock::now() + 2s;
  DeviceStats d;
  while (Clock::now() < until) {
    d = p.stats().devices[1];
    if (d.state == "down") break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(d.state, "down");
  EXPECT_FALSE(d.up);
  EXPECT_GE(d.next_start_s, 0.0);
  EXPECT_NO_THROW(p.predict(in));  // the other device serves meanwhile
  wait_all_up(p, 5s);              // the probe rebuilt it
  EXPECT_TRUE(p.stats().devices[1].up);
  EXPECT_NO_THROW(p.predict(in));
}

TEST(ParallelFaults, StoppedWorkerIsHungLongBeforeTheDefaultDeadline) {
  Context ctx;
  ctx.thread_num = 1;
  Model reference = Model::build_from_file(kResnet, ctx);
  auto in = random_inputs(reference.inputs(), 2, 9);
  auto want = reference.predict(in);
  ParallelPredictor p(options(kResnet, 2));  // default 120 s deadline
  p.build();
  p.predict(in);
  int victim = p.stats().devices[1].pid;
  ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  auto start = Clock::now();
  auto got = p.predict(in);
  double waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(same(got, want));
  EXPECT_LE(waited, 15.0);  // about 1.2 s here; the point is: not the 120 s deadline
  EXPECT_GE(p.stats().shards_rerun, 1);
  EXPECT_TRUE(same(p.predict(in), want));
}

}  // namespace
}  // namespace tandem

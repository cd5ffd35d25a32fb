// The CPU backend's RNN, GRU and LSTM against the reference kernels: a table over cells,
// directions, batch sizes, sequence lengths and hidden sizes, with the optional inputs (B,
// sequence_lens, initial_h/initial_c, P), linear_before_reset and every subset of the outputs
// varied across the cases; then the attributes that change the formulas (clip, input_forget,
// layout 1, custom activations), weights that are not constants, threads, and what the fast
// path must decline or hand over. Compared with max |cpu - ref| <= 1e-5 * (1 + max |ref|), per
// output, with the outputs NaN-filled first so an entry left unwritten fails. Each case also
// asserts the fast kernel really ran (no hand-over to the reference). The tables run at each of
// simd.h's levels (AVX-512, AVX2, SSE2; those the CPU has).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/simd.h"
#include "fast_vs_ref.h"
#include "ir/ir.h"
#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_floats;
using testing::attr_int;
using testing::attr_string;
using testing::Expect;
using testing::expect_fast_matches_ref;
using testing::max_abs;
using testing::max_abs_diff;
using testing::OpTest;
using testing::random_tensor;
using testing::Tolerance;

struct RnnCase {
  std::string name;
  std::string op;  // RNN, GRU, LSTM
  std::string direction = "forward";
  int64_t batch = 1, seq = 1, hidden = 1, input = 3;
  bool bias = false, init_h = false, init_c = false, peepholes = false, lens = false;
  bool linear_before_reset = false;
  std::array<bool, 3> outputs = {true, true, true};  // Y, Y_h, Y_c (those the op has)
  int64_t layout = 0;
  float clip = 0;
  bool input_forget = false;
  std::vector<std::string> activations;
  std::vector<float> alpha, beta;
  bool constant_weights = true;
  int threads = 1;
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

int64_t gates(const std::string& op) {
  return op == "LSTM" ? 4 : op == "GRU" ? 3 : 1;
}

// The node's inputs (X, W, R, B, sequence_lens, initial_h[, initial_c, P]); absent ones are
// undefined tensors.
std::vector<Tensor> make_inputs(const RnnCase& c, uint32_t seed) {
  const int64_t dirs = c.direction == "bidirectional" ? 2 : 1, g = gates(c.op), H = c.hidden;
  const Shape x = c.layout == 0 ? Shape{c.seq, c.batch, c.input} : Shape{c.batch, c.seq, c.input};
  const Shape state = c.layout == 0 ? Shape{dirs, c.batch, H} : Shape{c.batch, dirs, H};
  // Weights scaled so the pre-activations stay mostly out of saturation.
  std::vector<Tensor> in = {
      random_tensor(c.dtype, x, seed, 1.0f),
      random_tensor(c.dtype, {dirs, g * H, c.input}, seed + 1, 1.5f / std::sqrt(float(c.input))),
      random_tensor(c.dtype, {dirs, g * H, H}, seed + 2, 1.5f / std::sqrt(float(H))),
      c.bias ? random_tensor(c.dtype, {dirs, 2 * g * H}, seed + 3, 0.5f) : Tensor(),
      Tensor(),
      c.init_h ? random_tensor(c.dtype, state, seed + 4, 1.0f) : Tensor()};
  if (c.lens) {
    // Ragged: the first row runs all steps, the others fewer (one none at all).
    std::vector<int32_t> lens(static_cast<size_t>(c.batch));
    for (int64_t b = 0; b < c.batch; ++b) {
      lens[static_cast<size_t>(b)] = static_cast<int32_t>(c.batch == 1 ? c.seq - 1
                                                          : b == 0     ? c.seq
                                                          : b == 1     ? (c.seq + 1) / 2
                                                          : b % 3 == 2 ? 0
                                                                       : 1);
    }
    in[4] = Tensor::from_vector(DataType::kInt32, {c.batch}, lens);
  }
  if (c.op == "LSTM") {
    in.push_back(c.init_c ? random_tensor(c.dtype, state, seed + 5, 1.0f) : Tensor());
    in.push_back(c.peepholes ? random_tensor(c.dtype, {dirs, 3 * H}, seed + 6, 0.5f) : Tensor());
  }
  while (!in.empty() && !in.back().defined()) in.pop_back();
  return in;
}

std::map<std::string, Attribute> make_attrs(const RnnCase& c) {
  std::map<std::string, Attribute> a{{"hidden_size", attr_int(c.hidden)},
                                     {"direction", attr_string(c.direction)}};
  if (c.op == "GRU") a["linear_before_reset"] = attr_int(c.linear_before_reset);
  if (c.layout) a["layout"] = attr_int(c.layout);
  if (c.clip > 0) a["clip"] = attr_float(c.clip);
  if (c.input_forget) a["input_forget"] = attr_int(1);
  if (!c.activations.empty()) a["activations"] = testing::attr_strings(c.activations);
  if (!c.alpha.empty()) a["activation_alpha"] = attr_floats(c.alpha);
  if (!c.beta.empty()) a["activation_beta"] = attr_floats(c.beta);
  return a;
}

// The case as an OpTest: W, R, B and P are initializers unless the case says otherwise, and
// the outputs c.outputs does not ask for are omitted from the node.
OpTest op_test(const RnnCase& c, const std::vector<Tensor>& in) {
  OpTest t = OpTest(c.op).opset(14).attrs(make_attrs(c)).inputs(in).threads(c.threads);
  if (c.constant_weights)
    for (size_t i : {1, 2, 3, 7})
      if (i < in.size() && in[i].defined()) t.constant(i);
  const size_t num_out = c.op == "LSTM" ? 3 : 2;
  size_t last = 0;
  for (size_t i = 0; i < num_out; ++i)
    if (c.outputs[i]) last = i + 1;
  t.outputs(static_cast<int>(last));
  for (size_t i = 0; i < last; ++i)
    if (!c.outputs[i]) t.omit_output(i);
  return t;
}

// The fast kernel against the reference one, compute called twice on NaN-filled outputs; it
// must really run (no call handed to the reference kernel) unless the case expects a decline.
void check(const RnnCase& c, uint32_t seed) {
  SCOPED_TRACE(c.name);
  expect_fast_matches_ref(op_test(c, make_inputs(c, seed)), cpu_backend(), Tolerance::scaled(1e-5),
                          Expect::takes_or_declines(!c.expect_declined));
}

// Every (cell, direction, batch, seq, hidden); the options vary with the case's index so that
// each appears with each cell and direction, in many combinations.
void table_cases() {
  int index = 0;
  for (std::string op : {"RNN", "GRU", "LSTM"}) {
    for (std::string dir : {"forward", "reverse", "bidirectional"}) {
      for (int64_t batch : {1, 3}) {
        for (int64_t seq : {1, 7}) {
          for (int64_t hidden : {1, 5, 64}) {
            const uint32_t bits = static_cast<uint32_t>(index) * 2654435761u >> 7;
            RnnCase c;
            c.op = op;
            c.direction = dir;
            c.batch = batch;
            c.seq = seq;
            c.hidden = hidden;
            c.input = hidden == 64 ? 40 : 3 + index % 5;
            c.bias = bits & 1;
            c.init_h = bits & 2;
            c.init_c = bits & 4;
            c.peepholes = bits & 8;
            c.lens = bits & 16;
            c.linear_before_reset = bits & 32;
            c.constant_weights = !(bits & 64);
            const int mask = 1 + index % 7;  // a nonempty subset of Y, Y_h, Y_c
            c.outputs = {bool(mask & 1), bool(mask & 2), bool(mask & 4)};
            if (op != "LSTM" && !c.outputs[0] && !c.outputs[1]) c.outputs[0] = true;
            c.name = op + " " + dir + " batch " + std::to_string(batch) + " seq " +
                     std::to_string(seq) + " hidden " + std::to_string(hidden) + " options " +
                     std::to_string(bits & 127) + " outputs " + std::to_string(mask);
            check(c, static_cast<uint32_t>(100 + 10 * index));
            ++index;
          }
        }
      }
    }
  }
}

// Each option alone on a case big enough to show it (bidirectional, ragged batch).
void option_cases() {
  auto base = [](std::string op, std::string name) {
    RnnCase c;
    c.name = op + " " + name;
    c.op = op;
    c.direction = "bidirectional";
    c.batch = 3;
    c.seq = 6;
    c.hidden = 12;
    c.input = 7;
    c.bias = c.init_h = c.init_c = c.lens = true;
    return c;
  };
  std::vector<RnnCase> cases;
  for (std::string op : {"RNN", "GRU", "LSTM"}) {
    cases.push_back(base(op, "all inputs"));
    RnnCase c = base(op, "clip 0.4");
    c.clip = 0.4f;
    c.peepholes = true;
    cases.push_back(c);
    c = base(op, "layout 1");
    c.layout = 1;
    c.peepholes = true;
    cases.push_back(c);
    c = base(op, "layout 1 no lens");
    c.layout = 1;
    c.lens = false;
    cases.push_back(c);
    c = base(op, "weights not constant");
    c.constant_weights = false;
    c.peepholes = true;
    cases.push_back(c);
    for (int threads : {2, 3}) {  // big enough for the parallel paths
      c = base(op, "threads " + std::to_string(threads));
      c.batch = 9;
      c.seq = 20;
      c.hidden = 64;
      c.input = 48;
      c.threads = threads;
      c.peepholes = true;
      c.linear_before_reset = threads == 2;
      cases.push_back(c);
    }
    c = base(op, "forward threads 2 batch 1");
    c.direction = "forward";
    c.batch = 1;
    c.seq = 40;
    c.hidden = 64;
    c.input = 64;
    c.threads = 2;
    cases.push_back(c);
  }
  RnnCase c = base("LSTM", "input_forget with peepholes");
  c.input_forget = true;
  c.peepholes = true;
  cases.push_back(c);
  c = base("GRU", "linear_before_reset clip");
  c.linear_before_reset = true;
  c.clip = 0.3f;
  cases.push_back(c);
  c = base("GRU", "hidden 8 exactly (no padding)");
  c.hidden = 8;
  cases.push_back(c);
  c = base("LSTM", "hidden 17, input 1");
  c.hidden = 17;
  c.input = 1;
  c.peepholes = true;
  cases.push_back(c);
  // Other activations: vectorized relu and the scalar formulas, alpha/beta consumed in order.
  c = base("RNN", "Relu / LeakyRelu");
  c.activations = {"Relu", "LeakyRelu"};
  c.alpha = {0.1f};
  cases.push_back(c);
  c = base("GRU", "HardSigmoid, Softsign / Affine, ScaledTanh");
  c.activations = {"HardSigmoid", "Softsign", "Affine", "ScaledTanh"};
  c.alpha = {0.3f, 0.7f, 1.2f};
  c.beta = {0.4f, 0.1f, 0.8f};
  cases.push_back(c);
  c = base("LSTM", "Elu, Softplus, ThresholdedRelu / sigmoid, Tanh, RELU");
  c.activations = {"Elu", "Softplus", "ThresholdedRelu", "sigmoid", "Tanh", "RELU"};
  c.alpha = {0.9f, 0.2f};
  c.peepholes = true;
  cases.push_back(c);
  // Declined: float64 goes to the reference backend.
  c = base("LSTM", "float64");
  c.dtype = DataType::kFloat64;
  c.expect_declined = true;
  cases.push_back(c);
  uint32_t seed = 5000;
  for (const RnnCase& rc : cases) check(rc, seed += 10);
}

// Every vector width the CPU has, from the widest allowed (simd.h's level, under any
// TANDEM_SIMD_LEVEL cap) down to 0: 2 AVX-512, 1 AVX2 + FMA, 0 SSE2.
void at_each_level(void (*cases)()) {
  const int top = cpu::simd::level();
  for (int level = top; level >= 0; --level) {
    cpu::simd::cap_level(level);
    SCOPED_TRACE("simd level " + std::to_string(level));
    cases();
  }
  cpu::simd::cap_level(top);
}

TANDEM_FAST_TABLE_TEST(CpuRecurrent, Table, {"RNN", "GRU", "LSTM"}) {
  at_each_level(table_cases);
}

TANDEM_FAST_TABLE_TEST(CpuRecurrent, Options, {"RNN", "GRU", "LSTM"}) {
  at_each_level(option_cases);
}

// A kernel made at one level and run at another repacks its weights for the new width.
TEST(CpuRecurrent, LevelChangesBetweenCalls) {
  RnnCase c;
  c.name = "LSTM across levels";
  c.op = "LSTM";
  c.direction = "bidirectional";
  c.batch = 3;
  c.seq = 5;
  c.hidden = 20;
  c.input = 6;
  c.bias = c.peepholes = true;
  const std::vector<Tensor> in = make_inputs(c, 77);
  const OpTest t = op_test(c, in);
  const std::vector<Tensor> ref = t.run_ref();
  const testing::PreparedOp k = t.prepare(cpu_backend());
  ASSERT_EQ(k.backend(), "cpu");
  const int top = cpu::simd::level();
  for (int level : {2, 0, 1, 2}) {
    cpu::simd::cap_level(std::min(level, top));
    SCOPED_TRACE("simd level " + std::to_string(cpu::simd::level()));
    const std::vector<Tensor> outs = k.compute(in);
    ASSERT_EQ(outs.size(), ref.size());
    for (size_t i = 0; i < outs.size(); ++i) {
      EXPECT_LE(max_abs_diff(outs[i], ref[i]), 1e-5 * (1 + max_abs(ref[i]))) << "output " << i;
    }
  }
  cpu::simd::cap_level(top);
}

// A sequence length outside [0, seq] is reported (by the reference kernel the fast one hands it
// to), not read past the end of X.
TEST(CpuRecurrent, BadSequenceLength) {
  RnnCase c;
  c.op = "GRU";
  c.batch = 2;
  c.seq = 3;
  c.hidden = 4;
  std::vector<Tensor> in = make_inputs(c, 1);
  in.resize(5);
  in[4] = Tensor::from_vector(DataType::kInt32, {2}, std::vector<int32_t>{3, 4});
  const int64_t before = cpu::reference_fallbacks();
  EXPECT_THROW(op_test(c, in).run(cpu_backend()), Error);
  EXPECT_EQ(cpu::reference_fallbacks() - before, 1);
}

}  // namespace
}  // namespace tandem

// The checks every worker reply passes before the parent acts on it (worker_replies.h): a
// malformed or lying reply is a ProtocolViolation that names what was wrong, never a crash.
#include "parallel/worker_replies.h"

#include <gtest/gtest.h>

namespace tandem::parallel {
namespace {

// Runs `f`, expects a ProtocolViolation whose message contains `needle`.
template <typename F>
void expect_violation(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected a violation mentioning '" << needle << "'";
  } catch (const ProtocolViolation& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

const char* kGood =
    R"({"pid": 7, "inputs": [{"name": "x", "dtype": 1, "shape": [-1, 4], "dim_names": ["b", ""]}],
        "outputs": [{"name": "y", "dtype": 7, "shape": [-1], "dim_names": ["b"]}]})";

TEST(WorkerReplies, BuildFinishIsDescribedWithoutThePid) {
  nlohmann::json d = build_description(kGood);
  EXPECT_FALSE(d.contains("pid"));
  auto in = tensor_infos(d.at("inputs"), "inputs");
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].dtype, DataType::kFloat32);
  EXPECT_EQ(in[0].shape, (Shape{-1, 4}));
}

TEST(WorkerReplies, MalformedBuildFinishIsAViolation) {
  expect_violation([] { build_description("{not json"); }, "malformed BUILD_FINISH");
  expect_violation([] { build_description(R"({"inputs": []})"); }, "lacks inputs or outputs");
  expect_violation([] { build_description(R"({"inputs": 3, "outputs": []})"); },
                   "inputs is not a list");
  expect_violation([] { build_description(R"({"inputs": [{"name": "x"}], "outputs": []})"); },
                   "inputs[0]");
  // A dtype that is no tensor's (it used to be cast unchecked), a string, a dim below -1, names
  // that do not match the rank.
  for (const char* bad : {R"("dtype": 999, "shape": [1], "dim_names": [""])",
                          R"("dtype": 8, "shape": [1], "dim_names": [""])"})
    expect_violation(
        [&] {
          build_description(std::string(R"({"outputs": [], "inputs": [{"name": "x", )") + bad +
                            "}]}");
        },
        "not a tensor's");
  expect_violation(
      [] {
        build_description(
            R"({"outputs": [], "inputs": [{"name": "x", "dtype": 1, "shape": [-5], "dim_names": [""]}]})");
      },
      "has dim -5");
  expect_violation(
      [] {
        build_description(
            R"({"outputs": [], "inputs": [{"name": "x", "dtype": 1, "shape": [1, 2], "dim_names": [""]}]})");
      },
      "rank 2 and 1 dim names");
}

std::vector<TensorInfo> outputs() {
  return {{"y", DataType::kFloat32, {-1, 4}, {"b", ""}}, {"n", DataType::kInt64, {}, {}}};
}

TEST(WorkerReplies, ShapesReplyMustMatchTheDeclaredOutputs) {
  Message m;
  m.type = MsgType::kReply;
  m.outputs = {{DataType::kFloat32, {3, 4}, 0}, {DataType::kInt64, {9, 9, 9}, 0}};
  EXPECT_NO_THROW(check_shapes_reply(m, outputs()));  // an undeclared rank may be anything
  m.outputs[0].shape = {3, 5};
  expect_violation([&] { check_shapes_reply(m, outputs()); }, "output 'y' reported as [3,5]");
  m.outputs[0] = {DataType::kFloat32, {3}, 0};
  expect_violation([&] { check_shapes_reply(m, outputs()); }, "rank 1");
  m.outputs[0] = {DataType::kInt32, {3, 4}, 0};
  expect_violation([&] { check_shapes_reply(m, outputs()); }, "reported as int32");
  m.outputs.pop_back();
  expect_violation([&] { check_shapes_reply(m, outputs()); }, "lists 1 outputs, the model has 2");
  Message dyn;
  dyn.text = kDynamicOutputs;
  EXPECT_NO_THROW(check_shapes_reply(dyn, outputs()));
  dyn.outputs = {{DataType::kFloat32, {1, 4}, 0}};
  expect_violation([&] { check_shapes_reply(dyn, outputs()); }, "dynamic-outputs");
}

TEST(WorkerReplies, SpilledOutputsMustLieInsideTheirBuffer) {
  Message m;
  m.outputs = {{DataType::kFloat32, {2, 4}, 0}, {DataType::kInt64, {2}, 32}};
  EXPECT_NO_THROW(check_spilled_reply(m, outputs(), 48));
  expect_violation([&] { check_spilled_reply(m, outputs(), 47); }, "overruns the 47-byte buffer");
  // An offset near 2^64 must not wrap the bounds check.
  m.outputs[1].offset = ~uint64_t{0} - 4;
  expect_violation([&] { check_spilled_reply(m, outputs(), 48); }, "output 'n' at offset");
  m.outputs[1] = {DataType::kFloat32, {2}, 32};
  expect_violation([&] { check_spilled_reply(m, outputs(), 48); }, "returned as float32");
}

}  // namespace
}  // namespace tandem::parallel

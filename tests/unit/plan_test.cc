// The planner's phases (runtime/plan.h), each on its own: a small model is loaded and planned up
// to the phase under test, and that phase's result is checked.
#include "runtime/plan.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "backends/cpu/cpu_backend.h"
#include "backends/ref/ref_backend.h"
#include "onnx/loader.h"
#include "onnx_builder.h"

namespace tandem {
namespace {

using testing::OnnxBuilder;

// A model planned phase by phase. Kernels come from `backends` in order, as in a session.
struct Planned {
  std::unique_ptr<Graph> graph;
  std::map<const Node*, std::unique_ptr<Kernel>> kernels;
  Plan plan;

  Planned(OnnxBuilder& b, const std::vector<TensorType>& inputs, int phases,
          std::vector<const Backend*> backends = {&reference_backend()}) {
    std::string bytes;
    b.proto().SerializeToString(&bytes);
    graph = load_onnx_model_from_bytes(bytes.data(), bytes.size());
    for (auto& n : graph->nodes())
      for (const Backend* be : backends)
        if (const KernelFactory* f = be->kernels().find(n->domain, n->op_type))
          if ((kernels[n.get()] = (*f)(*n))) break;
    plan_steps(plan, *graph, inputs, [&](const Node& n) {
      return StepKernel{kernels.at(&n).get(), true};
    });
    if (phases >= 2) plan_lifetimes(plan, *graph);
    if (phases >= 3) plan_aliases(plan);
    if (phases >= 4) plan_arena(plan);
    if (phases >= 5) bind_plan(plan);
  }
  const Plan::Slot& slot(const std::string& value) const {
    return plan.slots.at(plan.slot_of.at(graph->find_value(value)));
  }
  int slot_index(const std::string& value) const {
    return plan.slot_of.at(graph->find_value(value));
  }
  std::vector<std::string> step_ops() const {
    std::vector<std::string> ops;
    for (const Plan::Step& s : plan.steps) ops.push_back(s.node->op_type);
    return ops;
  }
};

const TensorType kX{DataType::kFloat32, {2, 6}};

// A chain of unary ops x -> a -> b -> ... -> out.
OnnxBuilder chain(const std::vector<std::string>& ops) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 6});
  std::string prev = "x";
  for (size_t i = 0; i < ops.size(); ++i) {
    std::string next = i + 1 == ops.size() ? "out" : std::string(1, static_cast<char>('a' + i));
    b.node(ops[i], {prev}, {next});
    prev = next;
  }
  b.output("out", DataType::kFloat32, {2, 6});
  return b;
}

TEST(PlanPhases, StepsInferShapesFoldConstantsAndMarkDynamicSteps) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 6});
  b.node("Shape", {"x"}, {"s"});         // folds: only the shape is read
  b.node("Reshape", {"x", "s"}, {"r"});  // stays, with a known type
  b.node("NonZero", {"r"}, {"nz"});      // output shape depends on the data
  b.node("Transpose", {"nz"}, {"out"});  // so this one is dynamic too
  b.output("out", DataType::kInt64, {-1, 2});
  Planned p(b, {kX}, 1);
  EXPECT_EQ(p.step_ops(), (std::vector<std::string>{"Reshape", "NonZero", "Transpose"}));
  ASSERT_TRUE(p.slot("s").constant.has_value());
  EXPECT_EQ(p.slot("s").constant->shape(), (Shape{2}));
  EXPECT_EQ(p.slot("s").constant->data<int64_t>()[0], 2);
  EXPECT_TRUE(p.slot("r").static_shape);
  EXPECT_EQ(p.slot("r").type.shape, (Shape{2, 6}));
  EXPECT_FALSE(p.plan.steps[0].dynamic);
  EXPECT_TRUE(p.plan.steps[1].dynamic);  // its output's shape needs its input's values
  EXPECT_TRUE(p.plan.steps[2].dynamic);
  EXPECT_FALSE(p.slot("nz").static_shape);
}

TEST(PlanPhases, LifetimesRecordWriterLastReaderAndOutputs) {
  OnnxBuilder b = chain({"Relu", "Neg", "Abs"});  // x -> a -> b -> out
  Planned p(b, {kX}, 2);
  EXPECT_EQ(p.slot("x").def_step, -1);
  EXPECT_EQ(p.slot("x").last_use, 0);
  EXPECT_EQ(p.slot("a").def_step, 0);
  EXPECT_EQ(p.slot("a").last_use, 1);
  EXPECT_EQ(p.slot("b").live_until, 2);
  EXPECT_TRUE(p.slot("out").is_graph_output);
  EXPECT_FALSE(p.slot("b").is_graph_output);
  EXPECT_EQ(p.plan.output_slots, (std::vector<int>{p.slot_index("out")}));
}

TEST(PlanPhases, AliasesMakeViewsOfReshapeLikeSteps) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 6});
  b.initializer("shape", Tensor::from_vector(DataType::kInt64, {2}, std::vector<int64_t>{3, 4}));
  b.node("Relu", {"x"}, {"a"});
  b.node("Reshape", {"a", "shape"}, {"v"});
  b.node("Neg", {"v"}, {"out"});
  b.output("out", DataType::kFloat32, {3, 4});
  Planned p(b, {kX}, 3);
  EXPECT_TRUE(p.plan.steps[1].view);
  EXPECT_EQ(p.slot("v").alias_of, p.slot_index("a"));
  // The root lives as long as its view is read.
  EXPECT_EQ(p.slot("a").live_until, 2);
}

TEST(PlanPhases, AliasesWriteInPlaceOnlyOverBytesNobodyReadsLater) {
  // The CPU backend's Relu can write over its input.
  std::vector<const Backend*> cpu = {&cpu_backend(), &reference_backend()};
  {
    OnnxBuilder b = chain({"Relu", "Relu", "Neg"});  // a = relu(x); b = relu(a); out = -b
    Planned p(b, {kX}, 3, cpu);
    EXPECT_FALSE(p.plan.steps[0].in_place);  // x is a graph input, not arena bytes
    EXPECT_TRUE(p.plan.steps[1].in_place);
    EXPECT_EQ(p.slot("b").alias_of, p.slot_index("a"));
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {2, 6});
    b.node("Neg", {"x"}, {"a"});
    b.node("Relu", {"a"}, {"r"});
    b.node("Add", {"a", "r"}, {"out"});  // a is read after the Relu
    b.output("out", DataType::kFloat32, {2, 6});
    Planned p(b, {kX}, 3, cpu);
    EXPECT_FALSE(p.plan.steps[1].in_place);
    EXPECT_EQ(p.slot("r").alias_of, -1);
  }
}

TEST(PlanPhases, ArenaSharesBytesBetweenLifetimesThatDoNotOverlap) {
  // a, b, c, d live in steps 0-1, 1-2, 2-3, 3-4: two buffers are enough.
  OnnxBuilder b = chain({"Neg", "Abs", "Neg", "Abs", "Neg"});
  Planned p(b, {kX}, 4);
  const size_t bytes = 2 * 6 * sizeof(float);
  for (const char* v : {"a", "b", "c", "d"}) EXPECT_TRUE(p.slot(v).in_arena) << v;
  EXPECT_FALSE(p.slot("out").in_arena);  // graph outputs belong to the caller
  EXPECT_EQ(p.plan.unplanned_bytes, 4 * bytes);
  EXPECT_LE(p.plan.arena_bytes, 2 * 64);  // two 64-byte aligned buffers
  EXPECT_NE(p.slot("a").offset, p.slot("b").offset);
  EXPECT_NE(p.slot("b").offset, p.slot("c").offset);
  ASSERT_NE(p.plan.arena, nullptr);
}

TEST(PlanPhases, BindingGivesConstantsArenaViewsAndReleases) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 6});
  b.initializer("w", Tensor::from_vector(DataType::kFloat32, {6}, std::vector<float>(6, 2.f)));
  b.node("Mul", {"x", "w"}, {"m"});
  b.node("NonZero", {"m"}, {"nz"});  // dynamic: allocated at run time
  b.node("Transpose", {"nz"}, {"t"});
  b.node("Shape", {"t"}, {"out"});
  b.output("out", DataType::kInt64, {2});
  Planned p(b, {kX}, 5);
  const int w = p.slot_index("w"), m = p.slot_index("m"), nz = p.slot_index("nz");
  ASSERT_NE(p.plan.bound_ptr[w], nullptr);
  EXPECT_EQ(p.plan.bound_ptr[w]->data<float>()[0], 2.f);
  ASSERT_TRUE(p.slot("m").in_arena);
  EXPECT_EQ(p.plan.bound[m].raw(), p.plan.arena.get() + p.slot("m").offset);
  EXPECT_EQ(p.plan.bound_ptr[m], nullptr);  // computed each run, not a constant
  // nz is allocated at run time and released by its last reader, the Transpose (step 2).
  EXPECT_EQ(p.plan.steps[2].release, (std::vector<int>{nz}));
  EXPECT_TRUE(p.plan.steps[1].release.empty());  // m lives in the arena
  for (const Plan::Step& s : p.plan.steps) {
    EXPECT_EQ(s.in_ptrs.size(), s.in.size());
    EXPECT_EQ(s.out_ptrs.size(), s.out.size());
  }
}

}  // namespace
}  // namespace tandem

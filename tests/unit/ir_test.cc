// The graph IR: wiring, rewiring, topological order, passes that need no shapes.
#include <gtest/gtest.h>

#include "ir/ir.h"
#include "optimizer/passes.h"
#include "tandem/status.h"

namespace tandem {
namespace {

TEST(Graph, AddNodeWiresProducersAndConsumers) {
  Graph g;
  Value* x = g.add_value("x");
  Value* y = g.add_value("y");
  Node* n = g.add_node("Relu", "r", {x}, {y});
  EXPECT_EQ(y->producer, n);
  ASSERT_EQ(x->consumers.size(), 1u);
  EXPECT_EQ(x->consumers[0], n);
}

TEST(Graph, DuplicateValueNamesAreMadeUnique) {
  Graph g;
  Value* a = g.add_value("t");
  Value* b = g.add_value("t");
  EXPECT_NE(a->name, b->name);
  EXPECT_EQ(g.find_value("t"), a);
  EXPECT_EQ(g.find_value(b->name), b);
}

TEST(Graph, TopologicalSortOrdersOutOfOrderNodes) {
  Graph g;
  Value* x = g.add_value("x");
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  g.add_node("Relu", "second", {a}, {b});
  g.add_node("Relu", "first", {x}, {a});
  g.topological_sort();
  EXPECT_EQ(g.nodes()[0]->name, "first");
  EXPECT_EQ(g.nodes()[1]->name, "second");
}

TEST(Graph, TopologicalSortRejectsCycles) {
  Graph g;
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  g.add_node("Relu", "n1", {a}, {b});
  g.add_node("Relu", "n2", {b}, {a});
  EXPECT_THROW(g.topological_sort(), Error);
}

TEST(Graph, ReplaceAllUsesMovesConsumersAndGraphOutputs) {
  Graph g;
  Value* x = g.add_value("x");
  Value* y = g.add_value("y");
  Value* z = g.add_value("z");
  Node* c = g.add_node("Relu", "c", {y}, {z});
  g.outputs = {y, z};
  y->is_graph_output = true;
  g.replace_all_uses(y, x);
  EXPECT_EQ(c->inputs[0], x);
  EXPECT_EQ(g.outputs[0], x);
  EXPECT_TRUE(y->consumers.empty());
}

TEST(Passes, IdentityIsRemovedButKeptWhenItNamesAGraphOutput) {
  Graph g;
  Value* x = g.add_value("x");
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  Value* y = g.add_value("y");
  g.inputs = {x};
  x->is_graph_input = true;
  g.add_node("Identity", "id1", {x}, {a});
  g.add_node("Relu", "relu", {a}, {b});
  g.add_node("Identity", "id2", {b}, {y});
  g.outputs = {y};
  y->is_graph_output = true;
  EXPECT_EQ(remove_identity_nodes(g), 1);
  ASSERT_EQ(g.nodes().size(), 2u);
  EXPECT_EQ(g.nodes()[0]->op_type, "Relu");
  EXPECT_EQ(g.nodes()[0]->inputs[0], x);
  EXPECT_EQ(g.nodes()[1]->op_type, "Identity");
}

TEST(Passes, DeadNodesAreRemoved) {
  Graph g;
  Value* x = g.add_value("x");
  Value* a = g.add_value("a");
  Value* unused = g.add_value("unused");
  Value* unused2 = g.add_value("unused2");
  g.inputs = {x};
  g.add_node("Relu", "live", {x}, {a});
  g.add_node("Relu", "dead1", {x}, {unused});
  g.add_node("Relu", "dead2", {unused}, {unused2});
  g.outputs = {a};
  a->is_graph_output = true;
  EXPECT_EQ(remove_dead_nodes(g), 2);
  ASSERT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(g.nodes()[0]->name, "live");
  EXPECT_EQ(g.find_value("unused"), nullptr);
}

TEST(Passes, ConstantsFoldThroughReferenceKernels) {
  Graph g;
  Value* c1 = g.add_value("c1");
  c1->constant = Tensor::from_vector(DataType::kFloat32, {2}, std::vector<float>{1.5f, -2.f});
  c1->dtype = DataType::kFloat32;
  Value* c2 = g.add_value("c2");
  c2->constant = Tensor::from_vector(DataType::kFloat32, {2}, std::vector<float>{0.5f, 4.f});
  c2->dtype = DataType::kFloat32;
  Value* sum = g.add_value("sum");
  Value* x = g.add_value("x");
  Value* y = g.add_value("y");
  g.inputs = {x};
  Node* add = g.add_node("Add", "add", {c1, c2}, {sum});
  add->opset = 17;
  Node* mul = g.add_node("Mul", "mul", {x, sum}, {y});
  mul->opset = 17;
  g.outputs = {y};
  y->is_graph_output = true;
  EXPECT_EQ(fold_constants(g), 1);
  ASSERT_EQ(g.nodes().size(), 1u);
  ASSERT_TRUE(sum->is_constant());
  EXPECT_FLOAT_EQ(sum->constant->data<float>()[0], 2.f);
  EXPECT_FLOAT_EQ(sum->constant->data<float>()[1], 2.f);
}

}  // namespace
}  // namespace tandem

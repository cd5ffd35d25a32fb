#include "op_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "backends/backend.h"
#include "backends/ref/ref_backend.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/schema.h"

namespace tandem::testing {

namespace {
// "domain:Op" (e.g. "com.tandem:Gelu") names an op outside the default domain.
std::pair<std::string, std::string> split_op(const std::string& op_type) {
  const size_t colon = op_type.rfind(':');
  if (colon == std::string::npos) return {"", op_type};
  return {op_type.substr(0, colon), op_type.substr(colon + 1)};
}
}  // namespace

Attribute attr_int(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}
Attribute attr_float(float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  return a;
}
Attribute attr_string(std::string v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(v);
  return a;
}
Attribute attr_ints(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute attr_floats(std::vector<float> v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloats;
  a.floats = std::move(v);
  return a;
}

std::vector<Tensor> run_ref_op(const std::string& op_type, const std::vector<Tensor>& inputs,
                               const std::map<std::string, Attribute>& attrs, int num_outputs,
                               int opset, const std::string& domain) {
  return run_op(reference_backend(), op_type, inputs, attrs, num_outputs, opset, {}, 2, 1, domain)
      .outputs;
}

OpRun run_op(const Backend& backend, const std::string& op_type, const std::vector<Tensor>& inputs,
             const std::map<std::string, Attribute>& attrs, int num_outputs, int opset,
             const std::vector<bool>& constant, int threads, int repeats,
             const std::string& domain) {
  Graph g;
  std::vector<Value*> ins, outs;
  std::vector<TensorType> types(inputs.size());
  std::vector<const TensorType*> type_ptrs;
  std::vector<const Tensor*> values;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      ins.push_back(nullptr);
      type_ptrs.push_back(nullptr);
      values.push_back(nullptr);
      continue;
    }
    Value* v = g.add_value("in" + std::to_string(i));
    v->dtype = inputs[i].dtype();
    v->shape = inputs[i].shape();
    v->shape_known = true;
    if (i < constant.size() && constant[i]) v->constant = inputs[i];
    ins.push_back(v);
    types[i] = {inputs[i].dtype(), inputs[i].shape()};
    type_ptrs.push_back(&types[i]);
    values.push_back(&inputs[i]);
  }
  for (int i = 0; i < num_outputs; ++i) outs.push_back(g.add_value("out" + std::to_string(i)));
  // The domain: the `domain` argument, else a "domain:" prefix of op_type.
  const auto [prefix_domain, op] = split_op(op_type);
  const std::string node_domain = domain.empty() ? prefix_domain : domain;
  Node* node = g.add_node(op, "test_" + op, ins, outs);
  node->domain = node_domain;
  node->attrs = attrs;
  node->opset = opset;

  std::vector<TensorType> out_types = infer_node(*node, type_ptrs, values);
  for (size_t i = 0; i < out_types.size() && i < outs.size(); ++i) {
    outs[i]->dtype = out_types[i].dtype;
    outs[i]->shape = out_types[i].shape;
    outs[i]->shape_known = true;
  }

  OpRun run;
  std::unique_ptr<Kernel> kernel;
  for (const Backend* b : {&backend, &reference_backend()}) {
    const KernelFactory* factory = b->kernels().find(node_domain, op);
    if (factory) kernel = (*factory)(*node);
    if (kernel) {
      run.backend = b->name();
      break;
    }
  }
  TANDEM_CHECK(kernel, ErrorCode::kUnsupported, "no kernel for {}", op_type);
  ThreadPool pool(threads);
  KernelContext ctx{*node, pool};
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    run.outputs.clear();
    for (auto& t : out_types) run.outputs.emplace_back(t.dtype, t.shape);
    std::vector<Tensor*> out_ptrs;
    for (auto& t : run.outputs) out_ptrs.push_back(&t);
    // As in the executor: reference kernels get zeroed outputs, other kernels must write every
    // element, so their outputs start as NaN (0xFF bytes) and a missed element fails the test.
    if (run.backend != reference_backend().name())
      for (auto& t : run.outputs)
        if (t.nbytes()) std::memset(t.raw(), 0xFF, t.nbytes());
    kernel->compute(ctx, values, out_ptrs);
  }
  return run;
}

static double element_as_double(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DataType::kFloat32:
      return t.data<float>()[i];
    case DataType::kFloat64:
      return t.data<double>()[i];
    case DataType::kInt64:
      return static_cast<double>(t.data<int64_t>()[i]);
    case DataType::kInt32:
      return t.data<int32_t>()[i];
    case DataType::kInt8:
      return t.data<int8_t>()[i];
    case DataType::kUInt8:
      return t.data<uint8_t>()[i];
    case DataType::kBool:
      return t.data<bool>()[i] ? 1 : 0;
    default:
      throw std::runtime_error("max_abs_diff: unsupported dtype");
  }
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    throw std::runtime_error("max_abs_diff: " + shape_str(a.shape()) + " " + dtype_name(a.dtype()) +
                             " vs " + shape_str(b.shape()) + " " + dtype_name(b.dtype()));
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = element_as_double(a, i), y = element_as_double(b, i);
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    if (!std::isnan(x)) worst = std::max(worst, std::abs(x - y));
  }
  return worst;
}

}  // namespace tandem::testing

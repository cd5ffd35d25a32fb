#include "op_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "backends/backend.h"
#include "backends/ref/ref_backend.h"
#include "core/error.h"
#include "core/tensor_compare.h"
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
// The schema's output types for `node` on these inputs (an undefined Tensor: omitted).
std::vector<TensorType> infer_outputs(const Node& node, const std::vector<Tensor>& inputs) {
  std::vector<TensorType> types(inputs.size());
  std::vector<const TensorType*> type_ptrs;
  std::vector<const Tensor*> values;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const bool has = inputs[i].defined();
    if (has) types[i] = {inputs[i].dtype(), inputs[i].shape()};
    type_ptrs.push_back(has ? &types[i] : nullptr);
    values.push_back(has ? &inputs[i] : nullptr);
  }
  return infer_node(node, type_ptrs, values);
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

Attribute attr_strings(std::vector<std::string> v) {
  Attribute a;
  a.kind = Attribute::Kind::kStrings;
  a.strings = std::move(v);
  return a;
}

OpTest::OpTest(const std::string& op_type) {
  std::tie(domain_, op_) = split_op(op_type);
}

OpTest& OpTest::domain(std::string d) {
  domain_ = std::move(d);
  return *this;
}
OpTest& OpTest::opset(int v) {
  opset_ = v;
  return *this;
}
OpTest& OpTest::attr(const std::string& name, Attribute a) {
  attrs_[name] = std::move(a);
  return *this;
}
OpTest& OpTest::attr(const std::string& name, int v) {
  return attr(name, attr_int(v));
}
OpTest& OpTest::attr(const std::string& name, int64_t v) {
  return attr(name, attr_int(v));
}
OpTest& OpTest::attr(const std::string& name, float v) {
  return attr(name, attr_float(v));
}
OpTest& OpTest::attr(const std::string& name, double v) {
  return attr(name, attr_float(static_cast<float>(v)));
}
OpTest& OpTest::attr(const std::string& name, const char* v) {
  return attr(name, attr_string(v));
}
OpTest& OpTest::attr(const std::string& name, std::string v) {
  return attr(name, attr_string(std::move(v)));
}
OpTest& OpTest::attr(const std::string& name, std::vector<int64_t> v) {
  return attr(name, attr_ints(std::move(v)));
}
OpTest& OpTest::attr(const std::string& name, std::vector<float> v) {
  return attr(name, attr_floats(std::move(v)));
}
OpTest& OpTest::attr(const std::string& name, std::vector<std::string> v) {
  return attr(name, attr_strings(std::move(v)));
}
OpTest& OpTest::attr(const std::string& name, std::initializer_list<int> v) {
  return attr(name, attr_ints(std::vector<int64_t>(v.begin(), v.end())));
}
OpTest& OpTest::attr(const std::string& name, std::initializer_list<float> v) {
  return attr(name, attr_floats(std::vector<float>(v)));
}
OpTest& OpTest::attr(const std::string& name, std::initializer_list<const char*> v) {
  return attr(name, attr_strings(std::vector<std::string>(v.begin(), v.end())));
}
OpTest& OpTest::attrs(const std::map<std::string, Attribute>& a) {
  for (const auto& [k, v] : a) attrs_[k] = v;
  return *this;
}
OpTest& OpTest::input(Tensor t) {
  inputs_.push_back(std::move(t));
  return *this;
}
OpTest& OpTest::inputs(std::vector<Tensor> ts) {
  for (Tensor& t : ts) inputs_.push_back(std::move(t));
  return *this;
}
OpTest& OpTest::constant(size_t i) {
  if (constant_.size() <= i) constant_.resize(i + 1, false);
  constant_[i] = true;
  return *this;
}
OpTest& OpTest::constants(const std::vector<bool>& mask) {
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) constant(i);
  return *this;
}
OpTest& OpTest::outputs(int n) {
  num_outputs_ = n;
  return *this;
}
OpTest& OpTest::omit_output(size_t i) {
  if (omitted_.size() <= i) omitted_.resize(i + 1, false);
  omitted_[i] = true;
  return *this;
}
OpTest& OpTest::threads(int n) {
  threads_ = n;
  return *this;
}
OpTest& OpTest::repeats(int n) {
  repeats_ = n;
  return *this;
}

std::string OpTest::key() const {
  return domain_.empty() ? op_ : domain_ + ":" + op_;
}

std::string attr_str(const Attribute& a) {
  auto list = [](const auto& v, auto item) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + item(v[i]);
    return s + "]";
  };
  auto num = [](double x) {
    std::ostringstream os;
    os << x;
    return os.str();
  };
  auto quoted = [](const std::string& x) { return "\"" + x + "\""; };
  switch (a.kind) {
    case Attribute::Kind::kInt:
      return std::to_string(a.i);
    case Attribute::Kind::kFloat:
      return num(a.f);
    case Attribute::Kind::kString:
      return quoted(a.s);
    case Attribute::Kind::kInts:
      return list(a.ints, [](int64_t x) { return std::to_string(x); });
    case Attribute::Kind::kFloats:
      return list(a.floats, num);
    case Attribute::Kind::kStrings:
      return list(a.strings, quoted);
    case Attribute::Kind::kTensor:
      return std::string("tensor ") + dtype_name(a.t.dtype()) + shape_str(a.t.shape());
    case Attribute::Kind::kGraph:
      return "<graph>";
    case Attribute::Kind::kOther:
      break;
  }
  return "<other>";
}

std::string OpTest::describe() const {
  std::string s = key() + " (opset " + std::to_string(opset_) + ")";
  s += " attrs {";
  bool first = true;
  for (const auto& [k, v] : attrs_) {
    s += (first ? "" : ", ") + k + "=" + attr_str(v);
    first = false;
  }
  s += "} inputs [";
  for (size_t i = 0; i < inputs_.size(); ++i) {
    s += i ? ", " : "";
    const Tensor& t = inputs_[i];
    if (!t.defined()) {
      s += "<omitted>";
      continue;
    }
    s += std::string(dtype_name(t.dtype())) + shape_str(t.shape());
    if (i < constant_.size() && constant_[i]) s += " const";
  }
  s += "] outputs " + std::to_string(num_outputs_);
  for (size_t i = 0; i < omitted_.size(); ++i)
    if (omitted_[i]) s += " (" + std::to_string(i) + " omitted)";
  return s;
}

std::vector<Tensor> OpTest::run_ref() const {
  return run(reference_backend()).outputs;
}

PreparedOp::PreparedOp() = default;
PreparedOp::PreparedOp(PreparedOp&&) noexcept = default;
PreparedOp::~PreparedOp() = default;

PreparedOp OpTest::prepare(const Backend& backend) const {
  PreparedOp p;
  p.graph_ = std::make_unique<Graph>();
  Graph& g = *p.graph_;
  std::vector<Value*> ins, outs;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (!inputs_[i].defined()) {
      ins.push_back(nullptr);
      continue;
    }
    Value* v = g.add_value("in" + std::to_string(i));
    v->dtype = inputs_[i].dtype();
    v->shape = inputs_[i].shape();
    v->shape_known = true;
    if (i < constant_.size() && constant_[i]) v->constant = inputs_[i];
    ins.push_back(v);
  }
  for (int i = 0; i < num_outputs_; ++i) {
    const bool omitted = size_t(i) < omitted_.size() && omitted_[size_t(i)];
    outs.push_back(omitted ? nullptr : g.add_value("out" + std::to_string(i)));
  }
  Node* node = g.add_node(op_, "test_" + op_, ins, outs);
  node->domain = domain_;
  node->attrs = attrs_;
  node->opset = opset_;
  p.node_ = node;

  // The node's values carry their dtypes and shapes, as in a planned session.
  const std::vector<TensorType> out_types = infer_outputs(*node, inputs_);
  for (size_t i = 0; i < out_types.size() && i < outs.size(); ++i) {
    if (!outs[i]) continue;
    outs[i]->dtype = out_types[i].dtype;
    outs[i]->shape = out_types[i].shape;
    outs[i]->shape_known = true;
  }

  for (const Backend* b : {&backend, &reference_backend()}) {
    const KernelFactory* factory = b->kernels().find(domain_, op_);
    if (factory) p.kernel_ = (*factory)(*node);
    if (p.kernel_) {
      p.backend_ = b->name();
      break;
    }
  }
  TANDEM_CHECK(p.kernel_, ErrorCode::kUnsupported, "no kernel for {}", key());
  p.pool_ = std::make_unique<ThreadPool>(threads_);
  return p;
}

std::vector<Tensor> PreparedOp::compute(const std::vector<Tensor>& inputs) const {
  // Per output slot, omitted ones included.
  const std::vector<TensorType> out_types = infer_outputs(*node_, inputs);
  std::vector<const Tensor*> values;
  for (const Tensor& t : inputs) values.push_back(t.defined() ? &t : nullptr);
  std::vector<Tensor> outputs(node_->outputs.size());
  std::vector<Tensor*> out_ptrs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (node_->outputs[i] && i < out_types.size())
      outputs[i] = Tensor(out_types[i].dtype, out_types[i].shape);
    out_ptrs.push_back(outputs[i].defined() ? &outputs[i] : nullptr);
  }
  // As in the executor: reference kernels get zeroed outputs, other kernels must write every
  // element, so their outputs start as NaN (0xFF bytes) and a missed element fails the test.
  if (backend_ != reference_backend().name())
    for (Tensor& t : outputs)
      if (t.defined() && t.nbytes()) std::memset(t.raw(), 0xFF, t.nbytes());
  KernelContext ctx{*node_, *pool_};
  kernel_->compute(ctx, values, out_ptrs);
  return outputs;
}

int PreparedOp::in_place_input(const std::vector<Tensor>& inputs) const {
  const std::vector<TensorType> out_types = infer_outputs(*node_, inputs);
  if (out_types.empty() || node_->outputs.empty() || !node_->outputs[0]) return -1;
  std::vector<TensorType> types(inputs.size());
  std::vector<const TensorType*> type_ptrs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) types[i] = {inputs[i].dtype(), inputs[i].shape()};
    type_ptrs.push_back(inputs[i].defined() ? &types[i] : nullptr);
  }
  const int i = kernel_->in_place_input(type_ptrs, out_types[0]);
  // As the planner: only bytes of the output's dtype and element count are shared.
  if (i < 0 || i >= static_cast<int>(inputs.size()) || !inputs[i].defined() ||
      inputs[i].dtype() != out_types[0].dtype ||
      inputs[i].numel() != shape_numel(out_types[0].shape))
    return -1;
  return i;
}

std::vector<Tensor> PreparedOp::compute_in_place(const std::vector<Tensor>& inputs,
                                                 int shared) const {
  const std::vector<TensorType> out_types = infer_outputs(*node_, inputs);
  // Input `shared` is a copy the output then overwrites; the test's own tensor stays as it is.
  std::vector<Tensor> in = inputs;
  const Tensor& src = inputs[static_cast<size_t>(shared)];
  Tensor bytes = Tensor::copy_of(src.dtype(), src.shape(), src.raw());
  in[static_cast<size_t>(shared)] = bytes;
  std::vector<const Tensor*> values;
  for (const Tensor& t : in) values.push_back(t.defined() ? &t : nullptr);
  std::vector<Tensor> outputs(node_->outputs.size());
  std::vector<Tensor*> out_ptrs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (i == 0) {
      outputs[0] = Tensor::borrow(out_types[0].dtype, out_types[0].shape, bytes.raw());
    } else if (node_->outputs[i] && i < out_types.size()) {
      outputs[i] = Tensor(out_types[i].dtype, out_types[i].shape);
      if (outputs[i].nbytes()) std::memset(outputs[i].raw(), 0xFF, outputs[i].nbytes());
    }
    out_ptrs.push_back(outputs[i].defined() ? &outputs[i] : nullptr);
  }
  KernelContext ctx{*node_, *pool_};
  kernel_->compute(ctx, values, out_ptrs);
  // Owned copies: output 0's bytes belong to `bytes`, which goes out of scope here.
  outputs[0] = Tensor::copy_of(outputs[0].dtype(), outputs[0].shape(), outputs[0].raw());
  return outputs;
}

OpRun OpTest::run(const Backend& backend) const {
  const PreparedOp p = prepare(backend);
  OpRun run;
  run.backend = p.backend();
  for (int r = 0; r < std::max(repeats_, 1); ++r) run.outputs = p.compute(inputs_);
  const int shared = p.in_place_input(inputs_);
  if (shared >= 0) {
    run.in_place_input = shared;
    run.in_place_outputs = p.compute_in_place(inputs_, shared);
  }
  return run;
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

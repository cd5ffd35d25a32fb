// Runs regions of 2-D convolutions channels-last (NHWC), the layout oneDNN's convolutions use
// on this hardware, instead of reordering NCHW -> NHWC -> NCHW around every conv.
//
// A region grows forward (in topological order) from the 2-D convs (Conv, FusedConv with a
// constant rank-4 W) through the ops that can run on NHWC data unchanged or with the attribute
// channels_last: elementwise unary ops and Clip with constant bounds, binary Add/Sub/Mul/Div/Pow
// whose operands are NHWC values, constants of rank <= 4 (permuted here) or values known to be
// rank 4, and the 2-D pools (MaxPool without Indices, AveragePool, GlobalAveragePool,
// GlobalMaxPool, which become their kFusedDomain channels-last forms), inference
// BatchNormalization with constant parameters (the kFusedDomain channels-last form; DenseNet's
// pre-activation blocks) and Concat of rank-4 values (the axis is renumbered for NHWC: SqueezeNet's
// and DenseNet's concats of conv outputs would otherwise end a region each).
//
// Transposes that models write to move between the layouts themselves are borders that cost
// nothing: Transpose(perm 0,3,1,2) of any value v makes the NCHW value whose NHWC bytes are v, and
// Transpose(perm 0,2,3,1) of a region's value is that value's NHWC bytes. Both become Identity
// (ConvNeXt: depthwise conv, permute, LayerNorm and linears, permute back, residual add: the
// whole backbone is one region with no layout change). Other values are read into a
// region through ToChannelsLast and leave it through ToChannelsFirst (kFusedDomain, ops/layout.h);
// a region is kept only when those borders cost fewer layout changes than the two per conv the
// convs would make on their own. A value leaving a region keeps its name (so graph outputs stay
// as they are); the NHWC value inside gets a new one.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ops/layout.h"
#include "ops/normalization.h"
#include "ops/schema.h"
#include "optimizer/passes.h"

namespace tandem {

namespace {

const std::set<std::string>& unary_ops() {
  static const std::set<std::string> ops = {
      "Relu", "LeakyRelu", "Sigmoid",  "Tanh", "HardSigmoid", "HardSwish",  "Elu",
      "Selu", "Celu",      "Exp",      "Abs",  "Neg",         "Sqrt",       "Erf",
      "Gelu", "Softplus",  "Softsign", "Mish", "Identity",    "Reciprocal", "Floor",
      "Ceil", "Round",     "Sign",     "Sin",  "Cos"};
  return ops;
}

bool is_onnx(const Node& n, const std::set<std::string>& ops) {
  return n.domain.empty() && ops.count(n.op_type);
}

bool is_binary(const Node& n) {
  static const std::set<std::string> ops = {"Add", "Sub", "Mul", "Div", "Pow"};
  return is_onnx(n, ops) && n.inputs.size() == 2 && n.has_input(0) && n.has_input(1);
}

bool is_pool(const Node& n) {
  static const std::set<std::string> ops = {"MaxPool", "AveragePool", "GlobalAveragePool",
                                            "GlobalMaxPool"};
  if (!is_onnx(n, ops) || !n.has_input(0) || n.outputs.empty()) return false;
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i]) return false;  // MaxPool's Indices
  return n.op_type != "MaxPool" || n.attr_int_or("storage_order", 0) == 0;
}

// Inference BatchNormalization whose four parameters are constants of one value per channel:
// the region runs it as y[n, h, w, c] = x[n, h, w, c] * a[c] + b[c].
bool is_inference_batch_norm(const Node& n) {
  if (!n.domain.empty() || n.op_type != "BatchNormalization" || n.inputs.size() != 5 ||
      !n.has_input(0) || n.outputs.empty() || !n.outputs[0])
    return false;
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i]) return false;  // statistics outputs
  // The op's own reading of its attributes decides training mode and the old per-element form.
  const NormAttrs a = NormAttrs::parse(n);
  if (a.training || a.per_element_stats || !a.is_test) return false;
  for (size_t i = 1; i < 5; ++i)
    if (!n.has_input(i) || !n.inputs[i]->is_constant() || n.inputs[i]->constant->rank() != 1)
      return false;
  return true;
}

bool is_concat(const Node& n) {
  return n.domain.empty() && n.op_type == "Concat" && !n.inputs.empty() && n.outputs.size() == 1 &&
         n.outputs[0] && n.has_attr("axis");
}

// Transpose with exactly this perm.
bool is_transpose(const Node& n, const std::vector<int64_t>& perm) {
  return n.domain.empty() && n.op_type == "Transpose" && n.has_input(0) && n.outputs.size() == 1 &&
         n.outputs[0] && n.has_attr("perm") && n.attr_ints("perm") == perm;
}
const std::vector<int64_t> kToNchw{0, 3, 1, 2}, kToNhwc{0, 2, 3, 1};

// The NHWC axis of NCHW axis `axis` (which may be negative) of a rank-4 value: the perm that
// turns NHWC into NCHW lists exactly that.
int64_t nhwc_axis(int64_t axis) {
  return kToNchw[static_cast<size_t>(axis < 0 ? axis + 4 : axis)];
}

// A 2-D conv the region can take: an NCHW Conv or FusedConv with a constant rank-4 W.
bool is_conv2d(const Node& n) {
  const bool conv = (n.domain.empty() && n.op_type == "Conv") ||
                    (n.domain == kFusedDomain && n.op_type == "FusedConv" && !is_channels_last(n));
  if (!conv || !n.has_input(0) || !n.has_input(1) || n.outputs.size() != 1 || !n.outputs[0])
    return false;
  const Value* w = n.inputs[1];
  return w->is_constant() && w->constant->rank() == 4;
}

// The inputs of `n` that carry NHWC data inside a region (the others are weights, bounds, ...).
std::vector<size_t> data_inputs(const Node& n) {
  if (n.op_type == "Transpose") return {};  // a free entry: its input is NHWC bytes already
  if (n.op_type == "Conv" || n.op_type == "FusedConv") {
    std::vector<size_t> d{0};
    if (n.has_input(3)) d.push_back(3);
    return d;
  }
  if (is_binary(n)) return {0, 1};
  if (is_concat(n)) {
    std::vector<size_t> all(n.inputs.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    return all;
  }
  return {0};
}

class ChannelsLast {
 public:
  explicit ChannelsLast(Graph& g) : g_(g) {}

  int run() {
    for (auto& n : g_.nodes())
      if (n->domain == kFusedDomain && (n->op_type == "ToChannelsLast" || is_channels_last(*n)))
        return 0;  // converted already
    grow();
    prune();
    // A free exit stays one only while its input's region does.
    for (auto it = free_exits_.begin(); it != free_exits_.end();)
      it = nhwc_value((*it)->inputs[0]) ? std::next(it) : free_exits_.erase(it);
    if (nhwc_.empty()) return 0;
    rewrite();
    g_.topological_sort();
    g_.remove_unused_values();
    return static_cast<int>(nhwc_.size());
  }

 private:
  bool nhwc_value(const Value* v) const { return v && v->producer && nhwc_.count(v->producer); }

  // Whether `v` is known to have rank 4 (from the model or from the op producing it).
  bool rank4(const Value* v) const { return v && rank4_.count(v); }

  void grow() {
    // Before the nodes: a node reading a graph input must know its rank.
    for (Value* v : g_.inputs)
      if (v->shape_known && v->shape.size() == 4) rank4_.insert(v);
    for (auto& node : g_.nodes()) {
      Node& n = *node;
      bool take = false;
      if (is_conv2d(n)) {
        const Value* z = n.has_input(3) ? n.inputs[3] : nullptr;
        take = !z || nhwc_value(z) || rank4(z);
      } else if (is_onnx(n, unary_ops()) && n.has_input(0) && n.outputs.size() == 1) {
        take = nhwc_value(n.inputs[0]);
      } else if (n.domain.empty() && n.op_type == "Clip" && n.has_input(0)) {
        take = nhwc_value(n.inputs[0]);
        for (size_t i = 1; i < n.inputs.size(); ++i)
          if (n.inputs[i] && !n.inputs[i]->is_constant()) take = false;
      } else if (is_binary(n) && n.outputs.size() == 1) {
        int nhwc = 0;
        take = true;
        for (const Value* v : n.inputs) {
          if (nhwc_value(v)) {
            ++nhwc;
          } else if (!(v->is_constant() && v->constant->rank() <= 4) && !rank4(v)) {
            take = false;
          }
        }
        take = take && nhwc > 0;
      } else if (is_pool(n) || is_inference_batch_norm(n)) {
        take = nhwc_value(n.inputs[0]);
      } else if (is_transpose(n, kToNchw)) {
        take = !nhwc_value(n.inputs[0]);  // rank 4 by its perm
      } else if (is_transpose(n, kToNhwc) && nhwc_value(n.inputs[0])) {
        free_exits_.insert(&n);
      } else if (is_concat(n)) {
        // Every input NHWC, or one that can be brought in: a rank-4 value or constant.
        const int64_t axis = n.attr_int("axis");
        int nhwc = 0;
        take = axis >= -4 && axis < 4;
        for (const Value* v : n.inputs) {
          if (!v) {
            take = false;
          } else if (nhwc_value(v)) {
            ++nhwc;
          } else if (v->is_constant() ? v->constant->rank() != 4 : !rank4(v)) {
            take = false;
          }
        }
        take = take && nhwc > 0;
      }
      if (take) nhwc_.insert(&n);
      // Rank 4 is known from the model's shapes, a 2-D conv, or an op keeping its input's rank.
      for (Value* out : n.outputs) {
        if (!out) continue;
        const bool keeps_rank = is_onnx(n, unary_ops()) || n.op_type == "Clip" || is_pool(n) ||
                                n.op_type == "BatchNormalization" || is_concat(n);
        if ((out->shape_known && out->shape.size() == 4) || take || is_conv2d(n) ||
            (keeps_rank && rank4(n.inputs[0])))
          rank4_.insert(out);
      }
    }
  }

  // Drops the regions whose borders would cost more layout changes than they save.
  void prune() {
    std::set<Node*> seen;
    std::vector<Node*> order;
    for (auto& n : g_.nodes())
      if (nhwc_.count(n.get())) order.push_back(n.get());
    for (Node* seed : order) {
      if (seen.count(seed)) continue;
      // The connected region of `seed`: NHWC nodes linked by values one writes and one reads.
      std::vector<Node*> region, stack{seed};
      seen.insert(seed);
      while (!stack.empty()) {
        Node* n = stack.back();
        stack.pop_back();
        region.push_back(n);
        auto visit = [&](Node* m) {
          if (m && nhwc_.count(m) && !seen.count(m)) {
            seen.insert(m);
            stack.push_back(m);
          }
        };
        for (size_t i : data_inputs(*n))
          if (n->has_input(i)) visit(n->inputs[i]->producer);
        for (Value* out : n->outputs)
          if (out)
            for (Node* c : out->consumers) visit(c);
      }
      std::set<const Value*> entries, exits;
      int convs = 0;
      for (Node* n : region) {
        if (n->op_type == "Conv" || n->op_type == "FusedConv") ++convs;
        for (size_t i : data_inputs(*n)) {
          const Value* v = n->has_input(i) ? n->inputs[i] : nullptr;
          if (v && !v->is_constant() && !nhwc_value(v)) entries.insert(v);
        }
        for (const Value* out : n->outputs) {
          if (!out) continue;
          bool leaves = out->is_graph_output;
          for (const Node* c : out->consumers)
            if (!inside(c)) leaves = true;
          if (leaves) exits.insert(out);
        }
      }
      if (static_cast<int>(entries.size() + exits.size()) >= 2 * convs)
        for (Node* n : region) nhwc_.erase(n);
    }
  }

  // Replaces input `i` of `n` by `v`, keeping the consumer lists right.
  static void set_input(Node& n, size_t i, Value* v) {
    Value* old = n.inputs[i];
    if (old) {
      auto it = std::find(old->consumers.begin(), old->consumers.end(), &n);
      if (it != old->consumers.end()) old->consumers.erase(it);
    }
    n.inputs[i] = v;
    v->consumers.push_back(&n);
  }

  Value* new_value(const std::string& name, const Value* like) {
    Value* v = g_.add_value(name);
    v->dtype = like->dtype;
    return v;
  }

  // The NHWC copy of a constant of rank <= 4 (read as rank 4 with leading 1s).
  Value* permuted_constant(const Value* c) {
    auto it = permuted_.find(c);
    if (it != permuted_.end()) return it->second;
    Shape s = c->constant->shape();
    s.insert(s.begin(), 4 - s.size(), 1);
    const Shape t = nchw_to_nhwc(s);
    Tensor out(c->constant->dtype(), t);
    const size_t es = dtype_size(out.dtype());
    const uint8_t* src = static_cast<const uint8_t*>(c->constant->raw());
    uint8_t* dst = static_cast<uint8_t*>(out.raw());
    int64_t o = 0;
    for (int64_t n = 0; n < t[0]; ++n)
      for (int64_t h = 0; h < t[1]; ++h)
        for (int64_t w = 0; w < t[2]; ++w)
          for (int64_t ch = 0; ch < t[3]; ++ch, ++o)
            std::copy_n(src + (((n * s[1] + ch) * s[2] + h) * s[3] + w) * es, es, dst + o * es);
    Value* v = new_value(c->name + "_nhwc", c);
    out.set_name(v->name);
    v->shape = t;
    v->shape_known = true;
    v->constant = std::move(out);
    return permuted_[c] = v;
  }

  // ToChannelsLast(v), one per value.
  Value* entry(Value* v) {
    auto it = entries_.find(v);
    if (it != entries_.end()) return it->second;
    Value* out = new_value(v->name + "_nhwc", v);
    Node* n = g_.add_node("ToChannelsLast", v->name + "_to_nhwc", {v}, {out});
    n->domain = kFusedDomain;
    n->opset = 1;
    return entries_[v] = out;
  }

  void rewrite() {
    std::vector<Node*> nodes;
    for (auto& n : g_.nodes())
      if (nhwc_.count(n.get())) nodes.push_back(n.get());
    // Borders first, while nhwc_value() still tells the region's values apart.
    for (Node* n : nodes) {
      for (size_t i : data_inputs(*n)) {
        Value* v = n->has_input(i) ? n->inputs[i] : nullptr;
        if (!v || nhwc_value(v)) continue;
        set_input(*n, i, v->is_constant() ? permuted_constant(v) : entry(v));
      }
      for (size_t o = 0; o < n->outputs.size(); ++o) {
        Value* v = n->outputs[o];
        if (!v) continue;
        std::vector<Node*> readers;  // those that read NHWC bytes
        bool leaves = v->is_graph_output;
        for (Node* c : v->consumers) {
          if (inside(c)) {
            readers.push_back(c);
          } else {
            leaves = true;
          }
        }
        if (!leaves) {
          if (v->shape_known && v->shape.size() == 4) v->shape = nchw_to_nhwc(v->shape);
          continue;
        }
        // The region writes a new NHWC value; ToChannelsFirst writes `v` for the rest.
        Value* inner = new_value(v->name + "_nhwc", v);
        n->outputs[o] = inner;
        inner->producer = n;
        for (Node* c : readers)
          for (size_t i = 0; i < c->inputs.size(); ++i)
            if (c->inputs[i] == v) set_input(*c, i, inner);
        Node* back = g_.add_node("ToChannelsFirst", v->name + "_to_nchw", {inner}, {v});
        back->domain = kFusedDomain;
        back->opset = 1;
      }
    }
    for (Node* n : nodes) {
      Attribute one;
      one.kind = Attribute::Kind::kInt;
      one.i = 1;
      if (n->op_type == "Conv" && n->domain.empty()) {
        n->op_type = "FusedConv";
        n->domain = kFusedDomain;
      }
      if (is_pool(*n) || is_inference_batch_norm(*n)) {
        n->domain = kFusedDomain;
        n->outputs.resize(1);
      }
      if (is_concat(*n)) {
        Attribute axis;
        axis.kind = Attribute::Kind::kInt;
        axis.i = nhwc_axis(n->attr_int("axis"));
        n->attrs["axis"] = axis;  // stays an ONNX Concat: it does not care about layout
      }
      if (n->domain == kFusedDomain) n->attrs["channels_last"] = one;
    }
    for (Node* n : nodes)
      if (n->op_type == "Transpose") make_identity(*n);
    for (Node* n : free_exits_) make_identity(*n);
  }

  // The free borders: the bytes are already in the layout the transpose's output needs.
  static void make_identity(Node& n) {
    n.op_type = "Identity";
    n.attrs.clear();
  }

  // Whether `c` reads a region's values as NHWC bytes: a region node or a free exit.
  bool inside(const Node* c) const {
    Node* m = const_cast<Node*>(c);
    return nhwc_.count(m) || free_exits_.count(m);
  }

  Graph& g_;
  std::set<Node*> nhwc_;
  std::set<Node*> free_exits_;  // Transpose(perm 0,2,3,1) of a region's value
  std::set<const Value*> rank4_;
  std::map<const Value*, Value*> permuted_;
  std::map<Value*, Value*> entries_;
};

}  // namespace

int convert_to_channels_last(Graph& graph) {
  return ChannelsLast(graph).run();
}

}  // namespace tandem

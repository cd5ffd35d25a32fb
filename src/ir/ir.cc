#include "ir/ir.h"

#include <algorithm>
#include <set>

#include "core/error.h"

namespace tandem {

namespace {
const Attribute& get_attr(const Node& n, const std::string& key, Attribute::Kind kind,
                          const char* kind_name) {
  auto it = n.attrs.find(key);
  TANDEM_CHECK(it != n.attrs.end(), ErrorCode::kInvalidModel,
               "{}: required attribute '{}' is missing", n.describe(), key);
  TANDEM_CHECK(it->second.kind == kind, ErrorCode::kInvalidModel,
               "{}: attribute '{}' should be {}", n.describe(), key, kind_name);
  return it->second;
}
}  // namespace

std::string Node::describe() const { return fmt::format("{} node '{}'", op_type, name); }

int64_t Node::attr_int(const std::string& key) const {
  return get_attr(*this, key, Attribute::Kind::kInt, "an int").i;
}
int64_t Node::attr_int_or(const std::string& key, int64_t dflt) const {
  return has_attr(key) ? attr_int(key) : dflt;
}
float Node::attr_float(const std::string& key) const {
  return get_attr(*this, key, Attribute::Kind::kFloat, "a float").f;
}
float Node::attr_float_or(const std::string& key, float dflt) const {
  return has_attr(key) ? attr_float(key) : dflt;
}
std::string Node::attr_string(const std::string& key) const {
  return get_attr(*this, key, Attribute::Kind::kString, "a string").s;
}
std::string Node::attr_string_or(const std::string& key, const std::string& dflt) const {
  return has_attr(key) ? attr_string(key) : dflt;
}
std::vector<int64_t> Node::attr_ints(const std::string& key) const {
  return get_attr(*this, key, Attribute::Kind::kInts, "a list of ints").ints;
}
std::vector<int64_t> Node::attr_ints_or(const std::string& key,
                                        std::vector<int64_t> dflt) const {
  return has_attr(key) ? attr_ints(key) : dflt;
}
std::vector<float> Node::attr_floats_or(const std::string& key, std::vector<float> dflt) const {
  return has_attr(key) ? get_attr(*this, key, Attribute::Kind::kFloats, "a list of floats").floats
                       : dflt;
}
std::vector<std::string> Node::attr_strings_or(const std::string& key,
                                               std::vector<std::string> dflt) const {
  return has_attr(key)
             ? get_attr(*this, key, Attribute::Kind::kStrings, "a list of strings").strings
             : dflt;
}
const Tensor& Node::attr_tensor(const std::string& key) const {
  return get_attr(*this, key, Attribute::Kind::kTensor, "a tensor").t;
}

std::string Graph::unique_name(const std::string& base) {
  std::string b = base.empty() ? "v" : base;
  if (!by_name_.count(b)) return b;
  for (;;) {
    std::string candidate = fmt::format("{}__{}", b, ++name_counter_);
    if (!by_name_.count(candidate)) return candidate;
  }
}

Value* Graph::add_value(const std::string& name) {
  auto v = std::make_unique<Value>();
  v->name = unique_name(name);
  Value* raw = v.get();
  by_name_[raw->name] = raw;
  values_.push_back(std::move(v));
  return raw;
}

Value* Graph::find_value(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Node* Graph::add_node(const std::string& op_type, const std::string& name,
                      const std::vector<Value*>& inputs, const std::vector<Value*>& outputs) {
  auto n = std::make_unique<Node>();
  n->op_type = op_type;
  n->name = name;
  n->inputs = inputs;
  n->outputs = outputs;
  for (Value* v : inputs)
    if (v) v->consumers.push_back(n.get());
  for (Value* v : outputs)
    if (v) v->producer = n.get();
  Node* raw = n.get();
  nodes_.push_back(std::move(n));
  return raw;
}

void Graph::remove_node(Node* node) {
  for (Value* v : node->inputs) {
    if (!v) continue;
    auto it = std::find(v->consumers.begin(), v->consumers.end(), node);
    if (it != v->consumers.end()) v->consumers.erase(it);
  }
  for (Value* v : node->outputs)
    if (v && v->producer == node) v->producer = nullptr;
  nodes_.erase(std::remove_if(nodes_.begin(), nodes_.end(),
                              [&](const std::unique_ptr<Node>& p) { return p.get() == node; }),
               nodes_.end());
}

void Graph::replace_all_uses(Value* from, Value* to) {
  if (from == to) return;
  for (Node* c : from->consumers) {
    for (Value*& in : c->inputs)
      if (in == from) in = to;
    to->consumers.push_back(c);
  }
  from->consumers.clear();
  for (Value*& out : outputs) {
    if (out == from) {
      out = to;
      to->is_graph_output = true;
    }
  }
  from->is_graph_output = false;
}

void Graph::remove_unused_values() {
  std::set<const Value*> keep;
  for (Value* v : inputs) keep.insert(v);
  for (Value* v : outputs) keep.insert(v);
  for (auto& n : nodes_) {
    for (Value* v : n->inputs) keep.insert(v);
    for (Value* v : n->outputs) keep.insert(v);
  }
  std::vector<std::unique_ptr<Value>> kept;
  for (auto& v : values_) {
    if (keep.count(v.get())) {
      kept.push_back(std::move(v));
    } else {
      by_name_.erase(v->name);
    }
  }
  values_ = std::move(kept);
}

void Graph::topological_sort() {
  std::map<const Node*, int> pending;
  std::vector<Node*> ready;
  for (auto& n : nodes_) {
    int count = 0;
    for (Value* v : n->inputs)
      if (v && v->producer) ++count;
    pending[n.get()] = count;
    if (count == 0) ready.push_back(n.get());
  }
  std::vector<Node*> order;
  order.reserve(nodes_.size());
  // Keep the original relative order where possible: process ready nodes by original index.
  std::map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes_.size(); ++i) index[nodes_[i].get()] = i;
  auto cmp = [&](Node* a, Node* b) { return index[a] > index[b]; };
  std::make_heap(ready.begin(), ready.end(), cmp);
  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), cmp);
    Node* n = ready.back();
    ready.pop_back();
    order.push_back(n);
    for (Value* out : n->outputs) {
      if (!out) continue;
      for (Node* c : out->consumers) {
        if (--pending[c] == 0) {
          ready.push_back(c);
          std::push_heap(ready.begin(), ready.end(), cmp);
        }
      }
    }
  }
  if (order.size() != nodes_.size()) {
    for (auto& n : nodes_) {
      if (pending[n.get()] > 0)
        raise(ErrorCode::kInvalidModel,
              "the graph has a cycle or uses a value before it is defined (at {})",
              n->describe());
    }
  }
  std::map<const Node*, std::unique_ptr<Node>> owned;
  for (auto& n : nodes_) owned[n.get()] = std::move(n);
  nodes_.clear();
  for (Node* n : order) nodes_.push_back(std::move(owned[n]));
}

}  // namespace tandem

#include "format/tandem_format.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

#include "core/checked.h"
#include "core/error.h"
#include "core/half.h"
#include "core/hash.h"
#include "onnx/loader.h"
#include "onnx/safe_file.h"

namespace tandem {

// Every number in the file is little-endian; reading and writing copy the host's bytes.
static_assert(std::endian::native == std::endian::little,
              "the .tandem reader and writer assume a little-endian host");

namespace {

// Header fields: offsets into the first kTandemHeaderSize bytes (docs/tandem-format.md).
constexpr size_t kOffVersion = 8, kOffHeaderSize = 12, kOffFileSize = 16, kOffChecksum = 24,
                 kOffGraphOffset = 32, kOffGraphSize = 40, kOffBlobsOffset = 48, kOffBlobsSize = 56,
                 kOffTarget = 64, kTargetBytes = 16, kOffReserved = 80;

uint64_t align_up(uint64_t n) {
  return (n + kTandemBlobAlign - 1) / kTandemBlobAlign * kTandemBlobAlign;
}

bool known_dtype(int32_t d) {
  switch (static_cast<DataType>(d)) {
    case DataType::kFloat32:
    case DataType::kUInt8:
    case DataType::kInt8:
    case DataType::kUInt16:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
    case DataType::kString:
    case DataType::kBool:
    case DataType::kFloat16:
    case DataType::kFloat64:
    case DataType::kUInt32:
    case DataType::kUInt64:
    case DataType::kBFloat16:
      return true;
    default:
      return false;
  }
}

// ---- writing ----

class Out {
 public:
  void u8(uint8_t v) { raw(&v, 1); }
  void u32(uint32_t v) { raw(&v, 4); }
  void i32(int32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void count(size_t n) {
    TANDEM_CHECK(n <= UINT32_MAX, ErrorCode::kUnsupported,
                 "cannot write a .tandem file: a list of {} entries is over the format's 2^32", n);
    u32(static_cast<uint32_t>(n));
  }
  void str(const std::string& s) {
    count(s.size());
    raw(s.data(), s.size());
  }
  void dims(const Shape& shape) {
    count(shape.size());
    for (int64_t d : shape) i64(d);
  }
  void raw(const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); }
  std::string bytes;
};

// The constants' bytes, each at a 64-byte-aligned offset from the blob section's start; a buffer
// several values share (the same tensor under two names) is stored once.
struct BlobTable {
  std::vector<std::pair<const void*, size_t>> buffers;  // (bytes, size), in file order
  std::deque<Tensor> owned;  // buffers made for the file (float16 copies), kept until written
  std::vector<uint64_t> offsets;
  std::map<std::pair<const void*, size_t>, uint64_t> seen;
  uint64_t end = 0;
  uint64_t add(const void* data, size_t size) {
    auto key = std::make_pair(data, size);
    if (auto it = seen.find(key); it != seen.end()) return it->second;
    uint64_t off = align_up(end);
    buffers.push_back(key);
    offsets.push_back(off);
    end = off + size;
    seen[key] = off;
    return off;
  }
};

void write_tensor(Out& out, BlobTable& blobs, const Tensor& t, const std::string& what) {
  TANDEM_CHECK(dtype_size(t.dtype()) > 0, ErrorCode::kUnsupported,
               "cannot write {} to a .tandem file: dtype {} has no fixed element size", what,
               dtype_name(t.dtype()));
  out.str(t.name());
  out.i32(static_cast<int32_t>(t.dtype()));
  out.dims(t.shape());
  out.u64(blobs.add(t.raw(), t.nbytes()));
  out.u64(t.nbytes());
}

// kStoredFp16: a float32 constant whose tensor record holds float16 (--weights fp16); the reader
// widens it back to float32.
enum ValueFlags : uint8_t { kShapeKnown = 1, kHasConstant = 2, kStoredFp16 = 4 };

bool stored_as_fp16(const Value& v, bool fp16_weights) {
  return fp16_weights && fp16_candidate(v);
}

std::string serialize_graph(const Graph& g, const std::map<std::string, Shape>& fixed,
                            BlobTable& blobs, bool fp16_weights) {
  Out out;
  out.str(g.name);
  out.count(g.opset_imports.size());
  for (const auto& [domain, version] : g.opset_imports) {
    out.str(domain);
    out.i64(version);
  }
  std::map<const Value*, uint32_t> index;
  out.count(g.values().size());
  for (const auto& v : g.values()) {
    index[v.get()] = static_cast<uint32_t>(index.size());
    out.str(v->name);
    out.i32(static_cast<int32_t>(v->dtype));
    const bool fp16 = stored_as_fp16(*v, fp16_weights);
    out.u8(static_cast<uint8_t>((v->shape_known ? kShapeKnown : 0) |
                                (v->is_constant() ? kHasConstant : 0) | (fp16 ? kStoredFp16 : 0)));
    out.dims(v->shape_known ? v->shape : Shape{});
    out.count(v->dim_names.size());
    for (const std::string& s : v->dim_names) out.str(s);
    if (fp16) {
      const Tensor& t = *v->constant;
      Tensor& half = blobs.owned.emplace_back(DataType::kFloat16, t.shape(), t.name());
      for (int64_t i = 0; i < t.numel(); ++i)
        half.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
      write_tensor(out, blobs, half, "value '" + v->name + "'");
    } else if (v->is_constant()) {
      write_tensor(out, blobs, *v->constant, "value '" + v->name + "'");
    }
  }
  auto ref = [&](const Value* v) { return v ? index.at(v) + 1 : 0; };  // 0: omitted
  out.count(g.inputs.size());
  for (const Value* v : g.inputs) out.u32(ref(v) - 1);
  out.count(g.outputs.size());
  for (const Value* v : g.outputs) out.u32(ref(v) - 1);
  out.count(fixed.size());
  for (const auto& [name, shape] : fixed) {
    out.str(name);
    out.dims(shape);
  }
  out.count(g.nodes().size());
  for (const auto& n : g.nodes()) {
    out.str(n->name);
    out.str(n->op_type);
    out.str(n->domain);
    out.i32(n->opset);
    out.count(n->inputs.size());
    for (const Value* v : n->inputs) out.u32(ref(v));
    out.count(n->outputs.size());
    for (const Value* v : n->outputs) out.u32(ref(v));
    out.count(n->attrs.size());
    for (const auto& [key, a] : n->attrs) {
      out.str(key);
      out.u8(static_cast<uint8_t>(a.kind));
      using K = Attribute::Kind;
      switch (a.kind) {
        case K::kFloat:
          out.f32(a.f);
          break;
        case K::kInt:
          out.i64(a.i);
          break;
        case K::kString:
          out.str(a.s);
          break;
        case K::kTensor:
          write_tensor(out, blobs, a.t, fmt::format("attribute '{}' of {}", key, n->describe()));
          break;
        case K::kFloats:
          out.count(a.floats.size());
          for (float f : a.floats) out.f32(f);
          break;
        case K::kInts:
          out.count(a.ints.size());
          for (int64_t i : a.ints) out.i64(i);
          break;
        case K::kStrings:
          out.count(a.strings.size());
          for (const std::string& s : a.strings) out.str(s);
          break;
        case K::kGraph:
        case K::kOther:
          break;  // no payload: the loader keeps none (subgraphs are not run)
      }
    }
  }
  // Version 2: the constants' prepacked layouts.
  size_t n_prepacked = 0;
  for (const auto& v : g.values()) n_prepacked += v->is_constant() ? v->prepacked.size() : 0;
  out.count(n_prepacked);
  for (const auto& v : g.values()) {
    if (!v->is_constant()) continue;
    for (const PrepackedLayout& p : v->prepacked) {
      out.u32(index.at(v.get()));
      out.str(p.key);
      out.u64(blobs.add(p.data, p.bytes));
      out.u64(p.bytes);
    }
  }
  return std::move(out.bytes);
}

void put_u32(uint8_t* h, size_t off, uint32_t v) {
  std::memcpy(h + off, &v, 4);
}
void put_u64(uint8_t* h, size_t off, uint64_t v) {
  std::memcpy(h + off, &v, 8);
}

// A file written through a temporary name and renamed into place (open, write, commit), or an
// open descriptor written as it is (the second constructor; not closed here).
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)) {}
  OutFile(std::string what, int fd) : tmp_(std::move(what)), fd_(fd), owned_(false) {}
  ~OutFile() {
    if (!owned_) return;
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }
  void open() {
    std::string tmpl = path_ + ".tmp.XXXXXX";
    fd_ = ::mkstemp(tmpl.data());
    TANDEM_CHECK(fd_ >= 0, ErrorCode::kInvalidArgument, "cannot create '{}': {}", tmpl,
                 std::strerror(errno));
    tmp_ = tmpl;
    ::fchmod(fd_, 0644);  // mkstemp's 0600 would hide the model from other users
  }
  void write(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      TANDEM_CHECK(w > 0, ErrorCode::kRuntime, "writing '{}' failed: {}", tmp_,
                   std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void commit() {
    TANDEM_CHECK(::fsync(fd_) == 0, ErrorCode::kRuntime, "writing '{}' failed: {}", tmp_,
                 std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    TANDEM_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, ErrorCode::kRuntime,
                 "cannot rename '{}' to '{}': {}", tmp_, path_, std::strerror(errno));
    tmp_.clear();
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool owned_ = true;
};

// ---- reading ----

// A cursor over the graph section; every read is bounds-checked and names the file.
class In {
 public:
  In(const uint8_t* p, size_t n, const std::string& what) : p_(p), end_(p + n), what_(what) {}
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  void raw(void* dst, size_t n, const char* field) {
    TANDEM_CHECK(n <= left(), ErrorCode::kInvalidModel,
                 "{}: the graph section ends inside {} (a size or count is wrong)", what_, field);
    std::memcpy(dst, p_, n);
    p_ += n;
  }
  uint8_t u8(const char* f) { return get<uint8_t>(f); }
  uint32_t u32(const char* f) { return get<uint32_t>(f); }
  int32_t i32(const char* f) { return get<int32_t>(f); }
  uint64_t u64(const char* f) { return get<uint64_t>(f); }
  int64_t i64(const char* f) { return get<int64_t>(f); }
  float f32(const char* f) { return get<float>(f); }
  // A count of records at least `min_bytes` each: refused when the section cannot hold them, so
  // no list is sized from a number the bytes do not back.
  size_t count(const char* field, size_t min_bytes) {
    uint32_t n = u32(field);
    TANDEM_CHECK(static_cast<uint64_t>(n) * min_bytes <= left(), ErrorCode::kInvalidModel,
                 "{}: {} says {} entries, more than the rest of the graph section holds", what_,
                 field, n);
    return n;
  }
  std::string str(const char* field) {
    size_t n = count(field, 1);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  Shape dims(const char* field) {
    size_t n = count(field, 8);
    Shape s(n);
    for (auto& d : s) d = i64(field);
    return s;
  }
  const std::string& what() const { return what_; }

 private:
  template <typename T>
  T get(const char* field) {
    T v;
    raw(&v, sizeof v, field);
    return v;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& what_;
};

struct ReadContext {
  In& in;
  const uint8_t* blobs;
  uint64_t blobs_size;
  std::shared_ptr<const void> keeper;
  SizeLimits limits;
  uint32_t version = kTandemFormatVersion;
  uint64_t total_bytes = 0;
};

void* blob_at(ReadContext& rc, uint64_t offset, uint64_t nbytes, const std::string& owner);

Tensor read_tensor(ReadContext& rc, const std::string& owner) {
  In& in = rc.in;
  std::string name = in.str("a tensor name");
  int32_t dtype = in.i32("a tensor dtype");
  Shape shape = in.dims("a tensor shape");
  uint64_t offset = in.u64("a tensor offset");
  uint64_t nbytes = in.u64("a tensor size");
  const std::string& what = in.what();
  TANDEM_CHECK(known_dtype(dtype) && dtype_size(static_cast<DataType>(dtype)) > 0,
               ErrorCode::kInvalidModel, "{}: {} has dtype {}, which a stored tensor cannot have",
               what, owner, dtype);
  const auto dt = static_cast<DataType>(dtype);
  int64_t expect =
      checked_mul(checked_numel(shape, owner), static_cast<int64_t>(dtype_size(dt)), owner);
  TANDEM_CHECK(static_cast<uint64_t>(expect) == nbytes, ErrorCode::kInvalidModel,
               "{}: {} is {} {} ({} bytes), but its blob is {} bytes", what, owner, dtype_name(dt),
               shape_str(shape), expect, nbytes);
  void* data = blob_at(rc, offset, nbytes, owner);
  return Tensor::adopt(dt, std::move(shape), data, std::const_pointer_cast<void>(rc.keeper),
                       std::move(name));
}

// The blob of `nbytes` at `offset` in the blob section, checked: aligned, inside the section,
// within the size limits (counted toward the model's total).
void* blob_at(ReadContext& rc, uint64_t offset, uint64_t nbytes, const std::string& owner) {
  const std::string& what = rc.in.what();
  TANDEM_CHECK(offset % kTandemBlobAlign == 0, ErrorCode::kInvalidModel,
               "{}: the blob of {} is at offset {}, not a multiple of {}", what, owner, offset,
               kTandemBlobAlign);
  TANDEM_CHECK(offset <= rc.blobs_size && nbytes <= rc.blobs_size - offset,
               ErrorCode::kInvalidModel,
               "{}: the blob of {} ({} bytes at offset {}) lies past the end of the blob section "
               "({} bytes)",
               what, owner, nbytes, offset, rc.blobs_size);
  TANDEM_CHECK(rc.limits.max_tensor_bytes == 0 || nbytes <= rc.limits.max_tensor_bytes,
               ErrorCode::kInvalidModel,
               "{}: {} is {} bytes, over the per-tensor limit of {} bytes "
               "(Context::max_tensor_bytes)",
               what, owner, nbytes, rc.limits.max_tensor_bytes);
  rc.total_bytes += nbytes;  // cannot wrap: each is below the file's size
  TANDEM_CHECK(rc.limits.max_model_bytes == 0 || rc.total_bytes <= rc.limits.max_model_bytes,
               ErrorCode::kInvalidModel,
               "{}: {} brings the model's weights to {} bytes, over the per-model limit of {} "
               "bytes (Context::max_model_bytes)",
               what, owner, rc.total_bytes, rc.limits.max_model_bytes);
  // The mapping is read-only: a kernel that wrote into a weight would fault, not corrupt it.
  return const_cast<uint8_t*>(rc.blobs + offset);
}

Attribute read_attribute(ReadContext& rc, const std::string& owner) {
  In& in = rc.in;
  Attribute a;
  uint8_t kind = in.u8("an attribute kind");
  TANDEM_CHECK(kind <= static_cast<uint8_t>(Attribute::Kind::kOther), ErrorCode::kInvalidModel,
               "{}: {} has attribute kind {}, which does not exist", in.what(), owner, kind);
  a.kind = static_cast<Attribute::Kind>(kind);
  using K = Attribute::Kind;
  switch (a.kind) {
    case K::kFloat:
      a.f = in.f32("a float attribute");
      break;
    case K::kInt:
      a.i = in.i64("an int attribute");
      break;
    case K::kString:
      a.s = in.str("a string attribute");
      break;
    case K::kTensor:
      a.t = read_tensor(rc, owner);
      break;
    case K::kFloats:
      a.floats.resize(in.count("a float list", 4));
      for (float& f : a.floats) f = in.f32("a float list");
      break;
    case K::kInts:
      a.ints.resize(in.count("an int list", 8));
      for (int64_t& i : a.ints) i = in.i64("an int list");
      break;
    case K::kStrings:
      a.strings.resize(in.count("a string list", 4));
      for (std::string& s : a.strings) s = in.str("a string list");
      break;
    case K::kGraph:
    case K::kOther:
      break;
  }
  return a;
}

// Version 2's list of prepacked layouts: (constant value, layout key, blob). A key is only ever
// compared with the one a kernel computes, never interpreted.
void read_prepacked(ReadContext& rc, const std::vector<Value*>& values) {
  In& in = rc.in;
  size_t n = in.count("the prepacked layouts", 24);
  for (size_t i = 0; i < n; ++i) {
    uint32_t idx = in.u32("a prepacked layout's value");
    TANDEM_CHECK(idx < values.size() && values[idx]->is_constant(), ErrorCode::kInvalidModel,
                 "{}: prepacked layout {} belongs to value {}, which is not a constant", in.what(),
                 i, idx);
    Value* v = values[idx];
    PrepackedLayout p;
    p.key = in.str("a prepacked layout's key");
    TANDEM_CHECK(!p.key.empty() && p.key.size() <= kMaxLayoutKeyBytes, ErrorCode::kInvalidModel,
                 "{}: a prepacked layout of '{}' has a key of {} bytes (1 to {} allowed)",
                 in.what(), v->name, p.key.size(), kMaxLayoutKeyBytes);
    for (const PrepackedLayout& q : v->prepacked)
      TANDEM_CHECK(q.key != p.key, ErrorCode::kInvalidModel,
                   "{}: constant '{}' has the same prepacked layout twice", in.what(), v->name);
    uint64_t offset = in.u64("a prepacked layout's offset");
    uint64_t nbytes = in.u64("a prepacked layout's size");
    TANDEM_CHECK(nbytes > 0, ErrorCode::kInvalidModel, "{}: a prepacked layout of '{}' is empty",
                 in.what(), v->name);
    p.data = blob_at(rc, offset, nbytes, fmt::format("a prepacked layout of '{}'", v->name));
    p.bytes = nbytes;
    p.keeper = rc.keeper;
    v->prepacked.push_back(std::move(p));
  }
}

std::unique_ptr<Graph> parse_graph(ReadContext& rc, std::map<std::string, Shape>& fixed) {
  In& in = rc.in;
  const std::string& what = in.what();
  auto g = std::make_unique<Graph>();
  g->limits = rc.limits;
  g->name = in.str("the graph name");
  size_t n_opsets = in.count("the opset imports", 12);
  for (size_t i = 0; i < n_opsets; ++i) {
    std::string domain = in.str("an opset domain");
    int64_t version = in.i64("an opset version");
    TANDEM_CHECK(g->opset_imports.emplace(domain, version).second, ErrorCode::kInvalidModel,
                 "{}: opset domain '{}' is imported twice", what, domain);
  }
  auto def = g->opset_imports.find("");
  TANDEM_CHECK(
      def != g->opset_imports.end() && def->second >= kMinOpset && def->second <= kMaxOpset,
      ErrorCode::kInvalidModel, "{}: the default domain's opset is missing or outside {} to {}",
      what, kMinOpset, kMaxOpset);

  size_t n_values = in.count("the value table", 17);
  std::vector<Value*> values;
  values.reserve(n_values);
  for (size_t i = 0; i < n_values; ++i) {
    std::string name = in.str("a value name");
    TANDEM_CHECK(!name.empty(), ErrorCode::kInvalidModel, "{}: value {} has no name", what, i);
    TANDEM_CHECK(!g->find_value(name), ErrorCode::kInvalidModel, "{}: value '{}' is defined twice",
                 what, name);
    Value* v = g->add_value(name);
    int32_t dtype = in.i32("a value dtype");
    TANDEM_CHECK(dtype == 0 || known_dtype(dtype), ErrorCode::kInvalidModel,
                 "{}: value '{}' has dtype {}, which does not exist", what, name, dtype);
    v->dtype = static_cast<DataType>(dtype);
    uint8_t flags = in.u8("value flags");
    TANDEM_CHECK((flags & ~(kShapeKnown | kHasConstant | kStoredFp16)) == 0 &&
                     ((flags & kStoredFp16) == 0 || (flags & kHasConstant) != 0),
                 ErrorCode::kInvalidModel, "{}: value '{}' has unknown flags {:#x}", what, name,
                 flags);
    v->shape_known = flags & kShapeKnown;
    v->shape = in.dims("a value shape");
    TANDEM_CHECK(v->shape_known || v->shape.empty(), ErrorCode::kInvalidModel,
                 "{}: value '{}' has dims but no known rank", what, name);
    for (int64_t d : v->shape)
      TANDEM_CHECK(d >= -1, ErrorCode::kInvalidModel, "{}: value '{}' has dimension {}", what, name,
                   d);
    v->dim_names.resize(in.count("a value's dimension names", 4));
    for (std::string& s : v->dim_names) s = in.str("a dimension name");
    if (flags & kHasConstant) {
      v->constant = read_tensor(rc, fmt::format("constant '{}'", name));
      if (flags & kStoredFp16) {
        TANDEM_CHECK(v->dtype == DataType::kFloat32 && v->constant->dtype() == DataType::kFloat16,
                     ErrorCode::kInvalidModel,
                     "{}: constant '{}' is marked as float32 stored in float16, but is {} stored "
                     "as {}",
                     what, name, dtype_name(v->dtype), dtype_name(v->constant->dtype()));
        // Widened once, here: the kernels compute in float32 (private memory, half of which
        // the file saves on disk).
        Tensor wide(DataType::kFloat32, v->constant->shape(), v->constant->name());
        const auto* h = v->constant->data<uint16_t>();
        for (int64_t i = 0; i < wide.numel(); ++i) wide.data<float>()[i] = half_to_float(h[i]);
        v->constant = std::move(wide);
      }
      TANDEM_CHECK(
          v->constant->dtype() == v->dtype && v->shape_known && v->constant->shape() == v->shape,
          ErrorCode::kInvalidModel, "{}: constant '{}' is declared {} {} but stored as {} {}", what,
          name, dtype_name(v->dtype), shape_str(v->shape), dtype_name(v->constant->dtype()),
          shape_str(v->constant->shape()));
    }
    values.push_back(v);
  }
  auto value_at = [&](uint32_t idx, const char* role) -> Value* {
    TANDEM_CHECK(idx < values.size(), ErrorCode::kInvalidModel,
                 "{}: {} refers to value {}, but there are {} values", what, role, idx,
                 values.size());
    return values[idx];
  };

  size_t n_inputs = in.count("the graph inputs", 4);
  for (size_t i = 0; i < n_inputs; ++i) {
    Value* v = value_at(in.u32("a graph input"), "a graph input");
    TANDEM_CHECK(!v->is_constant() && !v->is_graph_input && v->dtype != DataType::kUndefined,
                 ErrorCode::kInvalidModel,
                 "{}: graph input '{}' is a constant, listed twice or has no dtype", what, v->name);
    v->is_graph_input = true;
    g->inputs.push_back(v);
  }
  size_t n_outputs = in.count("the graph outputs", 4);
  std::vector<Value*> outputs;
  for (size_t i = 0; i < n_outputs; ++i)
    outputs.push_back(value_at(in.u32("a graph output"), "a graph output"));
  // Checked against the inputs' declarations when the model is built, like a caller's shapes.
  size_t n_fixed = in.count("the fixed input shapes", 8);
  for (size_t i = 0; i < n_fixed; ++i) {
    std::string name = in.str("a fixed input's name");
    Shape shape = in.dims("a fixed input shape");
    TANDEM_CHECK(fixed.emplace(name, std::move(shape)).second, ErrorCode::kInvalidModel,
                 "{}: the shape of input '{}' is fixed twice", what, name);
  }

  size_t n_nodes = in.count("the node list", 28);
  std::set<std::string> node_names;
  for (size_t i = 0; i < n_nodes; ++i) {
    std::string name = in.str("a node name");
    std::string op_type = in.str("an op type");
    std::string domain = in.str("a node domain");
    int32_t opset = in.i32("a node opset");
    std::string desc = fmt::format("{}: {} node '{}'", what, op_type, name);
    TANDEM_CHECK(!op_type.empty() && node_names.insert(name).second, ErrorCode::kInvalidModel,
                 "{} has no op type or a name another node has", desc);
    if (domain.empty())
      TANDEM_CHECK(opset == def->second, ErrorCode::kInvalidModel,
                   "{} has opset {}, but the graph imports opset {}", desc, opset, def->second);
    std::vector<Value*> ins(in.count("a node's inputs", 4));
    for (Value*& v : ins) {
      uint32_t ref = in.u32("a node input");
      if (ref == 0) continue;
      v = value_at(ref - 1, "a node input");
      // Nodes are stored in topological order: every input is already defined.
      TANDEM_CHECK(v->is_constant() || v->is_graph_input || v->producer, ErrorCode::kInvalidModel,
                   "{} reads '{}' before any node writes it", desc, v->name);
    }
    std::vector<Value*> outs(in.count("a node's outputs", 4));
    std::set<const Value*> written;
    for (Value*& v : outs) {
      uint32_t ref = in.u32("a node output");
      if (ref == 0) continue;
      v = value_at(ref - 1, "a node output");
      // SSA, as the ONNX loader demands: each value has one writer, which is not an input.
      TANDEM_CHECK(
          !v->is_constant() && !v->is_graph_input && !v->producer && written.insert(v).second,
          ErrorCode::kInvalidModel, "{} writes '{}', which is already defined", desc, v->name);
    }
    TANDEM_CHECK(!written.empty(), ErrorCode::kInvalidModel, "{} has no outputs", desc);
    Node* n = g->add_node(op_type, name, ins, outs);
    n->domain = std::move(domain);
    n->opset = opset;
    size_t n_attrs = in.count("a node's attributes", 5);
    for (size_t k = 0; k < n_attrs; ++k) {
      std::string key = in.str("an attribute name");
      Attribute a =
          read_attribute(rc, fmt::format("attribute '{}' of {} node '{}'", key, op_type, name));
      TANDEM_CHECK(n->attrs.emplace(key, std::move(a)).second, ErrorCode::kInvalidModel,
                   "{} has attribute '{}' twice", desc, key);
    }
  }
  if (rc.version >= 2) read_prepacked(rc, values);
  TANDEM_CHECK(in.left() == 0, ErrorCode::kInvalidModel,
               "{}: {} bytes follow the graph in its section", what, in.left());
  for (Value* v : outputs) {
    TANDEM_CHECK(v->is_constant() || v->is_graph_input || v->producer, ErrorCode::kInvalidModel,
                 "{}: graph output '{}' is not produced by any node, input or constant", what,
                 v->name);
    v->is_graph_output = true;
    g->outputs.push_back(v);
  }
  return g;
}

uint32_t get_u32(const uint8_t* h, size_t off) {
  uint32_t v;
  std::memcpy(&v, h + off, 4);
  return v;
}
uint64_t get_u64(const uint8_t* h, size_t off) {
  uint64_t v;
  std::memcpy(&v, h + off, 8);
  return v;
}

}  // namespace

std::string tandem_target_for_backend(const std::string& backend) {
  return backend == "ref" ? "ref" : "cpu";
}

bool has_tandem_magic(const void* data, size_t size) {
  return size >= sizeof kTandemMagic && std::memcmp(data, kTandemMagic, sizeof kTandemMagic) == 0;
}

bool fp16_candidate(const Value& v) {
  return v.is_constant() && v.constant->dtype() == DataType::kFloat32 &&
         v.constant->numel() >= kFp16MinElements;
}

uint64_t tandem_header_checksum(const uint8_t* header) {
  return get_u64(header, kOffChecksum);
}

bool is_tandem_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  char magic[sizeof kTandemMagic];
  ssize_t n = ::pread(fd, magic, sizeof magic, 0);
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof magic) && has_tandem_magic(magic, sizeof magic);
}

namespace {

// The whole file, laid out: the header and the pieces after it, in order.
struct Layout {
  uint8_t header[kTandemHeaderSize] = {};
  std::string graph_bytes;
  BlobTable blobs;
  uint64_t graph_offset = kTandemHeaderSize, blobs_offset = 0, file_size = 0;

  Layout(const Graph& graph, const std::string& target,
         const std::map<std::string, Shape>& fixed_shapes, bool fp16_weights) {
    TANDEM_CHECK(!target.empty() && target.size() < kTargetBytes, ErrorCode::kInvalidArgument,
                 "target '{}' must be 1 to {} characters", target, kTargetBytes - 1);
    graph_bytes = serialize_graph(graph, fixed_shapes, blobs, fp16_weights);
    blobs_offset = align_up(graph_offset + graph_bytes.size());
    file_size = blobs_offset + blobs.end;
    Hash64 hash;
    each_piece([&](const void* p, size_t n) { hash.update(p, n); });
    std::memcpy(header, kTandemMagic, sizeof kTandemMagic);
    put_u32(header, kOffVersion, kTandemFormatVersion);
    put_u32(header, kOffHeaderSize, kTandemHeaderSize);
    put_u64(header, kOffFileSize, file_size);
    put_u64(header, kOffChecksum, hash.digest());
    put_u64(header, kOffGraphOffset, graph_offset);
    put_u64(header, kOffGraphSize, graph_bytes.size());
    put_u64(header, kOffBlobsOffset, blobs_offset);
    put_u64(header, kOffBlobsSize, blobs.end);
    std::memcpy(header + kOffTarget, target.data(), target.size());
  }
  // The bytes after the header in file order, to the checksum and then to the file.
  template <typename Sink>
  void each_piece(Sink&& sink) const {
    static const uint8_t zeros[kTandemBlobAlign] = {};
    sink(graph_bytes.data(), graph_bytes.size());
    sink(zeros, blobs_offset - graph_offset - graph_bytes.size());
    uint64_t at = 0;
    for (size_t i = 0; i < blobs.buffers.size(); ++i) {
      sink(zeros, blobs.offsets[i] - at);
      sink(blobs.buffers[i].first, blobs.buffers[i].second);
      at = blobs.offsets[i] + blobs.buffers[i].second;
    }
  }
  void write_to(OutFile& file) const {
    file.write(header, sizeof header);
    each_piece([&](const void* p, size_t n) { file.write(p, n); });
  }
};

}  // namespace

size_t write_tandem_file(const Graph& graph, const std::string& target,
                         const std::map<std::string, Shape>& fixed_shapes, const std::string& path,
                         bool fp16_weights) {
  Layout layout(graph, target, fixed_shapes, fp16_weights);
  OutFile file(path);
  file.open();
  layout.write_to(file);
  file.commit();
  return layout.file_size;
}

size_t write_tandem_fd(const Graph& graph, const std::string& target,
                       const std::map<std::string, Shape>& fixed_shapes, int fd,
                       const std::string& what, bool fp16_weights) {
  Layout layout(graph, target, fixed_shapes, fp16_weights);
  OutFile file(what, fd);
  layout.write_to(file);
  return layout.file_size;
}

TandemModel read_tandem_bytes(const uint8_t* data, size_t size, std::shared_ptr<const void> keeper,
                              const std::string& what, const std::string& expected_target,
                              const SizeLimits& limits, bool verify_checksum) {
  TANDEM_CHECK(has_tandem_magic(data, size), ErrorCode::kInvalidModel,
               "{} is not a .tandem file (it does not start with the magic)", what);
  TANDEM_CHECK(size >= kTandemHeaderSize, ErrorCode::kInvalidModel,
               "{} is truncated: {} bytes, shorter than the {}-byte header", what, size,
               kTandemHeaderSize);
  TANDEM_CHECK(reinterpret_cast<uintptr_t>(data) % kTandemBlobAlign == 0, ErrorCode::kInternal,
               "{}: the bytes are not {}-byte aligned in memory", what, kTandemBlobAlign);
  TandemModel m;
  m.version = get_u32(data, kOffVersion);
  TANDEM_CHECK(m.version >= kTandemOldestFormatVersion && m.version <= kTandemFormatVersion,
               ErrorCode::kUnsupported,
               "{} has .tandem format version {}; this Tandem reads versions {} to {} (convert "
               "the model again with this Tandem's `tandem convert`)",
               what, m.version, kTandemOldestFormatVersion, kTandemFormatVersion);
  TANDEM_CHECK(get_u32(data, kOffHeaderSize) == kTandemHeaderSize, ErrorCode::kInvalidModel,
               "{}: the header size field is {}, not {}", what, get_u32(data, kOffHeaderSize),
               kTandemHeaderSize);
  const uint64_t file_size = get_u64(data, kOffFileSize);
  TANDEM_CHECK(file_size <= size, ErrorCode::kInvalidModel,
               "{} is truncated: its header says {} bytes, but there are only {}", what, file_size,
               size);
  TANDEM_CHECK(file_size == size, ErrorCode::kInvalidModel,
               "{} has {} bytes after the {} its header says it has", what, size - file_size,
               file_size);
  for (size_t i = kOffReserved; i < kTandemHeaderSize; ++i)
    TANDEM_CHECK(data[i] == 0, ErrorCode::kInvalidModel,
                 "{}: reserved header byte {} is not zero (a newer or damaged file)", what, i);
  const char* t = reinterpret_cast<const char*>(data + kOffTarget);
  size_t tlen = strnlen(t, kTargetBytes);
  TANDEM_CHECK(tlen > 0 && tlen < kTargetBytes, ErrorCode::kInvalidModel,
               "{}: the target field is empty or not terminated", what);
  m.target.assign(t, tlen);
  for (size_t i = tlen; i < kTargetBytes; ++i)
    TANDEM_CHECK(t[i] == 0, ErrorCode::kInvalidModel,
                 "{}: the target field has bytes after its end", what);
  TANDEM_CHECK(m.target == "cpu" || m.target == "ref", ErrorCode::kUnsupported,
               "{} was converted for target '{}', which this Tandem does not know (targets: "
               "cpu, ref)",
               what, m.target);
  TANDEM_CHECK(expected_target.empty() || m.target == expected_target, ErrorCode::kUnsupported,
               "{} was converted for target '{}', but this build asks for target '{}' (convert "
               "the .onnx again with --target {}, or choose the backend the file was made for)",
               what, m.target, expected_target, expected_target);
  if (verify_checksum) {
    const uint64_t stored = get_u64(data, kOffChecksum);
    const uint64_t computed = hash64(data + kTandemHeaderSize, size - kTandemHeaderSize);
    TANDEM_CHECK(stored == computed, ErrorCode::kInvalidModel,
                 "{} is corrupt: its checksum is {:016x}, but its bytes hash to {:016x}", what,
                 stored, computed);
  }

  const uint64_t graph_offset = get_u64(data, kOffGraphOffset);
  const uint64_t graph_size = get_u64(data, kOffGraphSize);
  const uint64_t blobs_offset = get_u64(data, kOffBlobsOffset);
  const uint64_t blobs_size = get_u64(data, kOffBlobsSize);
  TANDEM_CHECK(graph_offset == kTandemHeaderSize && graph_size <= size - graph_offset &&
                   blobs_offset >= graph_offset + graph_size && blobs_offset <= size &&
                   blobs_offset % kTandemBlobAlign == 0 && blobs_size == size - blobs_offset,
               ErrorCode::kInvalidModel,
               "{}: the sections do not fit the file (graph {} bytes at {}, blobs {} bytes at {}, "
               "file {} bytes; blobs must start {}-byte aligned after the graph and end the file)",
               what, graph_size, graph_offset, blobs_size, blobs_offset, size, kTandemBlobAlign);

  In in(data + graph_offset, graph_size, what);
  ReadContext rc{in, data + blobs_offset, blobs_size, std::move(keeper), limits, m.version};
  m.graph = parse_graph(rc, m.fixed_shapes);
  return m;
}

namespace {

// The file at `path` (a regular file of at least a header's size) mapped PROT_READ/MAP_PRIVATE:
// its pages are the page cache's, shared by every process that maps the file, and nothing here
// can write them. Unmapped when the last copy of the pointer goes.
std::shared_ptr<const uint8_t> map_whole_file(const std::string& path, size_t& size) {
  RegularFile file(path, fmt::format("model file '{}'", path));
  TANDEM_CHECK(file.size() >= static_cast<int64_t>(kTandemHeaderSize), ErrorCode::kInvalidModel,
               "'{}' is truncated: {} bytes, shorter than the {}-byte .tandem header", path,
               file.size(), kTandemHeaderSize);
  const size_t n = static_cast<size_t>(file.size());
  void* p = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, file.fd(), 0);
  TANDEM_CHECK(p != MAP_FAILED, ErrorCode::kRuntime, "cannot map '{}': {}", path,
               std::strerror(errno));
  size = n;
  return {static_cast<const uint8_t*>(p),
          [n](const uint8_t* q) { ::munmap(const_cast<uint8_t*>(q), n); }};
}

}  // namespace

void verify_tandem_checksum(const std::string& path) {
  // Mapped for the read and unmapped after: no copy, and no page stays in this process.
  size_t size = 0;
  std::shared_ptr<const uint8_t> mapping = map_whole_file(path, size);
  const uint8_t* data = mapping.get();
  ::madvise(const_cast<uint8_t*>(data), size, MADV_SEQUENTIAL);
  TANDEM_CHECK(has_tandem_magic(data, size), ErrorCode::kInvalidModel,
               "'{}' is not a .tandem file (it does not start with the magic)", path);
  const uint64_t file_size = get_u64(data, kOffFileSize);
  TANDEM_CHECK(file_size == size, ErrorCode::kInvalidModel,
               "'{}' is {} bytes, but its header says {}", path, size, file_size);
  const uint64_t stored = get_u64(data, kOffChecksum);
  const uint64_t computed = hash64(data + kTandemHeaderSize, size - kTandemHeaderSize);
  TANDEM_CHECK(stored == computed, ErrorCode::kInvalidModel,
               "'{}' is corrupt: its checksum is {:016x}, but its bytes hash to {:016x}", path,
               stored, computed);
}

TandemModel map_tandem_file(const std::string& path, const std::string& expected_target,
                            const SizeLimits& limits, bool verify_checksum) {
  const std::string what = fmt::format("'{}'", path);
  std::error_code ec;
  TANDEM_CHECK(std::filesystem::exists(path, ec), ErrorCode::kNotFound,
               "model file '{}' does not exist", path);
  size_t size = 0;
  std::shared_ptr<const uint8_t> mapping = map_whole_file(path, size);
  void* p = const_cast<uint8_t*>(mapping.get());
  TandemModel m = read_tandem_bytes(mapping.get(), size, mapping, what, expected_target, limits,
                                    verify_checksum);
  // The checksum (when verified here) read every page, and each page read stays in this process's
  // resident set (and its PSS) while mapped, though most are never read again: a weight whose
  // kernels use a prepacked layout is not. Dropped from the page table here (they stay in the page
  // cache), a page comes back on its first use, so the process holds only the bytes its kernels
  // read.
  ::madvise(p, size, MADV_DONTNEED);
  return m;
}

}  // namespace tandem

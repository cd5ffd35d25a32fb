// tandem._tandem: the pybind11 binding of Tandem's C++ API (tandem/model.h, tandem/parallel.h),
// shaped like MindSpore Lite's Python API (Context, Model, Tensor, ModelType) so that the seed's
// example ports line for line. The pure-Python package (python/tandem/__init__.py) re-exports it.
//
// Memory:
//  * Tensor.set_data_from_numpy copies the array into a buffer the Tensor owns (as MindSpore
//    Lite does), so later changes to the array do not reach the Tensor.
//  * numpy arrays passed straight to Model.predict / ParallelPredictor.predict / submit are
//    borrowed, not copied (a non-contiguous or byte-swapped array is first made contiguous).
//    Inputs are only read, so read-only arrays (np.frombuffer, onnx.numpy_helper.to_array,
//    setflags(write=False)) are borrowed too.
//  * Tensor.get_data_to_numpy and the arrays ParallelPredictor returns are views of the C++ buffer;
//    a capsule holding a copy of the tandem::Tensor keeps the buffer alive. No copy.
//  * build, predict, resize, finalize and Future.result release the GIL.
//
// Threads: one Model may be used from several Python threads. Its predicts and resizes run one at
// a time (a mutex per Model, taken with the GIL released so other threads keep running), and
// last_stats() / get_outputs() copy what they return under that mutex, since predict rewrites it
// with the GIL released. A ParallelPredictor takes concurrent predict/submit calls itself; its
// build() runs once (later calls, e.g. inside `with`, return at once).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tandem/context.h"
#ifdef TANDEM_HAVE_MPI
#include "tandem/mpi.h"
#endif
#include "tandem/model.h"
#include "tandem/parallel.h"
#include "tandem/status.h"
#include "tandem/tensor.h"

namespace py = pybind11;

namespace {

using tandem::DataType;
using tandem::Error;
using tandem::ErrorCode;
using tandem::Shape;

// ---------------------------------------------------------------------------------------------
// Exceptions: tandem::Error -> tandem.TandemError (a RuntimeError) or a subclass per code, each
// with a `.code` attribute ("INVALID_ARGUMENT", ...). Invalid arguments are also ValueErrors,
// missing files FileNotFoundErrors, unsupported features NotImplementedErrors.

struct ErrorClasses {
  PyObject* base = nullptr;
  PyObject* invalid_argument = nullptr;
  PyObject* invalid_model = nullptr;
  PyObject* unsupported = nullptr;
  PyObject* not_found = nullptr;
  PyObject* runtime = nullptr;
  PyObject* internal = nullptr;
};
ErrorClasses g_errors;

const char* code_str(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case ErrorCode::kInvalidModel:
      return "INVALID_MODEL";
    case ErrorCode::kUnsupported:
      return "UNSUPPORTED";
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kRuntime:
      return "RUNTIME";
    case ErrorCode::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
}

PyObject* class_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return g_errors.invalid_argument;
    case ErrorCode::kInvalidModel:
      return g_errors.invalid_model;
    case ErrorCode::kUnsupported:
      return g_errors.unsupported;
    case ErrorCode::kNotFound:
      return g_errors.not_found;
    case ErrorCode::kRuntime:
      return g_errors.runtime;
    case ErrorCode::kInternal:
      return g_errors.internal;
  }
  return g_errors.base;
}

// Sets the Python error for a tandem::Error (GIL held).
void set_tandem_error(ErrorCode code, const char* message) {
  PyObject* cls = class_for(code);
  PyObject* exc = PyObject_CallFunction(cls, "s", message);
  if (exc == nullptr) return;  // the call already set an error
  PyObject* code_obj = PyUnicode_FromString(code_str(code));
  PyObject_SetAttrString(exc, "code", code_obj);
  Py_XDECREF(code_obj);
  PyErr_SetObject(cls, exc);
  Py_DECREF(exc);
}

[[noreturn]] void throw_error(ErrorCode code, const std::string& message) {
  throw Error(code, message);
}

PyObject* make_exception(py::module_& m, const char* name, PyObject* bases, const char* doc) {
  std::string full = std::string("tandem.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(full.c_str(), doc, bases, nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::handle(cls));
  return cls;  // the module's reference keeps it alive; we keep a borrowed pointer
}

void register_exceptions(py::module_& m) {
  auto tuple = [](std::initializer_list<PyObject*> items) {
    PyObject* t = PyTuple_New(static_cast<Py_ssize_t>(items.size()));
    Py_ssize_t i = 0;
    for (PyObject* o : items) {
      Py_INCREF(o);
      PyTuple_SET_ITEM(t, i++, o);
    }
    return t;
  };
  PyObject* b = tuple({PyExc_RuntimeError});
  g_errors.base = make_exception(
      m, "TandemError", b,
      "Every failure Tandem reports. `.code` names the kind: INVALID_ARGUMENT, INVALID_MODEL, "
      "UNSUPPORTED, NOT_FOUND, RUNTIME or INTERNAL.");
  Py_DECREF(b);
  PyObject_SetAttrString(g_errors.base, "code", Py_None);
  struct Spec {
    PyObject** slot;
    const char* name;
    PyObject* extra;
    const char* doc;
  } specs[] = {
      {&g_errors.invalid_argument, "InvalidArgumentError", PyExc_ValueError,
       "The caller passed something wrong (input name, shape, dtype, option, call order). "
       "Also a ValueError."},
      {&g_errors.invalid_model, "InvalidModelError", nullptr,
       "The model file is unreadable, malformed or inconsistent."},
      {&g_errors.unsupported, "UnsupportedError", PyExc_NotImplementedError,
       "Valid input that Tandem does not implement (op, dtype, device). Also a "
       "NotImplementedError."},
      {&g_errors.not_found, "NotFoundError", PyExc_FileNotFoundError,
       "A file that should exist does not. Also a FileNotFoundError."},
      {&g_errors.runtime, "ExecutionError", nullptr,
       "A failure while running: a kernel, a worker process, a deadline."},
      {&g_errors.internal, "InternalError", nullptr, "A bug in Tandem."},
  };
  for (auto& s : specs) {
    PyObject* bases = s.extra ? tuple({g_errors.base, s.extra}) : tuple({g_errors.base});
    *s.slot = make_exception(m, s.name, bases, s.doc);
    Py_DECREF(bases);
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      set_tandem_error(e.code(), e.what());
    }
  });
}

// ---------------------------------------------------------------------------------------------
// dtypes

py::dtype numpy_dtype(DataType dt) {
  switch (dt) {
    case DataType::kFloat32:
      return py::dtype("float32");
    case DataType::kFloat64:
      return py::dtype("float64");
    case DataType::kFloat16:
      return py::dtype("float16");
    case DataType::kInt8:
      return py::dtype("int8");
    case DataType::kInt16:
      return py::dtype("int16");
    case DataType::kInt32:
      return py::dtype("int32");
    case DataType::kInt64:
      return py::dtype("int64");
    case DataType::kUInt8:
      return py::dtype("uint8");
    case DataType::kUInt16:
      return py::dtype("uint16");
    case DataType::kUInt32:
      return py::dtype("uint32");
    case DataType::kUInt64:
      return py::dtype("uint64");
    case DataType::kBool:
      return py::dtype("bool");
    default:
      throw_error(ErrorCode::kUnsupported,
                  std::string("dtype ") + tandem::dtype_name(dt) + " has no numpy equivalent");
  }
}

DataType from_numpy_dtype(const py::dtype& d) {
  const char kind = d.kind();
  const auto size = d.itemsize();
  if (kind == 'f') {
    if (size == 2) return DataType::kFloat16;
    if (size == 4) return DataType::kFloat32;
    if (size == 8) return DataType::kFloat64;
  } else if (kind == 'i') {
    if (size == 1) return DataType::kInt8;
    if (size == 2) return DataType::kInt16;
    if (size == 4) return DataType::kInt32;
    if (size == 8) return DataType::kInt64;
  } else if (kind == 'u') {
    if (size == 1) return DataType::kUInt8;
    if (size == 2) return DataType::kUInt16;
    if (size == 4) return DataType::kUInt32;
    if (size == 8) return DataType::kUInt64;
  } else if (kind == 'b') {
    return DataType::kBool;
  }
  throw_error(ErrorCode::kInvalidArgument,
              "numpy dtype '" + py::str(py::handle(d)).cast<std::string>() +
                  "' is not supported: use float16/32/64, int8/16/32/64, uint8/16/32/64 or bool");
}

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ",";
    out += s[i] < 0 ? std::string("?") : std::to_string(s[i]);
  }
  return out + "]";
}

Shape array_shape(const py::array& a) {
  return Shape(a.shape(), a.shape() + a.ndim());
}

// A C-contiguous, native-byte-order ndarray for `obj` (the same object when it already is one).
py::array contiguous(const py::handle& obj) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string("expected a numpy.ndarray or tandem.Tensor, got ") +
                         py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  auto a = py::reinterpret_borrow<py::array>(obj);
  py::dtype dt = a.dtype();
  const char order = dt.attr("byteorder").cast<std::string>()[0];
  const bool native =
      order == '=' || order == '|' ||
      (order == '<') ==
          (py::module_::import("sys").attr("byteorder").cast<std::string>() == "little");
  if (native && (a.flags() & py::array::c_style)) return a;
  py::module_ np = py::module_::import("numpy");
  return np.attr("ascontiguousarray")(a, dt.attr("newbyteorder")("="));
}

// A numpy view of `t`'s buffer; the capsule keeps a copy of the Tensor (its shared buffer) alive.
py::array to_numpy_view(const tandem::Tensor& t) {
  py::dtype dt = numpy_dtype(t.dtype());
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  if (t.numel() == 0 || t.raw() == nullptr) return py::array(dt, shape);
  auto* keep = new tandem::Tensor(t);
  py::capsule owner(keep, [](void* p) { delete static_cast<tandem::Tensor*>(p); });
  return py::array(dt, shape, std::vector<py::ssize_t>{}, keep->raw(), owner);
}

// ---------------------------------------------------------------------------------------------
// Tensor: a name, dtype and (declared) shape, and data once it has some.

struct PyTensor {
  std::string name;
  DataType dtype = DataType::kUndefined;
  Shape declared;  // may hold negative (symbolic) dims
  std::vector<std::string> dim_names;
  std::optional<tandem::Tensor> data;
  // A model's input or output: new data must match its dtype and shape. A Tensor made from an
  // array takes whatever it is given next.
  bool from_model = false;

  static PyTensor from_info(const tandem::TensorInfo& info) {
    PyTensor t;
    t.from_model = true;
    t.name = info.name;
    t.dtype = info.dtype;
    t.declared = info.shape;
    t.dim_names = info.dim_names;
    return t;
  }
  static PyTensor from_tensor(tandem::Tensor tensor) {
    PyTensor t;
    t.from_model = true;
    t.name = tensor.name();
    t.dtype = tensor.dtype();
    t.declared = tensor.shape();
    t.data = std::move(tensor);
    return t;
  }

  const Shape& shape() const { return data ? data->shape() : declared; }

  std::string label() const { return name.empty() ? "Tensor" : "Tensor '" + name + "'"; }

  std::string declared_text() const {
    std::string s = shape_text(declared);
    std::vector<std::string> sym;
    for (size_t i = 0; i < declared.size(); ++i)
      if (declared[i] < 0)
        sym.push_back(i < dim_names.size() && !dim_names[i].empty() ? dim_names[i]
                                                                    : "dim " + std::to_string(i));
    if (!sym.empty()) {
      s += " (symbolic: ";
      for (size_t i = 0; i < sym.size(); ++i) s += (i ? ", " : "") + sym[i];
      s += ")";
    }
    return s;
  }

  void set_data_from_numpy(const py::object& obj) {
    py::array a = contiguous(obj);
    DataType dt = from_numpy_dtype(a.dtype());
    Shape shape = array_shape(a);
    if (from_model && dt != dtype) {
      std::string want = tandem::dtype_name(dtype);
      throw_error(ErrorCode::kInvalidArgument,
                  label() + ": dtype differs: the tensor is " + want + ", the array is " +
                      tandem::dtype_name(dt) + " (convert with array.astype(numpy." + want + "))");
    }
    if (from_model) {
      bool ok = shape.size() == declared.size();
      std::string where;
      if (!ok) {
        where = "rank " + std::to_string(declared.size()) + " vs " + std::to_string(shape.size());
      } else {
        for (size_t i = 0; i < shape.size(); ++i)
          if (declared[i] >= 0 && declared[i] != shape[i]) {
            ok = false;
            where = "dim " + std::to_string(i) + " is " + std::to_string(declared[i]) +
                    " in the tensor, " + std::to_string(shape[i]) + " in the array";
            break;
          }
      }
      if (!ok)
        throw_error(ErrorCode::kInvalidArgument, label() + ": shape differs: the tensor is " +
                                                     declared_text() + ", the array is " +
                                                     shape_text(shape) + " (" + where + ")");
    }
    if (!from_model) {
      dtype = dt;
      declared = shape;
    }
    data = tandem::Tensor::copy_of(dt, shape, a.data(), name);
  }

  py::array get_data_to_numpy() const {
    if (!data)
      throw_error(ErrorCode::kInvalidArgument,
                  label() + " " + declared_text() +
                      " has no data yet: call set_data_from_numpy() first (outputs have data "
                      "once predict() returns them)");
    return to_numpy_view(*data);
  }

  int64_t element_num() const {
    if (data) return data->numel();
    for (int64_t d : declared)
      if (d < 0) return -1;
    return tandem::shape_numel(declared);
  }
  int64_t data_size() const {
    int64_t n = element_num();
    return n < 0 ? -1 : n * static_cast<int64_t>(tandem::dtype_size(dtype));
  }

  std::string repr() const {
    std::string s =
        "tandem.Tensor(name='" + name + "', dtype=" +
        (dtype == DataType::kUndefined ? std::string("undefined") : tandem::dtype_name(dtype)) +
        ", shape=" + (data ? shape_text(data->shape()) : declared_text());
    if (!data) s += ", no data";
    return s + ")";
  }
};

// Converts a list (or dict name -> value) of Tensors / numpy arrays to borrowed tandem::Tensors.
// `keep` holds the Python objects whose memory the returned tensors borrow.
std::vector<tandem::Tensor> to_engine_inputs(const py::handle& obj, std::vector<py::object>& keep) {
  std::vector<std::pair<std::string, py::handle>> items;
  if (py::isinstance<py::dict>(obj)) {
    for (auto kv : py::reinterpret_borrow<py::dict>(obj))
      items.emplace_back(py::str(kv.first).cast<std::string>(), kv.second);
  } else if (py::isinstance<PyTensor>(obj) || py::isinstance<py::array>(obj) ||
             py::isinstance<py::str>(obj) || !py::hasattr(obj, "__iter__")) {
    throw py::type_error(
        "inputs must be a list of tandem.Tensor or numpy arrays (or a dict name -> "
        "array), got " +
        py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  } else {
    for (auto item : obj) items.emplace_back(std::string(), item);
  }
  std::vector<tandem::Tensor> out;
  out.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& [key, h] = items[i];
    if (py::isinstance<PyTensor>(h)) {
      const PyTensor& t = h.cast<const PyTensor&>();
      if (!t.data)
        throw_error(ErrorCode::kInvalidArgument,
                    "input " + std::to_string(i) + " (" + t.label() +
                        ") has no data: call set_data_from_numpy() on it first");
      keep.push_back(py::reinterpret_borrow<py::object>(h));
      tandem::Tensor e = *t.data;
      if (!key.empty()) e.set_name(key);
      out.push_back(std::move(e));
    } else {
      py::array a = contiguous(h);
      DataType dt = from_numpy_dtype(a.dtype());
      keep.push_back(a);
      // data(), not mutable_data(): the engine only reads inputs (Model::predict takes them
      // const, ParallelPredictor copies them), so a read-only array is borrowed as it is.
      out.push_back(tandem::Tensor::borrow(dt, array_shape(a), const_cast<void*>(a.data()), key));
    }
  }
  return out;
}

Shape to_shape(const py::handle& h, const std::string& what) {
  try {
    return h.cast<Shape>();
  } catch (const py::cast_error&) {
    throw_error(ErrorCode::kInvalidArgument,
                what + ": expected a list of ints, got " + py::repr(h).cast<std::string>());
  }
}

tandem::ShapeMap to_shape_map(const py::object& obj) {
  tandem::ShapeMap map;
  if (obj.is_none()) return map;
  if (!py::isinstance<py::dict>(obj))
    throw_error(ErrorCode::kInvalidArgument, "input_shapes must be a dict name -> list of ints");
  for (auto kv : py::reinterpret_borrow<py::dict>(obj)) {
    std::string name = py::str(kv.first).cast<std::string>();
    map[name] = to_shape(kv.second, "input_shapes['" + name + "']");
  }
  return map;
}

// ---------------------------------------------------------------------------------------------
// Context, shaped like mindspore_lite.Context: target list plus per-device info objects.

struct CpuInfo {
  int thread_num = 0;
  std::vector<int> core_list;
};
struct CudaInfo {
  int device_id = 0;
};

struct TnContext {
  std::vector<std::string> target{"cpu"};
  std::shared_ptr<CpuInfo> cpu = std::make_shared<CpuInfo>();
  std::shared_ptr<CudaInfo> cuda = std::make_shared<CudaInfo>();
  std::string backend = "auto";
  bool profile = false;
  bool verify_checksum = true;

  void set_target(const py::object& value) {
    std::vector<std::string> t;
    if (py::isinstance<py::str>(value)) {
      t.push_back(value.cast<std::string>());
    } else {
      try {
        t = value.cast<std::vector<std::string>>();
      } catch (const py::cast_error&) {
        throw_error(ErrorCode::kInvalidArgument,
                    "Context.target must be a list of strings such as ['cpu'] or ['cuda']");
      }
    }
    if (t.empty()) throw_error(ErrorCode::kInvalidArgument, "Context.target must not be empty");
    for (auto& s : t) {
      for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (s == "gpu") s = "cuda";
      if (s != "cpu" && s != "cuda")
        throw_error(ErrorCode::kInvalidArgument,
                    "Context.target: '" + s + "' is not a Tandem device; use 'cpu' or 'cuda'");
    }
    target = std::move(t);
  }

  tandem::Context to_context() const {
    tandem::Context c;
    if (target.front() == "cuda")
      c.device = "cuda:" + std::to_string(cuda->device_id);
    else
      c.device = "cpu";
    c.thread_num = cpu->thread_num;
    c.core_list = cpu->core_list;
    c.backend = backend;
    c.profile = profile;
    c.verify_checksum = verify_checksum;
    return c;
  }
};

// ---------------------------------------------------------------------------------------------
// Model

enum class ModelType { kOnnx = 0, kMindir = 1 };

struct PyModel {
  // `mu` guards model, last_outputs and the Model's own state: predict and resize hold it while
  // they run with the GIL released, so one Model runs one predict at a time. (The C++ Model runs
  // one at a time anyway, its Session holds a lock per run, but its last_stats() and resize()
  // are not synchronised.) Take it only with the GIL released (lock()), and never touch Python
  // objects while holding it, so a thread waiting for it never blocks the interpreter.
  std::unique_ptr<tandem::Model> model;
  std::mutex mu;
  std::vector<tandem::Tensor> last_outputs;
  std::string path;

  std::unique_lock<std::mutex> lock() {
    py::gil_scoped_release nogil;
    return std::unique_lock<std::mutex>(mu);
  }

  // The model, with `mu` held by the caller.
  tandem::Model& built() {
    if (!model)
      throw_error(ErrorCode::kInvalidArgument,
                  "the Model is not built: call build_from_file() first");
    return *model;
  }

  void build_from_file(const std::string& model_path, ModelType type,
                       const std::optional<TnContext>& context, const py::object& input_shapes) {
    if (type != ModelType::kOnnx)
      throw_error(ErrorCode::kUnsupported,
                  "ModelType.MINDIR is not supported: Tandem reads ONNX files directly (use "
                  "ModelType.ONNX)");
    tandem::Context ctx = context ? context->to_context() : tandem::Context{};
    tandem::ShapeMap shapes = to_shape_map(input_shapes);
    std::unique_ptr<tandem::Model> m;
    {
      py::gil_scoped_release nogil;
      m = std::make_unique<tandem::Model>(tandem::Model::build_from_file(model_path, ctx, shapes));
    }
    std::unique_ptr<tandem::Model> old;
    {
      auto held = lock();
      old = std::move(model);  // destroyed below, without the lock (or the GIL)
      model = std::move(m);
      last_outputs.clear();
      path = model_path;
    }
    py::gil_scoped_release nogil;
    old.reset();
  }

  std::vector<PyTensor> get_inputs() {
    std::vector<tandem::TensorInfo> infos;
    {
      auto held = lock();
      infos = built().inputs();
    }
    std::vector<PyTensor> out;
    for (const auto& i : infos) out.push_back(PyTensor::from_info(i));
    return out;
  }

  std::vector<PyTensor> get_outputs() {
    // Copied under the lock: a predict in another thread reassigns last_outputs.
    std::vector<tandem::Tensor> outs;
    std::vector<tandem::TensorInfo> infos;
    {
      auto held = lock();
      tandem::Model& m = built();
      outs = last_outputs;
      if (outs.empty()) infos = m.outputs();
    }
    std::vector<PyTensor> out;
    for (auto& t : outs) out.push_back(PyTensor::from_tensor(std::move(t)));
    for (const auto& i : infos) out.push_back(PyTensor::from_info(i));
    return out;
  }

  std::vector<PyTensor> predict(const py::object& inputs) {
    std::vector<py::object> keep;
    std::vector<tandem::Tensor> in = to_engine_inputs(inputs, keep);
    std::vector<tandem::Tensor> outs;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> held(mu);
      outs = built().predict(in);
      last_outputs = outs;
    }
    std::vector<PyTensor> result;
    for (auto& t : outs) result.push_back(PyTensor::from_tensor(std::move(t)));
    return result;
  }

  void resize(const py::object& inputs, const py::object& shapes) {
    std::vector<py::object> ins, shs;
    for (auto h : inputs) ins.push_back(py::reinterpret_borrow<py::object>(h));
    for (auto h : shapes) shs.push_back(py::reinterpret_borrow<py::object>(h));
    if (ins.size() != shs.size())
      throw_error(ErrorCode::kInvalidArgument, "resize: " + std::to_string(ins.size()) +
                                                   " inputs but " + std::to_string(shs.size()) +
                                                   " shapes");
    tandem::ShapeMap map;
    for (size_t i = 0; i < ins.size(); ++i) {
      std::string name;
      if (py::isinstance<PyTensor>(ins[i]))
        name = ins[i].cast<const PyTensor&>().name;
      else if (py::isinstance<py::str>(ins[i]))
        name = ins[i].cast<std::string>();
      else
        throw_error(ErrorCode::kInvalidArgument,
                    "resize: inputs must be the Tensors from get_inputs() (or input names)");
      map[name] = to_shape(shs[i], "resize: shape of '" + name + "'");
    }
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> held(mu);
    built().resize(map);
  }

  py::dict last_stats() {
    // A copy taken under the lock: predict rewrites the Model's stats (op_time_ms is a map)
    // with the GIL released.
    tandem::RunStats s;
    {
      auto held = lock();
      s = built().last_stats();
    }
    py::dict d;
    d["predict_ms"] = s.predict_ms;
    d["arena_bytes"] = s.arena_bytes;
    d["peak_bytes"] = s.peak_bytes;
    d["unplanned_bytes"] = s.unplanned_bytes;
    d["num_steps"] = s.num_steps;
    d["op_time_ms"] = s.op_time_ms;
    return d;
  }
};

// ---------------------------------------------------------------------------------------------
// ParallelPredictor

std::string g_default_worker_binary;  // set by tandem/__init__.py to the packaged binary

py::list to_numpy_list(const std::vector<tandem::Tensor>& ts) {
  py::list out;
  for (const auto& t : ts) out.append(to_numpy_view(t));
  return out;
}

struct PyFuture {
  std::shared_future<std::vector<tandem::Tensor>> future;
  py::list result(std::optional<double> timeout) {
    {
      py::gil_scoped_release nogil;
      if (timeout) {
        auto d = std::chrono::duration<double>(std::max(0.0, *timeout));
        if (future.wait_for(d) != std::future_status::ready) {
          py::gil_scoped_acquire gil;
          PyErr_SetString(PyExc_TimeoutError, "the request is not finished yet");
          throw py::error_already_set();
        }
      } else {
        future.wait();
      }
    }
    return to_numpy_list(future.get());
  }
  bool done() const {
    return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  py::object exception(std::optional<double> timeout) {
    try {
      result(timeout);
      return py::none();
    } catch (py::error_already_set& e) {
      if (e.matches(PyExc_TimeoutError)) throw;
      return e.value();
    } catch (const Error& e) {
      set_tandem_error(e.code(), e.what());
      py::error_already_set err;
      return err.value();
    }
  }
};

std::vector<std::string> to_devices(const py::object& devices) {
  if (devices.is_none()) return {};
  if (py::isinstance<py::bool_>(devices))
    throw_error(ErrorCode::kInvalidArgument, "devices: expected a string, a list or a count");
  if (py::isinstance<py::int_>(devices)) {
    long n = devices.cast<long>();
    if (n < 1)
      throw_error(ErrorCode::kInvalidArgument,
                  "devices: a count must be >= 1, got " + std::to_string(n));
    return tandem::parse_device_list(std::to_string(n));
  }
  if (py::isinstance<py::str>(devices))
    return tandem::parse_device_list(devices.cast<std::string>());
  std::vector<std::string> out;
  for (auto h : devices) {
    if (!py::isinstance<py::str>(h))
      throw_error(ErrorCode::kInvalidArgument,
                  "devices: list items must be strings such as 'cpu:0', got " +
                      py::repr(h).cast<std::string>());
    for (auto& d : tandem::parse_device_list(h.cast<std::string>())) out.push_back(d);
  }
  if (out.empty()) throw_error(ErrorCode::kInvalidArgument, "devices: the list is empty");
  return out;
}

// A blocking predict of ParallelPredictor or MpiPredictor: inputs converted (arrays borrowed while
// `keep` holds them), the GIL released while it runs, the outputs as numpy views.
template <typename Predictor>
py::list predict_with_gil_released(Predictor& predictor, const py::object& inputs) {
  std::vector<py::object> keep;
  std::vector<tandem::Tensor> in = to_engine_inputs(inputs, keep);
  std::vector<tandem::Tensor> outs;
  {
    py::gil_scoped_release nogil;
    outs = predictor.predict(in);
  }
  return to_numpy_list(outs);
}

struct PyPredictor {
  tandem::ParallelOptions options;
  std::unique_ptr<tandem::ParallelPredictor> predictor;
  // build() runs once: entering `with` builds, so a build() inside it must be a no-op. build_mu
  // (taken with the GIL released) makes two threads' build() calls one build; finalized makes a
  // build() after finalize() an error rather than a silent no-op.
  std::mutex build_mu;
  std::atomic<bool> built{false};
  std::atomic<bool> finalized{false};

  PyPredictor(const std::string& model_path, const py::object& devices, const std::string& mode,
              int workers_per_device, const py::object& core_lists, const py::object& input_shapes,
              double deadline, double build_timeout, int max_restarts, double restart_window,
              double restart_backoff, double probe_interval, double max_probe_interval,
              long queue_capacity, const py::object& worker_binary, bool verbose, bool convert_once,
              bool verify_checksum) {
    options.model_path = model_path;
    options.devices = to_devices(devices);
    if (!core_lists.is_none()) {
      try {
        options.core_lists = core_lists.cast<std::vector<std::vector<int>>>();
      } catch (const py::cast_error&) {
        throw_error(ErrorCode::kInvalidArgument, "core_lists must be a list of lists of ints");
      }
    }
    options.workers_per_device = workers_per_device;
    options.input_shapes = to_shape_map(input_shapes);
    if (!(deadline > 0) || !(build_timeout > 0))
      throw_error(ErrorCode::kInvalidArgument, "deadline and build_timeout must be positive");
    options.deadline = std::chrono::milliseconds(static_cast<int64_t>(deadline * 1000));
    options.build_timeout = std::chrono::milliseconds(static_cast<int64_t>(build_timeout * 1000));
    if (options.deadline.count() == 0) options.deadline = std::chrono::milliseconds(1);
    if (options.build_timeout.count() == 0) options.build_timeout = std::chrono::milliseconds(1);
    options.max_restarts = max_restarts;
    options.restart_window = seconds("restart_window", restart_window);
    options.restart_backoff = seconds("restart_backoff", restart_backoff);
    options.probe_interval = seconds("probe_interval", probe_interval);
    options.max_probe_interval = seconds("max_probe_interval", max_probe_interval);
    if (queue_capacity < 1) throw_error(ErrorCode::kInvalidArgument, "queue_capacity must be >= 1");
    options.queue_capacity = static_cast<size_t>(queue_capacity);
    options.mode = mode;
    if (!worker_binary.is_none())
      options.worker_binary = worker_binary.cast<std::string>();
    else if (std::getenv("TANDEM_WORKER_BINARY") == nullptr)
      options.worker_binary = g_default_worker_binary;
    options.verbose = verbose;
    options.convert_once = convert_once;
    options.verify_checksum = verify_checksum;
    predictor = std::make_unique<tandem::ParallelPredictor>(options);
  }

  // A duration given in seconds: finite, not negative, at most a day (the fault policy's times
  // are milliseconds in 64 bits; a day is far beyond any sensible setting).
  static std::chrono::milliseconds seconds(const char* name, double s) {
    if (!(s >= 0 && s <= 86400))
      throw_error(ErrorCode::kInvalidArgument, std::string(name) +
                                                   " must be 0 to 86400 seconds, got " +
                                                   py::repr(py::float_(s)).cast<std::string>());
    return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  }

  ~PyPredictor() {
    if (predictor) {
      py::gil_scoped_release nogil;
      predictor.reset();  // finalize()
    }
  }

  void build() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> held(build_mu);
    if (finalized)
      throw_error(ErrorCode::kInvalidArgument,
                  "build() after finalize(): the ParallelPredictor is finalized; create a new one");
    if (built) return;
    predictor->build();
    built = true;
  }

  std::vector<PyTensor> infos(bool inputs) const {
    if (!built)
      throw_error(ErrorCode::kInvalidArgument,
                  "the ParallelPredictor is not built: call build() first");
    std::vector<PyTensor> out;
    for (const auto& i : inputs ? predictor->inputs() : predictor->outputs())
      out.push_back(PyTensor::from_info(i));
    return out;
  }

  py::list predict(const py::object& inputs) {
    return predict_with_gil_released(*predictor, inputs);
  }

  PyFuture submit(const py::object& inputs) {
    std::vector<py::object> keep;
    std::vector<tandem::Tensor> in = to_engine_inputs(inputs, keep);
    PyFuture f;
    {
      py::gil_scoped_release nogil;
      f.future = predictor->submit(in).share();  // copies the inputs before returning
    }
    return f;
  }

  void finalize() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> held(build_mu);  // not while a build() is starting workers
    finalized = true;
    predictor->finalize();
  }

  py::dict stats() const {
    tandem::ParallelStats s = predictor->stats();
    py::dict d;
    d["requests"] = s.requests;
    d["failed_requests"] = s.failed_requests;
    d["shards_rerun"] = s.shards_rerun;
    d["overhead_ms_last"] = s.overhead_ms_last;
    d["overhead_ms_total"] = s.overhead_ms_total;
    py::list devs;
    for (const auto& x : s.devices) {
      py::dict e;
      e["device"] = x.device;
      e["worker"] = x.worker;
      e["pid"] = x.pid;
      e["up"] = x.up;
      e["state"] = x.state;
      e["restarts"] = x.restarts;
      e["restarts_in_window"] = x.restarts_in_window;
      e["next_start_s"] = x.next_start_s;
      e["items"] = x.items;
      e["busy_ms"] = x.busy_ms;
      e["items_per_s"] = x.items_per_s;
      e["last_error"] = x.last_error;
      devs.append(e);
    }
    d["devices"] = devs;
    return d;
  }
};

#ifdef TANDEM_HAVE_MPI
// MpiPredictor: tandem/__init__.py imports mpi4py first (MPI_Init, with libmpi loaded globally for
// Open MPI's plugins), so this class finds MPI initialised and leaves finalising it to mpi4py.
struct PyMpiPredictor {
  std::unique_ptr<tandem::MpiPredictor> predictor;

  PyMpiPredictor(const std::string& model_path, const py::object& devices,
                 const py::object& input_shapes, double deadline, double liveness,
                 const py::object& worker_binary, bool convert_once, bool verify_checksum) {
    tandem::MpiOptions o;
    o.local.model_path = model_path;
    o.local.devices = devices.is_none() ? std::vector<std::string>{"cpu:0"} : to_devices(devices);
    o.local.input_shapes = to_shape_map(input_shapes);
    if (!(deadline > 0 && deadline <= 86400))
      throw_error(ErrorCode::kInvalidArgument, "deadline must be 0 to 86400 seconds");
    o.deadline = std::chrono::milliseconds(std::max<int64_t>(1, deadline * 1000));
    if (!(liveness >= 1 && liveness <= 86400))
      throw_error(ErrorCode::kInvalidArgument, "liveness must be 1 to 86400 seconds");
    o.liveness = std::chrono::milliseconds(static_cast<int64_t>(liveness * 1000));
    if (!worker_binary.is_none())
      o.local.worker_binary = worker_binary.cast<std::string>();
    else if (std::getenv("TANDEM_WORKER_BINARY") == nullptr)
      o.local.worker_binary = g_default_worker_binary;
    o.local.convert_once = convert_once;
    o.local.verify_checksum = verify_checksum;
    predictor = std::make_unique<tandem::MpiPredictor>(o);
  }
  ~PyMpiPredictor() {
    if (predictor) {
      py::gil_scoped_release nogil;
      predictor.reset();
    }
  }
  py::list predict(const py::object& inputs) {
    return predict_with_gil_released(*predictor, inputs);
  }
  py::dict stats() const {
    tandem::MpiStats s = predictor->stats();
    py::dict d;
    d["requests"] = s.requests;
    d["failed_requests"] = s.failed_requests;
    d["overhead_ms_last"] = s.overhead_ms_last;
    d["overhead_ms_total"] = s.overhead_ms_total;
    d["ranks_lost"] = s.ranks_lost;
    d["requests_rerun"] = s.requests_rerun;
    d["lost"] = s.lost;
    py::list ranks;
    for (const auto& r : s.ranks) {
      py::dict e;
      e["rank"] = r.rank;
      e["host"] = r.host;
      e["devices"] = r.devices;
      e["items"] = r.items;
      e["busy_ms"] = r.busy_ms;
      e["items_per_s"] = r.items_per_s;
      ranks.append(e);
    }
    d["ranks"] = ranks;
    return d;
  }
};
#endif

}  // namespace

PYBIND11_MODULE(_tandem, m) {
  m.doc() = "Tandem: ONNX inference on one or many devices (MindSpore Lite-style Python API)";
  register_exceptions(m);

  py::enum_<DataType> dtype(m, "DataType", "Element types (ONNX numbering).");
  dtype.value("UNKNOWN", DataType::kUndefined)
      .value("FLOAT32", DataType::kFloat32)
      .value("UINT8", DataType::kUInt8)
      .value("INT8", DataType::kInt8)
      .value("UINT16", DataType::kUInt16)
      .value("INT16", DataType::kInt16)
      .value("INT32", DataType::kInt32)
      .value("INT64", DataType::kInt64)
      .value("STRING", DataType::kString)
      .value("BOOL", DataType::kBool)
      .value("FLOAT16", DataType::kFloat16)
      .value("FLOAT64", DataType::kFloat64)
      .value("UINT32", DataType::kUInt32)
      .value("UINT64", DataType::kUInt64)
      .value("BFLOAT16", DataType::kBFloat16);
  dtype.def_property_readonly(
      "numpy", [](DataType d) { return numpy_dtype(d); },
      "The numpy dtype of this DataType (raises UnsupportedError for BFLOAT16/STRING).");
  dtype.def_static(
      "from_numpy", [](const py::object& d) { return from_numpy_dtype(py::dtype::from_args(d)); },
      "The DataType of a numpy dtype (numpy.float32, 'int64', ...).");

  py::enum_<ModelType>(m, "ModelType", "Model file formats. Tandem reads ONNX.")
      .value("ONNX", ModelType::kOnnx)
      .value("MINDIR", ModelType::kMindir);

  py::class_<CpuInfo, std::shared_ptr<CpuInfo>>(m, "CPUDeviceInfo",
                                                "CPU settings of a Context (context.cpu).")
      .def_property(
          "thread_num", [](const CpuInfo& c) { return c.thread_num; },
          [](CpuInfo& c, int n) {
            if (n < 0)
              throw_error(
                  ErrorCode::kInvalidArgument,
                  "cpu.thread_num must be >= 0 (0: one per core), got " + std::to_string(n));
            c.thread_num = n;
          },
          "Intra-op threads; 0 means one per core (or per core of core_list).")
      .def_property(
          "core_list", [](const CpuInfo& c) { return c.core_list; },
          [](CpuInfo& c, const std::vector<int>& v) {
            for (int x : v)
              if (x < 0)
                throw_error(ErrorCode::kInvalidArgument,
                            "cpu.core_list: core ids must be >= 0, got " + std::to_string(x));
            c.core_list = v;
          },
          "Cores to pin the threads to; empty means no pinning.")
      .def_property(
          "thread_affinity_core_list", [](const CpuInfo& c) { return c.core_list; },
          [](CpuInfo& c, const std::vector<int>& v) { c.core_list = v; },
          "MindSpore Lite's name for core_list.")
      .def("__repr__", [](const CpuInfo& c) {
        std::ostringstream s;
        s << "CPUDeviceInfo(thread_num=" << c.thread_num << ", core_list=[";
        for (size_t i = 0; i < c.core_list.size(); ++i) s << (i ? ", " : "") << c.core_list[i];
        s << "])";
        return s.str();
      });

  py::class_<CudaInfo, std::shared_ptr<CudaInfo>>(m, "CUDADeviceInfo",
                                                  "CUDA settings of a Context (context.cuda).")
      .def_property(
          "device_id", [](const CudaInfo& c) { return c.device_id; },
          [](CudaInfo& c, int id) {
            if (id < 0)
              throw_error(ErrorCode::kInvalidArgument,
                          "cuda.device_id must be >= 0, got " + std::to_string(id));
            c.device_id = id;
          })
      .def("__repr__", [](const CudaInfo& c) {
        return "CUDADeviceInfo(device_id=" + std::to_string(c.device_id) + ")";
      });

  py::class_<TnContext>(m, "Context",
                        "Where and how a Model runs: context.target = ['cpu'] or ['cuda'], "
                        "context.cpu.thread_num, context.cpu.core_list, context.cuda.device_id.")
      .def(py::init<>())
      .def_property(
          "target", [](const TnContext& c) { return c.target; }, &TnContext::set_target,
          "The device kinds, first used: ['cpu'] (default) or ['cuda'] ('gpu' is an alias).")
      .def_property_readonly("cpu", [](const TnContext& c) { return c.cpu; })
      .def_property_readonly("cuda", [](const TnContext& c) { return c.cuda; })
      .def_property_readonly(
          "gpu", [](const TnContext& c) { return c.cuda; },
          "Alias of cuda (MindSpore Lite's name).")
      .def_readwrite("backend", &TnContext::backend,
                     "Kernel provider: 'auto' (default) or 'ref' (reference kernels).")
      .def_readwrite("profile", &TnContext::profile,
                     "Time every kernel; see Model.last_stats()['op_time_ms'].")
      .def_readwrite("verify_checksum", &TnContext::verify_checksum,
                     "Read all of a .tandem model to check its checksum when loading it (default "
                     "True); False loads it without (the checksum catches a damaged file, never "
                     "a hostile one: every field is checked either way).")
      .def("__repr__", [](const TnContext& c) {
        std::string t;
        for (size_t i = 0; i < c.target.size(); ++i) t += (i ? ", '" : "'") + c.target[i] + "'";
        return "Context(target=[" + t + "], thread_num=" + std::to_string(c.cpu->thread_num) +
               ", backend='" + c.backend + "')";
      });

  py::class_<PyTensor>(m, "Tensor",
                       "A named tensor: the model's inputs and outputs, or data you give it.")
      .def(py::init([](const py::object& array, const std::string& name) {
             PyTensor t;
             t.name = name;
             if (!array.is_none()) t.set_data_from_numpy(array);
             return t;
           }),
           py::arg("tensor") = py::none(), py::arg("name") = "",
           "Tensor(array=None, name=''): with an array, a Tensor holding a copy of it.")
      .def_property_readonly("name", [](const PyTensor& t) { return t.name; })
      .def_property_readonly(
          "dtype", [](const PyTensor& t) { return t.dtype; },
          "A tandem.DataType; .numpy gives the numpy dtype.")
      .def_property_readonly(
          "shape", [](const PyTensor& t) { return t.shape(); },
          "The data's shape, or the declared one (-1 for symbolic dims) "
          "before there is data.")
      .def_property_readonly("dim_names", [](const PyTensor& t) { return t.dim_names; })
      .def_property_readonly("element_num", &PyTensor::element_num,
                             "Number of elements; -1 while a symbolic dim has no size.")
      .def_property_readonly("data_size", &PyTensor::data_size,
                             "Size in bytes; -1 while a symbolic dim has no size.")
      .def_property_readonly("has_data", [](const PyTensor& t) { return t.data.has_value(); })
      .def("set_data_from_numpy", &PyTensor::set_data_from_numpy, py::arg("numpy_obj"),
           "Copies the array into the tensor (the tensor owns its buffer; later changes to the "
           "array do not reach it). The dtype must equal the tensor's and every fixed dim must "
           "match (symbolic dims take any size); otherwise InvalidArgumentError (a ValueError) "
           "says what differs. Non-contiguous arrays are copied in C order.")
      .def("get_data_to_numpy", &PyTensor::get_data_to_numpy,
           "A numpy view of the tensor's buffer (no copy): it keeps the buffer alive and "
           "writing to it changes the tensor. Use .copy() for an independent array.")
      .def("__repr__", &PyTensor::repr);

  py::class_<PyModel>(m, "Model", "One ONNX model built for one device.")
      .def(py::init<>())
      .def("build_from_file", &PyModel::build_from_file, py::arg("model_path"),
           py::arg("model_type") = ModelType::kOnnx, py::arg("context") = py::none(),
           py::arg("input_shapes") = py::none(),
           "Loads, checks and optimises an ONNX file (releases the GIL). input_shapes "
           "({'sample': [1,4,64,64]}) fixes input shapes as the converter's --inputShape does.")
      .def("get_inputs", &PyModel::get_inputs,
           "The inputs as Tensors without data (name, dtype, declared shape); fill them with "
           "set_data_from_numpy and pass them to predict.")
      .def("get_outputs", &PyModel::get_outputs,
           "The outputs of the latest predict (views, no copy), or their descriptions before "
           "the first predict. Safe to call while other threads predict.")
      .def("predict", &PyModel::predict, py::arg("inputs"),
           "Runs the model (releases the GIL). inputs: a list of Tensors or numpy arrays in "
           "input order (or a dict name -> array); arrays are borrowed, not copied, and may be "
           "read-only. Returns a list of Tensors whose get_data_to_numpy() are views of the "
           "output buffers. Thread-safe: predicts from several threads on one Model run one at "
           "a time (use one Model per thread, or a ParallelPredictor, to run them at once).")
      .def("resize", &PyModel::resize, py::arg("inputs"), py::arg("dims"),
           "Fixes input shapes from now on: resize(model.get_inputs(), [[1,4,64,64], [1], ...]).")
      .def("last_stats", &PyModel::last_stats,
           "Statistics of the latest predict (predict_ms, peak_bytes, op_time_ms, ...): a "
           "snapshot, safe to call while other threads predict.")
      .def("__repr__", [](PyModel& m) {
        auto held = m.lock();
        return m.model ? "tandem.Model('" + m.path + "')" : std::string("tandem.Model(not built)");
      });

  py::class_<PyFuture>(m, "Future", "The pending result of ParallelPredictor.submit().")
      .def("result", &PyFuture::result, py::arg("timeout") = py::none(),
           "Waits (GIL released) and returns the outputs as numpy arrays (views, no copy), or "
           "raises the request's error; TimeoutError if not done within timeout seconds.")
      .def("done", &PyFuture::done)
      .def("exception", &PyFuture::exception, py::arg("timeout") = py::none(),
           "The request's exception, or None when it succeeded.");

  py::class_<PyPredictor>(
      m, "ParallelPredictor",
      "One model on several devices: every batch is split along axis 0, each device runs its "
      "shard in a worker process (mode='processes') or thread (mode='threads'), and the outputs "
      "are gathered back. devices: 'cpu:0,cpu:1', a list of such strings, or a count; None = "
      "one cpu device per core. Times are in seconds. Fault policy: a worker may be restarted "
      "max_restarts times within restart_window (backing off from restart_backoff, doubling, "
      "at most 5 s); beyond that its device is down and probed again after probe_interval, "
      "doubling up to max_probe_interval. convert_once (default True): an .onnx is converted "
      "once, weights prepacked, into a sealed in-memory .tandem file every worker maps (one copy "
      "of the weights per host). verify_checksum (default True): a .tandem model's checksum is "
      "checked once, here; False skips it.")
      .def(py::init<const std::string&, const py::object&, const std::string&, int,
                    const py::object&, const py::object&, double, double, int, double, double,
                    double, double, long, const py::object&, bool, bool, bool>(),
           py::arg("model_path"), py::arg("devices") = py::none(), py::kw_only(),
           py::arg("mode") = "processes", py::arg("workers_per_device") = 1,
           py::arg("core_lists") = py::none(), py::arg("input_shapes") = py::none(),
           py::arg("deadline") = 120.0, py::arg("build_timeout") = 300.0,
           py::arg("max_restarts") = tandem::ParallelOptions{}.max_restarts,
           py::arg("restart_window") = 60.0, py::arg("restart_backoff") = 0.1,
           py::arg("probe_interval") = 5.0, py::arg("max_probe_interval") = 300.0,
           py::arg("queue_capacity") = 64, py::arg("worker_binary") = py::none(),
           py::arg("verbose") = false,
           py::arg("convert_once") = tandem::ParallelOptions{}.convert_once,
           py::arg("verify_checksum") = tandem::ParallelOptions{}.verify_checksum)
      .def("build", &PyPredictor::build,
           "Starts and builds every worker in parallel (releases the GIL). Builds once: a "
           "second call (e.g. inside `with`, which already built) returns at once; after "
           "finalize() it raises.")
      .def("get_inputs", [](const PyPredictor& p) { return p.infos(true); })
      .def("get_outputs", [](const PyPredictor& p) { return p.infos(false); })
      .def("predict", &PyPredictor::predict, py::arg("inputs"),
           "Blocking predict of a whole batch (releases the GIL): a list of numpy arrays or "
           "Tensors (or a dict name -> array). Returns the gathered outputs as numpy arrays "
           "(views of the result buffers, no copy). The inputs are copied once into shared "
           "memory for the workers.")
      .def("submit", &PyPredictor::submit, py::arg("inputs"),
           "Non-blocking predict; returns a Future. The inputs are copied before it returns.")
      .def("finalize", &PyPredictor::finalize,
           "Waits for requests in flight, stops every worker. Idempotent.")
      .def("stats", &PyPredictor::stats)
      .def_property_readonly("devices", [](const PyPredictor& p) { return p.options.devices; })
      .def_property_readonly("built", [](const PyPredictor& p) { return p.built.load(); })
      .def(
          "__enter__",
          [](PyPredictor& p) -> PyPredictor& {
            p.build();
            return p;
          },
          py::return_value_policy::reference)
      .def("__exit__", [](PyPredictor& p, const py::object&, const py::object&, const py::object&) {
        p.finalize();
        return false;
      });

#ifdef TANDEM_HAVE_MPI
  py::class_<PyMpiPredictor>(
      m, "_MpiPredictor",
      "The split across the ranks of an MPI job; use tandem.MpiPredictor (it initialises MPI "
      "through mpi4py).")
      .def(py::init<const std::string&, const py::object&, const py::object&, double, double,
                    const py::object&, bool, bool>(),
           py::arg("model_path"), py::arg("devices") = py::none(), py::kw_only(),
           py::arg("input_shapes") = py::none(), py::arg("deadline") = 300.0,
           py::arg("liveness") = 10.0, py::arg("worker_binary") = py::none(),
           py::arg("convert_once") = tandem::ParallelOptions{}.convert_once,
           py::arg("verify_checksum") = tandem::ParallelOptions{}.verify_checksum)
      .def("build",
           [](PyMpiPredictor& p) {
             py::gil_scoped_release nogil;
             p.predictor->build();
           })
      .def("predict", &PyMpiPredictor::predict, py::arg("inputs"))
      .def(
          "predict_on",
          [](PyMpiPredictor& p, int rank, const py::object& inputs) {
            std::vector<py::object> keep;
            std::vector<tandem::Tensor> in = to_engine_inputs(inputs, keep);
            std::vector<tandem::Tensor> outs;
            {
              py::gil_scoped_release nogil;
              outs = p.predictor->predict_on(rank, in);
            }
            return to_numpy_list(outs);
          },
          py::arg("rank"), py::arg("inputs"))
      .def("serve",
           [](PyMpiPredictor& p) {
             py::gil_scoped_release nogil;
             p.predictor->serve();
           })
      .def("finalize",
           [](PyMpiPredictor& p) {
             py::gil_scoped_release nogil;
             p.predictor->finalize();
           })
      .def("get_inputs",
           [](const PyMpiPredictor& p) {
             std::vector<PyTensor> out;
             for (const auto& i : p.predictor->inputs()) out.push_back(PyTensor::from_info(i));
             return out;
           })
      .def("get_outputs",
           [](const PyMpiPredictor& p) {
             std::vector<PyTensor> out;
             for (const auto& i : p.predictor->outputs()) out.push_back(PyTensor::from_info(i));
             return out;
           })
      .def("stats", &PyMpiPredictor::stats)
      .def_property_readonly("rank", [](const PyMpiPredictor& p) { return p.predictor->rank(); })
      .def_property_readonly("size", [](const PyMpiPredictor& p) { return p.predictor->size(); })
      .def_property_readonly("host", [](const PyMpiPredictor& p) { return p.predictor->host(); });
  m.attr("_have_mpi") = true;
#else
  m.attr("_have_mpi") = false;
#endif
  m.def("parse_device_list", &tandem::parse_device_list, py::arg("text"),
        "'cpu:0,cpu:1' or a count '2' -> ['cpu:0', 'cpu:1'].");
  m.def("_set_default_worker_binary", [](const std::string& p) { g_default_worker_binary = p; });
  m.def("_default_worker_binary", [] { return g_default_worker_binary; });
}

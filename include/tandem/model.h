// Model: one ONNX model built for one device. Build once, predict many times.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tandem/context.h"
#include "tandem/status.h"
#include "tandem/tensor.h"

namespace tandem {

using ShapeMap = std::map<std::string, Shape>;

// Statistics of the latest predict.
struct RunStats {
  double predict_ms = 0;      // wall time of the whole predict
  size_t arena_bytes = 0;     // planned intermediate buffer (reused across values)
  size_t peak_bytes = 0;      // arena + dynamic intermediates + outputs at their high point
  size_t unplanned_bytes = 0; // sum of intermediate sizes had nothing been reused
  int num_steps = 0;          // nodes executed
  // With Context::profile: milliseconds spent in each op type's kernels (op type -> ms).
  std::map<std::string, double> op_time_ms;
};

class Model {
 public:
  Model();
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  // Loads, checks and optimises `path`. `input_shapes` fixes (some of) the inputs' shapes, as
  // the converter's --inputShape does; inputs left out keep the model's (possibly symbolic)
  // shape. Throws tandem::Error.
  static Model build_from_file(const std::string& path, const Context& context = {},
                               const ShapeMap& input_shapes = {});
  // The same from the bytes of an .onnx file in memory. A model whose weights are in external
  // data files cannot be built this way (there is no folder to read them from).
  static Model build_from_buffer(const void* data, size_t size, const Context& context = {},
                                 const ShapeMap& input_shapes = {});

  std::vector<TensorInfo> inputs() const;
  std::vector<TensorInfo> outputs() const;

  // Inputs are matched by name when every tensor has one, otherwise by position. Shapes must
  // agree with the model's (symbolic dims take any positive size). Returns owned outputs in the
  // model's output order.
  std::vector<Tensor> predict(const std::vector<Tensor>& inputs);
  // The same, computing the outputs straight into `outputs` (one per model output, each of the
  // exact dtype and shape it will have, e.g. borrowed slices of a shared buffer): no copy.
  void predict_into(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs);

  // Fixes input shapes from now on (later predicts must use them); plans memory for them now.
  void resize(const ShapeMap& input_shapes);

  // The outputs' dtypes and shapes for these input shapes (in input order), without running.
  // Throws when an output's shape depends on input values.
  std::vector<TensorInfo> output_info_for(const std::vector<Shape>& input_shapes);

  const RunStats& last_stats() const;
  // Opset imports ("" is the default domain), op histogram and parameter count, for `info`.
  std::map<std::string, int64_t> opset_imports() const;
  std::map<std::string, int> op_histogram() const;
  int64_t parameter_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem

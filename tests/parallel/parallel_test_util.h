// Helpers shared by the parallel runner's test files.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tandem/parallel.h"
#include "tandem/tensor.h"

namespace tandem::test {

// Uniform [-1, 1) float inputs for `infos`, symbolic dims taking `batch`; the same seed gives the
// same values.
inline std::vector<Tensor> random_inputs(const std::vector<TensorInfo>& infos, int64_t batch,
                                         uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<Tensor> out;
  for (const TensorInfo& i : infos) {
    Shape s = i.shape;
    for (int64_t& d : s)
      if (d < 0) d = batch;
    Tensor t(i.dtype, s, i.name);
    for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = u(rng);
    out.push_back(std::move(t));
  }
  return out;
}

// Default options for `model` over cpu:0 … cpu:devices-1.
inline ParallelOptions options(const std::string& model, int devices) {
  ParallelOptions o;
  o.model_path = model;
  for (int i = 0; i < devices; ++i) o.devices.push_back("cpu:" + std::to_string(i));
  return o;
}

}  // namespace tandem::test

// Prepacked weights shared through the .tandem file. A oneDNN kernel reorders a constant weight
// into the layout its primitive prefers (PackedWeights, dnnl_util.h). Made in every process for
// every plan, those copies are private memory: N workers held N copies. `tandem convert` records
// them (PrepackRecorder) and writes them beside the plain weights (ir.h, PrepackedLayout); a
// kernel of a process that maps the file then finds its layout there, by an exact key, and reads
// it in place: one physical copy per host, shared through the page cache, and no reorder at plan
// time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem::cpu {

// An exact, canonical description of a float32 blocked layout (dims, padding, strides, inner
// blocks) or Winograd weights layout (its every field); "" for a layout that cannot be shared this
// way (another format kind or dtype, or extra flags such as int8 compensation).
std::string layout_key(const dnnl::memory::desc& md);

// The prepacked layout of `constant` with this key and size, or nullptr.
const PrepackedLayout* find_prepacked(const Value* constant, const std::string& key, size_t bytes);

struct RecordedLayout {
  const Value* value = nullptr;  // the constant
  std::string key;
  const void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<const void> keeper;  // keeps the packed memory alive
};

// While one exists, every constant of `graph` that a kernel packs is recorded, once per
// (constant, layout). Several may exist at once (a server converting two models), each taking
// only its own graph's constants.
class PrepackRecorder {
 public:
  explicit PrepackRecorder(const Graph& graph);
  ~PrepackRecorder();
  PrepackRecorder(const PrepackRecorder&) = delete;
  PrepackRecorder& operator=(const PrepackRecorder&) = delete;
  std::vector<RecordedLayout> take();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// Called by PackedWeights after it packed a constant.
void record_packed(const Value* constant, const std::string& key, const dnnl::memory& packed);

// Process-wide counts of constant weights kernels prepared: taken from a file's prepacked layout
// in place, or packed here (private memory).
struct PrepackCounts {
  uint64_t from_file = 0, from_file_bytes = 0;
  uint64_t packed_here = 0, packed_here_bytes = 0;
};
PrepackCounts prepack_counts();
void count_prepacked(bool from_file, size_t bytes);

}  // namespace tandem::cpu

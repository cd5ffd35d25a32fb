#include "backends/cpu/prepack.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <atomic>
#include <mutex>
#include <set>
#include <utility>

namespace tandem::cpu {

namespace {

std::mutex recorder_mu;
std::vector<PrepackRecorder::State*> recorders;  // the live ones

std::atomic<uint64_t> n_from_file{0}, n_from_file_bytes{0}, n_packed{0}, n_packed_bytes{0};

}  // namespace

std::string layout_key(const dnnl::memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  if (d.format_kind == dnnl_format_kind_wino && d.data_type == dnnl_f32 && d.extra.flags == 0 &&
      d.ndims > 0 && d.ndims <= DNNL_MAX_NDIMS && d.offset0 == 0) {
    // A Winograd conv's transformed weights (conv.cc, worth_winograd): every field of the layout.
    const dnnl_wino_desc_t& w = d.format_desc.wino_desc;
    return fmt::format(
        "dnnl-wino-f32;dims={};format={};r={};alpha={};ic={};oc={};blocks={},{},{},{};scale={};"
        "size={}",
        fmt::join(d.dims, d.dims + d.ndims, ","), static_cast<int>(w.wino_format), w.r, w.alpha,
        w.ic, w.oc, w.ic_block, w.oc_block, w.ic2_block, w.oc2_block, w.adj_scale, w.size);
  }
  if (d.format_kind != dnnl_blocked || d.data_type != dnnl_f32 || d.extra.flags != 0 ||
      d.ndims <= 0 || d.ndims > DNNL_MAX_NDIMS || d.offset0 != 0)
    return "";
  const dnnl_blocking_desc_t& b = d.format_desc.blocking;
  if (b.inner_nblks < 0 || b.inner_nblks > DNNL_MAX_NDIMS) return "";
  auto part = [](const dnnl_dim_t* v, int n) {
    return fmt::format("{}", fmt::join(v, v + n, ","));
  };
  return fmt::format("dnnl-blocked-f32;dims={};padded={};offsets={};strides={};blocks={};idxs={}",
                     part(d.dims, d.ndims), part(d.padded_dims, d.ndims),
                     part(d.padded_offsets, d.ndims), part(b.strides, d.ndims),
                     part(b.inner_blks, b.inner_nblks), part(b.inner_idxs, b.inner_nblks));
}

const PrepackedLayout* find_prepacked(const Value* constant, const std::string& key, size_t bytes) {
  if (!constant || key.empty()) return nullptr;
  for (const PrepackedLayout& p : constant->prepacked)
    if (p.key == key && p.bytes == bytes) return &p;
  return nullptr;
}

struct PrepackRecorder::State {
  std::set<const Value*> constants;  // the graph's
  std::set<std::pair<const Value*, std::string>> seen;
  std::vector<RecordedLayout> layouts;
};

PrepackRecorder::PrepackRecorder(const Graph& graph) : state_(std::make_unique<State>()) {
  for (const auto& v : graph.values())
    if (v->is_constant()) state_->constants.insert(v.get());
  std::lock_guard<std::mutex> lock(recorder_mu);
  recorders.push_back(state_.get());
}

PrepackRecorder::~PrepackRecorder() {
  std::lock_guard<std::mutex> lock(recorder_mu);
  std::erase(recorders, state_.get());
}

std::vector<RecordedLayout> PrepackRecorder::take() {
  std::lock_guard<std::mutex> lock(recorder_mu);
  return std::exchange(state_->layouts, {});
}

void record_packed(const Value* constant, const std::string& key, const dnnl::memory& packed) {
  if (!constant || key.empty()) return;
  std::lock_guard<std::mutex> lock(recorder_mu);
  for (PrepackRecorder::State* r : recorders) {
    if (!r->constants.count(constant) || !r->seen.emplace(constant, key).second) continue;
    auto keep = std::make_shared<dnnl::memory>(packed);
    r->layouts.push_back({constant, key, keep->get_data_handle(), keep->get_desc().get_size(),
                          std::shared_ptr<const void>(keep, keep.get())});
  }
}

PrepackCounts prepack_counts() {
  return {n_from_file.load(), n_from_file_bytes.load(), n_packed.load(), n_packed_bytes.load()};
}

void count_prepacked(bool from_file, size_t bytes) {
  (from_file ? n_from_file : n_packed)++;
  (from_file ? n_from_file_bytes : n_packed_bytes) += bytes;
}

}  // namespace tandem::cpu

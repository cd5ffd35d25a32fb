// The .tandem file: an optimised graph and its constant weights in one file that loads by mapping
// it read-only, the weights used in place (docs/tandem-format.md has the layout). `tandem convert`
// writes it (runtime/convert.h); Model::build_from_file reads it when the file starts with the
// magic, whatever its name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "ir/ir.h"

namespace tandem {

inline constexpr char kTandemMagic[8] = {'T', 'A', 'N', 'D', 'E', 'M', '\x1a', '\n'};
// Version 2 adds the constants' prepacked layouts; version 1 files are still read.
inline constexpr uint32_t kTandemFormatVersion = 2;
inline constexpr uint32_t kTandemOldestFormatVersion = 1;
// A prepacked layout's key (a backend's description of the layout) is at most this long.
inline constexpr size_t kMaxLayoutKeyBytes = 4096;
inline constexpr size_t kTandemHeaderSize = 128;
inline constexpr size_t kTandemBlobAlign = 64;

// What a .tandem file was converted for: "cpu" (the fused graph the fast CPU kernels run; the
// backends "auto" and "cpu") or "ref" (the graph as written, for the reference backend).
std::string tandem_target_for_backend(const std::string& backend);

// Whether `data` starts with the magic (`size` may be shorter than the header).
bool has_tandem_magic(const void* data, size_t size);
// The checksum a .tandem header states, from its first kTandemHeaderSize bytes.
uint64_t tandem_header_checksum(const uint8_t* header);
// Whether the file at `path` starts with the magic; false for a file that cannot be read (the
// ONNX loader then gives its own error).
bool is_tandem_file(const std::string& path);

// Writes `graph` (already optimised for `target`) to `path` atomically: into a temporary file in
// the same folder, flushed, then renamed over `path`, so a reader never sees half a file. Returns
// the file's size. Throws tandem::Error.
// `fixed_shapes` are the input shapes the conversion fixed (kept apart from the graph's declared
// shapes, as Model::resize keeps them).
// `fp16_weights`: float32 constants of at least kFp16MinElements elements are stored as float16
// (rounded to nearest even) and widened back to float32 when read: half the bytes on disk, the
// same compute. Smaller constants (biases, norm scales, shape arithmetic) stay exact.
inline constexpr int64_t kFp16MinElements = 1024;
// Whether `v` is a constant that fp16_weights stores as float16.
bool fp16_candidate(const Value& v);
size_t write_tandem_file(const Graph& graph, const std::string& target,
                         const std::map<std::string, Shape>& fixed_shapes, const std::string& path,
                         bool fp16_weights = false);

// The same into an open, empty, writable descriptor (a memfd), from its current position; `what`
// names it in messages. The descriptor stays the caller's.
size_t write_tandem_fd(const Graph& graph, const std::string& target,
                       const std::map<std::string, Shape>& fixed_shapes, int fd,
                       const std::string& what, bool fp16_weights = false);

struct TandemModel {
  std::unique_ptr<Graph> graph;
  std::string target;
  std::map<std::string, Shape> fixed_shapes;
  uint32_t version = 0;
};

// Maps `path` read-only (MAP_PRIVATE, PROT_READ) and reads it: the constants are views into the
// mapping, which lives as long as any of them. `expected_target` (when not empty) must be the
// file's. Every field is checked (header, checksum, sections, offsets, sizes against `limits`,
// the graph's references) before anything is allocated from it; throws tandem::Error
// (kInvalidModel for a damaged file, kUnsupported for another version or target).
// `verify_checksum` false: the checksum is not computed (the caller verified these bytes, e.g.
// with verify_tandem_checksum); every other check still runs.
TandemModel map_tandem_file(const std::string& path, const std::string& expected_target,
                            const SizeLimits& limits, bool verify_checksum = true);

// Reads the .tandem file at `path` once (mapped only while it is read, so no page stays in this
// process) and checks its size and checksum against its header. Throws kInvalidModel naming
// what is wrong.
void verify_tandem_checksum(const std::string& path);
// The same over bytes in memory, which `keeper` keeps alive (the constants point into them);
// `data` must be 64-byte aligned. `what` names the bytes in messages.
TandemModel read_tandem_bytes(const uint8_t* data, size_t size, std::shared_ptr<const void> keeper,
                              const std::string& what, const std::string& expected_target,
                              const SizeLimits& limits, bool verify_checksum = true);

}  // namespace tandem

// The model repository of `tandem serve`, in Triton's layout:
//
//   DIR/<name>/config.json          optional; see ModelConfig
//   DIR/<name>/<version>/model.onnx version: decimal digits; which are served: the config's
//                                   version_policy (default: the highest one). model.tandem
//                                   (written by `tandem convert`) instead of model.onnx.
//
// Folder names and config files are untrusted: names are restricted to a safe alphabet, every
// path is resolved and must stay inside DIR (a symlink out of it is refused), and every config
// field is checked, with errors that name the file and the field.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tandem::server {

struct ModelConfig {
  std::vector<std::string> devices = {"cpu:0"};  // "devices": "cpu:0,cpu:1", a count, or a list
  int workers = 1;                               // "workers": per device, 1..64
  std::string mode = "processes";                // "mode": "processes" or "threads"
  // "max_batch_size": the most batch items one merged run may hold; 0 (the default) runs every
  // request as it came.
  int64_t max_batch_size = 0;
  // "dynamic_batching": {"max_queue_delay_us": N, "preferred_batch_size": [..]}. Present: requests
  // wait up to the delay to be merged. Needs max_batch_size >= 2.
  bool dynamic_batching = false;
  std::chrono::microseconds max_queue_delay{0};
  std::vector<int64_t> preferred_batch_sizes;
  // "warmup": run every batch size from 1 to max_batch_size once (zeros) before the model says
  // ready, so the first merged batches of each size do not pay for planning their shapes (a new
  // shape costs a sd_unet_tiny worker several runs' time). Default: on with dynamic batching.
  std::optional<bool> warmup;
  // "version_policy", Triton's: {"latest": {"num_versions": N}} (default N = 1), {"all": {}} or
  // {"specific": {"versions": [1, 3]}}.
  enum class VersionPolicy { kLatest, kAll, kSpecific } version_policy = VersionPolicy::kLatest;
  int64_t latest_versions = 1;
  std::vector<uint64_t> specific_versions;
};

struct ModelVersion {
  std::string version;               // decimal digits, as the folder is named
  std::filesystem::path model_path;  // canonical, inside the repository
};

struct ModelEntry {
  std::string name;
  std::vector<ModelVersion> versions;     // the ones the policy serves, ascending by number
  std::vector<std::string> all_versions;  // every version folder with a model file, ascending
  ModelConfig config;
  // What a repository poll compares to see a change: the config's text and each served model
  // file's path, size and modification time.
  std::string signature;

  const ModelVersion& latest() const { return versions.back(); }
};

// Parses and validates one config.json's text; `file` names it in errors.
ModelConfig parse_model_config(const std::string& text, const std::string& file);

// The model folders of the repository, sorted; throws for a missing repository or a folder with
// an invalid name.
std::vector<std::string> list_models(const std::filesystem::path& dir);

// Scans one model folder; throws tandem::Error naming the folder or file at the first problem
// (kNotFound when it does not exist or holds no version).
ModelEntry scan_model(const std::filesystem::path& dir, const std::string& name);

// Scans the repository; throws tandem::Error naming the folder or file at the first problem.
std::vector<ModelEntry> scan_repository(const std::filesystem::path& dir);

// Whether `name` is an allowed model name: 1..128 of [A-Za-z0-9_.-], not starting with '.'.
bool valid_model_name(const std::string& name);

}  // namespace tandem::server

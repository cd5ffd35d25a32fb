#include "server/repository.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "onnx/safe_file.h"
#include "tandem/parallel.h"

namespace tandem::server {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A config file is a few lines; anything larger is not one.
constexpr int64_t kMaxConfigBytes = 64 << 10;
// Version folders: Triton's are positive integers. 18 digits keep them inside int64.
constexpr size_t kMaxVersionDigits = 18;

[[noreturn]] void config_error(const std::string& file, const std::string& field,
                               const std::string& problem) {
  raise(ErrorCode::kInvalidArgument, "{}: field '{}': {}", file, field, problem);
}

int64_t get_int(const json& v, const std::string& file, const std::string& field, int64_t min,
                int64_t max) {
  if (!v.is_number_integer())
    config_error(file, field, fmt::format("must be a whole number (got {})", v.dump()));
  // A non-negative literal is stored unsigned and may exceed int64: compare it as unsigned.
  const bool out_of_range = v.is_number_unsigned()
                                ? v.get<uint64_t>() > static_cast<uint64_t>(max) ||
                                      static_cast<int64_t>(v.get<uint64_t>()) < min
                                : v.get<int64_t>() < min || v.get<int64_t>() > max;
  if (out_of_range)
    config_error(file, field,
                 fmt::format("must be between {} and {} (got {})", min, max, v.dump()));
  return v.get<int64_t>();
}

// The model file of a version folder: an ONNX model, or one `tandem convert` wrote.
constexpr const char* kModelFiles[] = {"model.onnx", "model.tandem"};

// Which of kModelFiles the version folder holds: empty for none; throws for both (which one
// would be served is then a guess).
std::string model_file_in(const fs::path& version_dir, const std::string& name) {
  std::string found;
  for (const char* f : kModelFiles) {
    std::error_code ec;
    if (!fs::exists(version_dir / f, ec)) continue;
    TANDEM_CHECK(found.empty(), ErrorCode::kInvalidArgument,
                 "model '{}': '{}' holds both {} and {}; keep one", name, version_dir.string(),
                 found, f);
    found = f;
  }
  return found;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Triton's version_policy, in its JSON form: exactly one of latest / all / specific.
void parse_version_policy(const json& v, const std::string& file, ModelConfig& c) {
  const std::string field = "version_policy";
  if (!v.is_object() || v.size() != 1)
    config_error(file, field,
                 "must hold exactly one of {\"latest\": {\"num_versions\": N}}, {\"all\": {}}, "
                 "{\"specific\": {\"versions\": [..]}}");
  const std::string kind = v.begin().key();
  const json& body = v.begin().value();
  const std::string sub = field + "." + kind;
  if (!body.is_object()) config_error(file, sub, "must be an object");
  if (kind == "latest") {
    c.version_policy = ModelConfig::VersionPolicy::kLatest;
    for (const auto& [k, n] : body.items()) {
      if (k != "num_versions")
        config_error(file, sub + "." + k, "unknown field (known: num_versions)");
      c.latest_versions = get_int(n, file, sub + ".num_versions", 1, 64);
    }
  } else if (kind == "all") {
    if (!body.empty()) config_error(file, sub, "takes no fields");
    c.version_policy = ModelConfig::VersionPolicy::kAll;
  } else if (kind == "specific") {
    c.version_policy = ModelConfig::VersionPolicy::kSpecific;
    for (const auto& [k, list] : body.items()) {
      if (k != "versions") config_error(file, sub + "." + k, "unknown field (known: versions)");
      if (!list.is_array() || list.empty() || list.size() > 64)
        config_error(file, sub + ".versions", "must be a list of 1 to 64 version numbers");
      for (const json& n : list)
        c.specific_versions.push_back(
            static_cast<uint64_t>(get_int(n, file, sub + ".versions", 1, 999'999'999'999'999'999)));
    }
    if (c.specific_versions.empty()) config_error(file, sub, "needs \"versions\": [..]");
  } else {
    config_error(file, sub, "unknown policy (known: latest, all, specific)");
  }
}

}  // namespace

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

ModelConfig parse_model_config(const std::string& text, const std::string& file) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    raise(ErrorCode::kInvalidArgument, "{}: not valid JSON: {}", file, e.what());
  }
  TANDEM_CHECK(doc.is_object(), ErrorCode::kInvalidArgument, "{}: must be a JSON object", file);
  ModelConfig c;
  for (const auto& [key, v] : doc.items()) {
    if (key == "devices") {
      std::string text_list;
      if (v.is_number_integer()) {
        text_list = std::to_string(get_int(v, file, key, 1, 1024));
      } else if (v.is_string()) {
        text_list = v.get<std::string>();
        // parse_device_list reads a bare count with stoi: keep it short enough to fit.
        if (all_digits(text_list) && text_list.size() > 4)
          config_error(file, key, fmt::format("device count '{}' is too large", text_list));
      } else if (v.is_array()) {
        for (const json& d : v) {
          if (!d.is_string()) config_error(file, key, "a device list must hold strings");
          if (!text_list.empty()) text_list += ",";
          text_list += d.get<std::string>();
        }
      } else {
        config_error(file, key, "must be \"cpu:0,cpu:1\", a list of devices or a count");
      }
      try {
        c.devices = parse_device_list(text_list);
      } catch (const Error& e) {
        config_error(file, key, e.what());
      }
    } else if (key == "workers") {
      c.workers = static_cast<int>(get_int(v, file, key, 1, 64));
    } else if (key == "mode") {
      if (!v.is_string() ||
          (v.get<std::string>() != "processes" && v.get<std::string>() != "threads"))
        config_error(file, key,
                     fmt::format("must be \"processes\" or \"threads\" (got {})", v.dump()));
      c.mode = v.get<std::string>();
    } else if (key == "max_batch_size") {
      c.max_batch_size = get_int(v, file, key, 0, 1 << 20);
    } else if (key == "dynamic_batching") {
      if (!v.is_object()) config_error(file, key, "must be an object");
      c.dynamic_batching = true;
      for (const auto& [sub, sv] : v.items()) {
        const std::string field = "dynamic_batching." + sub;
        if (sub == "max_queue_delay_us") {
          // Ten seconds: past that a client has long timed out.
          c.max_queue_delay = std::chrono::microseconds(get_int(sv, file, field, 0, 10'000'000));
        } else if (sub == "preferred_batch_size") {
          if (!sv.is_array()) config_error(file, field, "must be a list of batch sizes");
          for (const json& b : sv)
            c.preferred_batch_sizes.push_back(get_int(b, file, field, 1, 1 << 20));
        } else {
          config_error(file, field,
                       "unknown field (known: max_queue_delay_us, preferred_batch_size)");
        }
      }
    } else if (key == "warmup") {
      if (!v.is_boolean())
        config_error(file, key, fmt::format("must be true or false (got {})", v.dump()));
      c.warmup = v.get<bool>();
    } else if (key == "version_policy") {
      parse_version_policy(v, file, c);
    } else {
      config_error(file, key,
                   "unknown field (known: devices, workers, mode, max_batch_size, "
                   "dynamic_batching, warmup, version_policy)");
    }
  }
  if (c.dynamic_batching && c.max_batch_size < 2)
    config_error(file, "dynamic_batching",
                 fmt::format("needs max_batch_size of at least 2 (it is {})", c.max_batch_size));
  for (int64_t b : c.preferred_batch_sizes)
    if (b > c.max_batch_size)
      config_error(file, "dynamic_batching.preferred_batch_size",
                   fmt::format("{} is larger than max_batch_size {}", b, c.max_batch_size));
  std::sort(c.preferred_batch_sizes.begin(), c.preferred_batch_sizes.end());
  return c;
}

std::vector<std::string> list_models(const fs::path& dir) {
  std::error_code ec;
  TANDEM_CHECK(fs::is_directory(dir, ec), ErrorCode::kNotFound,
               "model repository '{}' is not a folder", dir.string());
  const fs::path root = fs::canonical(dir, ec);
  TANDEM_CHECK(!ec, ErrorCode::kNotFound, "model repository '{}': {}", dir.string(), ec.message());
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;  // .git, editors' files
    std::error_code sub;
    if (!fs::is_directory(e.path(), sub)) continue;  // a README beside the models
    TANDEM_CHECK(valid_model_name(name), ErrorCode::kInvalidArgument,
                 "model repository '{}': folder name '{}' is not a valid model name (1 to 128 "
                 "of A-Z a-z 0-9 _ . -)",
                 dir.string(), name);
    names.push_back(name);
  }
  TANDEM_CHECK(!ec, ErrorCode::kRuntime, "model repository '{}': {}", dir.string(), ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

ModelEntry scan_model(const fs::path& dir, const std::string& name) {
  TANDEM_CHECK(valid_model_name(name), ErrorCode::kInvalidArgument,
               "'{}' is not a valid model name (1 to 128 of A-Z a-z 0-9 _ . -)",
               name.substr(0, 256));
  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  TANDEM_CHECK(!ec, ErrorCode::kNotFound, "model repository '{}': {}", dir.string(), ec.message());
  TANDEM_CHECK(fs::is_directory(root / name, ec), ErrorCode::kNotFound,
               "model repository '{}' has no model folder '{}'", dir.string(), name);
  ModelEntry m;
  m.name = name;
  const fs::path model_dir = resolve_inside(root, name, "model folder");
  const fs::path config = model_dir / "config.json";
  if (fs::exists(config, ec)) {
    fs::path canonical = resolve_inside(root, name + "/config.json", "config.json");
    RegularFile f(canonical, "config.json");
    TANDEM_CHECK(f.size() <= kMaxConfigBytes, ErrorCode::kInvalidArgument,
                 "{}: {} bytes, more than a config file's {}", config.string(), f.size(),
                 kMaxConfigBytes);
    std::string text(static_cast<size_t>(f.size()), '\0');
    f.read_at(0, f.size(), text.data());
    m.config = parse_model_config(text, config.string());
    m.signature = "config:" + text + "\n";
  }
  std::vector<std::pair<uint64_t, std::string>> versions;
  std::map<std::string, std::string> files;  // version -> its model file's name
  for (const fs::directory_entry& e : fs::directory_iterator(model_dir, ec)) {
    std::string v = e.path().filename().string();
    // Triton ignores what is not a version folder; so does this.
    if (!all_digits(v) || v.size() > kMaxVersionDigits) continue;
    std::error_code sub;
    if (!fs::is_directory(e.path(), sub)) continue;
    std::string file = model_file_in(e.path(), name);
    if (file.empty()) continue;
    versions.emplace_back(std::stoull(v), v);
    files[v] = file;
  }
  TANDEM_CHECK(!ec, ErrorCode::kRuntime, "model folder '{}': {}", model_dir.string(), ec.message());
  TANDEM_CHECK(!versions.empty(), ErrorCode::kNotFound,
               "model '{}': no version folder with a model.onnx or model.tandem (expected "
               "{}/<version>/model.onnx)",
               name, model_dir.string());
  std::sort(versions.begin(), versions.end());
  for (const auto& [number, text] : versions) m.all_versions.push_back(text);

  std::vector<std::pair<uint64_t, std::string>> served;
  const ModelConfig& c = m.config;
  switch (c.version_policy) {
    case ModelConfig::VersionPolicy::kLatest: {
      const size_t n = std::min(versions.size(), static_cast<size_t>(c.latest_versions));
      served.assign(versions.end() - static_cast<std::ptrdiff_t>(n), versions.end());
      break;
    }
    case ModelConfig::VersionPolicy::kAll:
      served = versions;
      break;
    case ModelConfig::VersionPolicy::kSpecific:
      for (uint64_t want : c.specific_versions) {
        auto it = std::find_if(versions.begin(), versions.end(),
                               [&](const auto& v) { return v.first == want; });
        TANDEM_CHECK(it != versions.end(), ErrorCode::kNotFound,
                     "model '{}': version_policy.specific names version {}, which has no {}/{}/"
                     "model.onnx",
                     name, want, model_dir.string(), want);
        if (std::find(served.begin(), served.end(), *it) == served.end()) served.push_back(*it);
      }
      std::sort(served.begin(), served.end());
      break;
  }
  for (const auto& [number, version] : served) {
    ModelVersion mv;
    mv.version = version;
    // The model file itself, resolved: a symlink that leaves the repository is refused here.
    mv.model_path =
        resolve_inside(root, name + "/" + version + "/" + files.at(version), "model file");
    TANDEM_CHECK(fs::is_regular_file(mv.model_path, ec), ErrorCode::kInvalidArgument,
                 "model '{}': '{}' is not a regular file", name, mv.model_path.string());
    const auto size = fs::file_size(mv.model_path, ec);
    const auto mtime = fs::last_write_time(mv.model_path, ec).time_since_epoch().count();
    m.signature += fmt::format("{}:{}:{}:{}\n", version, mv.model_path.string(), size, mtime);
    m.versions.push_back(std::move(mv));
  }
  return m;
}

std::vector<ModelEntry> scan_repository(const fs::path& dir) {
  std::vector<std::string> names = list_models(dir);
  TANDEM_CHECK(!names.empty(), ErrorCode::kNotFound,
               "model repository '{}' holds no model folder (expected DIR/<name>/<version>/"
               "model.onnx)",
               dir.string());
  std::vector<ModelEntry> models;
  for (const std::string& name : names) models.push_back(scan_model(dir, name));
  return models;
}

}  // namespace tandem::server

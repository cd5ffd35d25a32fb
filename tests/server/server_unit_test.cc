// The server layer below HTTP: config validation, repository scanning, the KServe v2 codec and
// the dynamic batcher (on a threads-mode ParallelPredictor, so no worker processes).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "../parallel/parallel_test_util.h"
#include "server/batcher.h"
#include "server/kserve.h"
#include "server/repository.h"
#include "tandem/model.h"
#include "tandem/status.h"

namespace fs = std::filesystem;
using namespace tandem;
using namespace tandem::server;

namespace {

const std::string kModels = TANDEM_MODELS_DIR;

// The error message of `f`, or "" when it does not throw tandem::Error.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/server_unit_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

}  // namespace

TEST(ServerConfig, FullConfigParses) {
  ModelConfig c = parse_model_config(
      R"({"devices": "cpu:0,cpu:1", "workers": 2, "mode": "threads", "max_batch_size": 8,
          "dynamic_batching": {"max_queue_delay_us": 500, "preferred_batch_size": [8, 4]}})",
      "m/config.json");
  EXPECT_EQ(c.devices, (std::vector<std::string>{"cpu:0", "cpu:1"}));
  EXPECT_EQ(c.workers, 2);
  EXPECT_EQ(c.mode, "threads");
  EXPECT_EQ(c.max_batch_size, 8);
  EXPECT_TRUE(c.dynamic_batching);
  EXPECT_EQ(c.max_queue_delay.count(), 500);
  EXPECT_EQ(c.preferred_batch_sizes, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(parse_model_config(R"({"devices": 3})", "f").devices.size(), 3u);
  EXPECT_EQ(parse_model_config(R"({"devices": ["cpu:1"]})", "f").devices,
            (std::vector<std::string>{"cpu:1"}));
  ModelConfig defaults = parse_model_config("{}", "f");
  EXPECT_FALSE(defaults.dynamic_batching);
  EXPECT_EQ(defaults.devices, (std::vector<std::string>{"cpu:0"}));
  EXPECT_FALSE(defaults.warmup.has_value());  // then: on with dynamic batching
  EXPECT_EQ(parse_model_config(R"({"warmup": false})", "f").warmup, false);
  EXPECT_NE(error_of([] { parse_model_config(R"({"warmup": 1})", "f"); })
                .find("f: field 'warmup': must be true or false"),
            std::string::npos);
}

TEST(ServerConfig, ErrorsNameFileAndField) {
  struct Case {
    const char* text;
    const char* want;
  };
  const Case cases[] = {
      {"not json", "m/config.json: not valid JSON"},
      {"[1]", "must be a JSON object"},
      {R"({"worker": 1})", "field 'worker': unknown field"},
      {R"({"workers": 0})", "field 'workers': must be between 1 and 64 (got 0)"},
      {R"({"workers": 18446744073709551615})", "field 'workers': must be between 1 and 64"},
      {R"({"workers": -3})", "field 'workers': must be between 1 and 64"},
      {R"({"workers": 1.5})", "field 'workers': must be a whole number"},
      {R"({"workers": "2"})", "field 'workers': must be a whole number"},
      {R"({"mode": "fibers"})", "field 'mode'"},
      {R"({"devices": "cpu:0,cpu:0"})", "field 'devices': device 'cpu:0' is listed twice"},
      {R"({"devices": "99999999999"})", "field 'devices': device count"},
      {R"({"devices": 0})", "field 'devices': must be between 1 and 1024"},
      {R"({"devices": [1]})", "field 'devices'"},
      {R"({"devices": true})", "field 'devices'"},
      {R"({"max_batch_size": -1})", "field 'max_batch_size'"},
      {R"({"dynamic_batching": {}})", "field 'dynamic_batching': needs max_batch_size"},
      {R"({"max_batch_size": 4, "dynamic_batching": []})", "field 'dynamic_batching': must be"},
      {R"({"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_us": 99999999999}})",
       "field 'dynamic_batching.max_queue_delay_us'"},
      {R"({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": 4}})",
       "field 'dynamic_batching.preferred_batch_size': must be a list"},
      {R"({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [5]}})",
       "5 is larger than max_batch_size 4"},
      {R"({"max_batch_size": 4, "dynamic_batching": {"timeout": 1}})",
       "field 'dynamic_batching.timeout': unknown field"},
  };
  for (const Case& c : cases) {
    std::string message = error_of([&] { parse_model_config(c.text, "m/config.json"); });
    EXPECT_NE(message.find("m/config.json"), std::string::npos) << c.text << " -> " << message;
    EXPECT_NE(message.find(c.want), std::string::npos) << c.text << " -> " << message;
  }
}

TEST(ServerRepository, HighestVersionAndSafePaths) {
  TempDir tmp;
  const fs::path repo = tmp.path() / "repo";
  const std::string model = kModels + "/resnet_tiny/model.onnx";
  for (const char* v : {"1", "10", "9"}) {
    fs::create_directories(repo / "a" / v);
    fs::copy_file(model, repo / "a" / v / "model.onnx");
  }
  fs::create_directories(repo / "a" / "latest");  // not a version: ignored
  fs::create_directories(repo / "a" / "11");      // no model.onnx: ignored
  write(repo / "a" / "config.json", R"({"devices": 2})");
  write(repo / "notes.txt", "beside the models");
  fs::create_directories(repo / ".hidden");
  std::vector<ModelEntry> models = scan_repository(repo);
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0].name, "a");
  ASSERT_EQ(models[0].versions.size(), 1u);
  EXPECT_EQ(models[0].latest().version, "10");
  EXPECT_EQ(models[0].all_versions, (std::vector<std::string>{"1", "9", "10"}));
  EXPECT_EQ(models[0].config.devices.size(), 2u);
  EXPECT_EQ(models[0].latest().model_path, fs::canonical(repo / "a" / "10" / "model.onnx"));
  const std::string first_signature = models[0].signature;

  // Triton's version policies.
  write(repo / "a" / "config.json", R"({"version_policy": {"latest": {"num_versions": 2}}})");
  auto served = [&] {
    std::vector<std::string> out;
    for (const ModelVersion& v : scan_model(repo, "a").versions) out.push_back(v.version);
    return out;
  };
  EXPECT_EQ(served(), (std::vector<std::string>{"9", "10"}));
  write(repo / "a" / "config.json", R"({"version_policy": {"all": {}}})");
  EXPECT_EQ(served(), (std::vector<std::string>{"1", "9", "10"}));
  write(repo / "a" / "config.json", R"({"version_policy": {"specific": {"versions": [9, 1, 9]}}})");
  EXPECT_EQ(served(), (std::vector<std::string>{"1", "9"}));
  write(repo / "a" / "config.json", R"({"version_policy": {"specific": {"versions": [3]}}})");
  EXPECT_NE(error_of(served).find("version_policy.specific names version 3"), std::string::npos);
  for (const char* bad :
       {R"({"version_policy": {}})", R"({"version_policy": {"latest": {}, "all": {}}})",
        R"({"version_policy": {"newest": {}}})",
        R"({"version_policy": {"latest": {"num_versions": 0}}})",
        R"({"version_policy": {"all": {"x": 1}}})",
        R"({"version_policy": {"specific": {"versions": []}}})",
        R"({"version_policy": {"specific": {"versions": ["1"]}}})"}) {
    write(repo / "a" / "config.json", bad);
    EXPECT_NE(error_of(served).find("version_policy"), std::string::npos) << bad;
  }
  // The signature follows the config and the model files: what a repository poll compares.
  write(repo / "a" / "config.json", R"({"devices": 2})");
  EXPECT_EQ(scan_model(repo, "a").signature, first_signature);
  fs::create_directories(repo / "a" / "12");
  fs::copy_file(model, repo / "a" / "12" / "model.onnx");
  EXPECT_NE(scan_model(repo, "a").signature, first_signature);
  fs::remove_all(repo / "a" / "12");
  // A converted model (model.tandem) serves like an ONNX one; both in one folder is refused.
  fs::create_directories(repo / "a" / "13");
  fs::copy_file(model, repo / "a" / "13" / "model.tandem");
  EXPECT_EQ(scan_model(repo, "a").latest().model_path,
            fs::canonical(repo / "a" / "13" / "model.tandem"));
  fs::copy_file(model, repo / "a" / "13" / "model.onnx");
  EXPECT_NE(error_of([&] { scan_model(repo, "a"); }).find("holds both model.onnx and model.tandem"),
            std::string::npos);
  fs::remove_all(repo / "a" / "13");
  EXPECT_NE(error_of([&] { scan_model(repo, "nope"); }).find("no model folder 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { scan_model(repo, "../a"); }).find("not a valid model name"),
            std::string::npos);

  // A model file, a version folder or a model folder that is a symlink out of the repository.
  fs::copy_file(model, tmp.path() / "outside.onnx");
  fs::create_directories(repo / "b" / "1");
  fs::create_symlink(tmp.path() / "outside.onnx", repo / "b" / "1" / "model.onnx");
  EXPECT_NE(error_of([&] { scan_repository(repo); }).find("outside the folder"), std::string::npos);
  fs::remove_all(repo / "b");
  fs::create_directories(tmp.path() / "elsewhere" / "1");
  fs::copy_file(model, tmp.path() / "elsewhere" / "1" / "model.onnx");
  fs::create_directory_symlink(tmp.path() / "elsewhere", repo / "c");
  EXPECT_NE(error_of([&] { scan_repository(repo); }).find("outside the folder"), std::string::npos);
  fs::remove(repo / "c");
  // A config.json that is a FIFO is refused, not waited on.
  ASSERT_EQ(::mkfifo((repo / "a" / "config.json.fifo").c_str(), 0600), 0);
  fs::remove(repo / "a" / "config.json");
  fs::rename(repo / "a" / "config.json.fifo", repo / "a" / "config.json");
  EXPECT_NE(error_of([&] { scan_repository(repo); }), "");
  fs::remove(repo / "a" / "config.json");
  EXPECT_EQ(scan_repository(repo).size(), 1u);

  fs::create_directories(repo / "bad name" / "1");
  EXPECT_NE(error_of([&] { scan_repository(repo); }).find("not a valid model name"),
            std::string::npos);
  fs::remove_all(repo / "bad name");
  fs::create_directories(repo / "empty");
  EXPECT_NE(error_of([&] { scan_repository(repo); }).find("model 'empty': no version folder"),
            std::string::npos);
  EXPECT_NE(error_of([&] { scan_repository(tmp.path() / "missing"); }).find("is not a folder"),
            std::string::npos);
  EXPECT_FALSE(valid_model_name(".."));
  EXPECT_FALSE(valid_model_name("a/b"));
  EXPECT_FALSE(valid_model_name(std::string(129, 'a')));
  EXPECT_TRUE(valid_model_name("sd-unet_1.5"));
}

TEST(ServerKserve, JsonAndBinaryRequests) {
  InferRequest r = parse_infer_request(
      R"({"id": "7", "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]},
            {"name": "i", "shape": [3], "datatype": "INT64", "data": [-1, 0, 9007199254740993]},
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [true, false]},
            {"name": "h", "shape": [1], "datatype": "FP16", "data": [0.5]}],
          "outputs": [{"name": "y", "parameters": {"binary_data": true}}, {"name": "z"}]})",
      std::nullopt);
  EXPECT_EQ(r.id, "7");
  ASSERT_EQ(r.inputs.size(), 4u);
  EXPECT_EQ(r.inputs[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(r.inputs[0].data<float>()[3], 4.5f);
  EXPECT_EQ(r.inputs[1].data<int64_t>()[2], 9007199254740993);  // exact, not via double
  EXPECT_TRUE(r.inputs[2].data<bool>()[0]);
  EXPECT_EQ(r.inputs[3].data<uint16_t>()[0], 0x3800);
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_TRUE(r.outputs[0].binary);
  EXPECT_FALSE(r.outputs[1].binary);

  std::string header =
      R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", )"
      R"("parameters": {"binary_data_size": 8}}], "parameters": {"binary_data_output": true}})";
  float values[2] = {1.25f, -2.f};
  std::string body = header + std::string(reinterpret_cast<const char*>(values), 8);
  r = parse_infer_request(body, header.size());
  EXPECT_TRUE(r.binary_output);
  EXPECT_EQ(r.inputs[0].data<float>()[1], -2.f);

  // The response: one output as JSON, one binary after the header.
  Tensor y = Tensor::from_vector(DataType::kFloat32, {2}, std::vector<float>{0.5f, NAN}, "y");
  Tensor z = Tensor::from_vector(DataType::kInt32, {1}, std::vector<int32_t>{-7}, "z");
  EncodedBody out = encode_infer_response("m", "3", "id1", {{"z", false}, {"y", true}}, {y, z});
  ASSERT_TRUE(out.json_length.has_value());
  auto doc = nlohmann::json::parse(out.body.substr(0, *out.json_length));
  EXPECT_EQ(doc["model_version"], "3");
  EXPECT_EQ(doc["outputs"][0]["data"][0], -7);
  EXPECT_EQ(doc["outputs"][1]["parameters"]["binary_data_size"], 8);
  ASSERT_EQ(out.body.size(), *out.json_length + 8);
  float back[2];
  std::memcpy(back, out.body.data() + *out.json_length, 8);
  EXPECT_EQ(back[0], 0.5f);
  EXPECT_TRUE(std::isnan(back[1]));
  EncodedBody json_only = encode_infer_response("m", "3", "", {{"y", false}}, {y, z});
  EXPECT_FALSE(json_only.json_length.has_value());
  EXPECT_NE(json_only.body.find("[0.5,null]"), std::string::npos) << json_only.body;
}

TEST(ServerKserve, MalformedRequestsNameTheProblem) {
  struct Case {
    std::string body;
    std::optional<uint64_t> json_length;
    const char* want;
  };
  const std::string x = R"("name": "x", "shape": [2], "datatype": "FP32")";
  const Case cases[] = {
      {"", std::nullopt, "not valid JSON"},
      {R"({"inputs": [{)" + x + R"(, "data": [1]}]})", std::nullopt, "has 1 elements"},
      {R"({"inputs": [{)" + x + R"(, "data": [1, [2, 3]]}]})", std::nullopt, "has 3 elements"},
      {R"({"inputs": [{)" + x + R"(, "data": [1, {"a": 1}]}]})", std::nullopt, "is not a number"},
      {R"({"inputs": [{)" + x + R"(, "data": [1, 2], "extra": 1}]})", std::nullopt,
       "unknown field 'extra'"},
      {R"({"inputs": [{)" + x + R"(}]})", std::nullopt, "missing 'data'"},
      {R"({"inputs": [{)" + x + R"(, "parameters": {"shared_memory_region": "r"}}]})", std::nullopt,
       "input 'x' parameters: unknown field 'shared_memory_region'"},
      {R"({"inputs": [{)" + x +
           R"(, "data": [1, 2]}], "outputs": [{"name": "y", )"
           R"("parameters": {"classification": 3}}]})",
       std::nullopt, "outputs[0] parameters: unknown field 'classification'"},
      {R"({"inputs": [{"name": "i", "shape": [1], "datatype": "INT8", "data": [128]}]})",
       std::nullopt, "out of range for int8"},
      {R"({"inputs": [{"name": "i", "shape": [1], "datatype": "UINT8", "data": [-1]}]})",
       std::nullopt, "out of range for uint8"},
      {R"({"inputs": [{"name": "i", "shape": [1], "datatype": "INT64", "data": [1e3]}]})",
       std::nullopt, "is not an integer"},
      {R"({"inputs": [{"name": "i", "shape": [1], "datatype": "BOOL", "data": [1]}]})",
       std::nullopt, "is not true or false"},
      {R"({"inputs": [{"name": "", "shape": [1], "datatype": "FP32", "data": [1]}]})", std::nullopt,
       "'name' must have 1 to 256 characters"},
      {R"({"inputs": [{"name": "i", "shape": [4294967296, 4294967296], "datatype": "FP32", )"
       R"("data": []}]})",
       std::nullopt, "overflows"},
      {R"({"inputs": [{"name": "i", "shape": [1000000000], "datatype": "FP32", "data": []}]})",
       std::nullopt, "over the per-tensor limit"},
      {R"({"inputs": [{)" + x + R"(, "parameters": {"binary_data_size": 8}}]})", 10000,
       "larger than the body"},
      {R"({"inputs": [{)" + x + R"(, "parameters": {"binary_data_size": 4}}]})", std::nullopt,
       "binary_data_size is 4 but"},
      {R"({"inputs": [{)" + x + R"(, "parameters": {"binary_data_size": 8}}]})", std::nullopt,
       "runs past the end of the body"},
      {std::string(100, '['), std::nullopt, "nested deeper than"},
  };
  for (const Case& c : cases) {
    std::string message = error_of([&] { parse_infer_request(c.body, c.json_length); });
    EXPECT_NE(message.find(c.want), std::string::npos) << c.body << " -> " << message;
  }
  RequestLimits small;
  small.max_json_bytes = 64;
  EXPECT_NE(error_of([&] {
              parse_infer_request(R"({"inputs": [{)" + x + R"(, "data": [1, 2]}]})", std::nullopt,
                                  small);
            }).find("send large tensors as binary data"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_header_length("-1"); }), "");
  EXPECT_NE(error_of([] { parse_header_length("99999999999999999999"); }), "");
  EXPECT_EQ(parse_header_length("0012"), 12u);
}

TEST(ServerKserve, MatchInputsOrdersAndChecks) {
  TensorInfo a{"a", DataType::kFloat32, {-1, 2}, {"batch", ""}};
  TensorInfo b{"b", DataType::kInt64, {-1}, {"batch"}};
  auto t = [](const char* name, DataType dt, Shape s) { return Tensor(dt, s, name); };
  std::vector<Tensor> ordered =
      match_inputs({a, b}, {t("b", DataType::kInt64, {3}), t("a", DataType::kFloat32, {3, 2})});
  EXPECT_EQ(ordered[0].name(), "a");
  EXPECT_EQ(ordered[1].name(), "b");
  EXPECT_NE(
      error_of([&] {
        match_inputs({a, b}, {t("b", DataType::kInt64, {2}), t("a", DataType::kFloat32, {3, 2})});
      }).find("batch = 3"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              match_inputs({a}, {t("a", DataType::kFloat32, {3, 3})});
            }).find("has shape [3,3]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              match_inputs({a}, {t("a", DataType::kInt64, {3, 2})});
            }).find("datatype INT64"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              match_inputs({a}, {t("a", DataType::kFloat32, {1, 2}), t("c", DataType::kBool, {})});
            }).find("no input 'c'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              match_inputs({a, b}, {t("a", DataType::kFloat32, {1, 2})});
            }).find("input 'b' (INT64 [batch]) is missing"),
            std::string::npos);
}

namespace {

// A threads-mode predictor of a committed model, and one Model to compare against.
struct Runner {
  explicit Runner(const std::string& name, int devices = 2)
      : reference(Model::build_from_file(kModels + "/" + name + "/model.onnx")) {
    ParallelOptions o = test::options(kModels + "/" + name + "/model.onnx", devices);
    o.mode = "threads";
    predictor = std::make_unique<ParallelPredictor>(o);
    predictor->build();
  }
  Model reference;
  std::unique_ptr<ParallelPredictor> predictor;
};

float max_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return INFINITY;
  float worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a.data<float>()[i] - b.data<float>()[i]));
  return worst;
}

// Each ticket's outputs equal one Model run of its own inputs.
void expect_each_matches(Runner& r, const std::vector<std::vector<Tensor>>& inputs,
                         std::vector<Batcher::Ticket>& tickets) {
  for (size_t k = 0; k < tickets.size(); ++k) {
    ASSERT_EQ(tickets[k].result.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    std::vector<Tensor> got = tickets[k].result.get();
    std::vector<Tensor> want = r.reference.predict(inputs[k]);
    ASSERT_EQ(got.size(), want.size());
    for (size_t o = 0; o < got.size(); ++o)
      EXPECT_LE(max_diff(got[o], want[o]), 1e-5f) << "request " << k << " output " << o;
  }
}

}  // namespace

TEST(ServerBatcher, MergesConcurrentRequestsAndSplitsThemBack) {
  Runner r("resnet_tiny");
  ModelMetrics metrics;
  BatchPolicy policy;
  policy.max_batch_size = 8;
  policy.max_queue_delay = std::chrono::milliseconds(500);
  Batcher batcher(*r.predictor, r.predictor->inputs(), r.predictor->outputs(), policy, metrics);
  ASSERT_TRUE(batcher.merges());
  // Batches of 1, 2, 3 and 2 items: 8 in all, exactly max_batch_size, so they leave at once.
  std::vector<std::vector<Tensor>> inputs;
  std::vector<Batcher::Ticket> tickets;
  int64_t sizes[] = {1, 2, 3, 2};
  for (int k = 0; k < 4; ++k) {
    inputs.push_back(test::random_inputs(r.predictor->inputs(), sizes[k], 10 + k));
    tickets.push_back(batcher.enqueue(inputs.back()));
  }
  expect_each_matches(r, inputs, tickets);
  EXPECT_EQ(metrics.batches.load(), 1u);
  std::string text;
  metrics.batch_size.render(text, "b", "");
  EXPECT_NE(text.find("b_bucket{le=\"8\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("b_bucket{le=\"4\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("b_sum 8"), std::string::npos) << text;
}

TEST(ServerBatcher, UnequalUnbatchedInputsRunApart) {
  Runner r("sd_unet_tiny");
  ModelMetrics metrics;
  BatchPolicy policy;
  policy.max_batch_size = 4;
  policy.max_queue_delay = std::chrono::milliseconds(300);
  Batcher batcher(*r.predictor, r.predictor->inputs(), r.predictor->outputs(), policy, metrics);
  ASSERT_TRUE(batcher.merges());
  std::vector<std::vector<Tensor>> inputs;
  std::vector<Batcher::Ticket> tickets;
  for (int k = 0; k < 4; ++k) {
    inputs.push_back(test::random_inputs(r.predictor->inputs(), 1, 20 + k));
    inputs.back()[1].data<float>()[0] = k % 2 ? 500.f : 1.f;  // timestep: two values
    tickets.push_back(batcher.enqueue(inputs.back()));
  }
  expect_each_matches(r, inputs, tickets);
  // Two timesteps: two batches of two (the delay lets each pair gather).
  EXPECT_EQ(metrics.batches.load(), 2u);
}

TEST(ServerBatcher, StopAnswersQueuedRequestsAndCancelledOnesAreDropped) {
  Runner r("resnet_tiny", 1);
  ModelMetrics metrics;
  BatchPolicy policy;
  policy.max_batch_size = 64;
  policy.max_queue_delay = std::chrono::seconds(10);  // only stop() or a full batch sends them
  policy.max_queued = 3;
  Batcher batcher(*r.predictor, r.predictor->inputs(), r.predictor->outputs(), policy, metrics);
  std::vector<Batcher::Ticket> tickets;
  for (int k = 0; k < 3; ++k)
    tickets.push_back(batcher.enqueue(test::random_inputs(r.predictor->inputs(), 1, 30 + k)));
  EXPECT_THROW(batcher.enqueue(test::random_inputs(r.predictor->inputs(), 1, 40)), QueueFull);
  tickets[1].cancelled->store(true);
  auto start = std::chrono::steady_clock::now();
  batcher.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(tickets[0].result.get().size(), 1u);
  EXPECT_EQ(tickets[2].result.get().size(), 1u);
  EXPECT_NE(error_of([&] { tickets[1].result.get(); }).find("timed out"), std::string::npos);
  EXPECT_THROW(batcher.enqueue(test::random_inputs(r.predictor->inputs(), 1, 41)), QueueFull);
  EXPECT_EQ(metrics.batches.load(), 1u);  // the two live ones, merged
}

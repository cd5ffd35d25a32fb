// The gRPC frontend in process: a ModelHost over a one-model repository (threads mode, so no
// worker processes) behind a GrpcFrontend on a free loopback port, called through the C++ stub
// generated from the same .proto. Status codes, the raw response against the host's own answer,
// a port in use, and shutdown. (tests/server/grpc_test.py covers the same end to end with
// @grpc/grpc-js; this one also runs under the sanitizers: tools/test.sh runs ^Server there.)
#include "server/grpc_frontend.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "server/grpc_predict_v2.grpc.pb.h"
#include "server/model_host.h"
#include "tandem/status.h"

namespace fs = std::filesystem;
using namespace tandem;
using namespace tandem::server;

namespace {

class ServerGrpcFrontend : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/grpc_frontend_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "lstm" / "1");
    fs::copy_file(fs::path(TANDEM_MODELS_DIR) / "lstm_tiny" / "model.onnx",
                  dir_ / "lstm" / "1" / "model.onnx");
    std::ofstream(dir_ / "lstm" / "config.json") << R"({"devices": 1, "mode": "threads"})";
    options_.repository = dir_.string();
    options_.host = "127.0.0.1";
    options_.grpc_port = 0;
    options_.max_request_bytes = 1 << 20;
    host_ = std::make_unique<ModelHost>(options_);
    host_->build_all([] { return false; });
    frontend_ = std::make_unique<GrpcFrontend>(*host_, options_);
    ASSERT_GT(frontend_->port(), 0);
    stub_ = inference::GRPCInferenceService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(frontend_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    frontend_.reset();
    if (host_) host_->drain();
    host_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Every call is bounded: a hung frontend fails the test instead of stalling it.
  std::unique_ptr<grpc::ClientContext> context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return c;
  }

  inference::ModelInferRequest lstm_request(const std::vector<int64_t>& ids) {
    inference::ModelInferRequest r;
    r.set_model_name("lstm");
    r.set_id("q");
    auto* in = r.add_inputs();
    in->set_name("input_ids");
    in->set_datatype("INT64");
    in->add_shape(1);
    in->add_shape(static_cast<int64_t>(ids.size()));
    r.add_raw_input_contents(
        std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int64_t)));
    return r;
  }

  fs::path dir_;
  ServeOptions options_;
  std::unique_ptr<ModelHost> host_;
  std::unique_ptr<GrpcFrontend> frontend_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

TEST_F(ServerGrpcFrontend, HealthAndMetadata) {
  inference::ServerReadyResponse ready;
  ASSERT_TRUE(stub_->ServerReady(context().get(), {}, &ready).ok());
  EXPECT_TRUE(ready.ready());
  inference::ServerMetadataResponse server;
  ASSERT_TRUE(stub_->ServerMetadata(context().get(), {}, &server).ok());
  EXPECT_EQ(server.name(), "tandem");
  inference::ModelMetadataRequest which;
  which.set_name("lstm");
  inference::ModelMetadataResponse meta;
  ASSERT_TRUE(stub_->ModelMetadata(context().get(), which, &meta).ok());
  ASSERT_EQ(meta.inputs_size(), 1);
  EXPECT_EQ(meta.inputs(0).name(), "input_ids");
  EXPECT_EQ(meta.inputs(0).datatype(), "INT64");
  EXPECT_EQ(meta.inputs(0).shape(0), -1);
  ASSERT_EQ(meta.versions_size(), 1);
  EXPECT_EQ(meta.versions(0), "1");
  which.set_name("nope");
  grpc::Status s = stub_->ModelMetadata(context().get(), which, &meta);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  inference::ModelReadyRequest model;
  model.set_name("lstm");
  model.set_version("2");
  inference::ModelReadyResponse model_ready;
  s = stub_->ModelReady(context().get(), model, &model_ready);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(ServerGrpcFrontend, InferAnswersWhatTheHostAnswers) {
  const std::vector<int64_t> ids = {3, 1, 4, 1, 5};
  inference::ModelInferResponse response;
  grpc::Status s = stub_->ModelInfer(context().get(), lstm_request(ids), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.model_name(), "lstm");
  EXPECT_EQ(response.model_version(), "1");
  EXPECT_EQ(response.id(), "q");
  ASSERT_EQ(response.outputs_size(), 1);
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  EXPECT_EQ(response.outputs(0).name(), "logits");
  EXPECT_EQ(response.outputs(0).datatype(), "FP32");

  InferResult direct = host_->infer("lstm", "", [&](const ModelInfo&) {
    std::vector<Tensor> in;
    in.push_back(Tensor::from_vector<int64_t>(DataType::kInt64, {1, 5}, ids, "input_ids"));
    return in;
  });
  ASSERT_EQ(direct.outputs.size(), 1u);
  const Tensor& logits = direct.outputs[0];
  ASSERT_EQ(response.outputs(0).shape_size(), static_cast<int>(logits.rank()));
  for (size_t d = 0; d < logits.rank(); ++d)
    EXPECT_EQ(response.outputs(0).shape(static_cast<int>(d)), logits.dim(d));
  ASSERT_EQ(response.raw_output_contents(0).size(), logits.nbytes());
  EXPECT_EQ(std::memcmp(response.raw_output_contents(0).data(), logits.raw(), logits.nbytes()), 0);
}

TEST_F(ServerGrpcFrontend, FailuresMapToStatusCodes) {
  inference::ModelInferResponse response;
  inference::ModelInferRequest r = lstm_request({1, 2});
  r.set_model_name("nope");
  grpc::Status s = stub_->ModelInfer(context().get(), r, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();

  r = lstm_request({1, 2});
  r.mutable_inputs(0)->set_datatype("INT32");
  s = stub_->ModelInfer(context().get(), r, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("raw_input_contents[0] has 16 bytes but INT32 [1,2] takes 8"),
            std::string::npos)
      << s.error_message();

  r = lstm_request({1, 2});
  r.mutable_inputs(0)->add_shape(1);
  s = stub_->ModelInfer(context().get(), r, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  // Over the message size limit (1 MiB here): gRPC refuses it before the frontend sees it.
  r = lstm_request(std::vector<int64_t>(200000, 1));
  s = stub_->ModelInfer(context().get(), r, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // Still answering.
  s = stub_->ModelInfer(context().get(), lstm_request({1, 2}), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(ServerGrpcFrontend, PortInUseIsRefused) {
  ServeOptions again = options_;
  again.grpc_port = frontend_->port();
  try {
    GrpcFrontend second(*host_, again);
    ADD_FAILURE() << "a second frontend bound port " << again.grpc_port;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen for gRPC on 127.0.0.1:"), std::string::npos)
        << e.what();
  }
}

TEST_F(ServerGrpcFrontend, ShutdownStopsAcceptingAndIsIdempotent) {
  inference::ServerLiveResponse live;
  ASSERT_TRUE(stub_->ServerLive(context().get(), {}, &live).ok());
  EXPECT_TRUE(live.live());
  frontend_->shutdown(std::chrono::seconds(5));
  frontend_->shutdown(std::chrono::seconds(5));
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Status s = stub_->ServerLive(c.get(), {}, &live);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

}  // namespace

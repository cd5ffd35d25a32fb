// The KServe v2 gRPC messages to and from tensors (src/server/kserve_grpc.h): typed contents of
// every datatype, raw contents, and each malformed request refused as kInvalidArgument with a
// message naming the field.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "server/kserve_grpc.h"
#include "tandem/status.h"

using namespace tandem;
using namespace tandem::server;
using inference::ModelInferRequest;

namespace {

ModelInferRequest::InferInputTensor* add_input(ModelInferRequest& r, const std::string& name,
                                               const std::string& datatype,
                                               std::vector<int64_t> shape) {
  auto* in = r.add_inputs();
  in->set_name(name);
  in->set_datatype(datatype);
  for (int64_t d : shape) in->add_shape(d);
  return in;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The message of the kInvalidArgument error parsing `r` throws; fails the test for any other
// outcome.
std::string refusal(const ModelInferRequest& r, const RequestLimits& limits = {}) {
  try {
    (void)parse_grpc_infer_request(r, limits);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "the request was accepted";
  return "";
}

TEST(ServerGrpc, RawContents) {
  ModelInferRequest r;
  r.set_id("req-7");
  add_input(r, "x", "FP32", {2, 3});
  add_input(r, "m", "BOOL", {3});
  add_input(r, "h", "FP16", {2});
  const std::vector<float> x = {1, 2, 3, 4, 5, -6.5f};
  r.add_raw_input_contents(bytes_of(x));
  r.add_raw_input_contents(std::string("\x01\x00\x01", 3));
  r.add_raw_input_contents(bytes_of(std::vector<uint16_t>{0x3c00, 0xc000}));
  r.add_outputs()->set_name("y");
  InferRequest req = parse_grpc_infer_request(r);
  EXPECT_EQ(req.id, "req-7");
  ASSERT_EQ(req.inputs.size(), 3u);
  EXPECT_EQ(req.inputs[0].name(), "x");
  EXPECT_EQ(req.inputs[0].dtype(), DataType::kFloat32);
  EXPECT_EQ(req.inputs[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(req.inputs[0].raw(), x.data(), 24), 0);
  EXPECT_EQ(req.inputs[1].dtype(), DataType::kBool);
  EXPECT_TRUE(req.inputs[1].data<bool>()[0]);
  EXPECT_FALSE(req.inputs[1].data<bool>()[1]);
  EXPECT_EQ(req.inputs[2].dtype(), DataType::kFloat16);
  EXPECT_EQ(req.inputs[2].data<uint16_t>()[1], 0xc000);
  ASSERT_EQ(req.outputs.size(), 1u);
  EXPECT_EQ(req.outputs[0].name, "y");
}

TEST(ServerGrpc, TypedContentsOfEveryField) {
  ModelInferRequest r;
  auto* i8 = add_input(r, "i8", "INT8", {3});
  for (int v : {-128, 0, 127}) i8->mutable_contents()->add_int_contents(v);
  auto* i32 = add_input(r, "i32", "INT32", {1});
  i32->mutable_contents()->add_int_contents(std::numeric_limits<int32_t>::min());
  auto* i64 = add_input(r, "i64", "INT64", {2});
  i64->mutable_contents()->add_int64_contents(std::numeric_limits<int64_t>::max());
  i64->mutable_contents()->add_int64_contents(-5);
  auto* u16 = add_input(r, "u16", "UINT16", {1});
  u16->mutable_contents()->add_uint_contents(65535);
  auto* u64 = add_input(r, "u64", "UINT64", {1});
  u64->mutable_contents()->add_uint64_contents(std::numeric_limits<uint64_t>::max());
  auto* f32 = add_input(r, "f32", "FP32", {1, 2});
  f32->mutable_contents()->add_fp32_contents(0.25f);
  f32->mutable_contents()->add_fp32_contents(-3.0f);
  auto* f64 = add_input(r, "f64", "FP64", {1});
  f64->mutable_contents()->add_fp64_contents(1e300);
  auto* b = add_input(r, "b", "BOOL", {2});
  b->mutable_contents()->add_bool_contents(true);
  b->mutable_contents()->add_bool_contents(false);
  add_input(r, "empty", "FP32", {0, 4});  // no elements: no contents needed

  InferRequest req = parse_grpc_infer_request(r);
  ASSERT_EQ(req.inputs.size(), 9u);
  EXPECT_EQ(req.inputs[0].dtype(), DataType::kInt8);
  EXPECT_EQ(req.inputs[0].data<int8_t>()[0], -128);
  EXPECT_EQ(req.inputs[0].data<int8_t>()[2], 127);
  EXPECT_EQ(req.inputs[1].data<int32_t>()[0], std::numeric_limits<int32_t>::min());
  EXPECT_EQ(req.inputs[2].data<int64_t>()[0], std::numeric_limits<int64_t>::max());
  EXPECT_EQ(req.inputs[2].data<int64_t>()[1], -5);
  EXPECT_EQ(req.inputs[3].data<uint16_t>()[0], 65535);
  EXPECT_EQ(req.inputs[4].data<uint64_t>()[0], std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(req.inputs[5].shape(), (Shape{1, 2}));
  EXPECT_EQ(req.inputs[5].data<float>()[1], -3.0f);
  EXPECT_EQ(req.inputs[6].data<double>()[0], 1e300);
  EXPECT_TRUE(req.inputs[7].data<bool>()[0]);
  EXPECT_FALSE(req.inputs[7].data<bool>()[1]);
  EXPECT_EQ(req.inputs[8].numel(), 0);
  EXPECT_TRUE(req.outputs.empty());
}

TEST(ServerGrpc, MalformedRequestsNameTheField) {
  auto one = [](const std::string& datatype, std::vector<int64_t> shape) {
    ModelInferRequest r;
    add_input(r, "x", datatype, std::move(shape));
    return r;
  };
  ModelInferRequest r;
  EXPECT_NE(refusal(r).find("'inputs' is empty"), std::string::npos);

  r = one("FP32", {2});
  r.add_raw_input_contents(std::string(7, '\0'));
  EXPECT_NE(refusal(r).find("raw_input_contents[0] has 7 bytes but FP32 [2] takes 8"),
            std::string::npos);

  r = one("FP32", {1});
  r.add_raw_input_contents(std::string(4, '\0'));
  r.add_raw_input_contents(std::string(4, '\0'));
  EXPECT_NE(refusal(r).find("raw_input_contents has 2 entries but there are 1 inputs"),
            std::string::npos);

  r = one("FP32", {1});
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  r.add_raw_input_contents(std::string(4, '\0'));
  EXPECT_NE(refusal(r).find("input 'x': has 'contents' but the request uses raw_input_contents"),
            std::string::npos);

  r = one("FP32", {2});
  EXPECT_NE(refusal(r).find("input 'x': has neither 'contents' nor an entry"), std::string::npos);

  r = one("FP32", {2});
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  EXPECT_NE(refusal(r).find("contents.fp32_contents has 1 values but FP32 [2] needs 2"),
            std::string::npos);

  r = one("FP32", {1});
  r.mutable_inputs(0)->mutable_contents()->add_int64_contents(1);
  EXPECT_NE(refusal(r).find("contents.int64_contents is set, but datatype FP32"),
            std::string::npos);

  r = one("INT8", {1});
  r.mutable_inputs(0)->mutable_contents()->add_int_contents(300);
  EXPECT_NE(refusal(r).find("contents.int_contents[0] = 300 is out of range for INT8"),
            std::string::npos);
  r = one("UINT8", {1});
  r.mutable_inputs(0)->mutable_contents()->add_uint_contents(256);
  EXPECT_NE(refusal(r).find("= 256 is out of range for UINT8"), std::string::npos);

  r = one("FP16", {1});
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  EXPECT_NE(refusal(r).find("datatype FP16 has no typed contents field: send it in "
                            "raw_input_contents"),
            std::string::npos);

  r = one("BYTES", {1});
  EXPECT_NE(refusal(r).find("input 'x': datatype BYTES is not supported"), std::string::npos);
  r = one("FLOAT", {1});
  EXPECT_NE(refusal(r).find("unknown datatype 'FLOAT'"), std::string::npos);

  r = one("BOOL", {2});
  r.add_raw_input_contents(std::string("\x01\x02", 2));
  EXPECT_NE(refusal(r).find("BOOL element 1 of raw_input_contents[0] is neither 0 nor 1"),
            std::string::npos);

  r = one("FP32", {2, -1});
  EXPECT_NE(refusal(r).find("has a dimension that is not a whole number >= 0"), std::string::npos)
      << refusal(r);
  r = one("FP32", std::vector<int64_t>(33, 1));
  EXPECT_NE(refusal(r).find("more than 32 dimensions"), std::string::npos);
  // The element count overflows: refused before anything is allocated or counted.
  r = one("FP32", {int64_t{1} << 40, int64_t{1} << 40});
  EXPECT_NE(refusal(r).find("input 'x'"), std::string::npos);
  r = one("FP64", {int64_t{1} << 61});
  EXPECT_NE(refusal(r).find("overflows 64 bits"), std::string::npos);
  RequestLimits small;
  small.max_tensor_bytes = 64;
  r = one("FP32", {17});
  EXPECT_NE(refusal(r, small).find("over the per-tensor limit of 64 bytes"), std::string::npos);

  r = one("FP32", {0});
  add_input(r, "x", "FP32", {0});
  EXPECT_NE(refusal(r).find("input 'x' is given twice"), std::string::npos);
  r = one("FP32", {0});
  r.mutable_inputs(0)->set_name("");
  EXPECT_NE(refusal(r).find("inputs[0]: 'name' must have 1 to 256 characters"), std::string::npos);
  r = one("FP32", {0});
  (*r.mutable_inputs(0)->mutable_parameters())["shared_memory_region"].set_string_param("r");
  EXPECT_NE(refusal(r).find("input 'x': has parameters"), std::string::npos);

  RequestLimits two;
  two.max_inputs = 2;
  two.max_outputs = 1;
  r = one("FP32", {0});
  add_input(r, "y", "FP32", {0});
  add_input(r, "z", "FP32", {0});
  EXPECT_NE(refusal(r, two).find("3 inputs, more than the 2 accepted"), std::string::npos);

  r = one("FP32", {0});
  r.add_outputs()->set_name("y");
  r.add_outputs()->set_name("y");
  EXPECT_NE(refusal(r).find("output 'y' is requested twice"), std::string::npos);
  EXPECT_NE(refusal(r, two).find("2 outputs requested, more than the 1 accepted"),
            std::string::npos);
  r = one("FP32", {0});
  r.add_outputs()->set_name("");
  EXPECT_NE(refusal(r).find("outputs[0]: 'name'"), std::string::npos);
  r = one("FP32", {0});
  auto* o = r.add_outputs();
  o->set_name("y");
  (*o->mutable_parameters())["classification"].set_int64_param(3);
  EXPECT_NE(refusal(r).find("output 'y': has parameters"), std::string::npos);

  r = one("FP32", {0});
  r.set_id(std::string(1025, 'i'));
  EXPECT_NE(refusal(r).find("'id' is longer than 1024"), std::string::npos);
}

TEST(ServerGrpc, ResponseIsRawInTheRequestedOrder) {
  std::vector<Tensor> outputs;
  outputs.push_back(Tensor::from_vector<float>(DataType::kFloat32, {2}, {1.5f, -2}, "a"));
  outputs.push_back(Tensor::from_vector<int64_t>(DataType::kInt64, {1, 1}, {42}, "b"));
  inference::ModelInferResponse response;
  encode_grpc_infer_response("m", "3", "id-1", {{"b", true}, {"a", true}}, outputs, response);
  EXPECT_EQ(response.model_name(), "m");
  EXPECT_EQ(response.model_version(), "3");
  EXPECT_EQ(response.id(), "id-1");
  ASSERT_EQ(response.outputs_size(), 2);
  ASSERT_EQ(response.raw_output_contents_size(), 2);
  EXPECT_EQ(response.outputs(0).name(), "b");
  EXPECT_EQ(response.outputs(0).datatype(), "INT64");
  EXPECT_EQ(response.outputs(0).shape_size(), 2);
  EXPECT_FALSE(response.outputs(0).has_contents());
  EXPECT_EQ(response.raw_output_contents(0), bytes_of(std::vector<int64_t>{42}));
  EXPECT_EQ(response.outputs(1).name(), "a");
  EXPECT_EQ(response.outputs(1).datatype(), "FP32");
  EXPECT_EQ(response.raw_output_contents(1), bytes_of(std::vector<float>{1.5f, -2}));

  try {
    encode_grpc_infer_response("m", "3", "", {{"c", true}}, outputs, response);
    ADD_FAILURE() << "an output the model did not return was encoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("no output 'c'"), std::string::npos);
  }
}

TEST(ServerGrpc, RequestedOutputsResolveAgainstTheModel) {
  ModelInferRequest r;
  add_input(r, "x", "FP32", {0});
  r.add_outputs()->set_name("nope");
  InferRequest req = parse_grpc_infer_request(r);
  TensorInfo y;
  y.name = "y";
  y.dtype = DataType::kFloat32;
  y.shape = {-1, 4};
  try {
    (void)resolve_outputs({y}, req);
    ADD_FAILURE() << "an unknown output was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("no output 'nope'"), std::string::npos);
  }
  inference::ModelMetadataResponse meta;
  fill_tensor_metadata({y}, *meta.mutable_outputs());
  ASSERT_EQ(meta.outputs_size(), 1);
  EXPECT_EQ(meta.outputs(0).datatype(), "FP32");
  EXPECT_EQ(meta.outputs(0).shape(0), -1);
  EXPECT_EQ(meta.outputs(0).shape(1), 4);
}

}  // namespace

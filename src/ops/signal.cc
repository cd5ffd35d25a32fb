// Schemas of the signal family (opset 17): HannWindow, HammingWindow, BlackmanWindow, DFT, STFT,
// MelWeightMatrix. Window and matrix sizes, dft_length, frame_step and frame_length are input
// values (require_value).
#include "ops/signal.h"

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

SignalAttrs SignalAttrs::parse(const Node& node) {
  SignalAttrs a;
  a.axis = node.attr_int_or("axis", 1);
  a.inverse = node.attr_int_or("inverse", 0) != 0;
  a.onesided = node.attr_int_or("onesided", node.op_type == "STFT" ? 1 : 0) != 0;
  a.periodic = node.attr_int_or("periodic", 1) != 0;
  a.output_datatype = static_cast<DataType>(node.attr_int_or("output_datatype", 1));
  const DataType t = a.output_datatype;
  TANDEM_CHECK(t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 ||
                   t == DataType::kInt32 || t == DataType::kInt64,
               ErrorCode::kUnsupported, "{}: output_datatype {} is not supported", node.describe(),
               static_cast<int>(t));
  TANDEM_CHECK(!(node.op_type == "DFT" && a.onesided && a.inverse), ErrorCode::kUnsupported,
               "{}: onesided inverse DFT is not supported", node.describe());
  return a;
}

namespace {

int64_t int_value(const InferContext& ctx, size_t i, const char* what) {
  int64_t v = tensor_to_int64s(ctx.require_value(i), ctx.node).at(0);
  TANDEM_CHECK(v >= 0, ErrorCode::kInvalidArgument, "{}: {} is {}, must be >= 0",
               ctx.node.describe(), what, v);
  return v;
}

std::vector<TensorType> infer_window(const InferContext& ctx, const SignalAttrs& a) {
  return {{a.output_datatype, {int_value(ctx, 0, "size")}}};
}

void check_signal(const InferContext& ctx, const Shape& s) {
  ctx.float_input(0);
  TANDEM_CHECK(s.size() >= 3 && (s.back() == 1 || s.back() == 2), ErrorCode::kInvalidArgument,
               "{}: input shape {} must be [batch, ..., 1 or 2]", ctx.node.describe(),
               shape_str(s));
}

std::vector<TensorType> infer_dft(const InferContext& ctx, const SignalAttrs& a) {
  const Node& node = ctx.node;
  Shape s = ctx.input(0).shape;
  check_signal(ctx, s);
  const int64_t rank = static_cast<int64_t>(s.size());
  const int64_t axis = a.axis;
  const int64_t norm = axis < 0 ? axis + rank : axis;
  TANDEM_CHECK(norm >= 1 && norm <= rank - 2, ErrorCode::kInvalidModel,
               "{}: axis {} must be a signal axis of shape {}", node.describe(), axis,
               shape_str(s));
  const size_t axis_at = static_cast<size_t>(norm);
  int64_t len = ctx.has_input(1) ? int_value(ctx, 1, "dft_length") : s[axis_at];
  s[axis_at] = a.onesided ? len / 2 + 1 : len;
  s.back() = 2;
  return {{ctx.input(0).dtype, s}};
}

std::vector<TensorType> infer_stft(const InferContext& ctx, const SignalAttrs& a) {
  const Node& node = ctx.node;
  const Shape& s = ctx.input(0).shape;
  check_signal(ctx, s);
  TANDEM_CHECK(s.size() == 3, ErrorCode::kInvalidArgument,
               "{}: signal shape {} must be [batch, length, 1 or 2]", node.describe(),
               shape_str(s));
  const int64_t step = int_value(ctx, 1, "frame_step");
  int64_t frame = -1;
  if (ctx.has_input(3)) frame = int_value(ctx, 3, "frame_length");
  if (ctx.has_input(2)) {
    const Shape& w = ctx.input(2).shape;
    TANDEM_CHECK(w.size() == 1 && (frame < 0 || w[0] == frame), ErrorCode::kInvalidArgument,
                 "{}: window shape {} does not match frame_length {}", node.describe(),
                 shape_str(w), frame);
    frame = w[0];
  }
  TANDEM_CHECK(frame > 0 && step > 0 && frame <= s[1], ErrorCode::kInvalidArgument,
               "{}: need 0 < frame_length ({}) <= signal length ({}) and frame_step {} > 0",
               node.describe(), frame, s[1], step);
  const int64_t frames = (s[1] - frame) / step + 1;
  const int64_t bins = a.onesided ? frame / 2 + 1 : frame;
  return {{ctx.input(0).dtype, {s[0], frames, bins, 2}}};
}

std::vector<TensorType> infer_mel(const InferContext& ctx, const SignalAttrs& a) {
  const int64_t mels = int_value(ctx, 0, "num_mel_bins");
  const int64_t dft = int_value(ctx, 1, "dft_length");
  return {{a.output_datatype, {dft / 2 + 1, mels}}};
}

}  // namespace

void register_signal_schemas(SchemaRegistry& r) {
  r.add({"HannWindow", 1, 1, with_attrs(infer_window), ""});
  r.add({"HammingWindow", 1, 1, with_attrs(infer_window), ""});
  r.add({"BlackmanWindow", 1, 1, with_attrs(infer_window), ""});
  r.add({"DFT", 1, 2, with_attrs(infer_dft), ""});
  r.add({"STFT", 2, 4, with_attrs(infer_stft), ""});
  r.add({"MelWeightMatrix", 5, 5, with_attrs(infer_mel), ""});
}

}  // namespace tandem

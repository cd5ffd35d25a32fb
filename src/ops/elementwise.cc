// Schemas of the elementwise family: unary math, broadcasting binary arithmetic, comparisons,
// logic, variadic Max/Min/Sum/Mean and Where. Outputs take the numpy broadcast of the inputs'
// shapes; dtypes are checked here so that a bad model fails at load time with a clear message.
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/legacy.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {
namespace {

enum class Accepts { kFloat, kNumeric, kNumericOrBool, kBool, kUnsigned };

bool is_float_dtype(DataType d) {
  return d == DataType::kFloat32 || d == DataType::kFloat64 || d == DataType::kFloat16 ||
         d == DataType::kBFloat16;
}

bool is_unsigned_dtype(DataType d) {
  return d == DataType::kUInt8 || d == DataType::kUInt16 || d == DataType::kUInt32 ||
         d == DataType::kUInt64;
}

bool is_numeric_dtype(DataType d) {
  return is_float_dtype(d) || is_unsigned_dtype(d) || d == DataType::kInt8 ||
         d == DataType::kInt16 || d == DataType::kInt32 || d == DataType::kInt64;
}

bool accepts(Accepts a, DataType d) {
  switch (a) {
    case Accepts::kFloat:
      return is_float_dtype(d);
    case Accepts::kNumeric:
      return is_numeric_dtype(d);
    case Accepts::kNumericOrBool:
      return is_numeric_dtype(d) || d == DataType::kBool;
    case Accepts::kBool:
      return d == DataType::kBool;
    case Accepts::kUnsigned:
      return is_unsigned_dtype(d);
  }
  return false;
}

const char* accepts_name(Accepts a) {
  switch (a) {
    case Accepts::kFloat:
      return "a floating-point type";
    case Accepts::kNumeric:
      return "a numeric type";
    case Accepts::kNumericOrBool:
      return "a numeric type or bool";
    case Accepts::kBool:
      return "bool";
    case Accepts::kUnsigned:
      return "an unsigned integer type";
  }
  return "?";
}

// Input i's type, after checking its dtype is one the op accepts.
const TensorType& checked_input(const InferContext& ctx, size_t i, Accepts a) {
  const TensorType& t = ctx.input(i);
  TANDEM_CHECK(accepts(a, t.dtype), ErrorCode::kUnsupported,
               "{}: input {} has dtype {}, expected {}", ctx.node.describe(), i,
               dtype_name(t.dtype), accepts_name(a));
  return t;
}

// All inputs present, of one accepted dtype; returns that dtype and the broadcast shape.
TensorType same_dtype_broadcast(const InferContext& ctx, Accepts a) {
  const TensorType& first = checked_input(ctx, 0, a);
  std::vector<Shape> shapes;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const TensorType& t = ctx.input(i);
    TANDEM_CHECK(t.dtype == first.dtype, ErrorCode::kInvalidModel,
                 "{}: input {} has dtype {} but input 0 has {}", ctx.node.describe(), i,
                 dtype_name(t.dtype), dtype_name(first.dtype));
    shapes.push_back(t.shape);
  }
  // Opset < 7 binary ops may align B with A at an `axis` (a no-op for every other node).
  if (shapes.size() == 2) shapes[1] = legacy_broadcast_shape(ctx.node, shapes[0], shapes[1]);
  return {first.dtype, broadcast_shapes(shapes, ctx.node)};
}

void add_unary(SchemaRegistry& r, const char* op, Accepts a, bool bool_output = false) {
  r.add({op, 1, 1, [a, bool_output](const InferContext& ctx) {
           const TensorType& x = checked_input(ctx, 0, a);
           return std::vector<TensorType>{{bool_output ? DataType::kBool : x.dtype, x.shape}};
         }});
}

// min_inputs..max_inputs inputs of one dtype, broadcast together.
void add_broadcasting(SchemaRegistry& r, const char* op, Accepts a, bool bool_output,
                      int min_inputs, int max_inputs) {
  r.add({op, min_inputs, max_inputs, [a, bool_output](const InferContext& ctx) {
           TensorType out = same_dtype_broadcast(ctx, a);
           if (bool_output) out.dtype = DataType::kBool;
           return std::vector<TensorType>{out};
         }});
}

}  // namespace

void register_elementwise_schemas(SchemaRegistry& r) {
  for (const char* op : {"Abs", "Neg", "Sign"}) add_unary(r, op, Accepts::kNumeric);
  for (const char* op :
       {"Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos", "Tan", "Asin",
        "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Erf"})
    add_unary(r, op, Accepts::kFloat);
  add_unary(r, "IsNaN", Accepts::kFloat, true);
  add_unary(r, "IsInf", Accepts::kFloat, true);
  add_unary(r, "Not", Accepts::kBool);

  for (const char* op : {"Add", "Sub", "Mul", "Div", "Mod"})
    add_broadcasting(r, op, Accepts::kNumeric, false, 2, 2);
  add_broadcasting(r, "BitShift", Accepts::kUnsigned, false, 2, 2);
  add_broadcasting(r, "Equal", Accepts::kNumericOrBool, true, 2, 2);
  for (const char* op : {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"})
    add_broadcasting(r, op, Accepts::kNumeric, true, 2, 2);
  for (const char* op : {"And", "Or", "Xor"}) add_broadcasting(r, op, Accepts::kBool, true, 2, 2);
  for (const char* op : {"Max", "Min", "Sum", "Mean"})
    add_broadcasting(r, op, Accepts::kNumeric, false, 1, -1);

  // Pow: the exponent may have a different numeric dtype; the output has the base's.
  r.add({"Pow", 2, 2, [](const InferContext& ctx) {
           const TensorType& base = checked_input(ctx, 0, Accepts::kNumeric);
           const TensorType& exponent = checked_input(ctx, 1, Accepts::kNumeric);
           const Shape exponent_shape =
               legacy_broadcast_shape(ctx.node, base.shape, exponent.shape);
           return std::vector<TensorType>{
               {base.dtype, broadcast_shapes(base.shape, exponent_shape, ctx.node)}};
         }});

  r.add({"Where", 3, 3, [](const InferContext& ctx) {
           const TensorType& cond = checked_input(ctx, 0, Accepts::kBool);
           const TensorType& x = checked_input(ctx, 1, Accepts::kNumericOrBool);
           const TensorType& y = ctx.input(2);
           TANDEM_CHECK(x.dtype == y.dtype, ErrorCode::kInvalidModel,
                        "{}: X has dtype {} but Y has {}", ctx.node.describe(), dtype_name(x.dtype),
                        dtype_name(y.dtype));
           return std::vector<TensorType>{
               {x.dtype, broadcast_shapes({cond.shape, x.shape, y.shape}, ctx.node)}};
         }});
}

}  // namespace tandem

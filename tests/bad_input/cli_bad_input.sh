#!/usr/bin/env bash
# Bad input through `tandem`: each case must end with a non-zero status below 128 (no crash, no
# signal) and an "error:" line naming the problem.
#   cli_bad_input.sh path/to/tandem path/to/models
set -u
tandem=$1
models=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passed=0

# expect STATUS_KIND PATTERN -- command...   (STATUS_KIND: error = 1, usage = 2)
expect() {
  local kind=$1 pattern=$2
  shift 3
  local out status
  out=$(timeout 60 "$@" 2>&1)
  status=$?
  local want=1
  [[ $kind == usage ]] && want=2
  if [[ $status -ne $want ]] || ! grep -qiE -- "$pattern" <<<"$out"; then
    echo "FAIL: $* -> status $status (want $want), output:"
    echo "$out" | tail -5 | sed 's/^/    /'
    failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
}

head -c 4096 /dev/urandom >"$tmp/garbage.onnx"
head -c 2000 "$models/resnet_tiny/model.onnx" >"$tmp/truncated.onnx"
: >"$tmp/empty.onnx"
/usr/bin/python3 - "$tmp" <<'PY' 2>/dev/null || true
import sys, onnx
from onnx import helper, TensorProto
d = sys.argv[1]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
n = helper.make_node("NoSuchOp", ["x"], ["y"], name="weird_node")
onnx.save(helper.make_model(helper.make_graph([n], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), d + "/unknown_op.onnx")
PY

expect error "not a valid ONNX model" -- "$tandem" run --model "$tmp/garbage.onnx"
expect error "not a valid ONNX model" -- "$tandem" run --model "$tmp/truncated.onnx"
expect error "not a valid ONNX model" -- "$tandem" info --model "$tmp/empty.onnx"
expect error "does not exist" -- "$tandem" run --model "$tmp/none.onnx"
if [[ -f "$tmp/unknown_op.onnx" ]]; then
  expect error "NoSuchOp.*weird_node" -- "$tandem" run --model "$tmp/unknown_op.onnx"
fi
# Wrong input shape, name and dtype through --input-shape and --inputs.
expect error "does not fit" -- "$tandem" run --model "$models/resnet_tiny/model.onnx" --input-shape "input:1,4,64,64"
expect error "no such input" -- "$tandem" run --model "$models/resnet_tiny/model.onnx" --input-shape "pixels:1,3,64,64"
expect error "positive dimension" -- "$tandem" run --model "$models/resnet_tiny/model.onnx" --input-shape "input:1,0,64,64"
expect error "dtype int64, but the model expects float32" -- "$tandem" run --model "$models/resnet_tiny/model.onnx" --inputs "$models/bert_tiny/test_data_set_0/input_0.pb"
expect error "missing input 'attention_mask'" -- "$tandem" run --model "$models/bert_tiny/model.onnx" --inputs "$models/bert_tiny/test_data_set_0/input_0.pb"
expect error "shape .* but the model expects" -- "$tandem" run --model "$models/resnet_tiny/model.onnx" --inputs "$models/sd_unet_tiny/test_data_set_0/input_0.pb"
expect error "not a valid serialized TensorProto" -- "$tandem" run --model "$models/resnet_tiny/model.onnx" --inputs "$tmp/garbage.onnx"
expect error "holds no model.onnx" -- "$tandem" check "$tmp"
# Usage mistakes.
expect usage "required" -- "$tandem" check
expect usage "" -- "$tandem" frobnicate
expect usage "" -- "$tandem" bench --loops 0

echo "$passed passed, $failures failed"
[[ $failures -eq 0 ]]

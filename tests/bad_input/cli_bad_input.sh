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

# expect STATUS_KIND PATTERN -- command...   (STATUS_KIND: ok = 0, error = 1, usage = 2)
expect() {
  local kind=$1 pattern=$2
  shift 3
  local out status
  out=$(timeout 60 "$@" 2>&1)
  status=$?
  local want=1
  [[ $kind == usage ]] && want=2
  [[ $kind == ok ]] && want=0
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
# Device counts and core ranges too large to convert or to list: one plain line, never "stoi"
# or a loop over billions of cores.
expect error "device count 99999999999999999999 must be between 1 and 1024" -- "$tandem" run --devices 99999999999999999999
expect error "core range '0-2000000000' goes beyond core 65535" -- "$tandem" run --devices cpu:0 --cores 0-2000000000
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
# tandem compare
expect error "no model: tandem compare MODEL" -- "$tandem" compare
expect error "not a valid ONNX model" -- "$tandem" compare "$tmp/garbage.onnx"
expect error "nothing to compare" -- "$tandem" compare "$models/resnet_tiny/model.onnx" --backend ref
expect error "either as the first argument or with --model" -- "$tandem" compare "$models/resnet_tiny/model.onnx" --model "$models/resnet_tiny/model.onnx"
expect error "unknown input name .input.; the model.s inputs are: input_ids" -- "$tandem" compare "$models/resnet_tiny/model.onnx" "$models/lstm_tiny/model.onnx"
expect usage "cosine-min" -- "$tandem" compare "$models/resnet_tiny/model.onnx" --cosine-min 2
# Usage mistakes.
expect usage "required" -- "$tandem" check
expect usage "" -- "$tandem" frobnicate
# Numeric options out of range or not numbers: one plain line that names the option (not CLI11's
# "Value 0 not in range 0.000000 to 1797693...", 309 digits), usage status, before any model loads.
plain_range() { # plain_range PATTERN -- command...: expect usage PATTERN, and no 20-digit numbers
  expect usage "^error: $1" "${@:2}"
  local out
  out=$(timeout 60 "${@:3}" 2>&1)
  if grep -qE '[0-9]{20}|not in range' <<<"$out"; then
    echo "FAIL: ${*:3} -> CLI11's range message: $out"
    failures=$((failures + 1))
  fi
}
plain_range "--batch must be at least 1 \\(got 0\\)" -- "$tandem" bench --batch 0
plain_range "--batch must be at least 1 \\(got -3\\)" -- "$tandem" bench --batch -3
plain_range "--batch must be at least 1 \\(got 0\\)" -- "$tandem" run --batch 0
plain_range "--batch must be at least 1 \\(got -1\\)" -- "$tandem" run --devices 2 --batch -1
plain_range "--batch must be a whole number \\(got 'two'\\)" -- "$tandem" run --batch two
plain_range "--batch must be at least 1 \\(got 9223372036854775808\\)" -- "$tandem" run --batch 9223372036854775808
plain_range "--loops must be between 1 and 2147483647 \\(got 0\\)" -- "$tandem" bench --loops 0
plain_range "--loops must be between 1 and 2147483647 \\(got 0\\)" -- "$tandem" run --loops 0
plain_range "--loops must be between 1 and 2147483647 \\(got 4294967296\\)" -- "$tandem" run --loops 4294967296
plain_range "--loops must be a whole number \\(got '2.5'\\)" -- "$tandem" bench --loops 2.5
plain_range "--warmup must be between 0 and" -- "$tandem" bench --warmup -1
plain_range "--concurrency must be between 1 and 1024 \\(got 0\\)" -- "$tandem" bench --concurrency 0
plain_range "--duration must be at least 0 \\(got -1\\)" -- "$tandem" bench --duration -1
plain_range "--duration must be a finite number \\(got 'nan'\\)" -- "$tandem" bench --duration nan
plain_range "--threads must be between 0 and 1024 \\(got -1\\)" -- "$tandem" run --threads -1
plain_range "--threads must be between 0 and 1024 \\(got 100000\\)" -- "$tandem" bench -t 100000
plain_range "--threads must be between 0 and 1024 \\(got -2\\)" -- "$tandem" check --threads -2 "$tmp"
plain_range "--rtol must be at least 0 \\(got -1\\)" -- "$tandem" check --rtol -1 "$tmp"
plain_range "--atol must be a finite number \\(got 'nan'\\)" -- "$tandem" check --atol nan "$tmp"
plain_range "--workers-per-device must be between 1 and 64 \\(got 0\\)" -- "$tandem" run --devices 2 --workers-per-device 0
plain_range "--deadline must be at least 0.001 \\(got 0\\)" -- "$tandem" bench --devices 2 --deadline 0
plain_range "--deadline must be a finite number \\(got 'inf'\\)" -- "$tandem" run --devices 2 --deadline inf
plain_range "--deadline must be at most 1e\\+06 \\(got 1e300\\)" -- "$tandem" run --devices 2 --deadline 1e300

# The version: CMake's project VERSION, as a flag and as a subcommand.
expect ok "^tandem [0-9]+\\.[0-9]+\\.[0-9]+$" -- "$tandem" --version
expect ok "^tandem [0-9]+\\.[0-9]+\\.[0-9]+$" -- "$tandem" version

# ---- Hostile models: sizes and external data (issue 10, defects 2, 3 and 11; loader) ----
hostile=$tmp/hostile
mkdir -p "$hostile/ext" "$hostile/case/test_data_set_0"
/usr/bin/python3 - "$hostile" <<'PY'
import os, sys, onnx
from onnx import helper, numpy_helper, TensorProto
import numpy as np
d = sys.argv[1]
def model(nodes, inits, inputs=None, opset=17):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])] if inputs is None else inputs
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, [y], inits),
                          opset_imports=[helper.make_opsetid("", opset)] if opset else [])
    return m
def save(m, path):
    open(os.path.join(d, path), "wb").write(m.SerializeToString())
huge = onnx.TensorProto(); huge.name = "huge"; huge.data_type = TensorProto.FLOAT
huge.dims.append(2**62); huge.raw_data = b""
save(model([helper.make_node("Identity", ["x"], ["y"])], [huge]), "huge_init.onnx")
i64 = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.int64), n)
save(model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [i64("s", [2**28])]), "fill_1gib.onnx")
save(model([helper.make_node("Expand", ["x", "s"], ["y"])], [i64("s", [2**62, 4])]), "expand.onnx")
for name, loc, extra in [("abs", "/etc/passwd", []), ("dotdot", "../../../etc/passwd", []),
                         ("fifo", "fifo.bin", []), ("offset", "w.bin", [("offset", "abc")])]:
    w = onnx.TensorProto(); w.name = "w"; w.data_type = TensorProto.FLOAT; w.dims.append(4)
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", loc)] + extra:
        e = w.external_data.add(); e.key = k; e.value = v
    save(model([helper.make_node("Add", ["x", "w"], ["y"])], [w]), "ext/%s.onnx" % name)
open(os.path.join(d, "ext/w.bin"), "wb").write(b"\0" * 16)
m = model([helper.make_node("Relu", ["x"], ["y"])], [], opset=None)
m.ir_version = 8
save(m, "no_opset.onnx")
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
save(model([helper.make_node("Relu", ["x"], ["y"])], [], inputs=[x, x]), "dup_input.onnx")
save(model([helper.make_node("Relu", ["x"], ["y"])], []), "case/model.onnx")
open(os.path.join(d, "case/test_data_set_0/output_0.pb"), "wb").write(
    numpy_helper.from_array(np.zeros(4, np.float32), "y").SerializeToString())
PY
mkfifo "$hostile/ext/fifo.bin"
ln -s /etc/passwd "$hostile/case/test_data_set_0/input_0.pb"
expect error "initializer 'huge'.*overflows" -- "$tandem" info --model "$hostile/huge_init.onnx"
expect error "overflows" -- "$tandem" run --model "$hostile/expand.onnx"
expect error "per-tensor limit of 100000000 bytes" -- "$tandem" info --model "$hostile/fill_1gib.onnx" --max-tensor-bytes 100000000
expect error "absolute" -- "$tandem" run --model "$hostile/ext/abs.onnx" --output-dir "$tmp/out"
expect error "'\.\.'" -- "$tandem" run --model "$hostile/ext/dotdot.onnx"
expect error "not a regular file" -- "$tandem" info --model "$hostile/ext/fifo.onnx"
expect error "'offset' is 'abc'.*|initializer 'w'.*'offset'" -- "$tandem" info --model "$hostile/ext/offset.onnx"
expect error "no opset_import|opset_import" -- "$tandem" info --model "$hostile/no_opset.onnx"
expect error "graph input 'x' twice" -- "$tandem" info --model "$hostile/dup_input.onnx"
expect error "outside the folder" -- "$tandem" check "$hostile/case"
# The 65-byte ConstantOfShape [2^28] model: `info` no longer folds the 1 GiB tensor (its memory is
# measured in BadInput.ConstantFoldingKeepsToItsCap); it still describes the model.
expect_ok() {
  local out
  if out=$(timeout 60 "$@" 2>&1); then passed=$((passed + 1)); else
    echo "FAIL: $* -> status $?, output:"; echo "$out" | tail -5 | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}
expect_ok "$tandem" info --model "$hostile/fill_1gib.onnx"

# Damaged .tandem files (docs/tandem-format.md): each named for what is wrong, found by the magic
# whatever the file's name.
conv=$tmp/conv
mkdir -p "$conv"
expect_ok "$tandem" convert "$models/resnet_tiny/model.onnx" -o "$conv/good.tandem" --batch 1
/usr/bin/python3 - "$conv" <<'PY'
import struct, sys
d = sys.argv[1]
good = open(d + "/good.tandem", "rb").read()
def save(name, b): open(d + "/" + name, "wb").write(b)
save("truncated.bin", good[:len(good) - 100])
save("short.bin", good[:40])
flip = bytearray(good); flip[-5] ^= 1; save("corrupt.bin", bytes(flip))
v2 = bytearray(good); v2[8:12] = struct.pack("<I", 7); save("version.bin", bytes(v2))
tgt = bytearray(good); tgt[64:80] = b"npu".ljust(16, b"\0"); save("target.bin", bytes(tgt))
big = bytearray(good); big[40:48] = struct.pack("<Q", 2**64 - 1); save("graph_size.bin", bytes(big))
PY
expect error "truncated: its header says" -- "$tandem" run --model "$conv/truncated.bin"
expect error "truncated: 40 bytes" -- "$tandem" info --model "$conv/short.bin"
expect error "is corrupt: its checksum" -- "$tandem" run --model "$conv/corrupt.bin"
expect error "format version 7; this Tandem reads versions 1 to 2" -- "$tandem" run --model "$conv/version.bin"
expect error "converted for target 'npu'" -- "$tandem" bench --model "$conv/target.bin"
expect error "sections do not fit" -- "$tandem" run --model "$conv/graph_size.bin"
expect error "converted for target 'cpu', but this build asks for target 'ref'" -- "$tandem" run --model "$conv/good.tandem" --backend ref
expect error "is a .tandem file already" -- "$tandem" convert "$conv/good.tandem" -o "$conv/again.tandem"
expect error "--batch 2: no input" -- "$tandem" convert "$models/resnet_tiny/model.onnx" -o "$conv/x.tandem" --input-shape "input:1,3,64,64" --batch 2
expect usage "target" -- "$tandem" convert "$models/resnet_tiny/model.onnx" -o "$conv/x.tandem" --target gpu

echo "$passed passed, $failures failed"
[[ $failures -eq 0 ]]

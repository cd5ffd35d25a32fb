#!/usr/bin/env bash
# `tandem convert` then `tandem compare` of the .tandem file against the .onnx it came from, on
# the same (fast) kernels and the same random inputs: the outputs must be equal bit for bit
# (--max-abs 0), and `run` and `info` must take the converted file; `bench --reference` makes the
# same check after timing, and fp16 weights (--weights fp16) pass a cosine check but not equality.
#   convert_compare.sh path/to/tandem path/to/model.onnx "INPUT-SHAPES"
set -euo pipefail
tandem=$1
model=$2
shapes=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A name without the .tandem extension: the file is recognised by its magic.
"$tandem" convert "$model" -o "$tmp/converted.bin" --input-shape "$shapes"
"$tandem" compare "$tmp/converted.bin" "$model" --input-shape "$shapes" --max-abs 0
"$tandem" info -m "$tmp/converted.bin" >/dev/null
"$tandem" run -m "$tmp/converted.bin" >/dev/null
# The same check at the end of bench, and it fails (exit status 1) past its thresholds.
"$tandem" bench -m "$tmp/converted.bin" --reference "$model" --input-shape "$shapes" --max-abs 0 \
  --loops 1 --warmup 0 | grep -q " ok$"
# fp16 weights: half the weights' bytes, close to the original but not equal.
"$tandem" convert "$model" -o "$tmp/half.bin" --input-shape "$shapes" --weights fp16 >/dev/null
"$tandem" bench -m "$tmp/half.bin" --reference "$model" --input-shape "$shapes" \
  --cosine-min 0.999 --loops 1 --warmup 0 >/dev/null
if "$tandem" bench -m "$tmp/half.bin" --reference "$model" --input-shape "$shapes" --max-abs 0 \
  --loops 1 --warmup 0 >"$tmp/out.txt" 2>&1; then
  echo "FAIL: bench --reference passed fp16 weights with --max-abs 0"; exit 1
fi
grep -q "outputs differ from the reference" "$tmp/out.txt"

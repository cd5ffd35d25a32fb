#!/usr/bin/env bash
# `tandem convert` then `tandem compare` of the .tandem file against the .onnx it came from, on
# the same (fast) kernels and the same random inputs: the outputs must be equal bit for bit
# (--max-abs 0), and `run` and `info` must take the converted file.
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

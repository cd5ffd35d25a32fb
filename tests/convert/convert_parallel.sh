#!/usr/bin/env bash
# The parallel runner takes a .tandem file (its workers map it), --convert-once converts an .onnx
# once for all workers, and --cache-dir reaches the worker processes: one run converts into the
# cache once, the next maps the same entry.
#   convert_parallel.sh path/to/tandem path/to/model.onnx
set -euo pipefail
tandem=$1
model=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tandem" convert "$model" -o "$tmp/model.tandem" >/dev/null
"$tandem" run -m "$tmp/model.tandem" --devices 2 --batch 4 | grep "vs one device running the whole batch: 0$" >/dev/null
"$tandem" run -m "$model" --devices 2 --batch 4 --convert-once | grep "vs one device running the whole batch: 0$" >/dev/null
"$tandem" run -m "$model" --devices 2 --batch 4 --cache-dir "$tmp/cache" >/dev/null
entries=("$tmp"/cache/*.tandem)
[[ ${#entries[@]} -eq 1 ]] || { echo "want one cache entry, got: ${entries[*]}"; exit 1; }
before=$(stat -c %i "${entries[0]}")
"$tandem" run -m "$model" --devices 2 --batch 4 --cache-dir "$tmp/cache" >/dev/null
[[ $(stat -c %i "${entries[0]}") == "$before" ]] || { echo "the cache entry was rewritten"; exit 1; }
[[ $(ls "$tmp/cache" | wc -l) -eq 1 ]] || { echo "stray files in the cache: $(ls "$tmp/cache")"; exit 1; }
echo "ok"

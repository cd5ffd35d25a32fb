#!/usr/bin/env bash
# The build's include check (cmake/check_layer_includes.cmake) against two fixtures: a wrong-way
# include and an unknown folder must fail with messages that name them; a right-way file passes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
script="$here/../../cmake/check_layer_includes.cmake"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
run() {  # file -> output, status in $status
  out=$(cmake -DLAYER=ops "-DMAY_INCLUDE=core;ir;ops" "-DFILES=$1" -DSTAMP="$tmp/stamp" \
    -P "$script" 2>&1)
  status=$?
}
run "$here/right_way.h"
if [ $status -ne 0 ] || [ ! -f "$tmp/stamp" ]; then
  echo "FAIL: right_way.h was refused: $out"; fail=1
fi
rm -f "$tmp/stamp"
run "$here/wrong_way.h"
if [ $status -eq 0 ] || [ -f "$tmp/stamp" ]; then
  echo "FAIL: wrong_way.h was accepted"; fail=1
fi
for want in 'wrong_way.h: #include "runtime/session.h" is layer '"'"'runtime'"'"', which layer '"'"'ops'"'"' may not use' \
            '#include "nowhere/thing.h" belongs to no layer'; do
  if ! grep -qF "$want" <<<"$out"; then
    echo "FAIL: the message lacks: $want"; echo "$out"; fail=1
  fi
done
[ $fail -eq 0 ] && echo "layering check: ok"
exit $fail

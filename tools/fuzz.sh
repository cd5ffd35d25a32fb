#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (+ ASan + UBSan) into build-fuzz/ and runs
# each for N seconds over a scratch copy of its seed corpus (the committed corpus is never
# written). Fails when a target crashes, leaks or trips a sanitizer; the input that did it is kept
# in build-fuzz/crashes/<target>/ (reproduce: build-fuzz/bin/<target> <file>).
#   bash tools/fuzz.sh                      every target, 60 s each
#   bash tools/fuzz.sh --seconds 300 fuzz_model
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
# Convention: one target per file tests/fuzz/<name>.cc, its corpus in tests/fuzz/corpus/<name>/.
if [[ ${#targets[@]} -eq 0 ]]; then
  for f in tests/fuzz/*.cc; do targets+=("$(basename "$f" .cc)"); done
fi
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (tools/setup.sh installs clang)"; exit 1; }

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# -O1: enough speed for the fuzzer, far cheaper to compile than -O2 on a 2-core CI machine.
# No -Werror: clang's warnings differ from GCC's, and this build only looks for crashes.
# -Wno-pass-failed: at -O1 clang reports every `#pragma omp simd` loop it leaves scalar.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="-Wno-pass-failed" \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DTANDEM_FUZZ=ON -DTANDEM_BUILD_TESTS=OFF \
  -DTANDEM_BUILD_PYTHON=OFF -DTANDEM_WERROR=OFF "${launcher[@]}" >/dev/null
cmake --build build-fuzz --target "${targets[@]}"

status=0
for t in "${targets[@]}"; do
  work=build-fuzz/fuzz-work/$t
  crashes=build-fuzz/crashes/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$crashes"
  if [[ -d tests/fuzz/corpus/$t ]]; then cp -r "tests/fuzz/corpus/$t/." "$work/corpus/"; fi
  log=$work/fuzz.log
  echo "== $t: ${seconds}s over $(ls "$work/corpus" | wc -l) seed inputs =="
  # rss_limit: the targets cap tensor sizes, so more than 2 GB is a bug (a size check missed).
  # Run from the work folder: external-data seeds name files relative to nowhere real.
  if (cd "$work" && ASAN_OPTIONS=detect_leaks=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$OLDPWD/build-fuzz/bin/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$OLDPWD/$crashes/" corpus \
      >fuzz.log 2>&1); then
    runs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "$t: ok, ${runs:-?} executions in ${seconds}s"
  else
    status=1
    echo "$t: FAILED; the input is kept in $crashes/:"
    ls "$crashes"
    grep -a -m1 -B2 -A25 'ERROR\|runtime error\|deadly signal\|uncaught' "$log" || tail -40 "$log"
  fi
done
exit $status

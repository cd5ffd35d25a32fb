#!/usr/bin/env bash
# Builds and runs every test: unit and op tests, the committed models, the ONNX backend node
# tests against the expected-failure list, the command-line bad-input suite — and then the
# bad-input suites again under AddressSanitizer + UndefinedBehaviorSanitizer, and every libFuzzer
# target for 60 s (tools/fuzz.sh, clang).
#   bash tools/test.sh            everything
#   bash tools/test.sh --no-asan  skip the sanitizer build
#   bash tools/test.sh --no-fuzz  skip the fuzzers
set -euo pipefail
cd "$(dirname "$0")/.."
werror=()
if [[ "${CI:-}" == "true" ]]; then werror=(-DTANDEM_WERROR=ON); fi

bash tools/build.sh "${werror[@]}"
ctest --test-dir build --output-on-failure -j2
echo "== ONNX backend node tests (default backends) =="
build/bin/tandem check -q --expected-failures tests/onnx_node/expected_failures.txt \
  /usr/share/libonnx-testdata/data/node | tail -n 1

no_asan=0 no_fuzz=0
for arg in "$@"; do
  case $arg in
    --no-asan) no_asan=1 ;;
    --no-fuzz) no_fuzz=1 ;;
  esac
done
if [[ $no_asan == 0 ]]; then
  echo "== bad-input suites under ASan + UBSan =="
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE=ON -DTANDEM_BUILD_PYTHON=OFF \
    "${werror[@]}" >/dev/null
  cmake --build build-asan --target tandem tandem_unit_tests tandem_parallel_tests tandem_server_tests \
    tandem_distributed_tests
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j2 \
      -R 'BadInput|cli_bad_input|Model\.|ParallelMemory|Scheduler|WorkerReplies|^Server|MpiWire'
fi

if [[ $no_fuzz == 0 ]]; then
  echo "== fuzzers (tools/fuzz.sh, 60 s each) =="
  bash tools/fuzz.sh --seconds 60
fi

#!/usr/bin/env bash
# Check the engine on the on-demand "model zoo": the large models that are not
# committed (torchvision families at 224 px, gpt_small, lstm_small, gru_small,
# sd_unet_small).  Models missing from the output folder are generated first
# with tools/gen_models.py (random weights, torch reference outputs), then
# `tandem check --atol 1e-4` runs on the whole folder and prints its summary.
#
# Usage: tools/check_model_zoo.sh [--regen] [--only NAME_OR_GROUP...] [-- EXTRA_CHECK_ARGS...]
#   --regen        regenerate the selected models even if they exist
#   --only ...     restrict to these models or groups (torchvision, text, large; default: large)
# Environment:
#   TANDEM         engine binary            (default: build/bin/tandem)
#   MODELS_LARGE   output folder            (default: build/models-large)
#   ATOL           absolute tolerance       (default: 1e-4)
#   PYTHON         interpreter with torch   (default: /usr/bin/python3)
# Exit status: that of `tandem check` (0 = all passed), or 2 if generation failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TANDEM=${TANDEM:-$ROOT/build/bin/tandem}
OUT=${MODELS_LARGE:-$ROOT/build/models-large}
ATOL=${ATOL:-1e-4}
PYTHON=${PYTHON:-/usr/bin/python3}
GEN="$ROOT/tools/gen_models.py"

regen=0
select=(large)
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --regen) regen=1; shift ;;
    --only)
      shift; select=()
      while [[ $# -gt 0 && "$1" != --* ]]; do select+=("$1"); shift; done
      [[ ${#select[@]} -gt 0 ]] || { echo "--only needs at least one name" >&2; exit 2; } ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ ! -x "$TANDEM" ]]; then
  echo "engine binary '$TANDEM' not found; build it first (ninja -C build tandem) or set TANDEM" >&2
  exit 2
fi

mapfile -t names < <("$PYTHON" "$GEN" --list "${select[@]}")
missing=()
for n in "${names[@]}"; do
  if [[ $regen -eq 1 || ! -f "$OUT/$n/model.onnx" || ! -d "$OUT/$n/test_data_set_1" ]]; then
    missing+=("$n")
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "== generating ${#missing[@]} model(s) into $OUT: ${missing[*]}"
  mkdir -p "$OUT"
  log="$OUT/gen_models.log"
  if ! "$PYTHON" "$GEN" --out "$OUT" --only "${missing[@]}" >"$log" 2>&1; then
    echo "gen_models.py reported problems (full log: $log):" >&2
    grep -E "ERROR|FAIL|WARN|generation checks failed" "$log" >&2 || tail -20 "$log" >&2
    exit 2
  fi
  echo "   done (log: $log)"
fi

cases=()
for n in "${names[@]}"; do cases+=("$OUT/$n"); done
echo "== $TANDEM check --atol $ATOL ${extra[*]} (${#cases[@]} models in $OUT)"
set +e
"$TANDEM" check --atol "$ATOL" "${extra[@]}" "${cases[@]}"
rc=$?
set -e
exit $rc

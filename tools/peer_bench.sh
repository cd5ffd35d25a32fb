#!/usr/bin/env bash
# Peer benchmark: Tandem against ONNX Runtime (onnxruntime-node, CPU) on the same models, the
# same inputs and the same thread counts, alternating runs. See tools/README.md, "peer_bench.sh".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORT_VERSION=1.30.0
CACHE="${TANDEM_CACHE:-$HOME/.cache/tandem}"
ORT_PREFIX="$CACHE/ort"
TANDEM="$ROOT/build/bin/tandem"
MODELS=""
THREADS="1,2"
ROUNDS=5
WARMUP=20
LOOPS=100
JSON_OUT=""
WORK=""
ISA=""
BASELINE=""
RUN_TIMEOUT=600

usage() {
  cat <<EOF
Usage: tools/peer_bench.sh [options]

Runs Tandem ('tandem bench') and ONNX Runtime (onnxruntime-node@$ORT_VERSION, CPU, through
tools/peer_bench_ort.js) on the same models with the same input shapes and thread counts. Each
round runs one Tandem process and one ORT process per model and thread count, alternating which
goes first. Prints per model: the median latency of each engine over all timed runs of all
rounds, the ratio Tandem/ORT, peak memory, and the geometric mean of the ratios per thread count.

Options:
  --models LIST     comma-separated model names or paths (default: every models/*/model.onnx,
                    which includes the flagship sd_unet_tiny). A name is looked up as
                    models/NAME/model.onnx, then models/old_opsets/NAME/model.onnx. 'all' adds
                    models/old_opsets/*/model.onnx to the default set.
  --threads LIST    comma-separated intra-op thread counts (default: $THREADS)
  --rounds R        alternating rounds per model and thread count (default: $ROUNDS)
  --warmup W        untimed runs per process before the timed ones (default: $WARMUP)
  --loops L         timed runs per process (default: $LOOPS)
  --json OUT        also write every figure (samples, per-round medians, memory) as JSON
  --work DIR        keep the per-run files here (default: a temporary folder, removed at exit)
  --tandem PATH     the tandem binary (default: build/bin/tandem; built with tools/build.sh if missing)
  --isa avx2        also run Tandem capped to AVX2 (DNNL_MAX_CPU_ISA=AVX2 for oneDNN,
                    TANDEM_SIMD_LEVEL=1 for its own vector loops), as a third engine in the same
                    alternating rounds: the table adds its latency and avx2/tandem (ORT cannot be
                    capped, so there is no AVX2 ratio to ORT). On a machine without AVX-512 the
                    cap changes nothing, and the report says so.
  --baseline PATH   also run another tandem binary (e.g. a build of an older commit) in the same
                    rounds: the table adds its latency and tandem/baseline, to show what a change
                    did to speed against a peer measured in the same run
  --timeout S       kill one engine run after S seconds and report it as an error (default: $RUN_TIMEOUT)
  -h, --help        this help

Environment:
  TANDEM_CACHE      cache folder (default: ~/.cache/tandem); onnxruntime-node is installed into
                    \$TANDEM_CACHE/ort with 'npm install --ignore-scripts' on first use.

Needs node (>= 16) and npm; /usr/bin/time for the peak RSS columns.
Inputs: a model's test_data_set_0/input_*.pb when present (all committed models have them),
otherwise random inputs written once per model by peer_bench_ort.js; both engines get the
shapes of those files. ORT is fed the .pb values themselves; 'tandem bench' draws its own random
values of the same shapes (it has no --inputs; latency does not depend on values for these models).
EOF
}

die() { echo "peer_bench: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --models) MODELS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --loops) LOOPS="$2"; shift 2 ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --tandem) TANDEM="$2"; shift 2 ;;
    --isa) ISA="$2"; shift 2 ;;
    --baseline) BASELINE="$2"; shift 2 ;;
    --timeout) RUN_TIMEOUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done

for v in ROUNDS WARMUP LOOPS RUN_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "--${v,,} wants a number, got '${!v}'"
done
[[ "$ROUNDS" -ge 1 && "$LOOPS" -ge 1 ]] || die "--rounds and --loops must be at least 1"
[[ "$THREADS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--threads wants a list like 1,2, got '$THREADS'"
[[ -z "$ISA" || "$ISA" == avx2 ]] || die "--isa takes avx2, got '$ISA'"
[[ -z "$BASELINE" || -x "$BASELINE" ]] || die "--baseline: no executable at '$BASELINE'"
command -v node >/dev/null || die "node is not on PATH"
TIME_V=""
[[ -x /usr/bin/time ]] && TIME_V=/usr/bin/time || echo "peer_bench: /usr/bin/time missing: no RSS figures" >&2

# ---------------------------------------------------------------- onnxruntime-node
ORT_PKG="$ORT_PREFIX/node_modules/onnxruntime-node"
have_ort() {
  [[ -f "$ORT_PKG/package.json" ]] &&
    node -e "process.exit(require('$ORT_PKG/package.json').version === '$ORT_VERSION' ? 0 : 1)"
}
if ! have_ort; then
  command -v npm >/dev/null || die "npm is not on PATH (needed once to install onnxruntime-node)"
  echo "peer_bench: installing onnxruntime-node@$ORT_VERSION into $ORT_PREFIX" >&2
  mkdir -p "$ORT_PREFIX"
  npm install --ignore-scripts --no-audit --no-fund --prefix "$ORT_PREFIX" \
    "onnxruntime-node@$ORT_VERSION" >&2 || die "npm install onnxruntime-node@$ORT_VERSION failed"
  have_ort || die "onnxruntime-node@$ORT_VERSION is not in $ORT_PKG after npm install"
fi
# --ignore-scripts skips the package's postinstall, which only fetches the CUDA/TensorRT
# providers; the CPU binding and libonnxruntime ship inside the tarball. Check they are there.
ARCH="$(node -p process.arch)"
PLAT="$(node -p process.platform)"
BIND_DIR="$(ls -d "$ORT_PKG"/bin/napi-v*/"$PLAT"/"$ARCH" 2>/dev/null | head -n1)"
[[ -n "$BIND_DIR" && -f "$BIND_DIR/onnxruntime_binding.node" ]] ||
  die "onnxruntime-node has no $ORT_PKG/bin/napi-v*/$PLAT/$ARCH/onnxruntime_binding.node"
if [[ "$PLAT" == linux ]]; then
  ls "$BIND_DIR"/libonnxruntime.so* >/dev/null 2>&1 || die "no libonnxruntime.so* in $BIND_DIR"
fi
export ORT_NODE_DIR="$ORT_PREFIX/node_modules"

# ---------------------------------------------------------------- tandem
if [[ ! -x "$TANDEM" ]]; then
  [[ "$TANDEM" == "$ROOT/build/bin/tandem" ]] || die "no tandem binary at $TANDEM"
  echo "peer_bench: $TANDEM missing, running tools/build.sh" >&2
  bash "$ROOT/tools/build.sh" >&2 || die "tools/build.sh failed"
  [[ -x "$TANDEM" ]] || die "tools/build.sh did not produce $TANDEM"
fi

# ---------------------------------------------------------------- models
declare -a MODEL_PATHS=()
add_model() {  # dedupe by real path
  local p r q
  r="$(realpath "$1")"
  for q in "${MODEL_PATHS[@]+"${MODEL_PATHS[@]}"}"; do [[ "$(realpath "$q")" == "$r" ]] && return; done
  MODEL_PATHS+=("$1")
}
default_models() {
  local m
  for m in "$ROOT"/models/*/model.onnx; do [[ -f "$m" ]] && add_model "$m"; done
  # The flagship (the default model of tandem run/bench) is models/sd_unet_tiny, already above.
  [[ -f "$ROOT/models/sd_unet_tiny/model.onnx" ]] && add_model "$ROOT/models/sd_unet_tiny/model.onnx"
}
if [[ -z "$MODELS" ]]; then
  default_models
else
  IFS=',' read -r -a REQ <<<"$MODELS"
  for name in "${REQ[@]}"; do
    if [[ "$name" == all ]]; then
      default_models
      for m in "$ROOT"/models/old_opsets/*/model.onnx; do [[ -f "$m" ]] && add_model "$m"; done
    elif [[ -f "$name" ]]; then add_model "$name"
    elif [[ -f "$name/model.onnx" ]]; then add_model "$name/model.onnx"
    elif [[ -f "$ROOT/models/$name/model.onnx" ]]; then add_model "$ROOT/models/$name/model.onnx"
    elif [[ -f "$ROOT/models/old_opsets/$name/model.onnx" ]]; then add_model "$ROOT/models/old_opsets/$name/model.onnx"
    else die "no model '$name' (tried $name, $name/model.onnx, models/$name/, models/old_opsets/$name/)"
    fi
  done
fi
[[ ${#MODEL_PATHS[@]} -gt 0 ]] || die "no models found"

if [[ -z "$WORK" ]]; then
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/peer_bench.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
MANIFEST="$WORK/manifest.tsv"
: >"$MANIFEST"

IFS=',' read -r -a THREAD_LIST <<<"$THREADS"
TANDEM_MTIME_START="$(stat -c %Y "$TANDEM")"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
echo "peer_bench: ${#MODEL_PATHS[@]} models, threads $THREADS, $ROUNDS rounds x ($WARMUP warmup + $LOOPS timed runs), work $WORK" >&2
echo "peer_bench: tandem $TANDEM; onnxruntime-node $ORT_VERSION ($BIND_DIR)" >&2
# The engines of a round, in the order of round 1; each round rotates it by one so that no
# engine always runs first.
ENGINES=(tandem ort)
[[ -n "$BASELINE" ]] && ENGINES+=(baseline) && echo "peer_bench: baseline $BASELINE" >&2
[[ -n "$ISA" ]] && ENGINES+=(avx2)
HAS_AVX512=0
grep -qw avx512f /proc/cpuinfo 2>/dev/null && HAS_AVX512=1
if [[ -n "$ISA" && $HAS_AVX512 == 0 ]]; then
  echo "peer_bench: this CPU has no AVX-512: the avx2 engine runs what the plain one does" >&2
fi

# run_engine ENGINE OUT_PREFIX CMD...: runs CMD under /usr/bin/time -v with a timeout; on failure
# writes OUT_PREFIX.err with the reason.
run_engine() {
  local prefix="$2"; shift 2
  local rc
  if [[ -n "$TIME_V" ]]; then
    timeout "$RUN_TIMEOUT" "$TIME_V" -v -o "$prefix.time" "$@" >"$prefix.log" 2>&1
  else
    timeout "$RUN_TIMEOUT" "$@" >"$prefix.log" 2>&1
  fi
  rc=$?
  if [[ $rc -ne 0 ]]; then
    local why
    if [[ $rc -eq 124 ]]; then why="timed out after ${RUN_TIMEOUT}s"
    else why="exit $rc: $(grep -v '^\s*$' "$prefix.log" | grep -iv '^wrote ' | tail -n 1 | cut -c1-200)"
    fi
    echo "$why" >"$prefix.err"
    return 1
  fi
  return 0
}

for model in "${MODEL_PATHS[@]}"; do
  id="$(basename "$(dirname "$model")")"
  mdir="$WORK/$id"
  mkdir -p "$mdir"
  # Inputs once per model: the committed test data, or random .pb files written here.
  prep_err=""
  if ! node "$ROOT/tools/peer_bench_ort.js" prep --model "$model" \
      --data-dir "$(dirname "$model")/test_data_set_0" --out-dir "$mdir/inputs" \
      >"$mdir/prep.json" 2>"$mdir/prep.log"; then
    prep_err="$(tail -n 1 "$mdir/prep.log" | cut -c1-200)"
    echo "$prep_err" >"$mdir/prep.err"
  fi
  printf '%s\t%s\n' "$id" "$model" >>"$MANIFEST"
  if [[ -n "$prep_err" ]]; then
    echo "peer_bench: $id: cannot prepare inputs ($prep_err); both engines skipped" >&2
    continue
  fi
  inputs="$(node -e "process.stdout.write(require('$mdir/prep.json').inputs.join(','))")"
  outputs="$(node -e "process.stdout.write(require('$mdir/prep.json').outputs.join(','))")"
  shape="$(node -e "process.stdout.write(require('$mdir/prep.json').input_shape)")"
  for t in "${THREAD_LIST[@]}"; do
    tdir="$mdir/t$t"
    mkdir -p "$tdir"
    declare -A failed=()
    for ((r = 1; r <= ROUNDS; r++)); do
      order=()
      for ((k = 0; k < ${#ENGINES[@]}; k++)); do
        order+=("${ENGINES[(k + r - 1) % ${#ENGINES[@]}]}")
      done
      for eng in "${order[@]}"; do
        p="$tdir/r$r.$eng"
        [[ -n "${failed[$eng]:-}" ]] && continue
        bench=(bench --model "$model" --threads "$t" --input-shape "$shape" --warmup "$WARMUP"
               --loops "$LOOPS" --json "$p.json")
        case $eng in
          tandem) run_engine tandem "$p" "$TANDEM" "${bench[@]}" || failed[$eng]=1 ;;
          baseline) run_engine baseline "$p" "$BASELINE" "${bench[@]}" || failed[$eng]=1 ;;
          avx2)
            run_engine avx2 "$p" env DNNL_MAX_CPU_ISA=AVX2 TANDEM_SIMD_LEVEL=1 "$TANDEM" \
              "${bench[@]}" || failed[$eng]=1 ;;
          ort)
            run_engine ort "$p" node "$ROOT/tools/peer_bench_ort.js" bench --model "$model" \
              --inputs "$inputs" --outputs "$outputs" --threads "$t" --warmup "$WARMUP" \
              --loops "$LOOPS" --json "$p.json" || failed[$eng]=1 ;;
        esac
        if [[ -f "$p.err" ]]; then
          echo "peer_bench: $id threads $t round $r $eng: error: $(cat "$p.err")" >&2
        else
          echo "peer_bench: $id threads $t round $r $eng: done" >&2
        fi
      done
    done
    unset failed
  done
done

TANDEM_MTIME_END="$(stat -c %Y "$TANDEM" 2>/dev/null || echo missing)"
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
TANDEM_ABS="$(realpath "$TANDEM")" TM0="$TANDEM_MTIME_START" TM1="$TANDEM_MTIME_END" \
  L0="$LOAD_START" L1="$LOAD_END" BIND_DIR="$BIND_DIR" BASELINE="$BASELINE" ISA="$ISA" \
  HAS_AVX512="$HAS_AVX512" node -e '
  const e = process.env, os = require("os");
  const meta = { tandem: e.TANDEM_ABS, tandem_mtime_start: e.TM0, tandem_mtime_end: e.TM1,
    loadavg_start: e.L0, loadavg_end: e.L1, cpus: os.cpus().length, cpu_model: (os.cpus()[0] || {}).model,
    node: process.version, ort_binding_dir: e.BIND_DIR, baseline: e.BASELINE || null,
    isa: e.ISA || null, has_avx512: e.HAS_AVX512 === "1" };
  require("fs").writeFileSync(process.argv[1], JSON.stringify(meta, null, 2) + "\n");' "$WORK/meta.json"
[[ "$TANDEM_MTIME_START" == "$TANDEM_MTIME_END" ]] ||
  echo "peer_bench: WARNING: $TANDEM changed during the run" >&2

node "$ROOT/tools/peer_bench/report.js" --work "$WORK" --threads "$THREADS" --rounds "$ROUNDS" \
  --warmup "$WARMUP" --loops "$LOOPS" --ort-version "$ORT_VERSION" ${JSON_OUT:+--json "$JSON_OUT"}

#!/usr/bin/env bash
# Real MPI jobs on this machine (mpirun --oversubscribe): `tandem run --mpi` with 1, 2 and 3 ranks
# must print the gathered result equal to one device running the whole batch; `tandem bench
# --mpi` must report every rank's items; a rank whose model differs, or whose devices are bad,
# must fail the build on every rank with a message that names that rank.
#   mpi_test.sh MPIRUN TANDEM MODELS_DIR
set -u
mpirun=$1 tandem=$2 models=$3
# Root in CI containers; no ptrace-based single copy there (vader would fail with EPERM); ranks
# of one test share the machine's 2 cores, so no binding.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# shellcheck source=check_lib.sh
source "$(dirname "$0")/check_lib.sh"
job() {  # ranks, timeout, args... -> $tmp/out, status
  local n=$1 t=$2
  shift 2
  timeout "$t" "$mpirun" -np "$n" "$tandem" "$@" >"$tmp/out" 2>&1
}

unet=$models/sd_unet_tiny/model.onnx
resnet=$models/resnet_tiny/model.onnx

job 1 120 run --mpi --model "$resnet" --batch 3
check "1 rank" 0 $? "MPI ranks: 1" "=========== success ==========="

job 2 300 run --mpi --model "$unet" --batch 3 --loops 2
check "2 ranks, flagship UNet, odd batch" 0 $? "MPI ranks: 2" "rank 1 " \
  "=========== success ==========="

job 3 300 run --mpi --model "$resnet" --batch 7 --loops 3
check "3 ranks, resnet, batch 7" 0 $? "MPI ranks: 3" "rank 2 " "=========== success ==========="

# Fewer items than ranks: the fastest ranks take them, the rest idle.
job 3 300 run --mpi --model "$resnet" --batch 2
check "3 ranks, batch 2" 0 $? "=========== success ==========="

# Two devices per rank: each rank's own runner splits its shard again.
job 2 300 run --mpi --model "$resnet" --devices 2 --batch 5
check "2 ranks x 2 devices" 0 $? "=========== success ==========="

job 2 300 bench --mpi --model "$resnet" --batch 4 --warmup 1 --loops 3 --json "$tmp/b.json"
check "bench, 2 ranks" 0 $? "scaling efficiency E\(2\)" "MPI overhead per request"
if ! /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); \
  assert j['ranks']==2 and all(r['items']>0 and r['alone_items_per_s']>0 \
                                for r in j['ranks_detail']), j" "$tmp/b.json"; then
  echo "FAIL bench json"; fail=1
fi

# Rank 1 builds another model (same inputs and outputs, other weights): every rank stops, rank 0
# names rank 1 and both signatures.
timeout 300 "$mpirun" -np 1 "$tandem" run --mpi --model "$resnet" : \
  -np 1 "$tandem" run --mpi --model "$models/mobilenet_tiny/model.onnx" >"$tmp/out" 2>&1
check "a rank with another model" 1 $? "failed to build" "rank 1 \(.*\): its model .*differs"

# Rank 1 cannot build (a device its build refuses): the message is rank 1's own.
timeout 300 "$mpirun" -np 1 "$tandem" run --mpi --model "$resnet" : \
  -np 1 "$tandem" run --mpi --model "$resnet" --devices cuda:0 >"$tmp/out" 2>&1
check "a rank that cannot build" 1 $? "rank 1 \(.*\): .*cuda:0"

# A rank dies (SIGKILL) while requests run: with --enable-recovery the job keeps the other
# ranks, rank 0 takes the silent rank for lost after --liveness, names it and its host, runs the
# request again on the two left (and only those: a rank through with its part of a request is not
# taken for lost), and the run ends verified with exit status 0. The kill comes a second after
# the job says it is ready, not at a fixed time from the start: a rank killed inside MPI_Init
# leaves the others waiting there for its address forever (Open MPI 4 with --enable-recovery),
# and start-up can take seconds (a host name the resolver looks up over the network).
export TANDEM_TEST_VICTIM=$tmp/victim.pid
timeout 300 "$mpirun" --enable-recovery -x TANDEM_TEST_VICTIM -np 3 sh -c '
  if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then echo $$ >"$TANDEM_TEST_VICTIM"; fi
  exec stdbuf -oL "$0" "$@"' "$tandem" run --mpi --liveness 5 --model "$unet" --batch 6 \
  --loops 60 >"$tmp/out" 2>&1 &
job_pid=$!
for _ in $(seq 1200); do  # up to 120 s for the job to be ready
  grep -q "ranks ready" "$tmp/out" && break
  kill -0 "$job_pid" 2>/dev/null || break
  sleep 0.1
done
if grep -q "ranks ready" "$tmp/out"; then
  sleep 1
  kill -9 "$(cat "$tmp/victim.pid")"
fi
wait "$job_pid"
check "a rank killed mid-run" 0 $? \
  "rank 1 \(.*\) lost: no word for 5.0 s; the request runs again on 2 ranks" \
  "=========== success ==========="

# Not under mpirun: a singleton job of one rank.
timeout 120 "$tandem" run --mpi --model "$resnet" --batch 2 >"$tmp/out" 2>&1
check "singleton" 0 $? "MPI ranks: 1" "=========== success ==========="

[[ $fail -eq 0 ]] && echo "mpi_test: ok"
exit $fail

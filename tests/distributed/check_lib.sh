# Shared by the MPI test scripts: check NAME WANT STATUS PATTERN... compares a job's exit status
# (WANT 0: success, else failure) and requires each extended regex in $tmp/out, printing the
# output on a mismatch and setting fail=1.
check() {
  local name=$1 want=$2 status=$3
  shift 3
  if [[ $want == 0 && $status -ne 0 ]] || [[ $want != 0 && $status -eq 0 ]]; then
    echo "FAIL $name: exit status $status"; sed 's/^/    /' "$tmp/out"; fail=1; return
  fi
  for p in "$@"; do
    if ! grep -qE -- "$p" "$tmp/out"; then
      echo "FAIL $name: output lacks /$p/"; sed 's/^/    /' "$tmp/out"; fail=1; return
    fi
  done
  echo "ok   $name"
}

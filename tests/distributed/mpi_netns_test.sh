#!/usr/bin/env bash
# MPI ranks on two "hosts" that share nothing but a network: each host is a network namespace
# (ip netns) with its own address and host name (unshare --uts), joined by a bridge, and the
# ranks talk over TCP only (Open MPI's tcp BTL and out-of-band channel on that subnet). mpirun
# starts each host's daemon through a launch agent that enters the namespace, as ssh would enter
# another machine. Checks: the gathered result equals one device; a rank whose model differs is
# named with its host. Needs root (network namespaces); without them it reports itself skipped
# (exit 77), never passed.
#   mpi_netns_test.sh MPIRUN TANDEM MODELS_DIR
set -u
mpirun=$1 tandem=$2 models=$3
tag=t$$
br=${tag}br ns_a=${tag}-a ns_b=${tag}-b
net=10.213.77
tmp=$(mktemp -d)
cleanup() {
  ip netns del "$ns_a" 2>/dev/null
  ip netns del "$ns_b" 2>/dev/null
  ip link del "$br" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
# Any step failing means this machine cannot make the hosts (not root, or a chroot whose / is
# not a mount point, where `ip netns add` cannot make / a slave mount): skipped, not passed.
make_hosts() {
  ip netns add "$ns_a" && ip netns add "$ns_b" && ip link add "$br" type bridge &&
    ip addr add "$net.1/24" dev "$br" && ip link set "$br" up || return 1
  local i=2 ns
  for ns in "$ns_a" "$ns_b"; do
    ip link add "${ns}v" type veth peer name eth0 netns "$ns" &&
      ip link set "${ns}v" master "$br" up &&
      ip -n "$ns" addr add "$net.$i/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || return 1
    i=$((i + 1))
  done
}
if ! make_hosts 2>"$tmp/err"; then
  echo "SKIP: cannot make two hosts from network namespaces here: $(tr '\n' ' ' <"$tmp/err")"
  exit 77
fi
# The launch agent: `agent [options] HOST COMMAND...`, as mpirun calls ssh. HOST is an address on
# the bridge; the command runs in that host's namespace under the name host-a or host-b.
cat >"$tmp/agent" <<AGENT
#!/bin/sh
while [ "\${1#-}" != "\$1" ]; do shift; done
case "\$1" in
  $net.2) ns=$ns_a name=host-a ;;
  $net.3) ns=$ns_b name=host-b ;;
  *) echo "agent: unknown host \$1" >&2; exit 1 ;;
esac
shift
# The rest is one shell command line, as ssh hands it to the remote shell.
exec ip netns exec "\$ns" unshare --uts /bin/sh -c "hostname \$name && \$*"
AGENT
chmod +x "$tmp/agent"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm_rsh_agent="$tmp/agent" OMPI_MCA_btl=self,tcp
export OMPI_MCA_btl_tcp_if_include="$net.0/24" OMPI_MCA_oob_tcp_if_include="$net.0/24"
export OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_rmaps_base_oversubscribe=1
hosts="$net.2,$net.3"
fail=0
# shellcheck source=check_lib.sh
source "$(dirname "$0")/check_lib.sh"

timeout 300 "$mpirun" -np 2 --host "$hosts" "$tandem" run --mpi \
  --model "$models/sd_unet_tiny/model.onnx" --batch 3 --loops 2 >"$tmp/out" 2>&1
check "2 hosts over TCP, flagship UNet" 0 $? "rank 0 on host-a" "rank 1 +host-b" \
  "=========== success ==========="

timeout 300 "$mpirun" -np 1 --host "$net.2" "$tandem" run --mpi \
  --model "$models/resnet_tiny/model.onnx" : -np 1 --host "$net.3" "$tandem" run --mpi \
  --model "$models/mobilenet_tiny/model.onnx" >"$tmp/out" 2>&1
check "a host with another model" 1 $? "rank 1 \(host-b\): its model .*differs"

[[ $fail -eq 0 ]] && echo "mpi_netns_test: ok"
exit $fail

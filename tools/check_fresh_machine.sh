#!/usr/bin/env bash
# Checks that the README's commands work on a fresh Debian 12 machine: builds a minimal Debian 12
# root (debootstrap --variant=minbase bookworm), puts the committed project in it, and runs inside
# it (chroot) exactly the README's "Set up, build and run the main job" and "Run every test"
# commands. Slow (about 15-25 minutes on 2 cores; the full test run includes an ASan build), so CI
# does not run it: run it before calling an issue done and after any change to dependencies.
set -euo pipefail
# shellcheck disable=SC2317  # (functions called through trap and step() look unreachable to it)
# Everything is in main(), called on the last line: bash reads the whole script before it starts,
# so editing or checking out this file during a run (it takes minutes) cannot change that run.
main() {

usage() {
  cat <<'EOF'
Usage: sudo bash tools/check_fresh_machine.sh [--root DIR] [--cache FILE] [--mirror URL] [--keep]

Checks the README's first two commands on a fresh, minimal Debian 12 machine:
  1. makes a pristine minimal Debian 12 root (debootstrap --variant=minbase bookworm), or unpacks
     the cached pristine root if there is one (the first run writes it); every run starts pristine;
  2. copies the project's committed files (git archive of HEAD, like CI: uncommitted changes are
     not checked) to /root/tandem inside it;
  3. mounts /proc, /sys, /dev/pts and a private /dev/shm, copies the host's /etc/resolv.conf and
     the host's apt sources (same mirror as this machine);
  4. runs, with chroot as root in /root/tandem and a clean environment (no CI variable, no ccache),
     the commands of README.md's first two ```sh blocks ("Set up, build and run the main job" and
     "Run every test"), each step timed; the main job must also print its success line.
It prints each step's time and PASS/FAIL, keeps every step's full output in a log next to the
root, and exits non-zero if any step fails. Mounts are undone and processes left in the root are
killed on every exit. Needs root, network access to the Debian mirror, ~6 GiB of disk, and takes
about 15-25 minutes on 2 cores; CI does not run it.

Options:
  --root DIR    where the Debian root goes (default /var/tmp/tandem-fresh/root); it is deleted and
                re-made on each run
  --cache FILE  tarball of the pristine root (default /var/tmp/tandem-fresh/bookworm-minbase.tar);
                made after the first debootstrap, reused after; delete it to debootstrap again
  --mirror URL  Debian mirror for debootstrap (default: the first URI of this machine's apt sources)
  --keep        leave the root in place after the run (mounts are still undone)
  -h, --help    this text
EOF
}

root_dir=/var/tmp/tandem-fresh/root
cache=/var/tmp/tandem-fresh/bookworm-minbase.tar
mirror=""
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) root_dir="${2:?--root needs a folder}"; shift 2 ;;
    --cache) cache="${2:?--cache needs a file}"; shift 2 ;;
    --mirror) mirror="${2:?--mirror needs a URL}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "error: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, mount and chroot need it)"
for tool in debootstrap chroot mount umount git tar; do
  command -v "$tool" >/dev/null || die "'$tool' not found (Debian: apt-get install $tool)"
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
readme="$repo/README.md"
# The commit checked, fixed now: the report names it even if HEAD moves during the run.
head_commit="$(git -C "$repo" rev-parse HEAD)"
root_dir="$(realpath -m "$root_dir")"
# The root is deleted with rm -rf: refuse anything that could be a system folder.
case "$root_dir" in
  / | /bin* | /boot* | /dev* | /etc* | /home | /lib* | /proc* | /root | /sbin* | /sys* | /usr* | /var | /var/tmp | /tmp)
    die "refusing to use '$root_dir' as the Debian root (it is deleted on each run)" ;;
esac
# /proc/mounts escapes blanks, and cleanup finds the root's mounts there by name.
[[ "$root_dir" != *[[:space:]]* ]] || die "the root's path must not contain blanks: '$root_dir'"
work="$(dirname "$root_dir")"
logs="$work/logs"
mkdir -p "$work" "$logs" "$(dirname "$cache")"

# The mirror this machine's apt uses (deb822 sources first, then the one-line format).
if [[ -z "$mirror" ]]; then
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
    mirror="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)"
  fi
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

# --- the README's commands ------------------------------------------------------------------
# The lines of README.md's first two ```sh blocks: what a user is told to type.
readme_block() { # readme_block N: the command lines of README.md's Nth ```sh block
  awk -v want="$1" '
    /^```sh[[:space:]]*$/ { n++; inblock = (n == want); next }
    /^```/ { inblock = 0; next }
    inblock && $0 !~ /^[[:space:]]*(#|$)/ { print }
  ' "$readme"
}
blocks=("$(readme_block 1)" "$(readme_block 2)")
[[ ${#blocks[@]} -eq 2 && -n "${blocks[0]}" && -n "${blocks[1]}" ]] ||
  die "README.md: expected two \`\`\`sh blocks with commands, found: '${blocks[0]}' and '${blocks[1]}'"

# --- cleanup on every exit -------------------------------------------------------------------
mounts_under_root() { # deepest first; read from the kernel's table (steps run in subshells)
  awk -v r="$root_dir/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r
}
cleanup() {
  local rc=$?
  set +e
  # Processes still running inside the root (workers, a stuck test) hold the mounts: end them,
  # one by one by id.
  local pid link
  for link in /proc/[0-9]*/root; do
    pid="${link#/proc/}"; pid="${pid%/root}"
    [[ "$link" -ef "$root_dir" ]] && kill -9 "$pid" 2>/dev/null
  done
  local target
  while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null ||
      echo "warning: could not unmount $target" >&2
  done < <(mounts_under_root)
  if [[ $keep -eq 0 && -d "$root_dir" && -z "$(mounts_under_root)" ]]; then
    rm -rf --one-file-system "$root_dir"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mount_in() { # mount_in TARGET mount-arguments...: a mount inside the root, undone by cleanup
  local target="$root_dir/$1"; shift
  mkdir -p "$target"
  mount "$@" "$target"
}

# --- steps ----------------------------------------------------------------------------------
declare -a summary=()
total_start=$SECONDS
failed=0
fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
step() { # step NAME LOG command...: runs one step with its output in LOG, records time and result
  local name="$1" log="$2"; shift 2
  local start=$SECONDS rc=0
  echo "== $name"
  # In the background, so that a signal to this script acts at once (bash runs its traps only
  # after the foreground command), rather than when the step ends.
  "$@" >"$log" 2>&1 </dev/null &
  wait $! || rc=$?
  local took=$((SECONDS - start))
  if [[ $rc -eq 0 ]]; then
    summary+=("$(printf '  PASS  %7s  %s' "$(fmt_time $took)" "$name")")
    echo "   PASS in $(fmt_time $took)"
  else
    summary+=("$(printf '  FAIL  %7s  %s (exit %d, log %s)' "$(fmt_time $took)" "$name" "$rc" "$log")")
    echo "   FAIL (exit $rc) in $(fmt_time $took); last lines of $log:"
    tail -n 40 "$log" | sed 's/^/   | /'
    failed=1
  fi
  return $rc
}
report() {
  echo
  echo "== fresh-machine check of ${head_commit:0:7}: $([[ $failed -eq 0 ]] && echo PASS || echo FAIL)"
  printf '%s\n' "${summary[@]}"
  echo "  total $(fmt_time $((SECONDS - total_start)))"
}

make_root() {
  if [[ -n "$(mounts_under_root)" ]]; then
    echo "something is still mounted under $root_dir; unmount it first" >&2
    return 1
  fi
  rm -rf --one-file-system "$root_dir"
  mkdir -p "$root_dir"
  if [[ -s "$cache" ]]; then
    echo "unpacking the cached pristine root $cache"
    tar -C "$root_dir" --numeric-owner -xpf "$cache"
  else
    echo "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$root_dir" "$mirror"
    # Cache the root before anything touches it, so that later runs start from the same state.
    tar -C "$root_dir" --numeric-owner -cpf "$cache.part" . && mv "$cache.part" "$cache"
  fi
}

copy_project() {
  local dest="$root_dir/root/tandem"
  echo "project at $head_commit (committed files only)"
  if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]]; then
    echo "note: the checkout has uncommitted changes; they are not part of this check"
  fi
  mkdir -p "$dest"
  git -C "$repo" archive --format=tar "$head_commit" | tar -C "$dest" -xf -
}

prepare_root() {
  mount_in proc -t proc proc
  mount_in sys -t sysfs sysfs
  mount_in dev/pts -t devpts devpts -o newinstance,ptmxmode=0666
  mount_in dev/shm -t tmpfs tmpfs -o mode=1777,size=2g
  cp -L /etc/resolv.conf "$root_dir/etc/resolv.conf"
  # The same mirror and suites as this machine (debootstrap's sources.list has only "bookworm
  # main"; an installed Debian 12 also has its updates and security suites), and this machine's
  # settings for reaching the mirror (a proxy; no Valid-Until check for a dated snapshot), so the
  # root reaches the archive the way the host does. Nothing else of the host's apt setup goes in.
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    cp /etc/apt/sources.list.d/debian.sources "$root_dir/etc/apt/sources.list.d/"
    rm -f "$root_dir/etc/apt/sources.list"
  fi
  local conf
  for conf in /etc/apt/apt.conf.d/*; do
    if [[ -f "$conf" ]] && grep -qE '^[[:space:]]*Acquire::([a-z]+::Proxy|Check-Valid-Until|Check-Date)' "$conf"; then
      cp "$conf" "$root_dir/etc/apt/apt.conf.d/"
      echo "copied apt setting $conf"
    fi
  done
  grep -h '^[^#]' "$root_dir"/etc/apt/sources.list.d/*.sources "$root_dir"/etc/apt/sources.list 2>/dev/null || true
  # The certificate authorities this machine's admin added (/usr/local/share/ca-certificates: a
  # network that intercepts TLS has one), for npm's HTTPS, as NODE_EXTRA_CA_CERTS: a user's
  # machine on an open network needs none, Node.js bundles the public roots.
  rm -f "$root_dir/etc/host-extra-ca.crt"
  local crt
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -f "$crt" ]] || continue
    cat "$crt" >>"$root_dir/etc/host-extra-ca.crt"
    echo "added this machine's certificate authority $crt for npm"
  done
}

in_root() { # runs a command line in the root as a user would: root, /root/tandem, clean env
  local extra=()
  if [[ -f "$root_dir/etc/host-extra-ca.crt" ]]; then extra=(NODE_EXTRA_CA_CERTS=/etc/host-extra-ca.crt); fi
  chroot "$root_dir" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${extra[@]}" \
    /bin/bash -c "cd /root/tandem && $1"
}

echo "README command 1 (Set up, build and run the main job): ${blocks[0]}"
echo "README command 2 (Run every test): ${blocks[1]}"
echo "root: $root_dir   logs: $logs"

step "pristine Debian 12 minimal root" "$logs/0-root.log" make_root || { report; exit 1; }
step "copy the committed project" "$logs/1-copy.log" copy_project || { report; exit 1; }
step "mount /proc /sys /dev/pts /dev/shm, resolv.conf, apt sources" "$logs/2-mounts.log" prepare_root ||
  { report; exit 1; }

n=3
for b in 0 1; do
  block="${blocks[b]}"
  # A one-line "a && b && c" chain is run part by part, so that each part gets its own time; this
  # is exactly what the shell does with it (stop at the first failure). Anything else runs whole.
  parts=("$block")
  if [[ "$block" != *$'\n'* && "$block" != *[\'\"\\\`\$\;\|]* && "$block" == *" && "* ]]; then
    mapfile -t parts < <(printf '%s\n' "$block" | sed 's/ && /\n/g')
  fi
  for part in "${parts[@]}"; do
    log="$logs/$n-$(printf '%s' "$part" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-40).log"
    n=$((n + 1))
    step "README $((b + 1)): $part" "$log" in_root "$part" || { report; exit 1; }
    if [[ "$part" == *"tandem run"* ]] && ! grep -q '=========== success ===========' "$log"; then
      echo "   FAIL: the main job did not print its success line"
      summary+=("  FAIL           the main job printed no '=========== success ===========' line")
      failed=1
      report
      exit 1
    fi
  done
done

report
}

main "$@"; exit $?

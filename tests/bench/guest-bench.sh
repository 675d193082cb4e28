#!/usr/bin/env bash
# In-guest benchmark (make bench-guest): the same small workload inside a real
# Linux guest over virtio-fs, once per daemon, one boot each.
#
# Workload (busybox): write and read back a 64 MiB file with 1 MiB and with
# 4 KiB blocks (dropping the guest's page cache in between), then metadata:
# create 1000 files, stat them all, list them with ls -l, remove them.
# Each step's time comes from the guest's own clock.
#
# Guests here run under TCG (KVM is not usable on these machines), so the
# numbers are dominated by emulation: they show that the ordering of the
# protocol-level benchmark (make bench) survives a real guest kernel, not
# what a KVM guest would see.
#
# Usage: guest-bench.sh [--daemon 'NAME=CMD']... [--cache=MODE] [--runs=N]
#   --daemon   a daemon binary with options, e.g.
#              'rust=/opt/virtiofsd-peers/bin/rust-virtiofsd --sandbox=none --seccomp=none'
#              (default: this build's virtiofsd, and the Rust peer when
#              /opt/virtiofsd-peers/bin has it; QEMU's C virtiofsd takes other
#              options than lib.sh passes)
#   --cache    cache mode for every daemon (default always)
#   --runs     boots per daemon; the best time of each step is kept (default 1)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
daemons=()
cache=always
runs=1
while [ $# -gt 0 ]; do
  case $1 in
    --daemon=*) daemons+=("${1#*=}") ;;
    --daemon) daemons+=("$2"); shift ;;
    --cache=*) cache=${1#*=} ;;
    --runs=*) runs=${1#*=} ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "guest-bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
PEERS=/opt/virtiofsd-peers/bin
if [ ${#daemons[@]} -eq 0 ]; then
  daemons=("ours=$REPO/build/virtiofsd")
  [ -x "$PEERS/rust-virtiofsd" ] && daemons+=("rust=$PEERS/rust-virtiofsd --sandbox=none --seccomp=none")
fi

export VG_CACHE_MODE=$cache VG_LOG_LEVEL=error
# shellcheck source=tests/guest/lib.sh source-path=SCRIPTDIR/../..
. "$REPO/tests/guest/lib.sh"
vg_setup

GUEST=$VG_TMP/bench-guest.sh
cat >"$GUEST" <<'EOF'
#!/bin/sh
M=$VG_MNT/bench
mkdir -p "$M"
now() { cut -d' ' -f1 /proc/uptime; }   # seconds, 10 ms resolution
t() { # NAME COMMAND...: prints "STEP: NAME SECONDS"
  local name=$1 t0 t1
  shift
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(now)
  "$@" >/dev/null 2>&1
  t1=$(now)
  echo "STEP: $name $(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}')"
}
write_1m() { dd if=/dev/zero of="$M/big" bs=1M count=64 conv=fsync; }
read_1m() { dd if="$M/big" of=/dev/null bs=1M; }
write_4k() { dd if=/dev/zero of="$M/big4k" bs=4k count=4096 conv=fsync; }
read_4k() { dd if="$M/big4k" of=/dev/null bs=4k; }
create() { i=0; while [ $i -lt 1000 ]; do : >"$M/f$i"; i=$((i + 1)); done; }
stat_all() { i=0; while [ $i -lt 1000 ]; do stat "$M/f$i"; i=$((i + 1)); done; }
list() { ls -l "$M"; }
remove() { i=0; while [ $i -lt 1000 ]; do rm "$M/f$i"; i=$((i + 1)); done; }
t write-64M-1M write_1m
t read-64M-1M read_1m
t write-16M-4k write_4k
t read-16M-4k read_4k
t create-1000 create
t stat-1000 stat_all
t ls-l-1000 list
t unlink-1000 remove
rm -f "$M/big" "$M/big4k"
EOF

declare -A best=()
steps=()
names=()
for spec in "${daemons[@]}"; do
  name=${spec%%=*}
  cmd=${spec#*=}
  names+=("$name")
  for run in $(seq 1 "$runs"); do
    S=$VG_TMP/share-$name-$run
    mkdir -p "$S"
    read -r -a words <<<"$cmd"
    # read by lib.sh's vg_daemon_start
    # shellcheck disable=SC2034
    VIRTIOFSD=${words[0]} VIRTIOFSD_OPTS="${words[*]:1}"
    vg_log "$name: boot $run of $runs"
    if ! vg_run_guest "$S" "$GUEST"; then
      vg_show_logs 20
      echo "guest-bench: $name: the guest did not finish" >&2
      exit 1
    fi
    while read -r _ step secs; do
      [[ " ${steps[*]} " == *" $step "* ]] || steps+=("$step")
      key="$name/$step"
      if [ -z "${best[$key]:-}" ] || awk "BEGIN {exit !($secs < ${best[$key]})}"; then
        best[$key]=$secs
      fi
    done < <(grep '^STEP: ' "$VG_RESULTS")
  done
done

printf '%-14s' "seconds"
for n in "${names[@]}"; do printf ' %10s' "$n"; done
[ ${#names[@]} -lt 2 ] || for n in "${names[@]:1}"; do printf ' %10s' "$n/${names[0]}"; done
echo
for step in "${steps[@]}"; do
  printf '%-14s' "$step"
  for n in "${names[@]}"; do printf ' %10s' "${best[$n/$step]:--}"; done
  if [ ${#names[@]} -ge 2 ]; then
    for n in "${names[@]:1}"; do
      printf ' %10s' "$(awk -v a="${best[$n/$step]:-0}" -v b="${best[${names[0]}/$step]:-0}" \
        'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    done
  fi
  echo
done
echo "accel: $VG_ACCEL, cache: $cache, runs: $runs (best of), guest kernel: $(sed -n 's/^kernel_version=//p' "$VG_IMG/info")"

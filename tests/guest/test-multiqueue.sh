#!/usr/bin/env bash
# Multi-queue with a real guest (run by `make check`).
#
# Debian 12's 6.1 kernel drives one request queue whatever the device offers;
# newer kernels (6.12 here, from Debian trixie, fetched by build-image.sh)
# spread requests over the device's request queues by CPU.  One boot with
# QEMU's `-device vhost-user-fs-pci,...,num-request-queues=N` and N vCPUs:
#   guest: the virtiofs sysfs shows N queues, each with its CPUs; one writer
#          pinned to each CPU (busybox taskset) creates, writes and reads back
#          its own files;
#   host:  the daemon runs one worker thread per host CPU, at most one per
#          request queue (queues share threads when they outnumber the CPUs);
#          every request queue was started on a worker and served its CPU's
#          requests (the daemon logs, at debug level, how many each served
#          when the guest went away); the files are all there.
#
# Usage: test-multiqueue.sh [--queues=N] [--keep] [--verbose]
#   --queues=N   request queues and vCPUs (default 4; $VG_MQ_QUEUES)
# Environment: as lib.sh; VG_KERNEL_SUITE (default trixie).
#
# Output: "PASS: mq/<name>", "FAIL: mq/<name>: <reason>", "SKIP: ..."; the
# last line is "test-multiqueue: N passed, N failed, N skipped".
set -euo pipefail
export VG_KERNEL_SUITE=${VG_KERNEL_SUITE:-trixie}
QUEUES=${VG_MQ_QUEUES:-4}
while [ $# -gt 0 ]; do
  case $1 in
    --queues=*) QUEUES=${1#*=} ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-multiqueue: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $QUEUES =~ ^[1-9][0-9]?$ ]] || { echo "test-multiqueue: --queues must be 1..99" >&2; exit 2; }
export VG_SMP=$QUEUES VG_FS_DEVICE_OPTS=",num-request-queues=$QUEUES" VG_LOG_LEVEL=debug
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NPASS=0 NFAIL=0 NSKIP=0
r_pass() { echo "PASS: mq/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: mq/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_eq() { if [ "$2" = "$3" ]; then r_pass "$1"; else r_fail "$1" "got '$2', want '$3'"; fi; }
finish() {
  echo "test-multiqueue: $NPASS passed, $NFAIL failed, $NSKIP skipped"
  [ "$NFAIL" = 0 ]
}

vg_setup
S=$VG_TMP/share
mkdir -p "$S"
chmod 0755 "$S"

GUEST=$VG_TMP/mq-guest.sh
cat >"$GUEST" <<'EOF'
#!/bin/sh
M=$VG_MNT
echo "DATA: kernel $(uname -r)"
# mqs/0 is the high-priority queue (all CPUs); mqs/1.. the request queues
n=0
for q in /sys/fs/virtiofs/*/mqs/*; do
  [ -d "$q" ] || continue
  echo "DATA: queue-$(basename "$q") $(cat "$q/cpu_list" 2>/dev/null)"
  [ "$(basename "$q")" = 0 ] || n=$((n + 1))
done
echo "DATA: sysfs-queues $n"
cpus=$(grep -c ^processor /proc/cpuinfo)
echo "DATA: cpus $cpus"
mkdir -p "$M/mq"
c=0
while [ $c -lt "$cpus" ]; do
  taskset -c $c sh -c '
    i=0
    while [ $i -lt 150 ]; do
      echo "cpu '$c' file $i" >"'"$M"'/mq/c'$c'-$i"
      cat "'"$M"'/mq/c'$c'-$i" >/dev/null
      i=$((i + 1))
    done' &
  c=$((c + 1))
done
wait
echo "DATA: files $(ls "$M/mq" | wc -l)"
EOF

vg_log "booting a $VG_KERNEL_SUITE guest with $QUEUES request queues and $QUEUES vCPUs"
if ! vg_run_guest "$S" "$GUEST" --num-request-queues="$QUEUES"; then
  vg_show_logs 40
  r_fail boot "the guest did not run the script (qemu rc $VG_QEMU_RC)"
  finish
  exit 1
fi
data() { sed -n "s/^DATA: $1 //p" "$VG_RESULTS" | head -1; }
kernel=$(data kernel)
vg_log "guest kernel $kernel"

r_eq guest-script-status "$VG_GUEST_RC" 0
r_eq sysfs-request-queues "$(data sysfs-queues)" "$QUEUES"
r_eq guest-cpus "$(data cpus)" "$QUEUES"
# one CPU per request queue: queue q serves CPU q-1
for q in $(seq 1 "$QUEUES"); do r_eq "cpu-of-request-queue-$q" "$(data "queue-$q")" $((q - 1)); done
r_eq guest-files "$(data files)" $((QUEUES * 150))
r_eq host-files "$(find "$S/mq" -type f | wc -l)" $((QUEUES * 150))
bad=0
for c in $(seq 0 $((QUEUES - 1))); do
  [ "$(cat "$S/mq/c$c-149" 2>/dev/null)" = "cpu $c file 149" ] || bad=$((bad + 1))
done
r_eq host-file-contents-per-cpu "$bad" 0

# one worker thread per CPU the daemon may use, at most one per request queue
cpus=$(nproc)
want_threads=$((cpus < QUEUES ? cpus : QUEUES))
threads=$(sed -n "s/.*$QUEUES request queues offered, served by \([0-9]*\) worker threads.*/\1/p" \
  "$VG_DAEMON_LOG" | tail -n 1)
r_eq worker-threads "${threads:-none logged}" "$want_threads"

# queue 0 is the high-priority queue; 1..N the request queues
busy=0
for q in $(seq 1 "$QUEUES"); do
  if grep -q "queue $q: started on worker" "$VG_DAEMON_LOG"; then
    r_pass "worker-started-queue-$q"
  else
    r_fail "worker-started-queue-$q" "request queue $q was never started on a worker"
  fi
  served=$(sed -n "s/.*queue $q: stopped, \([0-9]*\) requests served.*/\1/p" "$VG_DAEMON_LOG" |
    awk '{s += $1} END {print s + 0}')
  vg_log "request queue $q served $served requests"
  # each CPU's writer alone sends ~600 requests through its CPU's queue
  if [ "$served" -ge 300 ]; then busy=$((busy + 1)); fi
done
r_eq request-queues-that-served-a-cpu "$busy" "$QUEUES"
[ "$NFAIL" = 0 ] || vg_show_logs 30
finish

# shellcheck shell=bash
# shellcheck disable=SC2034  # VG_* result variables are read by the sourcing scripts
# Shared helpers for the real-guest virtio-fs tests: source this file.
#
#   vg_setup                      build/find the guest image, make a temp dir,
#                                 install the cleanup trap
#   vg_accel                      set VG_ACCEL to kvm or tcg (probe boot, cached)
#   vg_run_guest SHARED SCRIPT    start the daemon on SHARED, boot the guest
#                                 running SCRIPT (busybox sh) against the
#                                 virtio-fs mount, wait, stop the daemon
#   vg_cleanup                    kill what is left, remove temp dirs
#
# For tests that keep one daemon across several guests (test-reconnect.sh):
#   vg_daemon_start SOCK SHARED LOG [OPTS...] / vg_daemon_term
#   vg_boot_start SOCK SCRIPT [QEMU ARGS...]  boot a guest in the background
#                                 against a running daemon; vg_boot_wait,
#                                 vg_boot_kill (kill -9 QEMU), vg_wait_line
#   vg_qmp SOCK COMMAND           one QMP command (python3)
#   vg_serving_pid, vg_proc_fds, vg_proc_status, vg_count, vg_wait_count
#
# Environment (all optional):
#   VIRTIOFSD            daemon binary      (default: $REPO/build/virtiofsd)
#   VIRTIOFSD_OPTS       extra daemon options, word-split (e.g. "--xattr")
#   VIRTIOFSD_SANDBOX_OPTS  sandbox/seccomp options (default: none, i.e. the
#                        daemon's own default lockdown; the Rust peer may need
#                        "--sandbox=none --seccomp=none")
#   VG_CACHE_MODE        --cache value      (default: auto)
#   VG_LOG_LEVEL         --log-level value  (default: info)
#   VG_TAG               virtio-fs tag      (default: vgtest)
#   VG_TIMEOUT           hard limit for one boot, seconds (default 240)
#   VG_ACCEL             kvm|tcg: skip the probe
#   VG_PROBE_TIMEOUT     KVM probe boot limit, seconds (default 20)
#   VG_SMP, VG_MEM       guest CPUs (default 2) and memory (default 512M)
#   VG_FS_DEVICE_OPTS    appended to the vhost-user-fs-pci device, e.g.
#                        ",num-request-queues=4"
#   VG_KERNEL_SUITE      Debian suite of the guest kernel (build-image.sh)
#   VG_QEMU              qemu binary (default qemu-system-x86_64)
#   VG_KEEP=1            keep the temp dir (logs, sockets) for debugging
#   VG_VERBOSE=1         echo the guest console to stderr after each boot
#   VG_CACHE_DIR         image cache root (default /var/cache/virtiofsd-tests)

VG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VG_REPO=$(cd "$VG_DIR/../.." && pwd)
VIRTIOFSD=${VIRTIOFSD:-$VG_REPO/build/virtiofsd}
VIRTIOFSD_OPTS=${VIRTIOFSD_OPTS:-}
VIRTIOFSD_SANDBOX_OPTS=${VIRTIOFSD_SANDBOX_OPTS-}
VG_CACHE_MODE=${VG_CACHE_MODE:-auto}
VG_LOG_LEVEL=${VG_LOG_LEVEL:-info}
VG_TAG=${VG_TAG:-vgtest}
VG_TIMEOUT=${VG_TIMEOUT:-240}
VG_PROBE_TIMEOUT=${VG_PROBE_TIMEOUT:-20}
VG_SMP=${VG_SMP:-2}
VG_MEM=${VG_MEM:-512M}
VG_QEMU=${VG_QEMU:-qemu-system-x86_64}
VG_CACHE_DIR=${VG_CACHE_DIR:-/var/cache/virtiofsd-tests}
export VG_CACHE_DIR

VG_IMG=            # image dir (vmlinuz, initramfs.cpio, guest-tool)
VG_TMP=            # this process's scratch dir
VG_DAEMON_PID=
VG_QEMU_PID=
VG_BOOT_N=0        # boots so far, to name per-boot files

vg_log() { echo "[vg] $*" >&2; }
vg_die() { echo "[vg] ERROR: $*" >&2; exit 1; }

# Kill leftovers (only processes this shell started, by pid) and remove the
# scratch dir.  Safe to call more than once.
vg_cleanup() {
  # VG_QEMU_PID is `timeout`, which passes TERM on to QEMU (a KILL would
  # orphan QEMU), then exits itself.
  if [ -n "$VG_QEMU_PID" ] && vg_alive "$VG_QEMU_PID"; then
    kill -TERM "$VG_QEMU_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do vg_alive "$VG_QEMU_PID" || break; sleep 0.1; done
    kill -KILL "$VG_QEMU_PID" 2>/dev/null || true
  fi
  VG_QEMU_PID=
  vg_daemon_stop || true
  if [ -n "$VG_TMP" ] && [ -d "$VG_TMP" ]; then
    if [ "${VG_KEEP:-0}" = 1 ]; then
      vg_log "kept $VG_TMP"
    else
      rm -rf "$VG_TMP"
    fi
  fi
  VG_TMP=
}

vg_setup() {
  VG_IMG=$(bash "$VG_DIR/build-image.sh" | tail -1)
  [ -f "$VG_IMG/.complete" ] || vg_die "guest image build failed"
  command -v "$VG_QEMU" >/dev/null 2>&1 || vg_die "$VG_QEMU not found"
  VG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vg.XXXXXX")
  trap vg_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Initramfs for one boot: the cached base archive with a second newc archive
# appended (the kernel unpacks concatenated archives in order), holding
# /guest/script.sh and, optionally, /guest/env.
vg_make_initrd() { # OUT SCRIPT [ENVFILE]
  local out=$1 script=$2 envf=${3:-} d
  d=$(mktemp -d "$VG_TMP/initrd.XXXXXX")
  # the archive's "." entry becomes the guest's / : mktemp's 0700 would lock
  # every unprivileged guest user out of /bin
  chmod 0755 "$d"
  mkdir -p "$d/guest"
  cp "$script" "$d/guest/script.sh"
  [ -z "$envf" ] || cp "$envf" "$d/guest/env"
  (cd "$d" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$d.cpio"
  cat "$VG_IMG/initramfs.cpio" "$d.cpio" >"$out"
  rm -rf "$d" "$d.cpio"
}

# Start QEMU in the background under a hard timeout; VG_QEMU_PID is the
# `timeout` wrapper (it passes TERM on to QEMU).  Same arguments as vg_qemu.
# With VG_QEMU_REBOOT=1 (e.g. as a prefix assignment of the call) QEMU runs
# without -no-reboot, so a reset (by the guest or QMP system_reset) reboots
# the guest instead of ending QEMU.
vg_qemu_spawn() { # ACCEL CONSOLE RESULTS TIMEOUT INITRD CMDLINE [QEMU ARGS...]
  local accel=$1 console=$2 results=$3 tmo=$4 initrd=$5 cmdline=$6 noreboot=-no-reboot
  shift 6
  [ "${VG_QEMU_REBOOT:-0}" != 1 ] || noreboot=
  # -nodefaults: no NIC (no iPXE ROM scan), no VGA: faster firmware stage.
  # Two UARTs: ttyS0 = console (kernel noise), ttyS1 = clean results channel.
  # shellcheck disable=SC2086  # $noreboot: one option or none
  timeout -k 5 "$tmo" "$VG_QEMU" -nodefaults -no-user-config -nographic $noreboot \
    -accel "$accel" -m "$VG_MEM" -smp "$VG_SMP" \
    -kernel "$VG_IMG/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 $cmdline" \
    -serial "file:$console" -serial "file:$results" \
    "$@" </dev/null >>"$console.qemu" 2>&1 &
  VG_QEMU_PID=$!
}

# Run QEMU in the foreground under a hard timeout.  Returns QEMU's status,
# 124 on timeout.  Extra arguments are appended to the QEMU command line.
#   vg_qemu ACCEL CONSOLE RESULTS TIMEOUT INITRD CMDLINE [QEMU ARGS...]
vg_qemu() {
  local rc=0
  vg_qemu_spawn "$@"
  local watcher=
  if [ -n "${VG_WATCH_PID:-}" ]; then
    vg_watch_daemon "$VG_QEMU_PID" "$VG_WATCH_PID" "$VG_WATCH_FLAG" &
    watcher=$!
  fi
  wait "$VG_QEMU_PID" || rc=$?
  VG_QEMU_PID=
  if [ -n "$watcher" ]; then
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
  fi
  return "$rc"
}

# Is PID running?  (A dead child stays a zombie until its parent waits for
# it, and kill -0 succeeds on zombies, so look at the process state.)
vg_alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# If the daemon dies while the guest runs, the guest's FUSE requests never
# complete and it would hang until the hard timeout: stop QEMU early instead
# and leave a note in FLAG.  The grace period lets a normal shutdown (QEMU
# exits first, then the daemon) finish without being mistaken for a crash.
vg_watch_daemon() { # QEMU_PID DAEMON_PID FLAG
  while vg_alive "$1"; do
    if ! vg_alive "$2"; then
      sleep 3
      if vg_alive "$1"; then
        echo "the daemon died while the guest was running" >"$3"
        kill -TERM "$1" 2>/dev/null || true
      fi
      return 0
    fi
    sleep 0.5
  done
}

# Choose the accelerator.  /dev/kvm may exist yet be unusable: some hosts
# only offer PVM, where a stock kernel hangs with no error at all.  So the
# only trustworthy test is to boot the real guest to its "VG-BOOTED" marker
# under a short timeout; otherwise fall back to TCG.  The answer is cached
# per host boot (boot_id) and guest kernel, and exported for child processes.
vg_accel() {
  case ${VG_ACCEL:-} in
    kvm | tcg) return 0 ;;
    "") ;;
    *) vg_die "VG_ACCEL must be kvm or tcg, not '$VG_ACCEL'" ;;
  esac
  local cache boot_id result=tcg c
  boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  cache=$VG_CACHE_DIR/accel-$(sed -n 's/^kernel_version=//p' "$VG_IMG/info")-$boot_id
  if [ -f "$cache" ]; then
    result=$(cat "$cache")
  else
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
      c=$VG_TMP/probe-console.log
      vg_log "probing KVM (boot with a ${VG_PROBE_TIMEOUT}s limit)"
      vg_make_initrd "$VG_TMP/probe.cpio" /dev/null
      if vg_qemu kvm "$c" /dev/null "$VG_PROBE_TIMEOUT" "$VG_TMP/probe.cpio" "vg.mode=probe" &&
        grep -q VG-BOOTED "$c" 2>/dev/null; then
        result=kvm
      else
        vg_log "KVM unusable here (hung or failed); using TCG"
      fi
      rm -f "$c" "$c.qemu" "$VG_TMP/probe.cpio"
    fi
    echo "$result" >"$cache.tmp.$$" && mv "$cache.tmp.$$" "$cache"
  fi
  export VG_ACCEL=$result
}

# Start the daemon on SOCK serving SHARED; extra arguments are daemon options.
vg_daemon_start() { # SOCK SHARED LOG [OPTS...]
  local sock=$1 shared=$2 dlog=$3
  shift 3
  [ -x "$VIRTIOFSD" ] || vg_die "daemon not executable: $VIRTIOFSD (set VIRTIOFSD=...)"
  rm -f "$sock"
  # shellcheck disable=SC2086  # option lists are meant to be word-split
  "$VIRTIOFSD" --socket-path="$sock" --shared-dir="$shared" \
    --cache="$VG_CACHE_MODE" --log-level="$VG_LOG_LEVEL" \
    $VIRTIOFSD_SANDBOX_OPTS $VIRTIOFSD_OPTS "$@" </dev/null >"$dlog" 2>&1 &
  VG_DAEMON_PID=$!
  # QEMU must find the socket listening when it starts: wait for it.
  for _ in $(seq 1 100); do
    [ -S "$sock" ] && return 0
    if ! kill -0 "$VG_DAEMON_PID" 2>/dev/null; then
      wait "$VG_DAEMON_PID" 2>/dev/null || true
      VG_DAEMON_PID=
      vg_log "daemon exited before creating its socket; its log:"
      sed 's/^/    /' "$dlog" >&2
      return 1
    fi
    sleep 0.1
  done
  vg_log "daemon did not create $sock within 10 s"
  vg_daemon_stop
  return 1
}

# Stop the daemon.  After the guest is gone a vhost-user daemon normally
# exits by itself (its only client disconnected); give it a moment, then
# TERM, then KILL.  Sets VG_DAEMON_END to how it ended, for the log.
# (Not meant for $(...): the daemon is a child of this shell, not of a
# subshell, so only this shell can wait for it.)
vg_daemon_stop() {
  local pid=$VG_DAEMON_PID rc=0
  [ -n "$pid" ] || return 0
  VG_DAEMON_PID=
  for _ in $(seq 1 30); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || rc=$?
      VG_DAEMON_END="exited:$rc"
      return 0
    fi
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" 2>/dev/null || rc=$?
      VG_DAEMON_END="terminated:$rc (still running 3 s after the guest left)"
      return 0
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  VG_DAEMON_END="killed (ignored SIGTERM)"
}

# The files of one boot: a new directory VG_BOOT_DIR (boot<N> in VG_TMP),
# empty VG_RESULTS and VG_CONSOLE in it, and VG_INITRD, the initramfs that
# runs SCRIPT with the guest variables (VG_CACHE_MODE, then the lines of
# VG_GUEST_ENV) in /guest/env.  Also resets the per-boot result variables
# and makes sure VG_ACCEL is chosen.
vg_boot_prepare() { # SCRIPT
  local script=$1 n envf
  VG_BOOT_N=$((VG_BOOT_N + 1))
  n=$VG_TMP/boot$VG_BOOT_N
  mkdir -p "$n"
  VG_BOOT_DIR=$n
  VG_RESULTS=$n/results.txt VG_CONSOLE=$n/console.log
  VG_GUEST_RC="" VG_QEMU_RC="" VG_BOOT_SECS=0
  : >"$VG_RESULTS"; : >"$VG_CONSOLE"
  vg_accel
  VG_INITRD=$n/initrd.cpio
  envf=$n/guest.env
  # variables for the guest script (sourced by /init before it runs)
  { echo "VG_CACHE_MODE='$VG_CACHE_MODE'"; echo "export VG_CACHE_MODE"; } >"$envf"
  [ -z "${VG_GUEST_ENV:-}" ] || printf '%s\n' "$VG_GUEST_ENV" >>"$envf"
  vg_make_initrd "$VG_INITRD" "$script" "$envf"
}

# One complete guest run.  Sets:
#   VG_RESULTS   file: the guest's results channel (script stdout + VG- lines)
#   VG_CONSOLE   file: serial console (kernel log, script stderr)
#   VG_DAEMON_LOG, VG_QEMU_RC, VG_GUEST_RC (script status, or empty if the
#   guest never reported one), VG_DAEMON_END (exited:N|terminated:N|killed),
#   VG_BOOT_SECS
# Returns 0 if the guest ran the script to the end (whatever its status).
# Extra arguments are extra daemon options.
vg_run_guest() { # SHARED SCRIPT [DAEMON OPTS...]
  local shared=$1 script=$2 accel n sock initrd t0 rc=0
  shift 2
  vg_boot_prepare "$script"
  n=$VG_BOOT_DIR
  VG_DAEMON_LOG=$n/daemon.log VG_DAEMON_END=""
  accel=$VG_ACCEL
  sock=$n/vhost.sock
  initrd=$VG_INITRD
  if ! vg_daemon_start "$sock" "$shared" "$VG_DAEMON_LOG" "$@"; then
    VG_QEMU_RC=-1 VG_DAEMON_END="did not start"
    return 1
  fi
  t0=$(date +%s%N)
  VG_DAEMON_DIED=""
  VG_WATCH_PID=$VG_DAEMON_PID VG_WATCH_FLAG=$n/daemon-died \
  vg_qemu "$accel" "$VG_CONSOLE" "$VG_RESULTS" "$VG_TIMEOUT" "$initrd" \
    "vg.mode=run vg.tag=$VG_TAG" \
    -object "memory-backend-memfd,id=mem,size=$VG_MEM,share=on" -numa node,memdev=mem \
    -chardev "socket,id=vfs,path=$sock" \
    -device "vhost-user-fs-pci,chardev=vfs,tag=$VG_TAG${VG_FS_DEVICE_OPTS:-}" || rc=$?
  VG_QEMU_RC=$rc
  [ ! -f "$n/daemon-died" ] || VG_DAEMON_DIED=$(cat "$n/daemon-died")
  VG_BOOT_SECS=$(( ($(date +%s%N) - t0) / 1000000 ))
  VG_BOOT_SECS=$((VG_BOOT_SECS / 1000)).$(printf %03d $((VG_BOOT_SECS % 1000)))
  vg_daemon_stop
  # the guest side used a raw tty, but strip CRs anyway in case it did not
  sed -i 's/\r$//' "$VG_RESULTS"
  VG_GUEST_RC=$(sed -n 's/^VG-END rc=\([0-9]*\)$/\1/p' "$VG_RESULTS" | tail -1)
  [ "${VG_VERBOSE:-0}" != 1 ] || { vg_log "console:"; sed 's/^/    /' "$VG_CONSOLE" >&2; }
  if [ -n "$VG_DAEMON_DIED" ]; then
    vg_log "$VG_DAEMON_DIED; stopped the guest"
  elif [ "$rc" = 124 ]; then
    vg_log "guest TIMED OUT after ${VG_TIMEOUT}s (accel=$accel); killed"
  elif [ "$rc" != 0 ]; then
    vg_log "qemu exited with status $rc:"; sed 's/^/    /' "$VG_CONSOLE.qemu" >&2
  fi
  [ -n "$VG_GUEST_RC" ]
}

# Print the end of the console and daemon logs (for failure reports).
vg_show_logs() { # [LINES]
  local lines=${1:-40}
  echo "---- guest console (last $lines lines): $VG_CONSOLE" >&2
  tail -n "$lines" "$VG_CONSOLE" 2>/dev/null | sed 's/^/    /' >&2 || true
  echo "---- daemon log (last $lines lines): $VG_DAEMON_LOG" >&2
  tail -n "$lines" "$VG_DAEMON_LOG" 2>/dev/null | sed 's/^/    /' >&2 || true
}

# ---- one daemon, many guests ---------------------------------------------------
# For tests that start the daemon once (vg_daemon_start) and boot guests
# against its socket one after another (test-reconnect.sh).

# Seconds (with milliseconds) since T0, a `date +%s%N` value.
vg_secs_since() { # T0
  local ms=$((($(date +%s%N) - $1) / 1000000))
  echo "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}

# Boot a guest in the background against the daemon listening on SOCK; the
# extra arguments are appended to the QEMU command line.  Files and guest
# variables as vg_boot_prepare; QEMU writes its own PID to
# $VG_BOOT_DIR/qemu.pid (VG_QEMU_PID is the `timeout` wrapper).  While
# VG_DAEMON_PID is set, QEMU is stopped early if the daemon dies.  With
# VG_QEMU_REBOOT=1 a reset reboots the guest (see vg_qemu_spawn).  Call it
# from the test's own shell, not from $(...): vg_boot_wait waits for QEMU.
vg_boot_start() { # SOCK SCRIPT [QEMU ARGS...]
  local sock=$1 script=$2
  shift 2
  vg_boot_prepare "$script"
  VG_DAEMON_DIED="" VG_BOOT_KILLED=0 VG_BOOT_T0=$(date +%s%N)
  vg_qemu_spawn "$VG_ACCEL" "$VG_CONSOLE" "$VG_RESULTS" "$VG_TIMEOUT" "$VG_INITRD" \
    "vg.mode=run vg.tag=$VG_TAG" -pidfile "$VG_BOOT_DIR/qemu.pid" \
    -object "memory-backend-memfd,id=mem,size=$VG_MEM,share=on" -numa node,memdev=mem \
    -chardev "socket,id=vfs,path=$sock" \
    -device "vhost-user-fs-pci,chardev=vfs,tag=$VG_TAG${VG_FS_DEVICE_OPTS:-}" "$@"
  VG_BOOT_WATCHER=
  if [ -n "$VG_DAEMON_PID" ]; then
    vg_watch_daemon "$VG_QEMU_PID" "$VG_DAEMON_PID" "$VG_BOOT_DIR/daemon-died" &
    VG_BOOT_WATCHER=$!
  fi
}

# QEMU's own PID for the running vg_boot_start guest (waits up to 10 s for
# its pidfile).
vg_boot_qemu_pid() {
  local f=$VG_BOOT_DIR/qemu.pid pid
  for _ in $(seq 1 100); do
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]]; then echo "$pid"; return 0; fi
    sleep 0.1
  done
  return 1
}

# kill -9 QEMU itself, as a crashing or OOM-killed VMM would end.
vg_boot_kill() {
  local pid
  pid=$(vg_boot_qemu_pid) || return 1
  VG_BOOT_KILLED=1
  kill -KILL "$pid"
}

# Wait for the vg_boot_start guest to end.  Sets VG_QEMU_RC (124: timed out;
# 137: killed), VG_GUEST_RC, VG_DAEMON_DIED and VG_BOOT_SECS as vg_run_guest
# does; returns 0 if the guest ran its script to the end.
vg_boot_wait() {
  local rc=0
  [ -n "$VG_QEMU_PID" ] || return 1
  if [ "$VG_BOOT_KILLED" = 1 ]; then
    wait "$VG_QEMU_PID" 2>/dev/null || rc=$?   # no "Killed" job notice
  else
    wait "$VG_QEMU_PID" || rc=$?
  fi
  VG_QEMU_PID=
  if [ -n "$VG_BOOT_WATCHER" ]; then
    kill "$VG_BOOT_WATCHER" 2>/dev/null || true
    wait "$VG_BOOT_WATCHER" 2>/dev/null || true
    VG_BOOT_WATCHER=
  fi
  VG_QEMU_RC=$rc
  [ ! -f "$VG_BOOT_DIR/daemon-died" ] || VG_DAEMON_DIED=$(cat "$VG_BOOT_DIR/daemon-died")
  VG_BOOT_SECS=$(vg_secs_since "$VG_BOOT_T0")
  sed -i 's/\r$//' "$VG_RESULTS"
  VG_GUEST_RC=$(sed -n 's/^VG-END rc=\([0-9]*\)$/\1/p' "$VG_RESULTS" | tail -1)
  [ "${VG_VERBOSE:-0}" != 1 ] || { vg_log "console:"; sed 's/^/    /' "$VG_CONSOLE" >&2; }
  if [ -n "$VG_DAEMON_DIED" ]; then
    vg_log "$VG_DAEMON_DIED; stopped the guest"
  elif [ "$rc" = 124 ]; then
    vg_log "guest TIMED OUT after ${VG_TIMEOUT}s (accel=$VG_ACCEL); killed"
  elif [ "$rc" != 0 ] && [ "$VG_BOOT_KILLED" != 1 ]; then
    vg_log "qemu exited with status $rc:"; sed 's/^/    /' "$VG_CONSOLE.qemu" >&2
  fi
  [ -n "$VG_GUEST_RC" ]
}

# Wait until a line of FILE matches the extended regex RE.  Gives up after
# TIMEOUT seconds, or as soon as process PID (if given) has ended.
vg_wait_line() { # FILE RE TIMEOUT [PID]
  local file=$1 re=$2 end=$(($(date +%s) + $3)) pid=${4:-}
  while :; do
    grep -qE "$re" "$file" 2>/dev/null && return 0
    if [ -n "$pid" ] && ! vg_alive "$pid"; then
      grep -qE "$re" "$file" 2>/dev/null
      return
    fi
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

# How many lines of FILE contain the fixed string STRING.
vg_count() { # FILE STRING
  grep -cF -- "$2" "$1" 2>/dev/null || true
}

# Wait until at least COUNT lines of FILE contain STRING (e.g. a daemon log
# message); TIMEOUT seconds.
vg_wait_count() { # FILE STRING COUNT TIMEOUT
  local end=$(($(date +%s) + $4))
  while [ "$(vg_count "$1" "$2")" -lt "$3" ]; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# The process that serves the daemon's sessions: with the namespace sandbox
# the PID that was started is a monitor and its only child serves; without
# it, the PID itself.
vg_serving_pid() { # DAEMON_PID
  local kids
  kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null) || return 1
  # shellcheck disable=SC2086  # the list of child PIDs
  set -- "$1" $kids
  echo "${2:-$1}"
}

# Number of open fds of PID; fails if /proc/PID/fd cannot be read.
vg_proc_fds() { # PID
  local list
  list=$(ls -U "/proc/$1/fd" 2>/dev/null) || return 1
  grep -c . <<<"$list" || true
}

# The open fds of PID with what they point at, one "fd -> target" a line.
vg_proc_fd_targets() { # PID
  local f
  for f in "/proc/$1/fd"/*; do
    echo "${f##*/} -> $(readlink "$f" 2>/dev/null || echo '?')"
  done | sort -n
}

# A numeric field of /proc/PID/status without its unit: VmRSS (kB), Threads...
vg_proc_status() { # PID FIELD
  awk -v f="$2:" '$1 == f { print $2; found = 1 } END { exit !found }' "/proc/$1/status" 2>/dev/null
}

# Send one command to the QMP server socket SOCK (QEMU's -qmp
# unix:SOCK,server=on,wait=off) and print its "return" value as JSON; fails
# with QEMU's error message.  ARGS-JSON: the command's "arguments" object.
vg_qmp() { # SOCK COMMAND [ARGS-JSON]
  local py=python3
  [ ! -x /usr/bin/python3 ] || py=/usr/bin/python3
  "$py" - "$@" <<'PY'
import json, socket, sys, time
path, command = sys.argv[1], sys.argv[2]
args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
deadline = time.time() + 10
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        break
    except OSError as e:
        s.close()
        if time.time() > deadline:
            sys.exit(f"qmp: cannot connect to {path}: {e}")
        time.sleep(0.2)
f = s.makefile("rw", encoding="utf-8")

def receive():
    while True:
        line = f.readline()
        if not line:
            sys.exit("qmp: QEMU closed the connection")
        msg = json.loads(line)
        if "event" not in msg:  # asynchronous events are not answers
            return msg

def execute(name, arguments=None):
    cmd = {"execute": name}
    if arguments is not None:
        cmd["arguments"] = arguments
    f.write(json.dumps(cmd) + "\n")
    f.flush()
    reply = receive()
    if "error" in reply:
        sys.exit(f"qmp: {name}: {reply['error'].get('desc', reply['error'])}")
    return reply.get("return")

if "QMP" not in receive():
    sys.exit("qmp: no greeting")
execute("qmp_capabilities")
print(json.dumps(execute(command, args)))
PY
}

# Stop the daemon with SIGTERM right away (vg_daemon_stop first gives it 3 s
# to leave by itself).  VG_DAEMON_END: terminated:STATUS, killed (...), or
# exited:STATUS if it had ended before the SIGTERM.
vg_daemon_term() {
  local pid=$VG_DAEMON_PID rc=0
  [ -n "$pid" ] || return 0
  VG_DAEMON_PID=
  if ! vg_alive "$pid"; then
    wait "$pid" 2>/dev/null || rc=$?
    VG_DAEMON_END="exited:$rc"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    if ! vg_alive "$pid"; then
      wait "$pid" 2>/dev/null || rc=$?
      VG_DAEMON_END="terminated:$rc"
      return 0
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  VG_DAEMON_END="killed (still running 5 s after SIGTERM)"
}

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

# Run QEMU in the foreground under a hard timeout.  Returns QEMU's status,
# 124 on timeout.  Extra arguments are appended to the QEMU command line.
#   vg_qemu ACCEL CONSOLE RESULTS TIMEOUT INITRD CMDLINE [QEMU ARGS...]
vg_qemu() {
  local accel=$1 console=$2 results=$3 tmo=$4 initrd=$5 cmdline=$6 rc=0
  shift 6
  # -nodefaults: no NIC (no iPXE ROM scan), no VGA: faster firmware stage.
  # Two UARTs: ttyS0 = console (kernel noise), ttyS1 = clean results channel.
  timeout -k 5 "$tmo" "$VG_QEMU" -nodefaults -no-user-config -nographic -no-reboot \
    -accel "$accel" -m "$VG_MEM" -smp "$VG_SMP" \
    -kernel "$VG_IMG/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 $cmdline" \
    -serial "file:$console" -serial "file:$results" \
    "$@" </dev/null >>"$console.qemu" 2>&1 &
  VG_QEMU_PID=$!
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

# One complete guest run.  Sets:
#   VG_RESULTS   file: the guest's results channel (script stdout + VG- lines)
#   VG_CONSOLE   file: serial console (kernel log, script stderr)
#   VG_DAEMON_LOG, VG_QEMU_RC, VG_GUEST_RC (script status, or empty if the
#   guest never reported one), VG_DAEMON_END (exited:N|terminated:N|killed),
#   VG_BOOT_SECS
# Returns 0 if the guest ran the script to the end (whatever its status).
# Extra arguments are extra daemon options.
vg_run_guest() { # SHARED SCRIPT [DAEMON OPTS...]
  local shared=$1 script=$2 accel n sock initrd t0 rc=0 envf
  shift 2
  VG_BOOT_N=$((VG_BOOT_N + 1))
  n=$VG_TMP/boot$VG_BOOT_N
  mkdir -p "$n"
  VG_RESULTS=$n/results.txt VG_CONSOLE=$n/console.log VG_DAEMON_LOG=$n/daemon.log
  VG_GUEST_RC="" VG_QEMU_RC="" VG_DAEMON_END="" VG_BOOT_SECS=0
  : >"$VG_RESULTS"; : >"$VG_CONSOLE"
  vg_accel
  accel=$VG_ACCEL
  sock=$n/vhost.sock
  initrd=$n/initrd.cpio
  envf=$n/guest.env
  # variables for the guest script (sourced by /init before it runs)
  { echo "VG_CACHE_MODE='$VG_CACHE_MODE'"; echo "export VG_CACHE_MODE"; } >"$envf"
  [ -z "${VG_GUEST_ENV:-}" ] || printf '%s\n' "$VG_GUEST_ENV" >>"$envf"
  vg_make_initrd "$initrd" "$script" "$envf"
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
    -device "vhost-user-fs-pci,chardev=vfs,tag=$VG_TAG" || rc=$?
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

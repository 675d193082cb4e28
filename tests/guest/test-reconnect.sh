#!/usr/bin/env bash
# The daemon outlives its VMM: real-guest tests of reconnecting (for `make check`).
#
# Each part starts ONE daemon (its default lockdown: namespace sandbox, seccomp
# and dropped capabilities, unless VIRTIOFSD_SANDBOX_OPTS says otherwise) on a
# fresh share and uses it for several guests:
#
#   reboots  VG_REBOOTS (20) QEMUs one after another.  Boot i checks the files
#            of boots 1..i-1, writes boot-i.txt, syncs and powers off; the host
#            checks the file.  The daemon keeps its PID (and its serving
#            process, the sandbox monitor's child, keeps its own); once idle
#            after each boot, the serving process has as many fds and threads
#            as after the first boot, and its RSS grows by at most
#            VG_RSS_BOUND_KB (2048) kB from the first boot to the last.
#   resets   One QEMU, guest resets by QMP system_reset, VG_RESETS (5) times.
#            Every boot of that guest does one step: it counts the reset-N.txt
#            files to know which, checks them, writes the next and waits for
#            the reset (the last one powers off).  The vhost-user connection
#            must stay up and the daemon must reset its FUSE state on each new
#            FUSE INIT; afterwards a new QEMU must work as well.
#   kill     A guest that is killed hard (kill -9 of QEMU while it reads and
#            appends through the share), then a new QEMU against the same
#            daemon: the daemon must notice, reset, and serve the new guest;
#            the half-written file holds nothing but what the guest wrote.
#
# Usage: test-reconnect.sh [--only=reboots,resets,kill] [--keep] [--verbose]
# Environment: VG_REBOOTS, VG_RESETS, VG_RSS_BOUND_KB, and those of lib.sh
# (VIRTIOFSD, VIRTIOFSD_OPTS, VIRTIOFSD_SANDBOX_OPTS, VG_LOG_LEVEL,
# VG_ACCEL, VG_KEEP ...).  VG_TIMEOUT, the limit of one boot, is 90 s here
# (a boot takes ~5 s under TCG; a daemon that stops answering costs one
# limit, not twenty).  The checks read the daemon's info-level log lines, so
# VG_LOG_LEVEL may be info or debug (default: debug, so that a boot that
# hangs shows which vhost-user message was the last, ~40 lines a boot).
#
# Output: one line per check, "PASS: reconnect/<name>", "FAIL:
# reconnect/<name>: <reason>" or "SKIP: ...", then "test-reconnect: N passed,
# N failed, N skipped"; the exit status is non-zero if anything failed.  On a
# failure the ends of the daemon log and guest console go to stderr and the
# temp dir with all logs is kept.
# shellcheck disable=SC2016  # the guest scripts are single-quoted on purpose
set -euo pipefail
VG_TIMEOUT=${VG_TIMEOUT:-90}
VG_LOG_LEVEL=${VG_LOG_LEVEL:-debug}
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parts=reboots,resets,kill
while [ $# -gt 0 ]; do
  case $1 in
    --only=*) parts=${1#*=} ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vg_die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
REBOOTS=${VG_REBOOTS:-20}
RESETS=${VG_RESETS:-5}
RSS_BOUND_KB=${VG_RSS_BOUND_KB:-2048}
[[ $REBOOTS =~ ^[1-9][0-9]*$ ]] || vg_die "VG_REBOOTS must be a positive number"
[[ $RESETS =~ ^[1-9][0-9]*$ ]] || vg_die "VG_RESETS must be a positive number"
case $VG_LOG_LEVEL in
  info | debug) ;;
  *) vg_log "VG_LOG_LEVEL=$VG_LOG_LEVEL hides the lines these checks read; using info"
     VG_LOG_LEVEL=info ;;
esac

T_START=$(date +%s)
vg_setup
NPASS=0 NFAIL=0 NSKIP=0

r_pass() { echo "PASS: reconnect/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: reconnect/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: reconnect/$1: $2"; NSKIP=$((NSKIP + 1)); }
r_check() { # NAME REASON: pass if REASON is empty
  if [ -z "$2" ]; then r_pass "$1"; else r_fail "$1" "$2"; fi
}
add() { # VAR TEXT: append TEXT to the reason in VAR, "; "-separated
  local -n _v=$1
  [ -z "$2" ] || _v=${_v:+$_v; }$2
}

# ---- test files ----------------------------------------------------------------
# The content of test file NAME.  The guest makes it with the same commands
# (busybox), so host and guest agree byte for byte; ~6 KiB, more than a page.
gen() { echo "virtio-fs reconnect test file $1"; seq 1 200 | sed "s/^/$1 line /"; }
host_file_ok() { # SHARE NAME: empty if right, else why
  if [ ! -f "$1/$2" ]; then echo "host: $2 is missing"
  elif ! gen "$2" | cmp -s - "$1/$2"; then echo "host: $2 has the wrong content"
  fi
}

# The guest half: this prelude and one part's body make a busybox sh script.
GUEST_PRELUDE=$(cat <<'EOF'
M=$VG_MNT
NFAIL=0
fail() { echo "FAIL: $1: $2"; NFAIL=$((NFAIL + 1)); }
gen() { echo "virtio-fs reconnect test file $1"; seq 1 200 | sed "s/^/$1 line /"; }
md5() { md5sum | cut -d' ' -f1; }
check_file() { # STEP NAME: $M/NAME holds gen NAME
  if [ ! -f "$M/$2" ]; then fail "$1" "$2 is missing"; return; fi
  [ "$(md5 <"$M/$2")" = "$(gen "$2" | md5)" ] || fail "$1" "$2 has the wrong content"
}
write_file() { # STEP NAME: write gen NAME, read it back
  gen "$2" >"$M/$2" || { fail "$1" "writing $2 failed"; return; }
  check_file "$1" "$2"
}
EOF
)
guest_script() { # NAME BODY: writes $VG_TMP/NAME.sh, prints its path
  printf '%s\n%s\n' "$GUEST_PRELUDE" "$2" >"$VG_TMP/$1.sh"
  echo "$VG_TMP/$1.sh"
}

# Why the guest's step STEP failed (its FAIL lines), or why the boot did not
# get to report; empty if all is well.  For guests that end by themselves.
guest_problems() { # STEP
  local why=""
  if [ -n "$VG_DAEMON_DIED" ]; then
    add why "$VG_DAEMON_DIED"
  elif [ "$VG_QEMU_RC" = 124 ]; then
    add why "the guest timed out after ${VG_TIMEOUT}s"
  elif grep -q '^VG-MOUNT failed' "$VG_RESULTS"; then
    add why "mount -t virtiofs failed in the guest"
  elif [ -z "$VG_GUEST_RC" ]; then
    add why "the guest did not finish (qemu status $VG_QEMU_RC)"
  fi
  add why "$(step_failures "$1")"
  if [ -z "$why" ] && [ -n "$VG_GUEST_RC" ] && [ "$VG_GUEST_RC" != 0 ]; then
    add why "the guest script exited with status $VG_GUEST_RC"
  fi
  if [ "$VG_GUEST_RC" = 0 ] && ! grep -q '^VG-UMOUNT ok' "$VG_RESULTS"; then
    add why "umount failed in the guest"
  fi
  echo "$why"
}
step_failures() { # STEP: the guest's FAIL lines of STEP, joined
  grep "^FAIL: $1: " "$VG_RESULTS" 2>/dev/null | sed "s/^FAIL: $1: /guest: /" | paste -sd';' - || true
}

# ---- the daemon --------------------------------------------------------------------
# One daemon per part; DLOG, SOCK, DPID (the PID started), SPID (its serving
# process) describe it.
daemon_start() { # PART SHARE
  DLOG=$VG_TMP/$1-daemon.log SOCK=$VG_TMP/$1.sock
  VG_DAEMON_LOG=$DLOG
  if ! vg_daemon_start "$SOCK" "$2" "$DLOG"; then
    r_fail "$1/daemon-start" "the daemon did not start: $(tail -3 "$DLOG" | paste -sd' ' -)"
    return 1
  fi
  DPID=$VG_DAEMON_PID
  # the socket exists before the sandbox forks the serving process, which
  # logs "serving ..." when it is ready
  vg_wait_count "$DLOG" " virtiofsd] serving " 1 10 ||
    vg_log "$1: no 'serving' line in the daemon log after 10 s"
  SPID=$(vg_serving_pid "$DPID") || SPID=$DPID
  vg_log "$1: daemon PID $DPID, serving PID $SPID ($([ "$SPID" = "$DPID" ] && echo 'no sandbox child' || echo 'sandbox monitor + child')), log $DLOG"
}
# Empty if the daemon and its serving process are the ones started, else why.
daemon_same() {
  if ! vg_alive "$DPID"; then
    echo "the daemon (PID $DPID) is gone; its last log line: $(tail -1 "$DLOG" | sed 's/^\[[^]]*\] //')"
    return
  fi
  local s
  s=$(vg_serving_pid "$DPID" || echo none)
  [ "$s" = "$SPID" ] || echo "the serving process is now PID $s, was $SPID"
}
# Wait for the daemon to finish its Nth session (log line), so it is idle.
daemon_idle() { # N
  vg_wait_count "$DLOG" "session state reset; waiting for the next front-end" "$1" 15
}
# Snapshot of the idle serving process: IDLE_FDS, IDLE_THREADS, IDLE_RSS and
# its fd list in FILE.
idle_snapshot() { # FILE
  IDLE_FDS=$(vg_proc_fds "$SPID" || echo "?")
  IDLE_THREADS=$(vg_proc_status "$SPID" Threads || echo "?")
  IDLE_RSS=$(vg_proc_status "$SPID" VmRSS || echo "?")
  vg_proc_fd_targets "$SPID" >"$1" 2>/dev/null || true
}
fd_diff() { # BASE-FILE NOW-FILE: the fds that differ, on one line
  diff "$1" "$2" | sed -n 's/^\([<>]\) /\1/p' | sed 's/^</gone: /; s/^>/new: /' | paste -sd',' - || true
}
# Log lines of the given levels (an ERE, default error|warn), counted and
# joined; empty if none.
log_problems() { # [LEVELS]
  grep -E "^\\[[^]]* (${1:-error|warn}) virtiofsd\\]" "$DLOG" | sed 's/^\[[^]]*\] //' | sort | uniq -c |
    sed 's/^ *//' | head -5 | paste -sd';' - || true
}
daemon_stop_check() { # PART
  local why=""
  vg_daemon_term
  case $VG_DAEMON_END in
    terminated:0) ;;
    exited:*) add why "it had already exited (status ${VG_DAEMON_END#exited:})" ;;
    *) add why "on SIGTERM: $VG_DAEMON_END" ;;
  esac
  [ ! -e "$SOCK" ] || add why "the socket $SOCK is still there"
  r_check "$1/daemon-stops-cleanly" "$why"
}
# After a part with failures: the evidence.
part_end() { # PART NFAIL-BEFORE
  if [ "$NFAIL" != "$2" ]; then
    vg_show_logs 60
  fi
  vg_log "$1: done after $(($(date +%s) - PART_T0))s"
}

# ---- part 1: reboots ------------------------------------------------------------------
skip_rest() { # I REASON: skip the boots after boot I
  local name
  name=reboots/boot-$(printf %02d $(($1 + 1)))
  [ $(($1 + 1)) -ge "$REBOOTS" ] || name=$name..$(printf %02d "$REBOOTS")
  [ "$1" -ge "$REBOOTS" ] || r_skip "$name" "$2"
}
part_reboots() {
  local S=$VG_TMP/share-reboots i step why same nf=$NFAIL gs
  local -a fds=() thr=() rss=() secs=()
  local base_fds=$VG_TMP/reboots-fds-1.txt fds_why="" thr_why="" pid_why=""
  PART_T0=$(date +%s)
  mkdir -p "$S"; chmod 0755 "$S"
  daemon_start reboots "$S" || return 0
  gs=$(guest_script reboots 'i=$VG_I
j=1
while [ "$j" -lt "$i" ]; do check_file "boot-$i" "boot-$j.txt"; j=$((j + 1)); done
n=$(ls "$M" | grep -c "^boot-[0-9]*\.txt$")
[ "$n" -eq $((i - 1)) ] || fail "boot-$i" "$n boot-*.txt files in the share, want $((i - 1))"
write_file "boot-$i" "boot-$i.txt"
sync
echo "STEP-DONE boot-$i"
[ "$NFAIL" -eq 0 ]')
  vg_log "reboots: $REBOOTS boots against one daemon (accel=$VG_ACCEL)"
  for i in $(seq 1 "$REBOOTS"); do
    step=boot-$(printf %02d "$i")
    VG_GUEST_ENV="VG_I=$i; export VG_I"
    vg_boot_start "$SOCK" "$gs"
    vg_boot_wait || true
    secs+=("$VG_BOOT_SECS")
    why=$(guest_problems "boot-$i")
    add why "$(host_file_ok "$S" "boot-$i.txt")"
    if [ "$(vg_count "$DLOG" "front-end connected")" -lt "$i" ]; then
      add why "the daemon did not accept connection $i (it logged 'front-end connected' $(vg_count "$DLOG" "front-end connected") times)"
    elif ! daemon_idle "$i"; then
      add why "the daemon did not log the end of session $i within 15 s"
    fi
    same=$(daemon_same)
    if [ -n "$same" ]; then
      add why "$same"
      r_fail "reboots/$step" "$why"
      add pid_why "after boot $i: $same"
      skip_rest "$i" "the daemon is gone"
      break
    fi
    idle_snapshot "$VG_TMP/reboots-fds-$i.txt"
    fds+=("$IDLE_FDS") thr+=("$IDLE_THREADS") rss+=("$IDLE_RSS")
    if [ "$i" -gt 1 ] && [ "$IDLE_FDS" != "${fds[0]}" ]; then
      add fds_why "after boot $i: $IDLE_FDS fds ($(fd_diff "$base_fds" "$VG_TMP/reboots-fds-$i.txt"))"
    fi
    if [ "$i" -gt 1 ] && [ "$IDLE_THREADS" != "${thr[0]}" ]; then
      add thr_why "after boot $i: $IDLE_THREADS threads"
    fi
    r_check "reboots/$step" "$why"
    if [ -z "$VG_GUEST_RC" ]; then
      # the next boots would only fail (or time out) the same way
      skip_rest "$i" "boot $i did not complete"
      break
    fi
  done
  vg_log "reboots: boot seconds: ${secs[*]}"
  vg_log "reboots: idle fds: ${fds[*]}; threads: ${thr[*]}; VmRSS kB: ${rss[*]}"

  r_check reboots/daemon-pid-unchanged "$pid_why"
  if [ ${#fds[@]} -lt 2 ]; then
    r_skip reboots/idle-fds-stable "fewer than 2 boots measured"
    r_skip reboots/idle-threads-stable "fewer than 2 boots measured"
    r_skip reboots/rss-growth-bounded "fewer than 2 boots measured"
  else
    r_check reboots/idle-fds-stable "${fds_why:+baseline ${fds[0]} fds after boot 1; }$fds_why"
    r_check reboots/idle-threads-stable "${thr_why:+baseline ${thr[0]} threads after boot 1; }$thr_why"
    local first=${rss[0]} last=${rss[${#rss[@]} - 1]}
    if ! [[ $first =~ ^[0-9]+$ && $last =~ ^[0-9]+$ ]]; then
      r_fail reboots/rss-growth-bounded "VmRSS unreadable ($first, $last)"
    elif [ $((last - first)) -le "$RSS_BOUND_KB" ]; then
      r_pass reboots/rss-growth-bounded
    else
      r_fail reboots/rss-growth-bounded "VmRSS $first kB after boot 1, $last kB after boot ${#rss[@]}: +$((last - first)) kB > $RSS_BOUND_KB kB"
    fi
  fi
  # every boot: one connection, one FUSE session, one reset at its end
  local n=${#secs[@]} c
  why=""
  for c in "front-end connected" "front-end disconnected" "fuse: session initialized" \
    "session state reset; waiting for the next front-end"; do
    [ "$(vg_count "$DLOG" "$c")" = "$n" ] || add why "'$c' $(vg_count "$DLOG" "$c") times, want $n"
  done
  for c in "INIT on an initialized session" "refusing a second front-end"; do
    [ "$(vg_count "$DLOG" "$c")" = 0 ] || add why "'$c' $(vg_count "$DLOG" "$c") times"
  done
  r_check reboots/one-session-per-boot "$why"
  r_check reboots/no-errors-logged "$(log_problems)"
  daemon_stop_check reboots
  part_end reboots "$nf"
}

# ---- part 2: QMP system_reset ----------------------------------------------------------
part_resets() {
  local S=$VG_TMP/share-resets n why gs qmp=$VG_TMP/qmp.sock nf=$NFAIL out stale stale_why=""
  local -a ready_fds=()
  PART_T0=$(date +%s)
  mkdir -p "$S"; chmod 0755 "$S"
  daemon_start resets "$S" || return 0
  # One step per boot; it waits at READY, the share mounted and scratch-N
  # open, for the host to press reset: the daemon sees no RELEASE, FORGET,
  # DESTROY or umount.  The next step deletes scratch-N, so an fd the daemon
  # still has on it after the new FUSE INIT is state of a guest that is gone.
  gs=$(guest_script resets 'k=0
while [ -e "$M/reset-$((k + 1)).txt" ]; do k=$((k + 1)); done
n=$((k + 1))
j=1
while [ "$j" -le "$k" ]; do check_file "reset-$n" "reset-$j.txt"; j=$((j + 1)); done
j=1
while [ "$j" -lt "$n" ]; do rm -f "$M/scratch-$j"; j=$((j + 1)); done
write_file "reset-$n" "reset-$n.txt"
exec 7>"$M/scratch-$n" && echo "open until the reset" >&7 || fail "reset-$n" "cannot create scratch-$n"
sync
if [ "$n" -le "$VG_RESETS" ]; then
  echo "READY $n"
  while :; do sleep 1; done
fi
echo "LAST $n"
[ "$NFAIL" -eq 0 ]')
  vg_log "resets: one QEMU, $RESETS QMP system_reset (accel=$VG_ACCEL)"
  VG_GUEST_ENV="VG_RESETS=$RESETS; export VG_RESETS"
  # the limit of one boot applies to each step; QEMU's own limit covers all
  VG_QEMU_REBOOT=1 VG_TIMEOUT=$((VG_TIMEOUT * (RESETS + 1))) \
    vg_boot_start "$SOCK" "$gs" -qmp "unix:$qmp,server=on,wait=off"
  local t0=$VG_BOOT_T0 tn
  for n in $(seq 1 "$RESETS"); do
    tn=$(date +%s%N)
    if ! vg_wait_line "$VG_RESULTS" "^READY ${n}[[:space:]]*\$" "$VG_TIMEOUT" "$VG_QEMU_PID"; then
      why="the guest did not reach step $n within ${VG_TIMEOUT}s"
      [ -z "$(daemon_same)" ] || add why "$(daemon_same)"
      add why "$(step_failures "reset-$n")"
      r_fail "resets/step-$n" "$why"
      vg_boot_kill 2>/dev/null || true
      break
    fi
    why=$(step_failures "reset-$n")
    add why "$(host_file_ok "$S" "reset-$n.txt")"
    ready_fds+=("$(vg_proc_fds "$SPID" || echo '?')")
    stale=$(vg_proc_fd_targets "$SPID" | awk -v n="$n" '
      match($0, /\/scratch-[0-9]+/) && substr($0, RSTART + 9, RLENGTH - 9) + 0 < n { print $3, $4 }' | paste -sd',' -)
    [ -z "$stale" ] || add stale_why "at step $n: $stale"
    if ! out=$(vg_qmp "$qmp" system_reset 2>&1); then
      add why "QMP system_reset failed: $out"
      r_fail "resets/step-$n" "$why"
      vg_boot_kill 2>/dev/null || true
      break
    fi
    r_check "resets/step-$n" "$why"
    vg_log "resets: step $n took $(vg_secs_since "$tn")s"
  done
  vg_boot_wait || true
  n=$((RESETS + 1))
  if grep -qE "^LAST ${n}[[:space:]]*\$" "$VG_RESULTS"; then
    why=$(guest_problems "reset-$n")
    add why "$(host_file_ok "$S" "reset-$n.txt")"
    r_check "resets/step-$n-and-poweroff" "$why"
  else
    r_fail "resets/step-$n-and-poweroff" "the guest did not reach the last step (qemu status $VG_QEMU_RC${VG_DAEMON_DIED:+, $VG_DAEMON_DIED})"
  fi
  vg_log "resets: QEMU ran $(vg_secs_since "$t0")s; fds at each READY: ${ready_fds[*]}"
  daemon_idle 1 || true

  # What QEMU does on system_reset: the vhost-user connection stays up; the
  # device is stopped (GET_VRING_BASE) and started again, and the rebooted
  # guest driver sends FUSE INIT again, on which the daemon drops the FUSE
  # state of the guest that is gone.
  why=""
  [ "$(vg_count "$DLOG" "front-end connected")" = 1 ] ||
    add why "'front-end connected' $(vg_count "$DLOG" "front-end connected") times, want 1"
  [ "$(vg_count "$DLOG" "front-end disconnected")" = 1 ] ||
    add why "'front-end disconnected' $(vg_count "$DLOG" "front-end disconnected") times, want 1 (when QEMU exited)"
  [ "$(vg_count "$DLOG" "refusing a second front-end")" = 0 ] || add why "a connection was refused"
  r_check resets/one-connection-throughout "$why"
  why=""
  local inits resets_logged
  inits=$(vg_count "$DLOG" "fuse: session initialized")
  resets_logged=$(vg_count "$DLOG" "fuse: INIT on an initialized session; resetting FUSE state")
  [ "$inits" = $((RESETS + 1)) ] || add why "$inits FUSE INITs, want $((RESETS + 1))"
  [ "$resets_logged" = "$RESETS" ] || add why "$resets_logged FUSE state resets on INIT, want $RESETS"
  r_check resets/fuse-state-reset-on-each-init "$why"
  # fds on the scratch files of the guests before the last reset
  if [ ${#ready_fds[@]} -ge 2 ]; then
    r_check resets/no-stale-handles-after-reset "${stale_why:+the daemon still has deleted files of reset guests open: }$stale_why"
  else
    r_skip resets/no-stale-handles-after-reset "fewer than 2 steps reached"
  fi
  why=$(daemon_same)
  r_check resets/daemon-alive "$why"
  if [ -n "$why" ]; then
    r_skip resets/new-guest-after-resets "the daemon is gone"
    part_end resets "$nf"
    return 0
  fi
  idle_snapshot "$VG_TMP/resets-fds-1.txt"
  local fds1=$IDLE_FDS thr1=$IDLE_THREADS

  # and a new QEMU on the same daemon afterwards
  gs=$(guest_script resets-after 'j=1
while [ "$j" -le "$VG_RESETS" ]; do check_file after "reset-$j.txt"; j=$((j + 1)); done
check_file after "reset-$((VG_RESETS + 1)).txt"
write_file after after-resets.txt
sync
echo "STEP-DONE after"
[ "$NFAIL" -eq 0 ]')
  vg_boot_start "$SOCK" "$gs"
  vg_boot_wait || true
  why=$(guest_problems after)
  add why "$(host_file_ok "$S" after-resets.txt)"
  daemon_idle 2 || add why "the daemon did not log the end of the session"
  add why "$(daemon_same)"
  r_check resets/new-guest-after-resets "$why"
  if [ -z "$(daemon_same)" ]; then
    idle_snapshot "$VG_TMP/resets-fds-2.txt"
    why=""
    [ "$IDLE_FDS" = "$fds1" ] ||
      add why "$fds1 fds idle after the reset QEMU, $IDLE_FDS after the next ($(fd_diff "$VG_TMP/resets-fds-1.txt" "$VG_TMP/resets-fds-2.txt"))"
    [ "$IDLE_THREADS" = "$thr1" ] || add why "$thr1 threads idle after the reset QEMU, $IDLE_THREADS after the next"
    r_check resets/idle-fds-stable "$why"
  fi
  r_check resets/no-errors-logged "$(log_problems)"
  daemon_stop_check resets
  part_end resets "$nf"
}

# ---- part 3: kill -9 mid-I/O -------------------------------------------------------------
part_kill() {
  local S=$VG_TMP/share-kill why gs nf=$NFAIL src_md5 s1 s2 size
  PART_T0=$(date +%s)
  mkdir -p "$S"; chmod 0755 "$S"
  head -c 1M /dev/urandom >"$S/src.bin"
  src_md5=$(md5sum <"$S/src.bin" | cut -d' ' -f1)
  daemon_start kill "$S" || return 0
  VG_GUEST_ENV="VG_SRC_MD5=$src_md5; export VG_SRC_MD5"

  # 1. a clean boot: the baseline
  gs=$(guest_script kill-before '[ "$(md5 <"$M/src.bin")" = "$VG_SRC_MD5" ] || fail before "src.bin reads back wrong"
write_file before kill-before.txt
sync
echo "STEP-DONE before"
[ "$NFAIL" -eq 0 ]')
  vg_boot_start "$SOCK" "$gs"
  vg_boot_wait || true
  why=$(guest_problems before)
  add why "$(host_file_ok "$S" kill-before.txt)"
  daemon_idle 1 || add why "the daemon did not log the end of session 1"
  add why "$(daemon_same)"
  r_check kill/guest-before "$why"
  if [ -n "$(daemon_same)" ]; then part_end kill "$nf"; return 0; fi
  idle_snapshot "$VG_TMP/kill-fds-1.txt"
  local fds1=$IDLE_FDS thr1=$IDLE_THREADS

  # 2. a guest killed while a reader (O_DIRECT: every read reaches the daemon)
  # and an appending writer are busy
  gs=$(guest_script kill-during '( while :; do
  dd if="$M/src.bin" of=/dev/null bs=128k iflag=direct 2>/dev/null || cat "$M/src.bin" >/dev/null
done ) &
( while :; do cat "$M/src.bin"; done >>"$M/big.bin" ) &
echo "IO-STARTED"
while :; do sleep 1; done')
  vg_boot_start "$SOCK" "$gs"
  why=""
  if ! vg_wait_line "$VG_RESULTS" '^IO-STARTED' "$VG_TIMEOUT" "$VG_QEMU_PID"; then
    add why "the guest did not start its I/O"
  else
    # until 8 MiB are written, then make sure the writer is still going
    local end=$(($(date +%s) + 60))
    while size=$(stat -c %s "$S/big.bin" 2>/dev/null || echo 0); [ "$size" -lt 8388608 ]; do
      if [ "$(date +%s)" -ge "$end" ] || ! vg_alive "$VG_QEMU_PID"; then break; fi
      sleep 0.2
    done
    # a loaded host can stall a TCG guest for a while: the writer is alive if the file
    # grows within 10 s
    s1=$(stat -c %s "$S/big.bin" 2>/dev/null || echo 0)
    s2=$s1
    for _ in $(seq 1 100); do
      sleep 0.1
      s2=$(stat -c %s "$S/big.bin" 2>/dev/null || echo 0)
      [ "$s2" -le "$s1" ] || break
    done
    [ "$s1" -ge 8388608 ] || add why "only $s1 bytes written after 60 s"
    [ "$s2" -gt "$s1" ] || add why "the writer was not writing (big.bin stayed at $s1 bytes for 10 s)"
  fi
  if vg_alive "$VG_QEMU_PID"; then
    vg_boot_kill || add why "could not find QEMU's PID"
  else
    add why "QEMU was not running any more"
  fi
  vg_boot_wait || true
  [ "$VG_QEMU_RC" = 137 ] || add why "QEMU ended with status $VG_QEMU_RC, not by SIGKILL (137)"
  r_check kill/qemu-killed-mid-io "$why"

  why=""
  daemon_idle 2 || add why "no 'session state reset' in the log 15 s after the kill"
  # Only now: the daemon may still serve requests the guest queued before it was killed,
  # until it has noticed the hang-up and stopped the queues.
  size=$(stat -c %s "$S/big.bin" 2>/dev/null || echo 0)
  vg_log "kill: QEMU killed with big.bin at $s2..$size bytes"
  [ "$(vg_count "$DLOG" "front-end disconnected")" = 2 ] ||
    add why "'front-end disconnected' $(vg_count "$DLOG" "front-end disconnected") times, want 2"
  r_check kill/session-ended-after-kill "$why"
  why=$(daemon_same)
  r_check kill/daemon-survived "$why"
  if [ -n "$why" ]; then
    r_skip kill/guest-after "the daemon is gone"
    part_end kill "$nf"
    return 0
  fi

  # what reached the host is whole copies of src.bin, then a prefix of one
  why=""
  local k full=$((size / 1048576)) rest=$((size % 1048576))
  for ((k = 0; k < full; k++)); do
    cmp -s -n 1048576 "$S/src.bin" "$S/big.bin" 0 $((k * 1048576)) || { add why "MiB $k of big.bin is not src.bin"; break; }
  done
  if [ -z "$why" ] && [ "$rest" -gt 0 ]; then
    cmp -s -n "$rest" "$S/src.bin" "$S/big.bin" 0 $((full * 1048576)) ||
      add why "the last $rest bytes of big.bin are not the start of src.bin"
  fi
  [ "$size" -gt 0 ] || add why "big.bin is empty"
  r_check kill/partial-file-is-what-the-guest-wrote "$why"

  # 3. a new QEMU against the same daemon
  VG_GUEST_ENV="VG_SRC_MD5=$src_md5; VG_BIG_SIZE=$size; export VG_SRC_MD5 VG_BIG_SIZE"
  gs=$(guest_script kill-after 'check_file after kill-before.txt
[ "$(md5 <"$M/src.bin")" = "$VG_SRC_MD5" ] || fail after "src.bin reads back wrong"
sz=$(stat -c %s "$M/big.bin" 2>/dev/null)
[ "$sz" = "$VG_BIG_SIZE" ] || fail after "big.bin has ${sz:-no} size, the host says $VG_BIG_SIZE"
rm "$M/big.bin" || fail after "rm big.bin failed"
write_file after kill-after.txt
sync
echo "STEP-DONE after"
[ "$NFAIL" -eq 0 ]')
  vg_boot_start "$SOCK" "$gs"
  vg_boot_wait || true
  why=$(guest_problems after)
  add why "$(host_file_ok "$S" kill-after.txt)"
  [ ! -e "$S/big.bin" ] || add why "host: big.bin is still there"
  daemon_idle 3 || add why "the daemon did not log the end of session 3"
  add why "$(daemon_same)"
  r_check kill/guest-after "$why"
  if [ -z "$(daemon_same)" ]; then
    idle_snapshot "$VG_TMP/kill-fds-3.txt"
    why=""
    [ "$IDLE_FDS" = "$fds1" ] ||
      add why "$fds1 fds idle before the kill, $IDLE_FDS after ($(fd_diff "$VG_TMP/kill-fds-1.txt" "$VG_TMP/kill-fds-3.txt"))"
    [ "$IDLE_THREADS" = "$thr1" ] || add why "$thr1 threads idle before the kill, $IDLE_THREADS after"
    r_check kill/idle-fds-stable "$why"
  fi
  # the front-end vanished mid-request: a warning may be fair, an error not
  r_check kill/no-errors-logged "$(log_problems error)"
  daemon_stop_check kill
  part_end kill "$nf"
}

IFS=', ' read -r -a part_list <<<"$parts"
vg_accel
vg_log "daemon: $VIRTIOFSD ${VIRTIOFSD_SANDBOX_OPTS:-(default lockdown)} ${VIRTIOFSD_OPTS}; accel=$VG_ACCEL"
for p in "${part_list[@]}"; do
  case $p in
    reboots) part_reboots ;;
    resets) part_resets ;;
    kill) part_kill ;;
    "") ;;
    *) vg_die "unknown part '$p' (reboots, resets, kill)" ;;
  esac
done

vg_log "total $(($(date +%s) - T_START))s"
[ "$NFAIL" = 0 ] || VG_KEEP=1
echo "test-reconnect: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

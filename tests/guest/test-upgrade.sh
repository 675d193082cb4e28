#!/usr/bin/env bash
# Planned upgrades under a real guest: the daemon is replaced VG_UPGRADES (5)
# times while the guest's kernel virtiofs driver keeps a load running, and the
# guest must not notice (src/handover.c: a second daemon started with the
# running one's options plus --upgrade takes over its socket, the VMM's
# connection, the device and the FUSE session; the old one exits).
#
# Runs with the daemon's default lockdown (namespace sandbox, seccomp), unless
# VIRTIOFSD_SANDBOX_OPTS says otherwise.  Two parts:
#
#   load   One daemon and one guest (upgrade-checks.sh).  The guest opens an
#          fd for appending, one for reading and one on a file it then
#          removes (no name on the host: each upgrade passes its fd), keeps
#          its cwd in the share, holds a POSIX lock and an flock, and runs
#          VG_UPGRADE_WORKERS (4) guest-tool churn workers (create, append,
#          overwrite at an offset,
#          read back and compare, rename, mkdir, link, symlink, unlink, rmdir,
#          readdir, and a long-lived fd written and read every iteration), an
#          O_DIRECT reader with checksums, an appender through the old fd and
#          a reader through the other.  Meanwhile the host upgrades the daemon
#          VG_UPGRADES times, each at least VG_UPGRADE_GAP (4) s after the
#          last: it starts `$VIRTIOFSD <same options> --upgrade`, waits until
#          the new process logs "upgrade: took over ... and its front-end
#          connection" and the old one (with the namespace sandbox: its
#          serving process and its monitor) has exited with status 0, then
#          until the host sees the guest's POSIX lock on the file again
#          (F_OFD_GETLK; skipped if the daemon keeps locks in the guest
#          kernel) and every churn worker has finished two more iterations.
#          Then the guest stops the load and checks it (every worker and
#          reader ended without an error: any EIO, EBADF, ENOTCONN ... fails),
#          the old fds, the cwd and the locks, creates and removes new files,
#          reads its dmesg, and unmounts.  The host checks every byte the
#          workers left (guest-tool churn-verify), the appended lines, that
#          exactly one daemon serves the socket, that the FUSE session was
#          initialised once only, and that no daemon logged an error.
#   idle   After that guest has gone: one more upgrade with no front-end
#          connected, then a new guest on the upgraded daemon reads what the
#          first left and writes a file; SIGTERM ends the daemon cleanly.
#
# Usage: test-upgrade.sh [--only=load,idle] [--keep] [--verbose]
# Environment: VG_UPGRADES (5), VG_UPGRADE_GAP (4 s), VG_UPGRADE_WORKERS (4),
# VG_TAKEOVER_TIMEOUT (limit of one upgrade, 60 s), VG_TIMEOUT (limit of one
# QEMU, 300 s here), VG_LOG_LEVEL (debug here; info works too), VG_QEMU
# (e.g. the QEMU 10 of fetch-qemu10.sh), and those of lib.sh.
#
# Output: "PASS: upgrade/<part>/<check>", "FAIL: ...: <reason>" or "SKIP:
# ...", then "test-upgrade: N passed, N failed, N skipped"; non-zero status if
# anything failed.  On a failure the ends of the daemon logs and the guest
# console go to stderr and the temp dir with all logs is kept.
set -euo pipefail
VG_TIMEOUT=${VG_TIMEOUT:-300}
VG_LOG_LEVEL=${VG_LOG_LEVEL:-debug}
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parts=load,idle
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
UPGRADES=${VG_UPGRADES:-5}
GAP=${VG_UPGRADE_GAP:-4}
WORKERS=${VG_UPGRADE_WORKERS:-4}
LOCK_WAITS=${VG_UPGRADE_LOCK_WAITS:-1}
TAKEOVER_TIMEOUT=${VG_TAKEOVER_TIMEOUT:-60}
[[ $UPGRADES =~ ^[1-9][0-9]*$ ]] || vg_die "VG_UPGRADES must be a positive number"
[[ $GAP =~ ^[0-9]+$ ]] || vg_die "VG_UPGRADE_GAP must be a number of seconds"
[[ $WORKERS =~ ^[1-9]$ ]] || vg_die "VG_UPGRADE_WORKERS must be 1..9"
[[ $TAKEOVER_TIMEOUT =~ ^[1-9][0-9]*$ ]] || vg_die "VG_TAKEOVER_TIMEOUT must be a positive number"
case $VG_LOG_LEVEL in
  info | debug) ;;
  *) vg_log "VG_LOG_LEVEL=$VG_LOG_LEVEL hides the lines these checks read; using info"
     VG_LOG_LEVEL=info ;;
esac

T_START=$(date +%s)
vg_setup
GT=$VG_IMG/guest-tool # static: the host-side checks run it too
# daemons started for an upgrade that did not take over: killed at exit
STRAY_PIDS=()
up_cleanup() {
  local p
  for p in "${STRAY_PIDS[@]}"; do
    if vg_alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  vg_cleanup
}
trap up_cleanup EXIT
NPASS=0 NFAIL=0 NSKIP=0
PART=
r_pass() { echo "PASS: upgrade/$PART/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: upgrade/$PART/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: upgrade/$PART/$1: $2"; NSKIP=$((NSKIP + 1)); }
r_check() { if [ -z "$2" ]; then r_pass "$1"; else r_fail "$1" "$2"; fi; }
add() { # VAR TEXT: append TEXT to the reason in VAR, "; "-separated
  local -n _v=$1
  [ -z "$2" ] || _v=${_v:+$_v; }$2
}

# ---- the daemons -------------------------------------------------------------------
# One share and socket for the whole run.  DPID is the daemon process serving
# now (started by this shell; with the namespace sandbox its monitor), SPID its
# serving process, DLOG its log; DLOGS all logs so far, in order.
S=$VG_TMP/share SOCK=$VG_TMP/vhost.sock
DPID='' SPID='' DLOG='' NDAEMONS=0 NSTARTED=0
DLOGS=()
UPGRADE_MS=()
mkdir -p "$S"; chmod 0755 "$S"

# The options of every daemon of the run, as vg_daemon_start composes them;
# an upgrade adds --upgrade.
daemon_args() {
  # shellcheck disable=SC2086  # option lists are meant to be word-split
  set -- --socket-path="$SOCK" --shared-dir="$S" --cache="$VG_CACHE_MODE" \
    --log-level="$VG_LOG_LEVEL" $VIRTIOFSD_SANDBOX_OPTS $VIRTIOFSD_OPTS
  printf '%s\n' "$@"
}
daemon_first() {
  NDAEMONS=1 NSTARTED=1 DLOG=$VG_TMP/daemon-1.log
  DLOGS=("$DLOG")
  VG_DAEMON_LOG=$DLOG
  if ! vg_daemon_start "$SOCK" "$S" "$DLOG"; then
    r_fail daemon-start "the daemon did not start: $(tail -3 "$DLOG" | paste -sd' ' -)"
    return 1
  fi
  DPID=$VG_DAEMON_PID
  vg_wait_count "$DLOG" " virtiofsd] serving " 1 10 || vg_log "no 'serving' line in the daemon log after 10 s"
  SPID=$(vg_serving_pid "$DPID") || SPID=$DPID
  vg_log "daemon 1: PID $DPID, serving PID $SPID ($([ "$SPID" = "$DPID" ] && echo 'no sandbox child' || echo 'sandbox monitor + child')), log $DLOG"
}

# Waits until PID has ended (at most SECONDS); for a child of this shell, sets
# ENDED_RC to its status.
wait_gone() { # PID SECONDS
  local end=$(($(date +%s) + $2))
  ENDED_RC=
  while vg_alive "$1"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
  ENDED_RC=0
  wait "$1" 2>/dev/null || ENDED_RC=$?
  return 0
}

# One upgrade: start the next daemon with --upgrade, wait for "took over" and
# for the old one to be gone.  Empty output-variable WHY if all went well.
# WANT_CONN: 1 if the front-end's connection must be taken over too.
upgrade_once() { # WANT_CONN
  local want_conn=$1 n=$((NDAEMONS + 1)) log old_d=$DPID old_s=$SPID old_log=$DLOG new line old_lines
  NSTARTED=$((NSTARTED + 1))
  log=$VG_TMP/daemon-$NSTARTED.log
  old_lines=$(wc -l <"$old_log")
  WHY=
  local -a args
  mapfile -t args < <(daemon_args)
  "$VIRTIOFSD" "${args[@]}" --upgrade </dev/null >"$log" 2>&1 &
  new=$!
  STRAY_PIDS+=("$new")
  DLOGS+=("$log")
  if ! vg_wait_line "$log" 'upgrade: took over' "$TAKEOVER_TIMEOUT" "$new"; then
    if vg_alive "$new"; then
      add WHY "daemon $n did not log 'upgrade: took over' within ${TAKEOVER_TIMEOUT}s"
    else
      wait "$new" 2>/dev/null && line=0 || line=$?
      add WHY "the new daemon exited (status $line) without taking over: $(grep -E ' (error|warn) ' "$log" | tail -2 | sed 's/^\[[^]]*\] //' | paste -sd' ' -)"
    fi
    line=$(tail -n +"$((old_lines + 1))" "$old_log" | grep -E ' (error|warn) ' | sed 's/^\[[^]]*\] //' | head -3 | paste -sd' ' -)
    [ -z "$line" ] || add WHY "the old daemon logged: $line"
    vg_alive "$old_d" || add WHY "and the old daemon (PID $old_d) is gone too"
    return 0
  fi
  # from the old daemon's HELLO to the new one serving (the queues stop in between), by
  # the logs' clocks; the poll above only sees it to 0.2 s
  local t_hello t_took
  t_hello=$(log_ms "$old_log" 'upgrade: process [0-9]* will take over' "$old_lines")
  t_took=$(log_ms "$log" 'upgrade: took over' 0)
  if [ -n "$t_hello" ] && [ -n "$t_took" ]; then
    UPGRADE_MS+=("$((t_took - t_hello))")
  else
    UPGRADE_MS+=("?")
  fi
  line=$(grep -m1 'upgrade: took over' "$log" | sed 's/^\[[^]]*\] //')
  if [ "$want_conn" = 1 ]; then
    [[ $line == *"and its front-end connection"* ]] || add WHY "daemon $n: '$line', without the front-end connection"
  else
    [[ $line != *"and its front-end connection"* ]] || add WHY "daemon $n took over a front-end connection where none was"
  fi
  if ! wait_gone "$old_s" 30; then
    add WHY "the old serving process (PID $old_s) still runs 30 s after the take-over"
  fi
  if ! wait_gone "$old_d" 30; then
    add WHY "the old daemon (PID $old_d) still runs 30 s after the take-over"
  elif [ "$ENDED_RC" != 0 ]; then
    add WHY "the old daemon (PID $old_d) exited with status $ENDED_RC"
  fi
  grep -q 'upgrade: the new process serves; exiting' "$old_log" ||
    add WHY "daemon $((n - 1)) did not log 'upgrade: the new process serves; exiting'"
  NDAEMONS=$n DPID=$new DLOG=$log VG_DAEMON_LOG=$log VG_DAEMON_PID=$new
  STRAY_PIDS=("${STRAY_PIDS[@]:0:${#STRAY_PIDS[@]}-1}") # it serves now: not a stray
  vg_wait_count "$log" " virtiofsd] serving " 1 10 || true
  SPID=$(vg_serving_pid "$DPID") || SPID=$DPID
  vg_alive "$SPID" || add WHY "daemon $n's serving process is not running"
}

# The time of the first line of FILE after line SKIP matching the ERE, in ms
# since the epoch (the logs' "[2026-01-02T03:04:05.678Z ..." prefix); empty if none.
log_ms() { # FILE ERE SKIP
  local ts
  ts=$(tail -n +"$(($3 + 1))" "$1" | grep -m1 -E "$2" | sed -n 's/^\[\([0-9T:.-]*Z\) .*/\1/p')
  [ -z "$ts" ] || echo $(($(date -d "$ts" +%s%N) / 1000000))
}

# Top-level daemons serving SOCK: processes whose command line names it and
# whose parent's does not (a sandbox monitor's child is not counted).
daemon_count() {
  local f pid ppid n=0
  local -A serving=() parent=()
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF -- "--socket-path=$SOCK"; then
      serving[$pid]=1
      ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
      parent[$pid]=$ppid
    fi
  done
  for pid in "${!serving[@]}"; do
    [ -n "${serving[${parent[$pid]:-0}]:-}" ] || n=$((n + 1))
  done
  echo "$n"
}

# Log lines of the given levels (an ERE) in the daemon logs from the FIRST-th
# (0: all) on, counted.
log_problems() { # LEVELS [FIRST]
  local f
  for f in "${DLOGS[@]:${2:-0}}"; do
    grep -E "^\\[[^]]* ($1) virtiofsd\\]" "$f" 2>/dev/null | sed "s|^\\[[^]]*\\] |${f##*/}: |" || true
  done | sort | uniq -c | sed 's/^ *//' | head -5 | paste -sd';' -
}
count_all() { # STRING: lines with STRING in all daemon logs
  local f n=0
  for f in "${DLOGS[@]}"; do n=$((n + $(vg_count "$f" "$1"))); done
  echo "$n"
}

# ---- host views of the guest's load -----------------------------------------------------
# The guest's POSIX lock on up/lockfile, as a new open file on the host sees
# it: empty if a write lock is held (for at most SECONDS), else what is seen.
host_lock_seen() { # SECONDS
  local end=$(($(date +%s) + $1)) out
  while :; do
    out=$("$GT" getlk "$S/up/lockfile" 2>&1) || true
    [[ $out != "locked write"* ]] || return 0
    [ "$(date +%s)" -lt "$end" ] || break
    sleep 0.2
  done
  echo "$out"
}
# Per churn worker, the highest iteration with a file in the share: "1:17 2:16 ..."
churn_progress() {
  local i k out=""
  for i in $(seq 1 "$WORKERS"); do
    # shellcheck disable=SC2012  # the names are the workers' own
    k=$(ls "$S/up/churn" 2>/dev/null | sed -n "s/^w$i-\\([0-9]*\\)\\.\\(dat\\|tmp\\)\$/\\1/p" | sort -n | tail -1)
    out="$out $i:${k:--1}"
  done
  echo "${out# }"
}
# Until every worker is at least MORE iterations past BEFORE (a churn_progress
# value), at most SECONDS; empty if so, else the progress seen.
churn_moved() { # BEFORE MORE SECONDS
  local end=$(($(date +%s) + $3)) now i b k lag
  while :; do
    now=$(churn_progress) lag=""
    for i in $(seq 1 "$WORKERS"); do
      b=$(tr ' ' '\n' <<<"$1" | sed -n "s/^$i://p")
      k=$(tr ' ' '\n' <<<"$now" | sed -n "s/^$i://p")
      [ "$k" -ge $((b + $2)) ] || lag="$lag w$i:$b->$k"
    done
    [ -n "$lag" ] || return 0
    if [ "$(date +%s)" -ge "$end" ] || ! vg_alive "$VG_QEMU_PID"; then
      echo "workers stalled after the upgrade (iterations before->now):$lag"
      return 0
    fi
    sleep 0.2
  done
}

show_logs() {
  local f
  echo "---- guest console (last 40 lines): $VG_CONSOLE" >&2
  tail -n 40 "$VG_CONSOLE" 2>/dev/null | sed 's/^/    /' >&2 || true
  echo "---- guest results: $VG_RESULTS" >&2
  grep -v '^DMESG ' "$VG_RESULTS" 2>/dev/null | tail -n 40 | sed 's/^/    /' >&2 || true
  for f in "${DLOGS[@]}"; do
    echo "---- daemon log (last 15 lines): $f" >&2
    tail -n 15 "$f" 2>/dev/null | sed 's/^/    /' >&2 || true
  done
}

# The guest's CHECK lines as PASS/FAIL; checks in WANT it did not report fail.
guest_checks() { # WANT...
  local name res reason w
  while read -r _ name res reason; do
    case $res in
      ok) r_pass "guest:$name" ;;
      *) r_fail "guest:$name" "${reason:-$res}" ;;
    esac
  done < <(grep '^CHECK ' "$VG_RESULTS" || true)
  for w in "$@"; do
    grep -q "^CHECK $w " "$VG_RESULTS" || r_fail "guest:$w" "the guest did not get to this check"
  done
}
guest_finished() {
  local why=""
  if [ "$VG_QEMU_RC" = 124 ]; then add why "the guest timed out after ${VG_TIMEOUT}s"
  elif grep -q '^VG-MOUNT failed' "$VG_RESULTS"; then add why "mount -t virtiofs failed"
  elif [ -z "$VG_GUEST_RC" ]; then add why "the guest did not finish (qemu status $VG_QEMU_RC)"
  elif [ "$VG_GUEST_RC" != 0 ]; then add why "the guest script exited with status $VG_GUEST_RC"
  fi
  [ -z "$VG_GUEST_RC" ] || grep -q '^VG-UMOUNT ok' "$VG_RESULTS" || add why "umount failed in the guest"
  echo "$why"
}
# Kernel trouble on the console (the guest's own dmesg check covers the rest).
console_problems() {
  grep -E 'Call Trace|BUG:|WARNING:|hung_task|blocked for more than|soft lockup|virtio.*(error|fail)|fuse.*(error|fail)' \
    "$VG_CONSOLE" 2>/dev/null | head -3 | paste -sd' ' - || true
}

# ---- part 1: upgrades under load ---------------------------------------------------------
part_load() {
  PART=load
  local why nf=$NFAIL i big_md5 before locks_on_host=1 gs=$VG_DIR/upgrade-checks.sh churn_args
  PART_T0=$(date +%s)
  mkdir -p "$S/up"
  head -c 2M /dev/urandom >"$S/up/big.bin"
  big_md5=$(md5sum <"$S/up/big.bin" | cut -d' ' -f1)
  seq 1 20000 | sed 's/^/line /' >"$S/up/lines.txt"
  : >"$S/up/lockfile"; : >"$S/up/log.txt"
  echo 0 >"$S/up-ctl"
  chmod -R a+rwX "$S"
  daemon_first || return 0
  VG_GUEST_ENV="VG_BIG_MD5=$big_md5; VG_WORKERS=$WORKERS; VG_WAIT=$VG_TIMEOUT; VG_LOCK_WAITS=$LOCK_WAITS
export VG_BIG_MD5 VG_WORKERS VG_WAIT VG_LOCK_WAITS"
  # no watcher: the daemon started first is meant to exit
  VG_DAEMON_PID='' vg_boot_start "$SOCK" "$gs"
  vg_log "load: guest booting (accel=$VG_ACCEL), $UPGRADES upgrades once it is READY"
  if ! vg_wait_line "$VG_RESULTS" '^READY' "$VG_TIMEOUT" "$VG_QEMU_PID"; then
    r_fail guest-ready "the guest did not start its load (qemu status: $(vg_alive "$VG_QEMU_PID" && echo running || echo ended))"
    vg_boot_kill 2>/dev/null || true
    vg_boot_wait || true
    show_logs
    return 0
  fi
  vg_log "load: guest READY after $(vg_secs_since "$VG_BOOT_T0")s"
  why=$(host_lock_seen 10)
  if [ -n "$why" ]; then
    locks_on_host=0
    r_skip lock-on-host-before "the host does not see the guest's POSIX lock ($why): the daemon keeps it in the guest kernel"
  else
    r_pass lock-on-host-before
  fi
  local t_load
  t_load=$(date +%s)
  for i in $(seq 1 "$UPGRADES"); do
    sleep "$GAP"
    if ! vg_alive "$VG_QEMU_PID"; then
      r_fail "upgrade-$i" "QEMU is not running any more"
      break
    fi
    before=$(churn_progress)
    upgrade_once 1
    why=$WHY
    if [ -n "$why" ]; then
      r_fail "upgrade-$i" "$why"
      # a refused upgrade leaves the old daemon serving: the next one may work
      if ! vg_alive "$DPID"; then
        [ "$i" -ge "$UPGRADES" ] || r_skip "upgrade-$((i + 1))..$UPGRADES" "no daemon serves any more"
        break
      fi
      continue
    fi
    if [ "$locks_on_host" = 1 ]; then
      add why "$(host_lock_seen 15 | sed 's/^/the host does not see the lock after the upgrade: /')"
    fi
    add why "$(churn_moved "$before" 2 90)"
    r_check "upgrade-$i" "$why"
    vg_log "load: upgrade $i: ${UPGRADE_MS[-1]} ms from the request to the new daemon serving (daemon PID $DPID, serving $SPID); progress before: $before, now: $(churn_progress)"
  done
  local n_daemons
  n_daemons=$(daemon_count)
  r_check one-daemon-after-upgrades "$([ "$n_daemons" = 1 ] || echo "$n_daemons daemons serve $SOCK")"
  vg_log "load: $((NDAEMONS - 1)) of $UPGRADES upgrades in $(($(date +%s) - t_load))s of load; the guest stops its load"
  echo 1 >"$S/up-ctl"
  vg_boot_wait || true

  local waits=""
  [ "$LOCK_WAITS" = 0 ] || waits="lock-wait-posix-blocked lock-wait-flock-blocked lock-wait-posix-after lock-wait-flock-after"
  # shellcheck disable=SC2046,SC2086  # lists of check names
  guest_checks fd-append-before fd-read-before locks-taken reader-started host-done \
    $(for i in $(seq 1 "$WORKERS"); do echo "churn-$i"; done) appender fd-read-during reader \
    fd-append-after fd-read-after fd-deleted-before fd-deleted-after cwd-after \
    lock-holder-alive locks-held-after \
    locks-free-after-release new-files-after dmesg-clean $waits
  r_check guest-finished "$(guest_finished)"
  r_check console-clean "$(console_problems)"
  grep '^CHURN-STATS ' "$VG_RESULTS" | sed 's/^CHURN-STATS /[vg] load: /' >&2 || true

  # what reached the host
  mapfile -t churn_args < <(sed -n 's/^CHURN \([0-9]*:[0-9]*\)$/\1/p' "$VG_RESULTS")
  why=""
  [ "${#churn_args[@]}" = "$WORKERS" ] || add why "${#churn_args[@]} of $WORKERS workers reported their iterations"
  add why "$("$GT" churn-verify "$S/up/churn" "${churn_args[@]}" 2>&1 | grep -v '^churn-verify: .* ok$' | head -5 | paste -sd';' -)"
  r_check host:churn-files "$why"
  local appends
  appends=$(sed -n 's/^APPENDS \([0-9]*\)$/\1/p' "$VG_RESULTS")
  if [ -z "$appends" ]; then
    r_fail host:appended-lines "the guest reported no count of appended lines"
  elif { echo before; seq 1 "$appends" | sed 's/^/append /'; echo after; } | cmp -s - "$S/up/log.txt"; then
    r_pass host:appended-lines
  else
    r_fail host:appended-lines "log.txt is not 'before', 'append 1'..'append $appends', 'after' ($(wc -l <"$S/up/log.txt") lines)"
  fi
  if seq 1 1000 | sed 's/^/after the upgrades /' | cmp -s - "$S/up/after-upgrades.txt"; then
    r_pass host:file-after-upgrades
  else
    r_fail host:file-after-upgrades "up/after-upgrades.txt is missing or wrong"
  fi
  why=$("$GT" getlk "$S/up/lockfile" 2>&1 || true)
  r_check host:lock-released "$([ "$why" = unlocked ] || echo "$why")"

  # the daemons' side
  why=""
  local inits
  inits=$(count_all "fuse: session initialized")
  [ "$inits" = 1 ] || add why "$inits FUSE INITs in the daemon logs, want 1 (the guest's)"
  # each daemon logs the connection it took over as connected; the VMM left once
  [ "$(count_all "front-end connected")" = "$NDAEMONS" ] ||
    add why "'front-end connected' $(count_all "front-end connected") times in $NDAEMONS daemons' logs, want one each"
  [ "$(count_all "front-end disconnected")" = 1 ] ||
    add why "'front-end disconnected' $(count_all "front-end disconnected") times, want 1 (when QEMU exited)"
  [ "$(count_all "refusing a second front-end")" = 0 ] || add why "a front-end connection was refused"
  r_check one-session-throughout "$why"
  # the guest's removed file went over as an fd at each upgrade (none refused:
  # "saving the session state failed" is an error, which no-errors-logged sees)
  local passed=0 f
  for f in "${DLOGS[@]}"; do
    passed=$((passed + $(grep -cE 'session state saved: [0-9]+ inodes \([1-9][0-9]* passed as fds\)' "$f" 2>/dev/null || true)))
  done
  r_check deleted-file-passed "$([ "$passed" -ge "$((NDAEMONS - 1))" ] ||
    echo "$passed session states saved with an inode passed as an fd, want one per upgrade ($((NDAEMONS - 1)))")"
  r_check no-errors-logged "$(log_problems error)"
  vg_log "load: ms from each upgrade's request to the new daemon serving: ${UPGRADE_MS[*]}; the guest ran $VG_BOOT_SECS s"
  [ "$NFAIL" = "$nf" ] || show_logs
  vg_log "load: done after $(($(date +%s) - PART_T0))s"
}

# ---- part 2: an upgrade with no front-end, then a new guest --------------------------
part_idle() {
  PART=idle
  local why nf=$NFAIL gs first_log=${#DLOGS[@]}
  PART_T0=$(date +%s)
  if [ -z "$DPID" ]; then
    mkdir -p "$S/up"
    daemon_first || return 0
  elif ! vg_alive "$DPID"; then
    r_fail daemon-alive "the daemon (PID $DPID) is gone: $(tail -1 "$DLOG")"
    return 0
  fi
  # the guest of part 1 (if any) has gone: wait until the daemon is idle
  if [ "$(count_all "front-end connected")" -gt 0 ]; then
    vg_wait_count "$DLOG" "waiting for the next front-end" 1 15 ||
      vg_log "idle: no 'waiting for the next front-end' in $DLOG after 15 s"
  fi
  upgrade_once 0
  r_check upgrade-without-front-end "$WHY"
  [ -z "$WHY" ] || { show_logs; return 0; }
  gs=$VG_TMP/idle.sh
  cat >"$gs" <<'EOF'
M=$VG_MNT
NFAIL=0
ok() { echo "CHECK $1 ok"; }
bad() { echo "CHECK $1 FAIL $2"; NFAIL=$((NFAIL + 1)); }
if [ -d "$M/up/churn" ]; then
  if out=$(guest-tool churn-verify "$M/up/churn" 2>&1); then ok churn-files-readable; else bad churn-files-readable "$(echo "$out" | head -3 | tr '\n' ' ')"; fi
fi
seq 1 500 | sed 's/^/idle guest /' >"$M/idle.txt" || bad idle-file "writing idle.txt failed"
[ "$(md5sum <"$M/idle.txt")" = "$(seq 1 500 | sed 's/^/idle guest /' | md5sum)" ] && ok idle-file || bad idle-file "idle.txt reads back wrong"
sync
[ "$NFAIL" -eq 0 ]
EOF
  VG_GUEST_ENV=
  VG_DAEMON_PID=$DPID vg_boot_start "$SOCK" "$gs"
  vg_boot_wait || true
  guest_checks idle-file
  why=$(guest_finished)
  [ -z "$VG_DAEMON_DIED" ] || add why "$VG_DAEMON_DIED"
  r_check guest-finished "$why"
  if seq 1 500 | sed 's/^/idle guest /' | cmp -s - "$S/idle.txt"; then r_pass host:idle-file; else r_fail host:idle-file "idle.txt is missing or wrong"; fi
  vg_wait_count "$DLOG" "waiting for the next front-end" 1 15 || true
  local n_daemons
  n_daemons=$(daemon_count)
  r_check one-daemon-at-end "$([ "$n_daemons" = 1 ] || echo "$n_daemons daemons serve $SOCK")"
  r_check no-errors-logged "$(log_problems error "$first_log")"
  why=""
  vg_daemon_term
  [ "$VG_DAEMON_END" = terminated:0 ] || add why "on SIGTERM: $VG_DAEMON_END"
  [ ! -e "$SOCK" ] || add why "the socket $SOCK is still there"
  [ ! -e "$SOCK.pid" ] || add why "$SOCK.pid is still there"
  DPID=
  r_check daemon-stops-cleanly "$why"
  [ "$NFAIL" = "$nf" ] || show_logs
  vg_log "idle: done after $(($(date +%s) - PART_T0))s"
}

IFS=', ' read -r -a part_list <<<"$parts"
vg_accel
vg_log "daemon: $VIRTIOFSD ${VIRTIOFSD_SANDBOX_OPTS:-(default lockdown)} ${VIRTIOFSD_OPTS}; qemu: $VG_QEMU ($("$VG_QEMU" --version | head -1)); accel=$VG_ACCEL"
for p in "${part_list[@]}"; do
  case $p in
    load) part_load ;;
    idle) part_idle ;;
    "") ;;
    *) vg_die "unknown part '$p' (load, idle)" ;;
  esac
done

vg_log "total $(($(date +%s) - T_START))s"
[ "$NFAIL" = 0 ] || VG_KEEP=1
echo "test-upgrade: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

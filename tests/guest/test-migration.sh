#!/usr/bin/env bash
# Live migration of a guest with a busy virtio-fs mount, between two QEMU 10
# processes on this host, each with its own daemon on the same shared
# directory (QEMU's vhost-user-fs carries the daemon's state in its migration
# stream: VHOST_USER_PROTOCOL_F_DEVICE_STATE, and dirty-page logging while the
# daemon writes guest memory during pre-copy: LOG_ALL, LOG_SHMFD).
#
# One run per (pair, mode): daemon A serves the source QEMU, daemon B the
# destination QEMU (started with -incoming defer, then QMP migrate-incoming);
# both with --migration-mode=MODE.  Both QEMUs have the return-path
# capability, so that a destination that fails to load the state fails the
# migration on the source too, and the source resumes (as libvirt sees it).
# The guest (migration-checks.sh) opens a file for appending and one for
# reading, takes a POSIX lock and an flock, keeps its cwd in the share and
# re-reads a 32 MiB file in a loop with checksums (O_DIRECT: the daemon
# writes each pass into the reader's buffer), then says READY.  The host
# migrates over a unix socket (QMP `migrate`) in phases:
#   1. bandwidth VG_MIG_PHASE_BW (64 MiB/s), downtime limit 1 ms, until QEMU
#      sent all RAM once; then held at 10 KiB/s, which cannot drain what the
#      guest dirties, so pre-copy does not end by itself
#   2. until the reader made VG_MIG_PRECOPY_PASSES (4) passes since the start
#   3. the guest reads a 16 MiB file into its page cache: pages QEMU already
#      sent, written by the daemon only, so only the daemon's dirty log makes
#      QEMU send them again (checked after the migration from the cache)
#   4. no bandwidth limit, downtime limit VG_MIG_DOWNTIME_MS (500): converge.
# Then the host waits for "completed", quits the source QEMU (daemon A goes
# with it), and tells the guest (a step number in the share's file mig-ctl),
# which checks every fd, checksum, its cwd and its locks on the destination;
# the host checks the locks from its side, lets the guest release them, and
# verifies the files written before and after and that the locks are gone.
# Checks:
#   migrate-accepted      QMP migrate is not refused (a back-end without the
#                         migration features makes QEMU refuse: the reason)
#   migration-completed   query-migrate says completed (not failed, not hung)
#   io-during-precopy     the reader finished passes while RAM was copied
#   fill-during-precopy   the guest read fill.bin after QEMU had sent all RAM
#                         once, before the switch-over
#   destination-running   the destination runs, the source is paused
#   locks-on-host         locks the source daemon placed on the host file are
#                         still held after the source is gone (SKIP if the
#                         source daemon keeps locks inside the guest kernel)
#   host:log-content, host:cwd-file, locks-free-on-host-at-end
#   guest:<check>         the guest's own checks (fds, checksums, cwd, locks;
#                         cached-pages-after-migration: fill.bin from the page
#                         cache, needs --cache=always, the default here)
#   guest-finished        the guest script ended with status 0, umount ok
#
# Usage: test-migration.sh [--pairs=ours:ours,rust:ours,ours:rust]
#          [--modes=find-paths,file-handles] [--ignore-caps] [--keep] [--verbose]
#   --pairs=LIST   source:destination daemons; "ours" is $VIRTIOFSD
#                  (build/virtiofsd), "rust" is $RUST_VIRTIOFSD
#                  (/opt/virtiofsd-peers/bin/rust-virtiofsd, from
#                  ../shared/peers/fetch-peers.sh).  rust:rust checks the
#                  test itself.  DAEMON_SRC / DAEMON_DST (commands with
#                  options, word-split) replace the list by that one pair
#                  (each defaulting to $VIRTIOFSD).
#   --modes=LIST   --migration-mode values (default both)
#   --ignore-caps  run even if a daemon's --print-capabilities lacks
#                  migrate-precopy (to see what QEMU says)
# A pair whose daemon is missing, or does not list migrate-precopy in
# --print-capabilities, is skipped.  file-handles is skipped when not root
# (the destination needs CAP_DAC_READ_SEARCH); its daemons get
# $VG_MIG_FH_OPTS (default --modcaps=+dac_read_search) as well.
#
# Environment: VG_QEMU (default: the QEMU 10 of fetch-qemu10.sh; 7.2 cannot
# migrate vhost-user-fs), VG_TIMEOUT (limit of one QEMU, default 300 s),
# VG_MIG_TIMEOUT (limit of the migration, default 180 s), VG_MIG_BIG_MB (32),
# VG_MIG_DOWNTIME_MS, VG_MIG_PHASE_BW, VG_MIG_PRECOPY_PASSES (above),
# VG_CACHE_MODE (--cache of both daemons, default always here), and those of
# lib.sh (VG_MEM 512M, VG_LOG_LEVEL, VG_KEEP ...).
#
# Output: "PASS: migration/<src>-><dst>/<mode>/<check>", "FAIL: ...: <reason>"
# or "SKIP: ...: <reason>", then "test-migration: N passed, N failed, N
# skipped"; non-zero status if anything failed.  A failing run's logs (both
# consoles, both daemon logs, QEMU's messages) go to stderr and the temp dir
# is kept.
set -euo pipefail
VG_TIMEOUT=${VG_TIMEOUT:-300}
# the fill check reads cached pages after the migration: with auto, the
# reopen drops them; with never there are none
VG_CACHE_MODE=${VG_CACHE_MODE:-always}
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUST_VIRTIOFSD=${RUST_VIRTIOFSD:-/opt/virtiofsd-peers/bin/rust-virtiofsd}
MIG_TIMEOUT=${VG_MIG_TIMEOUT:-180}
BIG_MB=${VG_MIG_BIG_MB:-32}
DOWNTIME_MS=${VG_MIG_DOWNTIME_MS:-500}
PHASE_BW=${VG_MIG_PHASE_BW:-67108864}
PRECOPY_PASSES=${VG_MIG_PRECOPY_PASSES:-4}
FH_OPTS=${VG_MIG_FH_OPTS---modcaps=+dac_read_search}
pairs=ours:ours,rust:ours,ours:rust
modes=find-paths,file-handles
ignore_caps=0
while [ $# -gt 0 ]; do
  case $1 in
    --pairs=*) pairs=${1#*=} ;;
    --modes=*) modes=${1#*=} ;;
    --ignore-caps) ignore_caps=1 ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vg_die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[[ $MIG_TIMEOUT =~ ^[1-9][0-9]*$ ]] || vg_die "VG_MIG_TIMEOUT must be a positive number"
[[ $BIG_MB =~ ^[1-9][0-9]*$ ]] || vg_die "VG_MIG_BIG_MB must be a positive number"
if [ "$VG_QEMU" = qemu-system-x86_64 ]; then
  VG_QEMU=$(bash "$VG_DIR/fetch-qemu10.sh" | tail -1) || vg_die "cannot fetch QEMU 10 (fetch-qemu10.sh)"
fi

T_START=$(date +%s)
vg_setup
GT=$VG_IMG/guest-tool # static: the host-side lock checks run it too
NPASS=0 NFAIL=0 NSKIP=0
NAME= # migration/<src>-><dst>/<mode>
r_pass() { echo "PASS: $NAME/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: $NAME/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: $NAME/$1: $2"; NSKIP=$((NSKIP + 1)); }
r_check() { if [ -z "$2" ]; then r_pass "$1"; else r_fail "$1" "$2"; fi; }

# ---- processes of one run ---------------------------------------------------------------
# Daemon and QEMU (`timeout` wrapper) PIDs, killed by the EXIT trap if left.
PID_DA='' PID_DB='' PID_QS='' PID_QD=''
mig_kill() { # PID-VARIABLE...: TERM, then KILL after 2 s
  local v pid
  for v in "$@"; do
    pid=${!v}
    [ -n "$pid" ] || continue
    if vg_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do vg_alive "$pid" || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    printf -v "$v" %s ""
  done
}
mig_cleanup() { mig_kill PID_QS PID_QD PID_DA PID_DB; }
trap 'mig_cleanup; vg_cleanup' EXIT

# Start daemon CMD (word-split) on SOCK serving SHARE; its PID goes to the
# variable PIDVAR (call it from this shell, not from $(...): only this shell
# can wait for it).  Extra arguments are more options.  On failure the reason
# is in START_ERR.
daemon_start() { # PIDVAR CMD SOCK SHARE LOG [OPTS...]
  local var=$1 sock=$3 share=$4 dlog=$5 pid
  local -a cmd
  read -r -a cmd <<<"$2"
  shift 5
  rm -f "$sock"
  "${cmd[@]}" --socket-path="$sock" --shared-dir="$share" --cache="$VG_CACHE_MODE" \
    --log-level="$VG_LOG_LEVEL" "$@" </dev/null >"$dlog" 2>&1 &
  pid=$!
  printf -v "$var" %s "$pid"
  for _ in $(seq 1 100); do
    [ -S "$sock" ] && return 0
    vg_alive "$pid" || break
    sleep 0.1
  done
  START_ERR="no socket after 10 s: $(tail -3 "$dlog" | paste -sd' ' -)"
  return 1
}

# Wait up to SECONDS for the child PID to end by itself; WAIT_OUT is
# "exited:STATUS", or "running".  (Not in $(...), as daemon_start.)
wait_exit() { # PID SECONDS
  local end=$(($(date +%s) + $2)) rc=0
  WAIT_OUT=running
  while vg_alive "$1"; do
    [ "$(date +%s)" -lt "$end" ] || return 0
    sleep 0.1
  done
  wait "$1" 2>/dev/null || rc=$?
  WAIT_OUT="exited:$rc"
}

# A field of a QMP answer; empty if the answer is not JSON (an error message)
# or lacks it.
jget() { # JSON KEY[.KEY...]
  python3 -c 'import json, sys
try:
    v = json.loads(sys.argv[1])
except ValueError:
    v = None
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2" || true
}

# The phases of the migration (see the top), driven over one QMP connection
# polled every 20 ms, so that the host reacts before QEMU ends pre-copy by
# itself.  Prints the last query-migrate answer (JSON) with "x-phase", the
# phase reached; its "status" is QEMU's, or why the driver stopped.  Logs on
# stderr.
mig_drive() { # QMP SRC-RESULTS LINES0 CTL-FILE SRC-PID DST-PID
  local py=python3
  [ ! -x /usr/bin/python3 ] || py=/usr/bin/python3
  "$py" - "$@" "$PHASE_BW" "$PRECOPY_PASSES" "$DOWNTIME_MS" "$MIG_TIMEOUT" "$NAME" <<'PY'
import json, socket, sys, time
(qmp, results, lines0, ctl, spid, dpid, phase_bw, want, downtime, limit,
 name) = sys.argv[1:12]
lines0, want, downtime, limit = int(lines0), int(want), int(downtime), int(limit)

def log(msg):
    print(f"[vg] {name}: {msg}", file=sys.stderr, flush=True)

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(qmp)
f = s.makefile("rw", encoding="utf-8")

def receive():
    while True:
        line = f.readline()
        if not line:
            raise OSError("QEMU closed the QMP connection")
        msg = json.loads(line)
        if "event" not in msg:
            return msg

def execute(cmd, args=None):
    f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}) + "\n")
    f.flush()
    reply = receive()
    if "error" in reply:
        raise OSError(f"{cmd}: {reply['error'].get('desc')}")
    return reply.get("return")

def guest_lines():
    with open(results, errors="replace") as r:
        return r.read().splitlines()[lines0:]

info, phase, t0, dgone = {}, 1, time.time(), None
try:
    receive()
    execute("qmp_capabilities")
    while True:
        info = execute("query-migrate")
        st = info.get("status")
        if st in ("completed", "failed", "cancelled"):
            break
        ram = info.get("ram", {})
        lines = guest_lines()
        passes = sum(1 for l in lines if l.startswith("READ "))
        took = f"{time.time() - t0:.3f}s"
        if phase == 1 and ram.get("dirty-sync-count", 0) >= 2:
            # all RAM sent once: hold pre-copy (10 KiB/s cannot drain what
            # the guest dirties, so QEMU does not switch over)
            execute("migrate-set-parameters", {"max-bandwidth": 10240})
            log(f"phase 2 after {took}: all RAM sent once "
                f"({ram.get('transferred', 0) >> 20} MiB), {passes} reader passes; held")
            phase = 2
        if phase == 2 and passes >= want:
            with open(ctl, "r+") as c:
                c.write("1\n")
            log(f"phase 3 after {took}: {passes} reader passes; the guest fills its page cache")
            phase = 3
        if phase == 3 and any(l.startswith("FILLED") for l in lines):
            execute("migrate-set-parameters",
                    {"downtime-limit": downtime, "max-bandwidth": 1 << 34})
            log(f"phase 4 after {took}: filled; no bandwidth limit, downtime limit {downtime} ms")
            phase = 4
        # a destination that fails exits; the source learns it over the
        # return path within moments: give it 10 s to say so
        if not alive(dpid) and dgone is None:
            dgone = time.time() + 10
        if not alive(spid) or (dgone is not None and time.time() > dgone):
            info["status"] = "a QEMU ended (source %s, destination %s)" % (
                "running" if alive(spid) else "gone", "running" if alive(dpid) else "gone")
            break
        if time.time() - t0 > limit:
            info["status"] = f"still '{st}' after {limit}s"
            break
        time.sleep(0.02)
except (OSError, ValueError) as e:
    info["status"] = f"QMP: {e}"
info["x-phase"] = phase
print(json.dumps(info))
PY
}

# The host's step for the guest (migration-checks.sh): written in place.
set_step() { # N
  printf '%s\n' "$1" | dd of="$S/mig-ctl" conv=notrunc status=none
}

mib() { [[ ${1:-} =~ ^[0-9]+$ ]] && echo $(($1 / 1048576)) || echo "?"; }

# Is the capability list of daemon CMD missing migrate-precopy?  Prints why
# the pair cannot run, or nothing.
daemon_unfit() { # CMD
  local -a cmd
  read -r -a cmd <<<"$1"
  local bin=${cmd[0]:-}
  if [ -z "$bin" ] || ! command -v "$bin" >/dev/null 2>&1; then
    echo "daemon not found: ${bin:-(empty command)}"
    return
  fi
  local caps
  caps=$("$bin" --print-capabilities 2>&1) || { echo "$bin --print-capabilities failed: $(head -1 <<<"$caps")"; return; }
  if ! grep -q '"migrate-precopy"' <<<"$caps" && [ "$ignore_caps" = 0 ]; then
    echo "$bin --print-capabilities does not list migrate-precopy (it cannot migrate yet)"
  fi
}

# Host view of the locks on FILE: empty if a POSIX write lock and an flock
# are held by someone else, else guest-tool's complaint.
host_locks_held() { # FILE
  local out
  out=$("$GT" locks held "$1" 2>&1) && return 0
  echo "${out//$'\n'/ }"
}
# Empty if the host can take both locks on FILE now (nobody holds them).
host_locks_free() { # FILE
  local out pid
  out=$VG_BOOT_DIR/host-hold.out
  "$GT" hold-locks "$1" >"$out" 2>&1 &
  pid=$!
  vg_wait_line "$out" '^holding' 5 "$pid" || echo "the host cannot take the locks: $(paste -sd' ' "$out")"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# The guest's CHECK lines (both results files) as PASS/FAIL; the expected
# ones that are missing fail.
# both sides: a failed load on the destination fails the migration on the
# source, which resumes.  (No auto-converge: phase 1 never converges on
# purpose, and throttled vCPUs would only slow the guest down.)
CAPS='{"capabilities": [{"capability": "return-path", "state": true}]}'

GUEST_CHECKS=" fd-write-before fd-read-before locks-taken locks-held-before reader-started cached-pages-after-migration reads-after-migration checksums fd-write-after log-content fd-read-after cwd-after lock-holder-alive locks-held-after locks-free-after-release "
report_guest() { # RESULTS...
  local c line
  for c in $GUEST_CHECKS; do
    line=$(cat "$@" 2>/dev/null | grep -E "^CHECK $c (ok|FAIL|SKIP)" | tail -1 || true)
    case $line in
      "CHECK $c ok") r_pass "guest:$c" ;;
      "CHECK $c FAIL "*) r_fail "guest:$c" "${line#CHECK "$c" FAIL }" ;;
      "CHECK $c SKIP "*) r_skip "guest:$c" "${line#CHECK "$c" SKIP }" ;;
      *) r_fail "guest:$c" "the guest did not get to it" ;;
    esac
  done
  # a check this list does not know about still counts
  while read -r _ c _ line; do
    case $GUEST_CHECKS in *" $c "*) ;; *) r_fail "guest:$c" "$line" ;; esac
  done < <(cat "$@" 2>/dev/null | grep -E '^CHECK [^ ]+ FAIL' || true)
}

show_logs() { # DIR
  local f
  for f in "$1"/src-console.log "$1"/dst-console.log "$1"/src-console.log.qemu \
    "$1"/dst-console.log.qemu "$1"/daemon-src.log "$1"/daemon-dst.log; do
    [ -s "$f" ] || continue
    echo "---- $f (last 30 lines)" >&2
    tail -n 30 "$f" | sed 's/^/    /' >&2
  done
}

# ---- one migration -------------------------------------------------------------------------
run_one() { # SRC-CMD DST-CMD MODE
  local src=$1 dst=$2 mode=$3 n S sum why out st info t0 h nf=$NFAIL
  local -a dopts=(--migration-mode="$mode") qdev
  [ "$mode" != file-handles ] || read -r -a qdev <<<"$FH_OPTS"
  [ "$mode" != file-handles ] || dopts+=("${qdev[@]}")

  # the share first: its checksum goes into the guest's environment
  S=$VG_TMP/share-$RUN
  mkdir -p "$S/mig"
  chmod 0755 "$S" "$S/mig"
  # the host's steps for the guest: a number at the start of a 4 KiB file
  # that keeps its size (a guest with a cached size of 0 would read nothing)
  head -c 4096 /dev/zero >"$S/mig-ctl"
  set_step 0
  head -c 16M /dev/urandom >"$S/mig/fill.bin"
  head -c "${BIG_MB}M" /dev/urandom >"$S/mig/big.bin"
  sum=$(md5sum <"$S/mig/big.bin" | cut -d' ' -f1)
  printf 'line %s\n' 1 2 3 >"$S/mig/lines.txt"
  : >"$S/mig/lockfile"
  VG_GUEST_ENV="VG_BIG_MD5=$sum; VG_FILL_MD5=$(md5sum <"$S/mig/fill.bin" | cut -d' ' -f1)
VG_WAIT=$VG_TIMEOUT; export VG_BIG_MD5 VG_FILL_MD5 VG_WAIT"
  vg_boot_prepare "$VG_DIR/migration-checks.sh"
  n=$VG_BOOT_DIR
  local rs=$VG_RESULTS cs=$VG_CONSOLE rd=$n/dst-results.txt cd=$n/dst-console.log
  mv "$cs" "$n/src-console.log"; cs=$n/src-console.log
  mv "$rs" "$n/src-results.txt"; rs=$n/src-results.txt
  : >"$rd"; : >"$cd"
  local qs=$n/src.qmp qd=$n/dst.qmp mig=$n/mig.sock

  if ! daemon_start PID_DA "$src" "$n/A.sock" "$S" "$n/daemon-src.log" "${dopts[@]}"; then
    r_fail daemons-start "source daemon: $START_ERR"
    mig_cleanup; show_logs "$n"; return 0
  fi
  if ! daemon_start PID_DB "$dst" "$n/B.sock" "$S" "$n/daemon-dst.log" "${dopts[@]}"; then
    r_fail daemons-start "destination daemon: $START_ERR"
    mig_cleanup; show_logs "$n"; return 0
  fi
  r_pass daemons-start

  # The two QEMUs: the same machine, memory (shared memfd, as vhost-user
  # needs) and device; the destination waits for the stream.
  local -a common=(-object "memory-backend-memfd,id=mem,size=$VG_MEM,share=on" -numa "node,memdev=mem")
  vg_qemu_spawn "$VG_ACCEL" "$cd" "$rd" "$VG_TIMEOUT" "$VG_INITRD" "vg.mode=run vg.tag=$VG_TAG" \
    "${common[@]}" -chardev "socket,id=vfs,path=$n/B.sock" \
    -device "vhost-user-fs-pci,chardev=vfs,tag=$VG_TAG${VG_FS_DEVICE_OPTS:-}" \
    -qmp "unix:$qd,server=on,wait=off" -incoming defer
  PID_QD=$VG_QEMU_PID VG_QEMU_PID=
  vg_qemu_spawn "$VG_ACCEL" "$cs" "$rs" "$VG_TIMEOUT" "$VG_INITRD" "vg.mode=run vg.tag=$VG_TAG" \
    "${common[@]}" -chardev "socket,id=vfs,path=$n/A.sock" \
    -device "vhost-user-fs-pci,chardev=vfs,tag=$VG_TAG${VG_FS_DEVICE_OPTS:-}" \
    -qmp "unix:$qs,server=on,wait=off"
  PID_QS=$VG_QEMU_PID VG_QEMU_PID=
  t0=$(date +%s%N)

  # the destination listens once it has the capabilities the source will use
  if ! out=$(vg_qmp "$qd" migrate-set-capabilities "$CAPS" 2>&1) ||
    ! out=$(vg_qmp "$qd" migrate-incoming "{\"uri\": \"unix:$mig\"}" 2>&1); then
    r_fail destination-listens "${out#qmp: }"
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi
  if ! vg_wait_line "$rs" '^READY' "$VG_TIMEOUT" "$PID_QS"; then
    why="the guest did not get ready"
    grep -q '^VG-MOUNT ok' "$rs" || why="$why (no virtio-fs mount)"
    vg_alive "$PID_QS" || why="$why; the source QEMU ended"
    r_fail guest-ready "$why"
    report_guest "$rs"
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi
  vg_log "$NAME: guest ready after $(vg_secs_since "$t0")s"
  r_pass guest-ready

  # the host's view of the locks before: are they on the host file at all?
  local locks_before
  locks_before=$(host_locks_held "$S/mig/lockfile")

  # phase 1 (see the top): pre-copy that cannot end yet
  if ! out=$(vg_qmp "$qs" migrate-set-capabilities "$CAPS" 2>&1) ||
    ! out=$(vg_qmp "$qs" migrate-set-parameters \
      "{\"downtime-limit\": 1, \"max-bandwidth\": $PHASE_BW}" 2>&1); then
    r_fail migrate-accepted "setting up the source: ${out#qmp: }"
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi
  local lines0
  lines0=$(wc -l <"$rs")
  local tm
  tm=$(date +%s%N)
  if ! out=$(vg_qmp "$qs" migrate "{\"uri\": \"unix:$mig\"}" 2>&1); then
    r_fail migrate-accepted "QEMU refused: ${out#qmp: }"
    [ ! -s "$cs.qemu" ] || vg_log "$NAME: source QEMU said: $(paste -sd' ' "$cs.qemu" | cut -c1-400)"
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi
  r_pass migrate-accepted

  # until completed, failed, or the limit: drive the phases (mig_drive)
  info=$(mig_drive "$qs" "$rs" "$lines0" "$S/mig-ctl" "$PID_QS" "$PID_QD") || true
  st=$(jget "$info" status)
  local phase
  phase=$(jget "$info" x-phase)
  if [ "$st" != completed ]; then
    why="migration $st"
    local failed=$st
    [ -z "$(jget "$info" error-desc)" ] || why="$why: $(jget "$info" error-desc)"
    why="$why; destination QEMU: $(paste -sd' ' "$cd.qemu" | cut -c1-300)"
    out=$(grep -ihE '\berror\b' "$n/daemon-src.log" "$n/daemon-dst.log" | tail -2 | paste -sd' ' - | cut -c1-300 || true)
    [ -z "$out" ] || why="$why; daemon logs: $out"
    r_fail migration-completed "$why"
    if [ "$failed" = failed ]; then
      # the source must go on as if nothing had happened (return-path)
      out=$(vg_qmp "$qs" query-status 2>&1) || true
      st=$(jget "$out" status)
      r_check source-resumed-after-failure "$([ "$st" = running ] || echo "source: ${st:+status }${st:-$out}")"
    fi
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi
  vg_log "$NAME: migration completed in $(vg_secs_since "$tm")s: total-time $(jget "$info" total-time) ms, downtime $(jget "$info" downtime) ms, RAM $(mib "$(jget "$info" ram.transferred)") MiB transferred, $(jget "$info" ram.dirty-sync-count) dirty syncs"
  r_pass migration-completed

  # passes of the reader while the RAM was being copied (source's port)
  local during
  during=$(tail -n +"$((lines0 + 1))" "$rs" | grep -c '^READ ' || true)
  if [ "$during" -ge "$PRECOPY_PASSES" ]; then
    r_pass io-during-precopy
  else
    r_fail io-during-precopy "$during passes over big.bin finished while the migration ran, want $PRECOPY_PASSES"
  fi
  if grep -q '^FILLED' "$rs"; then
    r_pass fill-during-precopy
  else
    r_fail fill-during-precopy "the guest did not fill its page cache before the switch-over (the host reached phase ${phase:-?})"
  fi
  vg_log "$NAME: $during reader passes during pre-copy"

  why=""
  out=$(vg_qmp "$qd" query-status 2>&1) || true
  st=$(jget "$out" status)
  [ "$st" = running ] || why="destination: ${st:+status }${st:-$out}"
  out=$(vg_qmp "$qs" query-status 2>&1) || true
  st=$(jget "$out" status)
  [ "$st" = postmigrate ] || why="${why:+$why; }source: ${st:+status }${st:-$out}, want postmigrate"
  r_check destination-running "$why"
  if [ -n "$why" ]; then
    vg_log "$NAME: destination QEMU: $(paste -sd' ' "$cd.qemu" | cut -c1-400)"
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi

  # the source goes away, as after a real migration; its daemon with it
  vg_qmp "$qs" quit >/dev/null 2>&1 || true
  wait_exit "$PID_QS" 20
  [ "$WAIT_OUT" != running ] || mig_kill PID_QS
  PID_QS=
  wait_exit "$PID_DA" 5
  vg_log "$NAME: source daemon 5 s after its QEMU quit: $WAIT_OUT"
  [ "$WAIT_OUT" != running ] || mig_kill PID_DA
  PID_DA=

  # the signal: from here on the guest talks to daemon B only
  set_step 2
  if ! vg_wait_line "$rd" '^CHECKED' "$VG_TIMEOUT" "$PID_QD"; then
    r_fail guest-checked "the guest did not finish its checks on the destination"
    report_guest "$rs" "$rd"
    mig_cleanup; show_logs "$n"; VG_KEEP=1; return 0
  fi
  if [ -n "$locks_before" ]; then
    r_skip locks-on-host "before the migration the host did not see the guest's locks either (the source daemon keeps them in the guest kernel): $locks_before"
  else
    why=$(host_locks_held "$S/mig/lockfile")
    r_check locks-on-host "${why:+after the migration the host does not see the locks of the guest: }$why"
  fi
  set_step 3
  wait_exit "$PID_QD" "$VG_TIMEOUT"
  out=$WAIT_OUT
  [ "$out" != running ] || { mig_kill PID_QD; out="timed out"; }
  PID_QD=
  sed -i 's/\r$//' "$rs" "$rd"

  report_guest "$rs" "$rd"
  why=""
  grep -q '^VG-END rc=0$' "$rd" || why="the guest script ended with $(grep -o '^VG-END rc=[0-9]*' "$rd" || echo "no VG-END line"); QEMU: $out"
  grep -q '^VG-UMOUNT ok' "$rd" || why="${why:+$why; }umount failed or never ran"
  r_check guest-finished "$why"
  vg_log "$NAME: $(grep -h '^READS ' "$rd" || echo 'no reader summary'); guest ran $(vg_secs_since "$t0")s"

  # host side: what the guest wrote, and nothing left locked
  h=$(printf 'before 1\nbefore 2\nafter 1\nafter 2\n')
  if [ "$(cat "$S/mig/log.txt" 2>&1)" = "$h" ]; then
    r_pass host:log-content
  else
    r_fail host:log-content "log.txt holds '$(tr '\n' '|' <"$S/mig/log.txt" 2>&1)'"
  fi
  if [ "$(cat "$S/mig/cwd-after.txt" 2>&1)" = "written via the cwd" ]; then
    r_pass host:cwd-file
  else
    r_fail host:cwd-file "cwd-after.txt: '$(cat "$S/mig/cwd-after.txt" 2>&1)'"
  fi
  r_check host:big-file-unchanged "$([ "$(md5sum <"$S/mig/big.bin" | cut -d' ' -f1)" = "$sum" ] || echo "big.bin changed")"
  wait_exit "$PID_DB" 5
  [ "$WAIT_OUT" != running ] || mig_kill PID_DB
  PID_DB=
  r_check locks-free-on-host-at-end "$(host_locks_free "$S/mig/lockfile")"

  if [ "$NFAIL" != "$nf" ]; then
    show_logs "$n"
    VG_KEEP=1
  fi
}

# ---- pairs and modes ----------------------------------------------------------------------------
declare -a P_SRC=() P_DST=() P_NAME=()
daemon_cmd() { # ours|rust
  case $1 in
    ours) echo "$VIRTIOFSD" ;;
    rust) echo "$RUST_VIRTIOFSD" ;;
    *) vg_die "unknown daemon '$1' in --pairs (ours, rust)" ;;
  esac
}
short_name() { # CMD: a label for the pair's name
  local -a w
  read -r -a w <<<"$1"
  case ${w[0]:-} in
    "$VIRTIOFSD") echo ours ;;
    "$RUST_VIRTIOFSD") echo rust ;;
    *) basename "${w[0]:-none}" ;;
  esac
}
if [ -n "${DAEMON_SRC:-}${DAEMON_DST:-}" ]; then
  P_SRC+=("${DAEMON_SRC:-$VIRTIOFSD}") P_DST+=("${DAEMON_DST:-$VIRTIOFSD}")
  P_NAME+=("$(short_name "${P_SRC[0]}")->$(short_name "${P_DST[0]}")")
else
  IFS=', ' read -r -a plist <<<"$pairs"
  for p in "${plist[@]}"; do
    [ -n "$p" ] || continue
    [[ $p == *:* ]] || vg_die "a pair is SRC:DST, not '$p'"
    P_SRC+=("$(daemon_cmd "${p%%:*}")") P_DST+=("$(daemon_cmd "${p#*:}")")
    P_NAME+=("${p%%:*}->${p#*:}")
  done
fi
IFS=', ' read -r -a mlist <<<"$modes"
for m in "${mlist[@]}"; do
  case $m in find-paths | file-handles) ;; *) vg_die "unknown mode '$m' (find-paths, file-handles)" ;; esac
done

vg_accel
vg_log "QEMU: $VG_QEMU ($("$VG_QEMU" --version | head -1)); accel=$VG_ACCEL; guest memory $VG_MEM"
RUN=0
for i in "${!P_NAME[@]}"; do
  unfit=$(daemon_unfit "${P_SRC[$i]}")
  [ -n "$unfit" ] || [ "${P_DST[$i]}" = "${P_SRC[$i]}" ] || unfit=$(daemon_unfit "${P_DST[$i]}")
  for m in "${mlist[@]}"; do
    NAME="migration/${P_NAME[$i]}/$m"
    if [ -n "$unfit" ]; then
      r_skip run "$unfit"
      continue
    fi
    if [ "$m" = file-handles ] && [ "$(id -u)" != 0 ]; then
      r_skip run "file-handles needs CAP_DAC_READ_SEARCH on the destination (run as root)"
      continue
    fi
    RUN=$((RUN + 1))
    vg_log "$NAME: source '${P_SRC[$i]}', destination '${P_DST[$i]}'"
    run_one "${P_SRC[$i]}" "${P_DST[$i]}" "$m"
    mig_cleanup
  done
done

vg_log "total $(($(date +%s) - T_START))s"
[ "$NFAIL" = 0 ] || VG_KEEP=1
echo "test-migration: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

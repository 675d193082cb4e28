#!/usr/bin/env bash
# End-to-end test of a virtio-fs daemon with a real Linux guest (run by
# `make check`).
#
# For each cache mode: make a fresh shared dir with host-made files, start
# the daemon on it, boot the test guest, run guest-checks.sh in it (I/O,
# renames, links, attributes, permissions, xattrs, sparse files, fallocate,
# mmap, concurrent writers, copy_file_range ...), then verify on the host
# what the guest did: checksums, stat fields, owners, xattrs, layouts.
#
# Usage: test-guest.sh [--cache=always,never] [--no-xattr] [--keep] [--verbose]
#   --cache=LIST   comma-separated cache modes, one boot each
#                  (default: $VG_CACHE_MODES or "always,never")
#   --no-xattr     do not pass --xattr; xattr checks then expect EOPNOTSUPP
#   --keep         keep the temp dir (shares, logs); same as VG_KEEP=1
#   --verbose      print the guest console after each boot
# Environment: VIRTIOFSD (daemon; default build/virtiofsd), VIRTIOFSD_OPTS,
# VG_ACCEL=kvm|tcg, VG_TIMEOUT ... (see lib.sh).
#
# Output: one line per check, "PASS: <mode>/<name>", "FAIL: <mode>/<name>:
# <reason>" or "SKIP: <mode>/<name>: <reason>"; names starting with "host:"
# are checked on the host after the guest ran.  Logs of a failing boot go
# to stderr.  The last line is "test-guest: N passed, N failed, N skipped";
# the exit status is non-zero if anything failed.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

modes=${VG_CACHE_MODES:-always,never}
xattr=1
while [ $# -gt 0 ]; do
  case $1 in
    --cache=*) modes=${1#*=} ;;
    --no-xattr) xattr=0 ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vg_die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

T_START=$(date +%s)
vg_setup
GT=$VG_IMG/guest-tool        # static: runs on the host as well
NPASS=0 NFAIL=0 NSKIP=0
MODE=

# ---- reporting ---------------------------------------------------------------
r_pass() { echo "PASS: $MODE/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: $MODE/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: $MODE/$1: $2"; NSKIP=$((NSKIP + 1)); }
h_eq() { # NAME GOT WANT  (host-side check)
  if [ "$2" = "$3" ]; then r_pass "host:$1"; else r_fail "host:$1" "got '$2', want '$3'"; fi
}
h_true() { # NAME REASON-IF-FALSE COMMAND...
  local name=$1 why=$2
  shift 2
  if "$@" >/dev/null 2>&1; then r_pass "host:$name"; else r_fail "host:$name" "$why"; fi
}
st() { stat -c "$1" "$S/$2" 2>&1 || true; }
content() { cat "$S/$1" 2>&1 || true; }

# ---- the share -----------------------------------------------------------------
declare -A HOST_SUM=()
prepare_share() {
  S=$VG_TMP/share-$MODE
  mkdir -p "$S/host/root-dir" "$S/host/many"
  chmod 0755 "$S" "$S/host"      # the unprivileged guest user must traverse it
  echo "hello from the host" >"$S/host/small.txt"
  : >"$S/host/empty.txt"
  head -c 8M /dev/urandom >"$S/host/random-8M.bin"
  # 32 MiB, 4 KiB of data at 8 MiB, holes elsewhere
  "$GT" sparse "$S/host/sparse-host.bin" 32M 8M
  echo "root data" >"$S/host/root-file.txt"; chmod 0644 "$S/host/root-file.txt"
  echo "secret" >"$S/host/root-secret.txt"; chmod 0600 "$S/host/root-secret.txt"
  echo keep >"$S/host/root-dir/keep.txt"; chmod 0755 "$S/host/root-dir"
  # long-ish names so the listing needs many readdir buffers
  "$GT" mkfiles "$S/host/many" 3000 a-directory-entry-with-a-fairly-long-name-
  echo x >"$S/host/xattr-host.txt"
  HOST_XATTR=1
  "$GT" setxattr "$S/host/xattr-host.txt" user.host host-value 2>/dev/null || HOST_XATTR=0
  local f
  for f in small.txt empty.txt random-8M.bin sparse-host.bin; do
    HOST_SUM[host/$f]=$(sha256sum "$S/host/$f" | cut -d' ' -f1)
  done
}

# ---- host-side verification -------------------------------------------------------
check_sums() {
  local line sum path want seen=" "
  while read -r _ sum path; do
    seen="$seen$path "
    want=$(sha256sum "$S/$path" 2>/dev/null | cut -d' ' -f1 || true)
    if [ -n "${HOST_SUM[$path]:-}" ] && [ "${HOST_SUM[$path]}" != "$want" ]; then
      r_fail "host:sha256:$path" "the host file changed during the run"
    elif [ "$sum" = "$want" ]; then
      r_pass "host:sha256:$path"
    else
      r_fail "host:sha256:$path" "guest read/wrote ${sum:0:16}..., host has ${want:0:16}..."
    fi
  done < <(grep '^SUM: ' "$VG_RESULTS" || true)
  # files whose checksum the guest must have reported
  for path in host/small.txt host/empty.txt host/random-8M.bin host/sparse-host.bin \
    g/large.bin g/sparse.bin g/cfr-copy.bin g/small/s0 g/small/s4097 g/small/s131073; do
    case $seen in
      *" $path "*) ;;
      *) r_fail "host:sha256:$path" "the guest reported no checksum for it" ;;
    esac
  done
  line=$(sha256sum "$S/g/cfr-copy.bin" 2>/dev/null | cut -d' ' -f1 || true)
  h_eq copy-file-range-equals-source "$line" "${HOST_SUM[host/random-8M.bin]}"
}

host_checks() {
  local blocks ino1 ino2 data total avail htotal havail
  h_eq tiny-file "$(content g/tiny.txt)" abc
  h_eq large-file-size "$(st %s g/large.bin)" 20971520
  # sparse: size and allocation
  h_eq sparse-size "$(st %s g/sparse.bin)" 67108864
  blocks=$(st %b g/sparse.bin)
  if [[ $blocks =~ ^[0-9]+$ ]] && [ $((blocks * 512)) -lt 1048576 ]; then r_pass host:sparse-allocated-blocks
  else r_fail host:sparse-allocated-blocks "64 MiB file with 8 KiB of data uses $blocks blocks of 512 (holes lost?)"; fi
  # directories and names
  h_true dirs-layout "d1/d2 missing or d3/rmme present" \
    test -d "$S/g/d1/d2" -a ! -e "$S/g/d1/d2/d3" -a ! -e "$S/g/rmme"
  h_true name-255-bytes "missing" test -f "$S/g/$(printf '%0255d' 0)"
  h_true name-spaces-unicode "missing" test -f "$S/g/name with spaces & ünïcødé.txt"
  # renames
  h_true rename-file "ren-a still there" test ! -e "$S/g/ren-a" -a ! -e "$S/g/ren-a2"
  h_eq rename-across-dirs "$(content g/ren-dir2/sub/moved)" A
  h_true rename-dir "ren-dir still there" test ! -e "$S/g/ren-dir" -a -d "$S/g/ren-dir2/sub"
  h_eq rename-replace "$(content g/ren-over-target)" new
  h_true rename-replace-source-gone "ren-over-src still there" test ! -e "$S/g/ren-over-src"
  h_eq rename-exchange "$(content g/xch-1)$(content g/xch-2)" YX
  h_true rename-exchange-file-dir "types not swapped" test -d "$S/g/xch-file" -a -f "$S/g/xch-dir"
  h_eq rename-noreplace "$(content g/ren-b2)" B
  h_true rename-noreplace-source-gone "ren-b still there" test ! -e "$S/g/ren-b"
  h_true unlink "unlink-me still there" test ! -e "$S/g/unlink-me"
  h_true unlink-open-file "unlink-open still there" test ! -e "$S/g/unlink-open"
  # links
  h_eq symlink "$(readlink "$S/g/sym-link" 2>&1)" sym-target
  h_eq symlink-dangling "$(readlink "$S/g/sym-dangling" 2>&1)" does-not-exist
  h_eq hardlink-nlink "$(st %h g/hl-1)" 2
  ino1=$(st %i g/hl-1) ino2=$(st %i g/hl-2)
  h_eq hardlink-same-inode "$ino2" "$ino1"
  h_eq hardlink-content "$(content g/hl-1 | tr '\n' ,)" "hl,via-2,"
  h_eq hardlink-nlink-after-unlink "$(st %h g/hl-4)" 1
  # attributes
  h_eq chmod "$(st %a g/mode.txt)" 640
  h_eq chmod-sticky-dir "$(st %a g/sticky)" 1777
  h_eq chown "$(st %u:%g g/owned.txt)" 1234:5678
  h_eq truncate-grow "$(st %s g/trunc-grow.txt)" 1048576
  h_eq truncate-grow-zeros "$(tail -c +6 "$S/g/trunc-grow.txt" 2>&1 | tr -d '\0' | wc -c)" 0
  h_eq truncate-shrink "$(content g/trunc-shrink.txt)" hel
  h_eq utimensat-atime "$(st %.9X g/times.txt)" 1000000000.123456789
  h_eq utimensat-mtime "$(st %.9Y g/times.txt)" 1234567890.987654321
  h_eq touch-d-mtime "$(st %Y g/touch-d.txt)" 1118131750
  # the unprivileged guest user
  h_eq user-file-owner "$(st %u:%g g/userdir/u.txt)" 1000:1000
  h_eq user-file-content "$(content g/userdir/u.txt)" user-data
  h_eq user-dir-owner "$(st %u:%g g/userdir/udir)" 1000:1000
  h_eq root-file-untouched "$(content host/root-file.txt) $(st %u:%a host/root-file.txt)" "root data 0:644"
  h_eq root-dir-untouched "$(find "$S/host/root-dir" -mindepth 1 -printf '%P ')" "keep.txt "
  # directory sizes
  h_eq many-count "$(find "$S/g/many" -mindepth 1 | wc -l)" 1100
  h_eq many-host-count "$(find "$S/host/many" -mindepth 1 | wc -l)" 3000
  # xattrs
  if [ "$xattr" = 1 ] && [ "$HOST_XATTR" = 1 ]; then
    h_eq xattr-guest-set "$("$GT" getxattr "$S/g/xattr.txt" user.guest 2>&1)" guest-value
    h_true xattr-guest-removed "user.gone still present" "$GT" -e ENODATA getxattr "$S/g/xattr.txt" user.gone
    h_eq xattr-on-dir "$("$GT" getxattr "$S/g/xattr-dir" user.dir 2>&1)" dir-value
  elif [ "$HOST_XATTR" = 0 ]; then
    r_skip host:xattr "the host filesystem of $VG_TMP has no user xattrs"
  fi
  # special files
  h_eq mkfifo-type "$(st %F g/fifo)" fifo
  # statfs: totals come from the same filesystem, so they must agree closely
  data=$(sed -n 's/^DATA: statfs //p' "$VG_RESULTS")
  read -r total avail <<<"${data:-x x}"
  read -r htotal havail < <("$GT" statfs "$S" | sed -n 's/^total_bytes=\([0-9]*\) avail_bytes=\([0-9]*\)$/\1 \2/p')
  if [[ $total =~ ^[0-9]+$ ]] && [ "$total" -gt 0 ]; then
    # total: within 0.1%; available: within 2% of the total (other I/O)
    if [ $(((total > htotal ? total - htotal : htotal - total) * 1000 / htotal)) -le 1 ] &&
      [ $(((avail > havail ? avail - havail : havail - avail) * 100 / htotal)) -le 2 ]; then
      r_pass host:statfs-matches
    else
      r_fail host:statfs-matches "guest total/avail $total/$avail bytes, host $htotal/$havail"
    fi
  else
    r_fail host:statfs-matches "guest reported no statfs numbers"
  fi
  # fallocate: 4 MiB allocated + 1 MiB beyond EOF (KEEP_SIZE); punched 1 MiB
  h_eq fallocate-size "$(st %s g/falloc.bin)" 4194304
  blocks=$(st %b g/falloc.bin)
  if [[ $blocks =~ ^[0-9]+$ ]] && [ $((blocks * 512)) -ge 5242880 ]; then r_pass host:fallocate-allocated
  else r_fail host:fallocate-allocated "falloc.bin has $blocks blocks of 512, want >= 5 MiB"; fi
  blocks=$(st %b g/punch.bin)
  if [[ $blocks =~ ^[0-9]+$ ]] && [ $((blocks * 512)) -le $((3 * 1048576 + 65536)) ]; then r_pass host:fallocate-punched
  else r_fail host:fallocate-punched "punch.bin has $blocks blocks of 512, want <= 3 MiB"; fi
  h_eq fsync-content "$(content g/fsync.txt)" "synced data"
  if grep -q '^PASS: mmap-write-shared$' "$VG_RESULTS"; then
    h_eq mmap-write-content "$(content g/mmap-w.txt)" AAAAmmapAAAAAAAA
  fi
  # concurrent writers: the exact pattern, verified by the same code on the host
  h_true concurrent-threads "pattern mismatch (run guest-tool verify-pattern)" \
    "$GT" verify-pattern "$S/g/conc-threads.bin" 4 8M
  h_true concurrent-procs "pattern mismatch (run guest-tool verify-pattern)" \
    "$GT" verify-pattern "$S/g/conc-procs.bin" 3 5000000
  check_sums
}

# ---- one boot per cache mode -------------------------------------------------------
daemon_opts=()
[ "$xattr" = 0 ] || daemon_opts+=(--xattr)
IFS=', ' read -r -a mode_list <<<"$modes"
for MODE in "${mode_list[@]}"; do
  [ -n "$MODE" ] || continue
  VG_CACHE_MODE=$MODE
  prepare_share
  # the guest insists on working xattrs only if both the daemon (--xattr)
  # and the host filesystem can provide them
  VG_GUEST_ENV="VG_XATTR=$((xattr && HOST_XATTR)); export VG_XATTR"
  vg_log "cache=$MODE: booting the guest (daemon: $VIRTIOFSD)"
  nfail_before=$NFAIL
  completed=1
  # a host process holds a POSIX lock and an flock the guest must see
  echo locked >"$S/host/locked-by-host.txt"
  "$GT" hold-locks "$S/host/locked-by-host.txt" >/dev/null &
  holder=$!
  vg_run_guest "$S" "$VG_DIR/guest-checks.sh" "${daemon_opts[@]}" || completed=0
  kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true
  # the guest's own verdicts
  while IFS= read -r line; do
    case $line in
      "PASS: "*) echo "PASS: $MODE/${line#PASS: }"; NPASS=$((NPASS + 1)) ;;
      "FAIL: "*) echo "FAIL: $MODE/${line#FAIL: }"; NFAIL=$((NFAIL + 1)) ;;
      "SKIP: "*) echo "SKIP: $MODE/${line#SKIP: }"; NSKIP=$((NSKIP + 1)) ;;
    esac
  done <"$VG_RESULTS"
  if [ "$VG_DAEMON_END" = "did not start" ]; then
    r_fail daemon-start "the daemon did not start (log above)"
    continue
  fi
  if grep -q '^VG-MOUNT failed' "$VG_RESULTS"; then
    r_fail guest-mount "mount -t virtiofs failed in the guest (see console log)"
  fi
  if [ "$completed" = 1 ] && grep -q '^DATA: guest-done ' "$VG_RESULTS"; then
    r_pass guest-completed
  elif [ -n "$VG_DAEMON_DIED" ]; then
    r_fail guest-completed "$VG_DAEMON_DIED ($VG_DAEMON_END); last result: $(grep -E '^(PASS|FAIL|SKIP): ' "$VG_RESULTS" | tail -1)"
    completed=0
  elif [ "$VG_QEMU_RC" = 124 ]; then
    r_fail guest-completed "timed out after ${VG_TIMEOUT}s; last result: $(grep -E '^(PASS|FAIL|SKIP): ' "$VG_RESULTS" | tail -1)"
  else
    r_fail guest-completed "the guest did not finish the checks (qemu status $VG_QEMU_RC); last result: $(grep -E '^(PASS|FAIL|SKIP): ' "$VG_RESULTS" | tail -1)"
  fi
  if grep -q '^VG-UMOUNT ok' "$VG_RESULTS"; then r_pass guest-umount
  elif [ "$completed" = 1 ]; then r_fail guest-umount "umount in the guest failed"; fi
  case $VG_DAEMON_END in
    # Ours keeps serving when the VMM leaves and ends cleanly on SIGTERM; the
    # Rust virtiofsd exits with its front-end, which is visible as a skip.
    terminated:0*) r_pass daemon-kept-serving-and-stopped-cleanly ;;
    exited:0) r_skip daemon-kept-serving-and-stopped-cleanly "exited when its front-end left" ;;
    *) r_fail daemon-kept-serving-and-stopped-cleanly "$VG_DAEMON_END" ;;
  esac
  if [ "$completed" = 1 ]; then
    host_checks
  else
    # what the guest left half-done would only cascade into noise
    r_skip host-checks "the guest did not complete"
  fi
  vg_log "cache=$MODE: accel=$VG_ACCEL, boot+checks took ${VG_BOOT_SECS}s, daemon $VG_DAEMON_END"
  if [ "$NFAIL" != "$nfail_before" ]; then
    vg_show_logs 60
  fi
done

vg_log "total $(($(date +%s) - T_START))s"
echo "test-guest: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

#!/usr/bin/env bash
# POSIX conformance over the share, judged against the host's own file
# system.
#
# posix-conform (posix-conform.c, built static into the guest image) checks
# chmod, chown, link, mkdir, mkfifo, mknod, open, rename, rmdir, symlink,
# truncate, ftruncate, unlink, utimensat, posix_fallocate and write: success
# paths with the resulting stat fields, error paths with the exact errno,
# sticky directories, set-ID clearing, ctime/mtime updates.  It runs as root
# and as an unprivileged user (root makes the fixtures owned by others, then
# the program drops to --uid/--gid).
#
#  1. baseline: the same binary runs natively, in a directory on the file
#     system that holds the shares (so the host's own file system, e.g.
#     ext4), as root and as the unprivileged uid; --other is /dev/shm when it
#     is another file system (EXDEV checks).
#  2. for each cache mode (default never and always): start the daemon (its
#     default sandbox, --xattr) on a fresh share, boot the guest once, run
#     the program on the virtio-fs mount as root and then as the uid
#     (--other is the guest's /tmp, a tmpfs).  The guest copies the host's
#     fs.protected_* sysctls first: link(2) of another user's file depends
#     on fs.protected_hardlinks, and the host applies its own value again
#     when the daemon links.
#  3. per check: PASS if it passes in the guest; if it fails in the guest,
#     SKIP when it fails natively as well ("fails natively too"), FAIL when
#     it passes natively (or has no native result).  A check that passes
#     natively but did not run in the guest fails too.
#
# Usage: test-conformance.sh [--cache=never,always] [--uid=N] [--keep] [--verbose]
#   --cache=LIST   comma-separated cache modes, one boot each
#                  (default: $VG_CACHE_MODES or "never,always")
#   --uid=N        the unprivileged user (uid = gid; default 1000)
#   --keep         keep the temp dir (shares, logs, raw results); VG_KEEP=1
#   --verbose      print the guest console after each boot
# Environment: VIRTIOFSD (daemon; default build/virtiofsd), VIRTIOFSD_OPTS,
# VG_ACCEL=kvm|tcg, VG_TIMEOUT ... (see lib.sh).  Needs root (the fixtures
# and the unprivileged native run).
#
# Output: "PASS: conform/<cache>/<user>/<check>", "FAIL: ...: <guest
# result>", "SKIP: ...: <reason>"; <user> is root or uid<N>; <cache> is
# "native" for the baseline's own completion checks.  The last line is
# "test-conformance: N passed, N failed, N skipped"; the exit status is
# non-zero if anything failed.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

modes=${VG_CACHE_MODES:-never,always}
uid=1000
while [ $# -gt 0 ]; do
  case $1 in
    --cache=*) modes=${1#*=} ;;
    --uid=*) uid=${1#*=} ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vg_die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[[ $uid =~ ^[1-9][0-9]*$ ]] || vg_die "--uid must be a positive number"
[ "$(id -u)" = 0 ] || vg_die "needs root (fixtures owned by others, the unprivileged baseline)"

T_START=$(date +%s)
vg_setup
PC=$VG_IMG/posix-conform      # static: the guest's binary, run natively too
[ -x "$PC" ] || vg_die "no posix-conform in the guest image $VG_IMG"
USERS=(root "uid$uid")
NPASS=0 NFAIL=0 NSKIP=0

r_pass() { echo "PASS: conform/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: conform/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: conform/$1: $2"; NSKIP=$((NSKIP + 1)); }

# Results of one run of posix-conform (its stdout in FILE) into the
# associative arrays named by the caller: STATE[name]=PASS|FAIL|SKIP,
# WHY[name]=reason; ORDER (indexed) keeps the program's order.
declare -A NAT_STATE=() NAT_WHY=() G_STATE=() G_WHY=()
declare -a G_ORDER=() NAT_ORDER=()
parse_results() { # FILE KEY-PREFIX STATE-ARRAY WHY-ARRAY ORDER-ARRAY
  local line st rest name
  local -n _st=$3 _why=$4 _ord=$5
  while IFS= read -r line; do
    case $line in
      "PASS: "* | "FAIL: "* | "SKIP: "*) ;;
      *) continue ;;
    esac
    st=${line%%: *}
    rest=${line#*: }
    name=${rest%%: *}
    _st[$2$name]=$st
    if [ "$rest" != "$name" ]; then _why[$2$name]=${rest#*: }; else _why[$2$name]=""; fi
    _ord+=("$2$name")
  done <"$1"
}

# ---- 1. the native baseline ------------------------------------------------------------
# VG_TMP is 0700; the unprivileged run must be able to reach its directory.
chmod 0711 "$VG_TMP"
NATIVE=$VG_TMP/native
mkdir -m 0755 "$NATIVE"
NATIVE_FS=$(findmnt -n -o FSTYPE --target "$NATIVE" 2>/dev/null || stat -f -c %T "$NATIVE")
native_other=()
NATIVE_OTHER=
if [ -d /dev/shm ] && [ -w /dev/shm ] &&
  [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$NATIVE")" ]; then
  NATIVE_OTHER=$(mktemp -d /dev/shm/vg-conform.XXXXXX)
  chmod 0755 "$NATIVE_OTHER"
  native_other=(--other "$NATIVE_OTHER")
  trap 'rm -rf "$NATIVE_OTHER"; vg_cleanup' EXIT
fi
vg_log "native baseline on $NATIVE_FS ($NATIVE), other fs: ${NATIVE_OTHER:-none}"
for who in "${USERS[@]}"; do
  ids=()
  [ "$who" = root ] || ids=(--uid "$uid" --gid "$uid")
  out=$VG_TMP/native-$who.txt
  rc=0
  "$PC" "$NATIVE" "${ids[@]}" "${native_other[@]}" >"$out" 2>"$VG_TMP/native-$who.err" || rc=$?
  parse_results "$out" "$who/" NAT_STATE NAT_WHY NAT_ORDER
  summary=$(grep '^posix-conform: ' "$out" | tail -1 || true)
  if [ -n "$summary" ] && [ "$rc" -le 1 ]; then
    r_pass "native/$who/completed"
    vg_log "native $who: ${summary#posix-conform: }"
  else
    r_fail "native/$who/completed" "status $rc: $(tail -3 "$VG_TMP/native-$who.err" | tr '\n' ' ')"
  fi
done
rm -rf "$NATIVE"

# ---- 2. the guest, one boot per cache mode ----------------------------------------------
GUEST_SCRIPT=$VG_TMP/conform-guest.sh
cat >"$GUEST_SCRIPT" <<'EOF'
#!/bin/sh
# The guest half of test-conformance.sh (busybox sh, as root).
M=${VG_MNT:-/mnt}
# mirror the host's fs.protected_* (link/open of others' files depend on them)
for k in hardlinks symlinks regular fifos; do
  eval "v=\${VG_PROTECTED_$k:-}"
  [ -z "$v" ] || echo "$v" >"/proc/sys/fs/protected_$k" 2>/dev/null ||
    echo "cannot set fs.protected_$k" >&2
done
mkdir -p /tmp/other
chmod 0755 /tmp/other
run() { # WHO [ARGS...]
  who=$1
  shift
  echo "VG-CONFORM-START $who"
  { posix-conform "$M" --other /tmp/other "$@"; echo "rc=$?"; } | sed "s/^/$who /"
}
run root
run "uid$VG_CONFORM_UID" --uid "$VG_CONFORM_UID" --gid "$VG_CONFORM_UID"
echo "VG-CONFORM-DONE"
EOF

guest_env="VG_CONFORM_UID=$uid; export VG_CONFORM_UID"
for k in hardlinks symlinks regular fifos; do
  v=$(cat "/proc/sys/fs/protected_$k" 2>/dev/null || true)
  [ -z "$v" ] || guest_env="$guest_env
VG_PROTECTED_$k=$v; export VG_PROTECTED_$k"
done

IFS=', ' read -r -a mode_list <<<"$modes"
for MODE in "${mode_list[@]}"; do
  [ -n "$MODE" ] || continue
  VG_CACHE_MODE=$MODE
  S=$VG_TMP/share-$MODE
  mkdir -p "$S"
  chmod 0755 "$S"
  VG_GUEST_ENV=$guest_env
  vg_log "cache=$MODE: booting the guest (daemon: $VIRTIOFSD)"
  nfail_before=$NFAIL
  completed=1
  vg_run_guest "$S" "$GUEST_SCRIPT" --xattr || completed=0
  if [ "$VG_DAEMON_END" = "did not start" ]; then
    r_fail "$MODE/daemon-start" "the daemon did not start"
    continue
  fi
  if grep -q '^VG-MOUNT failed' "$VG_RESULTS"; then
    r_fail "$MODE/guest-mount" "mount -t virtiofs failed in the guest (see console log)"
  fi
  if [ "$completed" = 1 ] && grep -q '^VG-CONFORM-DONE' "$VG_RESULTS"; then
    r_pass "$MODE/guest-completed"
  elif [ -n "$VG_DAEMON_DIED" ]; then
    r_fail "$MODE/guest-completed" "$VG_DAEMON_DIED ($VG_DAEMON_END)"
  elif [ "$VG_QEMU_RC" = 124 ]; then
    r_fail "$MODE/guest-completed" "timed out after ${VG_TIMEOUT}s"
  else
    r_fail "$MODE/guest-completed" "the guest did not finish (qemu status $VG_QEMU_RC)"
  fi

  G_STATE=() G_WHY=() G_ORDER=()
  for who in "${USERS[@]}"; do
    sed -n "s|^$who ||p" "$VG_RESULTS" >"$VG_BOOT_DIR/guest-$who.txt"
    parse_results "$VG_BOOT_DIR/guest-$who.txt" "$who/" G_STATE G_WHY G_ORDER
    summary=$(grep '^posix-conform: ' "$VG_BOOT_DIR/guest-$who.txt" | tail -1 || true)
    if [ -n "$summary" ]; then
      vg_log "cache=$MODE $who: ${summary#posix-conform: }"
    else
      r_fail "$MODE/$who/completed" "posix-conform did not finish in the guest ($(grep '^rc=' "$VG_BOOT_DIR/guest-$who.txt" || echo 'no status'))"
    fi
  done

  # ---- 3. judge every check against the baseline
  declare -A seen=()
  for key in "${G_ORDER[@]}"; do
    seen[$key]=1
    case ${G_STATE[$key]} in
      PASS) r_pass "$MODE/$key" ;;
      SKIP) r_skip "$MODE/$key" "${G_WHY[$key]}" ;;
      FAIL)
        case ${NAT_STATE[$key]:-none} in
          PASS) r_fail "$MODE/$key" "${G_WHY[$key]} (passes natively on $NATIVE_FS)" ;;
          FAIL) r_skip "$MODE/$key" "fails natively too (guest: ${G_WHY[$key]}; native: ${NAT_WHY[$key]})" ;;
          *) r_fail "$MODE/$key" "${G_WHY[$key]} (no native result: ${NAT_WHY[$key]:-not run})" ;;
        esac
        ;;
    esac
  done
  for key in "${NAT_ORDER[@]}"; do
    if [ -z "${seen[$key]:-}" ] && [ "${NAT_STATE[$key]}" = PASS ]; then
      r_fail "$MODE/$key" "passes natively but did not run in the guest"
    fi
  done
  unset seen

  if ! grep -q '^VG-UMOUNT ok' "$VG_RESULTS" && [ "$completed" = 1 ]; then
    r_fail "$MODE/guest-umount" "umount in the guest failed"
  fi
  vg_log "cache=$MODE: accel=$VG_ACCEL, boot+checks took ${VG_BOOT_SECS}s, daemon $VG_DAEMON_END"
  if [ "$NFAIL" != "$nfail_before" ]; then
    vg_show_logs 30
  fi
done

vg_log "total $(($(date +%s) - T_START))s"
echo "test-conformance: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

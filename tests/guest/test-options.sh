#!/usr/bin/env bash
# shellcheck disable=SC2016  # the guest snippets are single-quoted on purpose
# Every daemon option's effect, seen from inside a real guest.
#
# A table of entries; each entry is one guest boot: a set of daemon options
# (options that do not interfere share a boot), a short guest script (busybox
# sh + guest-tool, run the same way test-guest.sh runs guest-checks.sh), host
# preparation before the boot and host checks after it.  While the guest
# runs, it can ask the host to act or look at the serving process ("live"
# requests: the guest prints "VG-LIVE <name> ." on its results channel and
# waits until the host created .vg-live/<name>.done in the share): the host
# then changes files behind the guest's back (cache modes), or reads
# /proc/<serving pid>/{status,limits,fd,fdinfo} (caps, rlimit, fds, O_DIRECT).
#
#  option                         what is checked
#  --readonly                     EROFS for create, open-for-write, truncate, chmod, chown,
#                                 unlink, mkdir, rmdir, rename, symlink, link, mkfifo,
#                                 utimensat, setxattr, removexattr; reads, readdir, readlink,
#                                 getxattr work; host tree unchanged
#  (default, no --xattr)          setxattr/getxattr fail with EOPNOTSUPP
#  --xattr                        set/get/list/remove work, land on / come from the host
#  --xattrmap :map::user.virtiofs.:  guest user.foo is user.virtiofs.user.foo on the host;
#                                 host-only names hidden (list) and absent (ENODATA); a host
#                                 user.virtiofs.user.x shows as user.x
#  --translate-uid/--translate-gid  map:1000:201000:10 / map:1000:301000:10: files made by guest
#                                 1000 are 201000:301000 on the host; host 201005:301005 shows
#                                 as 1005:1005; chown 1002:1003 lands as 201002:301003;
#                                 forbid-guest:1500:1 gives uid 1500 EPERM; uid 0 unchanged
#  --no-readdirplus               listing works; the trace log shows FUSE_READDIR and no
#                                 FUSE_READDIRPLUS, INIT lacks DO_READDIRPLUS (the default
#                                 boot shows FUSE_READDIRPLUS)
#  --cache=never|metadata|auto|always  the host overwrites (same size), chmods and appends
#                                 after the guest read: never sees all at once; metadata sees
#                                 the data at once but keeps the old mode; auto sees all after
#                                 1 s; always keeps the old data and mode
#  --writeback                    INIT flag 0x10000 (absent by default); 1 MiB write, appends,
#                                 partial overwrite, a write-only file as uid 1000 land on the host
#  --allow-direct-io              the daemon's host fd of a guest O_DIRECT open has O_DIRECT
#                                 (stripped by default); O_DIRECT write/read work
#  --announce-submounts / --no-announce-submounts  a tmpfs mounted on share/sub on the host:
#                                 its own st_dev in the guest (and a guest submount) / the same
#                                 st_dev as the share
#  --killpriv-v2                  INIT flag 1<<28 (absent by default); a write or truncate by
#                                 a non-owner clears set-ID bits as on a local fs (also checked
#                                 without it)
#  --preserve-noatime             plain reads still update atime, and a guest O_NOATIME open
#                                 keeps O_NOATIME on the daemon's host fd (dropped by default)
#  --socket-group                 the socket's group and mode 0660
#  --log-level                    trace/debug/info/warn/error: which levels appear in the log
#  --syslog                       the daemon serves; no log line on stderr (with /dev/log),
#                                 else one warning and the log on stderr
#  --rlimit-nofile                Max open files of the serving process (default: soft = hard)
#  --thread-pool-size=4           the serving process has >= 4 more threads than by default;
#                                 the guest works
#  --modcaps=+sys_admin:-mknod    CapEff = the default set -MKNOD +SYS_ADMIN; guest mknod of a
#                                 device fails with EPERM (works by default); mkfifo works
#  --sandbox=chroot|none, --seccomp=none  root of the serving process (the share / the host's
#                                 /), Seccomp 2 / 0 (namespace mode, lockdown and escapes are
#                                 test-sandbox.sh's job)
#  -o source=,cache=none,xattr,no_readdirplus -d -f  the source (not the --shared-dir decoy)
#                                 is served, cache=none behaves as never, xattrs work, INIT
#                                 lacks DO_READDIRPLUS, -d logs debug but no trace
#  --posix-acl                    INIT flag 1<<20; a host ACL granting uid 1000 read is
#                                 honoured by the guest; getxattr system.posix_acl_access works
#                                 (by default the guest denies: it sees only the mode)
#  --security-label               INIT flag FUSE_SECURITY_CTX (1<<32); creates still work
#  --allow-mmap                   with --cache=never, MAP_SHARED mmap works when the guest
#                                 kernel negotiates FUSE_DIRECT_IO_ALLOW_MMAP (1<<36); the
#                                 6.1 guest does not offer it: SKIP with the reason
#  --inode-file-handles=mandatory|prefer  after `ls -lR` of 1600 files the serving process
#                                 holds < 160 more fds (by default, below its fd budget: one
#                                 fd per inode); reads, writes, renames of walked files work
# Checks of an option whose daemon log says it is "not implemented" are reported
# as "SKIP: ...: not implemented yet" (they become real checks once it is).
#
# Usage: test-options.sh [--only=ENTRY,...] [--list] [--keep] [--verbose]
#   --only=LIST    run only these entries (see --list)
#   --list         print the entries and their daemon options, and exit
#   --keep         keep the temp dir (shares, logs); same as VG_KEEP=1
#   --verbose      print the guest console after each boot
# Environment: VIRTIOFSD (daemon; default build/virtiofsd), VIRTIOFSD_OPTS,
# VG_ACCEL=kvm|tcg, VG_TIMEOUT ... (see lib.sh).  Needs root (owners, id
# translation, mounts, device nodes).
#
# Output: "PASS: opt/<option>/<check>", "FAIL: opt/<option>/<check>: <reason>",
# "SKIP: opt/<option>/<check>: <reason>"; names with "host:" are judged on the
# host.  The last line is "test-options: N passed, N failed, N skipped"; the
# exit status is non-zero if anything failed.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only=""
list=0
while [ $# -gt 0 ]; do
  case $1 in
    --only=*) only=${1#*=} ;;
    --list) list=1 ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '3,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vg_die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

# ---- the table -------------------------------------------------------------------
# entry | --shared-dir given to the daemon (share or decoy) | daemon options
# (@S@: the share, @DECOY@: a decoy dir, @GROUP@: a group for the socket).
# The rest of an entry: e_<entry>_prep (host, before), e_<entry>_guest (prints
# the guest script), e_<entry>_check (host, after).
TABLE=(
  "base              | share | --cache=auto --log-level=trace --no-announce-submounts"
  "readonly          | share | --cache=never --readonly --xattr --log-level=warn --socket-group=@GROUP@ --rlimit-nofile=4242 --thread-pool-size=4"
  "metadata          | share | --cache=metadata --xattr --posix-acl"
  "always            | share | --cache=always --writeback --sandbox=chroot"
  "xattrmap          | share | --xattrmap=:map::user.virtiofs.: --sandbox=none --seccomp=none --modcaps=+sys_admin:-mknod --log-level=error"
  "translate         | share | --cache=never --translate-uid=map:1000:201000:10 --translate-gid=map:1000:301000:10 --translate-uid=forbid-guest:1500:1 --killpriv-v2"
  "announce          | share | --announce-submounts"
  "syslog            | share | --syslog"
  "noreaddirplus     | share | --no-readdirplus --log-level=trace --allow-direct-io --preserve-noatime"
  "legacy            | decoy | -o source=@S@,cache=none,xattr,no_readdirplus -d -f"
  "handles-mandatory | share | --cache=never --inode-file-handles=mandatory --allow-mmap"
  "handles-prefer    | share | --inode-file-handles=prefer --security-label --xattr"
)
# Options still being implemented: when the daemon log says one is "not
# implemented", its checks are skipped.
MAYBE_UNIMPLEMENTED=(posix-acl security-label allow-mmap inode-file-handles)

# one table row into ROW_NAME, ROW_SHARED, ROW_OPTS (blanks around the fields dropped)
split_row() {
  local n w o
  IFS='|' read -r n w o <<<"$1"
  read -r ROW_NAME <<<"$n"
  read -r ROW_SHARED <<<"$w"
  read -r ROW_OPTS <<<"$o"
}
if [ "$list" = 1 ]; then
  for row in "${TABLE[@]}"; do
    split_row "$row"
    printf '%-18s %s\n' "$ROW_NAME" "$ROW_OPTS"
  done
  exit 0
fi
[ "$(id -u)" = 0 ] || vg_die "test-options.sh needs root (owners, id translation, mounts, mknod)"

T_START=$(date +%s)
vg_setup
chmod 0711 "$VG_TMP"   # uid 1000 (native baseline) must reach its directory
GT=$VG_IMG/guest-tool        # static: runs on the host as well
VG_CACHE_MODE=auto VG_LOG_LEVEL=info   # every entry sets its own
NPASS=0 NFAIL=0 NSKIP=0
S='' DLOG='' FACTS='' NOTIMPL=" "
MOUNTS=()
NFILES=1600                  # files of the tree walked by `ls -lR` (fd counts)
DEFAULT_CAP_EFF=             # CapEff of the serving process with default options (base)
DEFAULT_THREADS=             # its thread count while a guest is connected

opt_cleanup() {
  local m
  for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
  MOUNTS=()
  vg_cleanup
}
trap opt_cleanup EXIT

# ---- reporting ---------------------------------------------------------------------
# NAME is <option>/<check>; checks of an option the daemon says it does not
# implement yet are skipped.
report() { # PASS|FAIL|SKIP NAME [REASON]
  local st=$1 name=$2 why=${3:-} o=${2%%/*}
  if [ "$st" != SKIP ] && [[ $NOTIMPL == *" $o "* ]]; then
    st=SKIP why="not implemented yet"
  fi
  case $st in
    PASS) echo "PASS: opt/$name"; NPASS=$((NPASS + 1)) ;;
    FAIL) echo "FAIL: opt/$name: $why"; NFAIL=$((NFAIL + 1)) ;;
    *) echo "SKIP: opt/$name: $why"; NSKIP=$((NSKIP + 1)) ;;
  esac
}
r_pass() { report PASS "$1"; }
r_fail() { report FAIL "$1" "$2"; }
r_skip() { report SKIP "$1" "$2"; }
h_eq() { # NAME GOT WANT
  if [ "$2" = "$3" ]; then r_pass "$1"; else r_fail "$1" "got '$2', want '$3'"; fi
}
h_true() { # NAME REASON-IF-FALSE COMMAND...
  local name=$1 why=$2
  shift 2
  if "$@" >/dev/null 2>&1; then r_pass "$name"; else r_fail "$name" "$why"; fi
}
st() { stat -c "$1" "$S/$2" 2>&1 || true; }
content() { cat "$S/$1" 2>&1 || true; }
hxattr() { "$GT" getxattr "$S/$1" "$2" 2>&1 || true; }
fact() { sed -n "s/^$1=//p" "$FACTS" 2>/dev/null | tail -1; }
gdata() { sed -n "s/^DATA: $1 //p" "$VG_RESULTS" 2>/dev/null | tail -1; }
init_flags() { # the negotiated INIT flags (hex, no 0x), or nothing
  sed -n 's/.*fuse: session initialized, protocol 7\.[0-9]*, flags 0x\([0-9a-fA-F]*\).*/\1/p' \
    "$DLOG" | tail -1
}
h_flag() { # NAME BIT 1|0
  local f
  f=$(init_flags)
  if [ -z "$f" ]; then
    r_fail "$1" "no 'session initialized ... flags' line in the daemon log"
  elif [ $(((16#$f >> $2) & 1)) = "$3" ]; then
    r_pass "$1"
  else
    r_fail "$1" "INIT flags 0x$f: bit $2 is $(((16#$f >> $2) & 1)), want $3"
  fi
}
log_levels() { # the levels of the daemon's log lines, sorted, one line
  sed -n 's/^\[[^] ]* \([a-z]*\) virtiofsd\] .*/\1/p' "$DLOG" | sort -u | tr '\n' ' ' | sed 's/ $//'
}
h_levels_only() { # NAME ALLOWED-LEVEL...: no line of another level
  local name=$1 l bad=""
  shift
  for l in $(log_levels); do
    case " $* " in *" $l "*) ;; *) bad="$bad $l" ;; esac
  done
  if [ -z "$bad" ]; then r_pass "$name"; else r_fail "$name" "log lines of level(s)$bad (levels seen: $(log_levels))"; fi
}
# A tmpfs on DIR (in the share) as a host submount; 0 if mounted.
host_submount() { # DIR
  mkdir -p "$1"
  if mount -t tmpfs -o size=1m,mode=0755 vg-opt-sub "$1" 2>/dev/null; then
    MOUNTS+=("$1")
    echo inner >"$1/inner.txt"
    return 0
  fi
  return 1
}

# ---- live requests (the host side) -----------------------------------------------------
# Each handler prints key=value facts (appended to FACTS).
serving_pid() { vg_serving_pid "$VG_DAEMON_PID"; }
live_proc() {
  local pid
  pid=$(serving_pid) || { echo "proc_error=no serving process"; return 0; }
  echo "serving_pid=$pid"
  echo "cap_eff=$(awk '$1 == "CapEff:" {print $2}' "/proc/$pid/status")"
  echo "seccomp=$(awk '$1 == "Seccomp:" {print $2}' "/proc/$pid/status")"
  echo "nofile=$(awk '/^Max open files/ {print $4 " " $5}' "/proc/$pid/limits")"
  echo "root=$(stat -L -c %d:%i "/proc/$pid/root" 2>/dev/null || echo '?')"
  echo "fds_start=$(vg_proc_fds "$pid")"
  echo "threads=$(vg_proc_status "$pid" Threads)"
  echo "sock=$(stat -c '%G %a' "$SOCK" 2>/dev/null || echo '?')"
}
live_fds() {
  local pid
  pid=$(serving_pid) && echo "fds_walk=$(vg_proc_fds "$pid")"
}
# The open flags (octal, from fdinfo) of the daemon's non-O_PATH fd on FILE.
daemon_fd_flags() { # FILE
  local pid f flags got=""
  pid=$(serving_pid) || return 0
  for _ in $(seq 1 50); do
    while IFS= read -r f; do
      flags=$(awk '$1 == "flags:" {print $2}' "/proc/$pid/fdinfo/${f##*/}" 2>/dev/null || true)
      if [ -n "$flags" ] && [ $((8#$flags & 8#10000000)) = 0 ]; then got=$flags; break; fi
    done < <(find -L "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -samefile "$1" 2>/dev/null)
    [ -z "$got" ] || break
    sleep 0.1
  done
  echo "${got:-none}"
}
live_dio() { echo "dio_flags=$(daemon_fd_flags "$S/dio.bin")"; }
live_noatime() { echo "noatime_flags=$(daemon_fd_flags "$S/noatime.bin")"; }
# Behind the guest's back: same-size overwrite, chmod, append.
live_cache() {
  printf 'BBBB\n' | dd of="$S/cache/f" conv=notrunc status=none
  chmod 0600 "$S/cache/h"
  printf 'line2\n' >>"$S/cache/g"
  echo "cache_changed=1"
}

# Answer the guest's VG-LIVE requests until QEMU exits.
live_serve() {
  local handled=0 req
  local -a reqs
  while vg_alive "$VG_QEMU_PID"; do
    mapfile -t reqs < <(sed -n 's/^VG-LIVE \([a-z0-9-]*\) \.\r\{0,1\}$/\1/p' "$VG_RESULTS" 2>/dev/null)
    while [ "$handled" -lt "${#reqs[@]}" ]; do
      req=${reqs[$handled]}
      handled=$((handled + 1))
      if declare -F "live_$req" >/dev/null; then
        "live_$req" >>"$FACTS" 2>>"$FACTS.err" || echo "live_error=$req" >>"$FACTS"
      else
        echo "live_error=unknown request $req" >>"$FACTS"
      fi
      touch "$S/.vg-live/$req.done"
    done
    sleep 0.1
  done
}

# ---- the guest side ----------------------------------------------------------------------
guest_prologue() {
  cat <<'EOF'
#!/bin/sh
# generated by test-options.sh: the shared helpers, then one entry's checks
M=${VG_MNT:-/mnt}
T=guest-tool
exec 4>&1        # the results channel, also from inside pipelines
pass() { echo "PASS: $1" >&4; }
fail() { echo "FAIL: $1: $2" >&4; }
skip() { echo "SKIP: $1: $2" >&4; }
data() { echo "DATA: $*" >&4; }
oneline() { tr '\n' ' ' | cut -c1-200; }
eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
ok() { # NAME COMMAND...: must succeed
  local n=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$n"; else fail "$n" "$(echo "$out" | oneline)"; fi
}
err() { # NAME ERRNO GUEST-TOOL-ARGS...: guest-tool's first failing call gets ERRNO
  local n=$1 e=$2 out
  shift 2
  if out=$($T -e "$e" "$@" 2>&1); then pass "$n"; else fail "$n" "$(echo "$out" | oneline)"; fi
}
fails_with() { # NAME MESSAGE COMMAND...: a busybox command fails with strerror MESSAGE
  local n=$1 msg=$2 out
  shift 2
  if out=$("$@" 2>&1); then fail "$n" "succeeded"
  else case $out in *"$msg"*) pass "$n" ;; *) fail "$n" "$(echo "$out" | oneline)" ;; esac; fi
}
as_user() { $T runas 1000 1000 "$@"; }
err_as() { # NAME UID ERRNO GUEST-TOOL-ARGS...: the same as uid:gid UID:UID
  local n=$1 u=$2 e=$3 out
  shift 3
  if out=$($T runas "$u" "$u" $T -e "$e" "$@" 2>&1); then pass "$n"; else fail "$n" "$(echo "$out" | oneline)"; fi
}
# ask the host to run its live handler NAME, wait until it is done
live() {
  local n=0
  echo "VG-LIVE $1 ." >&4
  while [ ! -e "$M/.vg-live/$1.done" ]; do
    n=$((n + 1))
    if [ $n -gt 600 ]; then fail "live-$1" "the host did not answer in 60 s"; return 1; fi
    sleep 0.1
  done
}
# the host overwrites cache/f (same size), appends to cache/g and chmods
# cache/h after the guest read them; what the guest sees depends on the cache
# mode.  h is never read: a read invalidates the guest's cached atime, and the
# next stat would then fetch every attribute anew.
cache_scenario() { # MODE PREFIX
  local m=$1 p=$2 f=$M/cache/f g=$M/cache/g h=$M/cache/h c a gl
  eq "$p/guest-read-before" "$(cat $f) $(cat $g) $(stat -c %a $h)" "AAAA line1 644"
  live cache
  a=$(stat -c %a $h) c=$(cat $f) gl=$(cat $g | tr '\n' ,)
  data "cache-immediately $c $a $gl"
  case $m in
    never)
      eq "$p/host-overwrite-seen-at-once" "$c" BBBB
      eq "$p/host-chmod-seen-at-once" "$a" 600
      eq "$p/host-append-seen-at-once" "$gl" "line1,line2," ;;
    metadata)
      eq "$p/host-overwrite-seen-at-once" "$c" BBBB
      eq "$p/attributes-cached" "$a" 644 ;;
    always)
      eq "$p/data-cache-kept" "$c" AAAA
      eq "$p/attributes-cached" "$a" 644 ;;
  esac
  sleep 1.5
  a=$(stat -c %a $h) c=$(cat $f) gl=$(cat $g | tr '\n' ,)
  case $m in
    never | auto) eq "$p/host-changes-seen-after-1s" "$c $a $gl" "BBBB 600 line1,line2," ;;
    metadata) eq "$p/attributes-still-cached-after-1s" "$a" 644 ;;
    always) eq "$p/data-and-attributes-still-cached-after-1s" "$c $a" "AAAA 644" ;;
  esac
}
# a guest O_DIRECT write and read, then an O_DIRECT read held open while the
# host looks at the daemon's fd (dd blocks on the full pipe)
dio_scenario() { # PREFIX
  local want
  dd if=/dev/urandom of=/tmp/dio.src bs=4096 count=64 2>/dev/null
  want=$(sha256sum </tmp/dio.src | cut -d' ' -f1)
  ok "$1/o_direct-write-works" dd if=/tmp/dio.src of=$M/dio-w.bin oflag=direct bs=4096
  data "dio-w-sum $want"
  eq "$1/o_direct-read-back" "$(dd if=$M/dio-w.bin iflag=direct bs=4096 2>/dev/null | sha256sum | cut -d' ' -f1)" "$want"
  dd if=$M/dio.bin iflag=direct bs=4096 2>/dev/null | { live dio; cat >/dev/null; }
  rm -f /tmp/dio.src
}
# set-ID bits after a non-owner's write or truncate, as on a local fs
killpriv_scenario() { # PREFIX
  as_user sh -c "echo more >>$M/kp/w" || fail "$1/write-as-other" "write failed"
  as_user sh -c ": >$M/kp/t" || fail "$1/truncate-as-other" "truncate failed"
  as_user sh -c "echo more >>$M/kp/g" || fail "$1/write-sgid-noexec-as-other" "write failed"
  [ "${VG_CACHE_MODE:-auto}" = never ] || sleep 1.1   # cached attributes expire
  eq "$1/write-by-other-as-native" "$(stat -c %a $M/kp/w)" "$VG_KP_W"
  eq "$1/truncate-by-other-as-native" "$(stat -c %a $M/kp/t)" "$VG_KP_T"
  eq "$1/write-setgid-without-group-exec-as-native" "$(stat -c %a $M/kp/g)" "$VG_KP_G"
}
# walk a big tree (every inode stays referenced by the guest), count the daemon's fds
walk_tree() {
  data "walked $(ls -lR $M/tree | grep -c '^-')"
  live fds
}
EOF
}
guest_epilogue() {
  cat <<'EOF'
data "guest-done 1"
EOF
}

# host fixtures shared by several entries
prep_cache() {
  mkdir -p "$S/cache"
  printf 'AAAA\n' >"$S/cache/f"
  printf 'line1\n' >"$S/cache/g"
  : >"$S/cache/h"; chmod 0644 "$S/cache/h"
}
prep_killpriv() {
  mkdir -p "$S/kp"
  echo orig >"$S/kp/w"; chmod 06777 "$S/kp/w"
  echo orig >"$S/kp/t"; chmod 04777 "$S/kp/t"
  echo orig >"$S/kp/g"; chmod 02766 "$S/kp/g"
}
check_killpriv() { # PREFIX
  h_eq "$1/host:write-by-other-as-native" "$(st %a kp/w) $(content kp/w | tr '\n' ,)" "$KP_W orig,more,"
  h_eq "$1/host:truncate-by-other-as-native" "$(st '%a %s' kp/t)" "$KP_T 0"
  h_eq "$1/host:write-setgid-without-group-exec-as-native" "$(st %a kp/g)" "$KP_G"
}
# What a local file system does (the reference): the same writes and truncate
# by uid 1000, natively, on the file system holding the shares.  Whether
# S_ISGID without group execute survives a non-member's write differs between
# kernel versions, so it is not hard-coded.
native_killpriv() {
  local d=$VG_TMP/native-kp
  mkdir -p "$d"; chmod 0777 "$d"
  echo orig >"$d/w"; chmod 06777 "$d/w"
  echo orig >"$d/t"; chmod 04777 "$d/t"
  echo orig >"$d/g"; chmod 02766 "$d/g"
  "$GT" runas 1000 1000 sh -c "echo more >>'$d/w'; : >'$d/t'; echo more >>'$d/g'" ||
    vg_die "the native killpriv baseline failed"
  KP_W=$(stat -c %a "$d/w") KP_T=$(stat -c %a "$d/t") KP_G=$(stat -c %a "$d/g")
  rm -rf "$d"
  vg_log "native set-ID clearing by a non-owner's write/truncate: 6777 -> $KP_W, 4777 -> $KP_T, 2766 -> $KP_G"
}
prep_tree() {
  mkdir -p "$S/tree/a" "$S/tree/b"
  "$GT" mkfiles "$S/tree/a" $((NFILES / 2)) file-
  "$GT" mkfiles "$S/tree/b" $((NFILES / 2)) file-
}
check_walk() { # NAME few|many
  local walked s w
  walked=$(gdata walked) s=$(fact fds_start) w=$(fact fds_walk)
  if ! [[ $s =~ ^[0-9]+$ && $w =~ ^[0-9]+$ ]] || [ "$walked" != "$NFILES" ]; then
    r_fail "$1" "no fd counts (guest walked '${walked:-?}' files of $NFILES; fds '$s' -> '$w')"
  elif [ "$2" = few ] && [ $((w - s)) -lt $((NFILES / 10)) ]; then
    r_pass "$1"
  elif [ "$2" = many ] && [ $((w - s)) -ge "$NFILES" ]; then
    r_pass "$1"
  else
    r_fail "$1" "the serving process went from $s to $w fds after the guest looked up $NFILES files (want $([ "$2" = few ] && echo "< $((NFILES / 10)) more" || echo ">= $NFILES more"))"
  fi
}
prep_acl() { # a 0600 root file + a host ACL granting uid 1000 read; 0 if the ACL is set
  mkdir -p "$S/acl"
  echo acl-secret >"$S/acl/secret"; chmod 0600 "$S/acl/secret"
  echo plain >"$S/acl/plain"; chmod 0600 "$S/acl/plain"
  local py=python3
  [ ! -x /usr/bin/python3 ] || py=/usr/bin/python3
  "$py" - "$S/acl/secret" <<'PY' 2>/dev/null
import os, struct, sys
# user::rw- user:1000:r-- group::--- mask::r-- other::---
U = 0xffffffff
entries = [(0x01, 6, U), (0x02, 4, 1000), (0x04, 0, U), (0x10, 4, U), (0x20, 0, U)]
value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
os.setxattr(sys.argv[1], "system.posix_acl_access", value)
PY
}
check_dio() { # PREFIX 1|0 (O_DIRECT expected on the host fd)
  local fl
  fl=$(fact dio_flags)
  h_eq "$1/host:o_direct-write-content" "$(sha256sum "$S/dio-w.bin" 2>/dev/null | cut -d' ' -f1)" "$(gdata dio-w-sum)"
  if ! [[ $fl =~ ^[0-7]+$ ]]; then
    r_fail "$1/host:daemon-fd-o_direct" "no daemon fd on dio.bin found while the guest held it open ($fl)"
  elif [ $(((8#$fl & 8#40000) != 0)) = "$2" ]; then
    r_pass "$1/host:daemon-fd-o_direct"
  else
    r_fail "$1/host:daemon-fd-o_direct" "the daemon's fd has flags 0$fl: O_DIRECT is $([ "$2" = 1 ] && echo missing || echo set)"
  fi
}
native_killpriv
KP_ENV="VG_KP_W=$KP_W VG_KP_T=$KP_T VG_KP_G=$KP_G"
HOST_NOATIME=0
case ",$(findmnt -n -o OPTIONS --target "$VG_TMP" 2>/dev/null)," in *,noatime,*) HOST_NOATIME=1 ;; esac
prep_atime() {
  echo atime >"$S/atime.txt"
  touch -m -d '2020-01-02 00:00:00' "$S/atime.txt"
  touch -a -d '2020-01-01 00:00:00' "$S/atime.txt"
}
check_atime() { # NAME
  local a
  a=$(st %X atime.txt)
  if [ "$HOST_NOATIME" = 1 ]; then r_skip "$1" "the host file system is mounted noatime"
  elif [ "$(gdata atime-read)" != atime ]; then r_fail "$1" "the guest did not read atime.txt"
  elif [[ $a =~ ^[0-9]+$ ]] && [ "$a" -gt 1577923200 ]; then r_pass "$1"
  else r_fail "$1" "host atime still $(date -u -d "@$a" +%FT%TZ 2>/dev/null || echo "$a") after the guest read it"; fi
}

# ---- entry: base (defaults, cache=auto, trace log) ----------------------------------------
e_base_prep() {
  prep_cache; prep_killpriv; prep_tree
  head -c 1M /dev/urandom >"$S/dio.bin"
  head -c 1M /dev/urandom >"$S/noatime.bin"
  mkdir -p "$S/w"; chmod 0777 "$S/w"
  echo x >"$S/x.txt"
  mkdir -p "$S/dir"; "$GT" mkfiles "$S/dir" 20 e-
  ACL_OK=0; prep_acl && ACL_OK=1
  SUBMOUNT=0; host_submount "$S/sub" && SUBMOUNT=1
  GUEST_ENV="VG_SUBMOUNT=$SUBMOUNT VG_ACL=$ACL_OK $KP_ENV"
}
e_base_guest() {
  cat <<'EOF'
live proc
$T cat-noatime $M/noatime.bin | { live noatime; cat >/dev/null; }
err xattr/default-setxattr-eopnotsupp EOPNOTSUPP setxattr $M/x.txt user.foo bar
err xattr/default-getxattr-eopnotsupp EOPNOTSUPP getxattr $M/x.txt user.foo
eq no-readdirplus/default-listing "$(ls -l $M/dir | grep -c '^-')" 20
if [ "$VG_SUBMOUNT" = 1 ]; then
  eq no-announce-submounts/submount-content "$(cat $M/sub/inner.txt)" inner
  eq no-announce-submounts/submount-same-st_dev "$(stat -c %d $M/sub) $(stat -c %d $M/sub/inner.txt)" "$(stat -c %d $M) $(stat -c %d $M)"
  if grep -q " $M/sub " /proc/mounts; then fail no-announce-submounts/no-guest-submount "$(grep " $M/sub " /proc/mounts | oneline)"
  else pass no-announce-submounts/no-guest-submount; fi
else
  skip no-announce-submounts/submount-same-st_dev "the host cannot mount a tmpfs in the share"
fi
if [ "$VG_ACL" = 1 ]; then
  err_as posix-acl/default-host-acl-not-honoured 1000 EACCES open $M/acl/secret r
fi
ok modcaps/default-mknod-device mknod $M/w/null c 1 3
dio_scenario allow-direct-io/default
killpriv_scenario killpriv-v2/default
cache_scenario auto cache-auto
walk_tree
EOF
}
e_base_check() {
  local nfl
  nfl=$(fact noatime_flags)
  if ! [[ $nfl =~ ^[0-7]+$ ]]; then
    r_fail preserve-noatime/host:default-drops-o_noatime "no daemon fd on noatime.bin while the guest held it open ($nfl)"
  else
    h_eq preserve-noatime/host:default-drops-o_noatime $(((8#$nfl & 8#1000000) != 0)) 0
  fi
  h_levels_only log-level/host:trace-no-other-levels error warn info debug trace
  h_true log-level/host:trace-logs-requests "no 'fuse: FUSE_LOOKUP unique' trace line" grep -q 'trace virtiofsd\] fuse: FUSE_LOOKUP unique' "$DLOG"
  h_true log-level/host:trace-includes-debug "no debug line" grep -q ' debug virtiofsd\] ' "$DLOG"
  h_true no-readdirplus/host:default-sends-readdirplus "no FUSE_READDIRPLUS in the trace log" \
    grep -q 'fuse: FUSE_READDIRPLUS unique' "$DLOG"
  h_flag no-readdirplus/host:default-init-do-readdirplus 13 1
  h_flag writeback/host:default-init-no-writeback-cache 16 0
  h_flag killpriv-v2/host:default-init-no-handle-killpriv-v2 28 0
  h_flag announce-submounts/host:default-init-no-submounts 27 0
  h_flag posix-acl/host:default-init-no-posix-acl 20 0
  h_flag security-label/host:default-init-no-security-ctx 32 0
  check_dio allow-direct-io/default 0
  check_killpriv killpriv-v2/default
  DEFAULT_CAP_EFF=$(fact cap_eff) DEFAULT_THREADS=$(fact threads)
  h_eq modcaps/host:default-mknod-device "$(st '%F %t:%T' w/null)" "character special file 1:3"
  local nf
  nf=$(fact nofile)
  if [[ $nf =~ ^([0-9]+)\ ([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] &&
    [ "${BASH_REMATCH[1]}" -ge "$(ulimit -Sn)" ]; then
    r_pass rlimit-nofile/host:default-raised-to-hard-limit
  else
    r_fail rlimit-nofile/host:default-raised-to-hard-limit "soft/hard '$nf' (the test's soft limit: $(ulimit -Sn))"
  fi
  check_walk inode-file-handles/host:default-one-fd-per-inode many
}

# ---- entry: readonly (+ cache=never, warn log, socket group, rlimit, thread pool) ---------
if getent group users >/dev/null; then SOCK_GROUP=users
else SOCK_GROUP=$(getent group | awk -F: '$3 != 0 {print $1; exit}'); fi
e_readonly_prep() {
  prep_cache
  mkdir -p "$S/ro/dir"
  echo "read me" >"$S/ro/file.txt"
  echo victim >"$S/ro/victim"
  ln -s file.txt "$S/ro/link"
  XATTR_OK=0
  "$GT" setxattr "$S/ro/file.txt" user.ro v 2>/dev/null && XATTR_OK=1
  GUEST_ENV="VG_XATTR=$XATTR_OK"
  RO_BEFORE=$(ro_snapshot)
}
ro_snapshot() { find "$S/ro" -printf '%P %y %m %U:%G %s %T@\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1; }
e_readonly_guest() {
  cat <<'EOF'
live proc
R=$M/ro
eq readonly/read-works "$(cat $R/file.txt)" "read me"
eq readonly/readdir-works "$(ls $R | tr '\n' ' ')" "dir file.txt link victim "
eq readonly/readlink-works "$(readlink $R/link)" file.txt
err readonly/create-erofs EROFS open $R/new creat
err readonly/open-for-write-erofs EROFS open $R/file.txt w
err readonly/mkfifo-erofs EROFS mkfifo $R/fifo
err readonly/rename-erofs EROFS noreplace $R/victim $R/renamed
err readonly/utimensat-erofs EROFS utimens $R/file.txt 1 1
fails_with readonly/truncate-erofs "Read-only file system" truncate -s 0 $R/file.txt
fails_with readonly/chmod-erofs "Read-only file system" chmod 600 $R/file.txt
fails_with readonly/chown-erofs "Read-only file system" chown 1000:1000 $R/file.txt
fails_with readonly/unlink-erofs "Read-only file system" rm -f $R/victim
fails_with readonly/mkdir-erofs "Read-only file system" mkdir $R/newdir
fails_with readonly/rmdir-erofs "Read-only file system" rmdir $R/dir
fails_with readonly/symlink-erofs "Read-only file system" ln -s x $R/sym
fails_with readonly/link-erofs "Read-only file system" ln $R/file.txt $R/hard
if [ "$VG_XATTR" = 1 ]; then
  eq readonly/getxattr-works "$($T getxattr $R/file.txt user.ro 2>&1)" v
  err readonly/setxattr-erofs EROFS setxattr $R/file.txt user.new x
  err readonly/removexattr-erofs EROFS removexattr $R/file.txt user.ro
fi
cache_scenario never cache-never
pass thread-pool-size/guest-works
EOF
}
e_readonly_check() {
  h_eq readonly/host:tree-unchanged "$(ro_snapshot)" "$RO_BEFORE"
  [ "$XATTR_OK" != 1 ] || h_eq readonly/host:xattrs-unchanged "$("$GT" listxattr "$S/ro/file.txt" 2>&1 | grep '^user\.' | tr '\n' ' ')" "user.ro "
  h_eq socket-group/host:socket-group-and-mode "$(fact sock)" "$SOCK_GROUP 660"
  h_eq rlimit-nofile/host:serving-process-limit "$(fact nofile | cut -d' ' -f1)" 4242
  local t
  t=$(fact threads)
  if [ -z "$DEFAULT_THREADS" ]; then
    r_skip thread-pool-size/host:pool-threads "the base entry (default thread count) did not run"
  elif [[ $t =~ ^[0-9]+$ ]] && [ "$t" -gt "$DEFAULT_THREADS" ] &&
    [ "$t" -le $((DEFAULT_THREADS + 4)) ]; then
    # pool threads start when requests wait for one: at least one by now, at most 4
    r_pass thread-pool-size/host:pool-threads
  else
    r_fail thread-pool-size/host:pool-threads "the serving process has $t threads, $DEFAULT_THREADS by default: want 1 to 4 more (pool threads on demand)"
  fi
  h_levels_only log-level/host:warn-hides-info-debug-trace error warn
}

# ---- entry: metadata (+ xattr, posix-acl) ---------------------------------------------------
e_metadata_prep() {
  prep_cache
  mkdir -p "$S/x"
  echo x >"$S/x/file"
  XATTR_OK=0
  if "$GT" setxattr "$S/x/file" user.hostattr hv 2>/dev/null; then
    "$GT" setxattr "$S/x/file" user.gone gone
    XATTR_OK=1
  fi
  ACL_OK=0; prep_acl && ACL_OK=1
  GUEST_ENV="VG_XATTR=$XATTR_OK VG_ACL=$ACL_OK"
}
e_metadata_guest() {
  cat <<'EOF'
live proc
X=$M/x/file
if [ "$VG_XATTR" = 1 ]; then
  ok xattr/setxattr-works $T setxattr $X user.foo bar
  eq xattr/getxattr-own "$($T getxattr $X user.foo 2>&1)" bar
  eq xattr/getxattr-host-set "$($T getxattr $X user.hostattr 2>&1)" hv
  eq xattr/listxattr "$($T listxattr $X 2>&1 | grep '^user\.' | sort | tr '\n' ' ')" "user.foo user.gone user.hostattr "
  ok xattr/removexattr-works $T removexattr $X user.gone
else
  skip xattr/guest "the host file system has no user xattrs"
fi
if [ "$VG_ACL" = 1 ]; then
  eq posix-acl/host-acl-grants-guest-user-read "$(as_user cat $M/acl/secret 2>&1)" acl-secret
  ok posix-acl/getxattr-posix_acl_access $T getxattr $M/acl/secret system.posix_acl_access
  err_as posix-acl/acl-without-write-denies-write 1000 EACCES open $M/acl/secret w
  err_as posix-acl/file-without-acl-denied 1000 EACCES open $M/acl/plain r
else
  skip posix-acl/guest "the host file system takes no POSIX ACL"
fi
cache_scenario metadata cache-metadata
EOF
}
e_metadata_check() {
  if [ "$XATTR_OK" = 1 ]; then
    h_eq xattr/host:guest-set-on-host "$(hxattr x/file user.foo)" bar
    h_true xattr/host:guest-removed-on-host "user.gone still set" "$GT" -e ENODATA getxattr "$S/x/file" user.gone
  fi
  if [ "$ACL_OK" = 1 ]; then h_flag posix-acl/host:init-posix-acl 20 1; fi
  h_levels_only log-level/host:info-default-no-debug error warn info
}

# ---- entry: always (+ writeback, sandbox=chroot) --------------------------------------------
e_always_prep() {
  prep_cache
  mkdir -p "$S/wb"; chmod 0777 "$S/wb"
  echo 0123456789 >"$S/wb/mid.txt"
  : >"$S/wb/wo"; chown 1000:1000 "$S/wb/wo"; chmod 0200 "$S/wb/wo"
}
e_always_guest() {
  cat <<'EOF'
live proc
dd if=/dev/urandom of=/tmp/wb.bin bs=64k count=16 2>/dev/null
cp /tmp/wb.bin $M/wb/data.bin && sync
# what data.bin must hold after the mmap write of its first 4 bytes below
data "wb-sum $({ printf MMAP; tail -c +5 /tmp/wb.bin; } | sha256sum | cut -d' ' -f1)"
printf a >>$M/wb/app && printf b >>$M/wb/app
$T pwrite $M/wb/mid.txt 3 XY || fail writeback/partial-overwrite "pwrite failed"
as_user sh -c "echo wo >$M/wb/wo" || fail writeback/write-only-file-as-owner "write failed"
$T mmap-write $M/wb/data.bin 0 MMAP || fail writeback/mmap-write "mmap-write failed"
sync
cache_scenario always cache-always
EOF
}
e_always_check() {
  h_flag writeback/host:init-writeback-cache 16 1
  h_eq writeback/host:data-landed "$(sha256sum "$S/wb/data.bin" 2>/dev/null | cut -d' ' -f1)" "$(gdata wb-sum)"
  h_eq writeback/host:mmap-write-landed "$(head -c 4 "$S/wb/data.bin" 2>&1)" MMAP
  h_eq writeback/host:appends "$(content wb/app)" ab
  h_eq writeback/host:partial-overwrite "$(content wb/mid.txt)" 012XY56789
  h_eq writeback/host:write-only-file-as-owner "$(content wb/wo)" wo
  h_eq sandbox/host:chroot-root-is-the-share "$(fact root)" "$(stat -c %d:%i "$S")"
  h_eq seccomp/host:chroot-default-filter "$(fact seccomp)" 2
}

# ---- entry: xattrmap (+ sandbox=none, seccomp=none, modcaps, error log) ----------------------
e_xattrmap_prep() {
  mkdir -p "$S/m" "$S/w"; chmod 0777 "$S/w"
  echo m >"$S/m/file"
  XATTR_OK=0
  if "$GT" setxattr "$S/m/file" user.hostonly h 2>/dev/null; then
    "$GT" setxattr "$S/m/file" user.virtiofs.user.shown s
    XATTR_OK=1
  fi
  GUEST_ENV="VG_XATTR=$XATTR_OK"
}
e_xattrmap_guest() {
  cat <<'EOF'
live proc
X=$M/m/file
if [ "$VG_XATTR" = 1 ]; then
  ok xattrmap/setxattr-works $T setxattr $X user.foo bar
  eq xattrmap/getxattr-own "$($T getxattr $X user.foo 2>&1)" bar
  eq xattrmap/prefixed-host-name-shown-unprefixed "$($T getxattr $X user.shown 2>&1)" s
  eq xattrmap/listxattr-mapped-only "$($T listxattr $X 2>&1 | sort | tr '\n' ' ')" "user.foo user.shown "
  err xattrmap/host-only-name-absent ENODATA getxattr $X user.hostonly
else
  skip xattrmap/guest "the host file system has no user xattrs"
fi
fails_with modcaps/mknod-device-eperm "Operation not permitted" mknod $M/w/null c 1 3
ok modcaps/mkfifo-still-works mkfifo $M/w/fifo
EOF
}
e_xattrmap_check() {
  if [ "$XATTR_OK" = 1 ]; then
    h_eq xattrmap/host:guest-name-stored-prefixed "$(hxattr m/file user.virtiofs.user.foo)" bar
    h_true xattrmap/host:no-unprefixed-guest-name "user.foo exists on the host" \
      "$GT" -e ENODATA getxattr "$S/m/file" user.foo
    h_eq xattrmap/host:host-only-name-untouched "$(hxattr m/file user.hostonly)" h
  fi
  # the default set minus MKNOD (27) plus SYS_ADMIN (21); the default set itself is
  # test-sandbox.sh's business (documented: CHOWN DAC_OVERRIDE FOWNER FSETID SETGID
  # SETUID MKNOD SETFCAP, 0x880000db)
  local got want
  got=$(fact cap_eff)
  if ! [[ $got =~ ^[0-9a-f]{16}$ ]]; then
    r_fail modcaps/host:cap-eff "no CapEff of the serving process ('$got')"
  elif [ -n "$DEFAULT_CAP_EFF" ]; then
    want=$(printf '%016x' $(((16#$DEFAULT_CAP_EFF & ~(1 << 27)) | (1 << 21))))
    if [ "$got" = "$want" ]; then r_pass modcaps/host:cap-eff
    else r_fail modcaps/host:cap-eff "CapEff 0x$got, want 0x$want (the default set 0x$DEFAULT_CAP_EFF -mknod +sys_admin)"; fi
  else # the base entry did not run: only the two bits
    h_eq modcaps/host:cap-eff-mknod-sys_admin "$(((16#$got >> 27) & 1)) $(((16#$got >> 21) & 1))" "0 1"
  fi
  h_true modcaps/host:no-device-node "w/null exists" test ! -e "$S/w/null"
  h_eq sandbox/host:none-root-is-host-root "$(fact root)" "$(stat -L -c %d:%i /)"
  h_eq seccomp/host:none-no-filter "$(fact seccomp)" 0
  h_levels_only log-level/host:error-only error
}

# ---- entry: translate (uid/gid translation, killpriv-v2, cache=never) -----------------------
e_translate_prep() {
  prep_killpriv
  GUEST_ENV=$KP_ENV
  mkdir -p "$S/t"; chmod 0777 "$S/t"
  echo m >"$S/t/mapped"; chown 201005:301005 "$S/t/mapped"
  echo r >"$S/t/rootfile"; chmod 0644 "$S/t/rootfile"
  echo c >"$S/t/chowned"
}
e_translate_guest() {
  cat <<'EOF'
live proc
D=$M/t
as_user touch $D/byguest || fail translate-uid/create-as-1000 "touch failed"
as_user mkdir $D/dirguest || fail translate-uid/mkdir-as-1000 "mkdir failed"
eq translate-uid/own-file-shows-guest-uid "$(stat -c %u $D/byguest)" 1000
eq translate-gid/own-file-shows-guest-gid "$(stat -c %g $D/byguest)" 1000
eq translate-uid/host-owner-mapped-back "$(stat -c %u $D/mapped)" 1005
eq translate-gid/host-group-mapped-back "$(stat -c %g $D/mapped)" 1005
eq translate-uid/unmapped-id-unchanged "$(stat -c %u:%g $D/rootfile)" 0:0
ok translate-uid/chown-into-range chown 1002:1003 $D/chowned
eq translate-uid/chown-guest-view "$(stat -c %u:%g $D/chowned)" 1002:1003
err_as translate-uid/forbid-guest-eperm 1500 EPERM open $D/rootfile r
killpriv_scenario killpriv-v2
EOF
}
e_translate_check() {
  h_eq translate-uid/host:created-file-owner "$(st %u t/byguest)" 201000
  h_eq translate-gid/host:created-file-group "$(st %g t/byguest)" 301000
  h_eq translate-uid/host:created-dir-owner "$(st %u:%g t/dirguest)" 201000:301000
  h_eq translate-uid/host:chown-lands-mapped "$(st %u t/chowned)" 201002
  h_eq translate-gid/host:chown-lands-mapped "$(st %g t/chowned)" 301003
  h_flag killpriv-v2/host:init-handle-killpriv-v2 28 1
  check_killpriv killpriv-v2
}

# ---- entries: announce (submounts), syslog ---------------------------------------------------
e_announce_prep() {
  SUBMOUNT=0; host_submount "$S/sub" && SUBMOUNT=1
  GUEST_ENV="VG_SUBMOUNT=$SUBMOUNT"
}
e_announce_guest() {
  cat <<'EOF'
if [ "$VG_SUBMOUNT" = 1 ]; then
  # stat(2) of the mount point itself does not trigger the guest's automount:
  # reading in it does
  eq announce-submounts/submount-content "$(cat $M/sub/inner.txt)" inner
  d0=$(stat -c %d $M) d1=$(stat -c %d $M/sub) d2=$(stat -c %d $M/sub/inner.txt)
  if [ -n "$d1" ] && [ "$d0" != "$d1" ] && [ "$d1" = "$d2" ]; then pass announce-submounts/submount-own-st_dev
  else fail announce-submounts/submount-own-st_dev "st_dev $d1 of $M/sub, $d2 of $M/sub/inner.txt, $d0 of $M"; fi
  if grep -q " $M/sub virtiofs " /proc/mounts; then pass announce-submounts/guest-submount-mounted
  else fail announce-submounts/guest-submount-mounted "$(grep " $M" /proc/mounts | oneline)"; fi
  cd /; umount $M/sub 2>/dev/null   # or /init's umount of $M is busy
else
  skip announce-submounts/submount-own-st_dev "the host cannot mount a tmpfs in the share"
fi
EOF
}
e_announce_check() { :; }
e_syslog_prep() { :; }
e_syslog_guest() {
  cat <<'EOF'
ok syslog/guest-works touch $M/syslog-probe
EOF
}
e_syslog_check() {
  local n
  n=$(grep -c '^\[.* virtiofsd\] ' "$DLOG" || true)
  if [ -S /dev/log ]; then
    # the daemon connected to /dev/log before its sandbox: nothing goes to stderr
    if [ "$n" = 0 ]; then r_pass syslog/host:nothing-on-stderr
    else r_fail syslog/host:nothing-on-stderr "$n log lines on stderr, e.g. $(grep -m1 '^\[.* virtiofsd\] ' "$DLOG")"; fi
  else
    # no syslog daemon here: one warning, then the log goes to stderr (and the daemon lives:
    # the guest check above ran under the default seccomp filter)
    if grep -q 'syslog: cannot reach /dev/log' "$DLOG" && [ "$n" -gt 0 ]; then
      r_pass syslog/host:falls-back-to-stderr-with-a-warning
    else
      r_fail syslog/host:falls-back-to-stderr-with-a-warning "$(head -3 "$DLOG" | tr '\n' ' ')"
    fi
  fi
}

# ---- entry: noreaddirplus (+ allow-direct-io, preserve-noatime, trace log) -------------------
e_noreaddirplus_prep() {
  mkdir -p "$S/dir"; "$GT" mkfiles "$S/dir" 50 e-
  echo sized >"$S/dir/sized"
  head -c 1M /dev/urandom >"$S/dio.bin"
  head -c 1M /dev/urandom >"$S/noatime.bin"
  prep_atime
}
e_noreaddirplus_guest() {
  cat <<'EOF'
eq no-readdirplus/listing-works "$(ls $M/dir | wc -l)" 51
eq no-readdirplus/stat-after-listing "$(ls -l $M/dir/sized | awk '{print $5}')" 6
dio_scenario allow-direct-io
data "atime-read $(cat $M/atime.txt)"
# an O_NOATIME read held open (the pipe fills) while the host looks at the daemon's fd
$T cat-noatime $M/noatime.bin | { live noatime; cat >/dev/null; }
EOF
}
e_noreaddirplus_check() {
  h_true no-readdirplus/host:sends-readdir "no FUSE_READDIR in the trace log" grep -q 'fuse: FUSE_READDIR unique' "$DLOG"
  local n
  n=$(grep -c 'fuse: FUSE_READDIRPLUS unique' "$DLOG" || true)
  h_eq no-readdirplus/host:no-readdirplus-requests "$n" 0
  h_flag no-readdirplus/host:init-no-do-readdirplus 13 0
  check_dio allow-direct-io 1
  check_atime preserve-noatime/host:plain-read-updates-atime
  local fl
  fl=$(fact noatime_flags)
  if ! [[ $fl =~ ^[0-7]+$ ]]; then
    r_fail preserve-noatime/host:o_noatime-kept-on-host "no daemon fd on noatime.bin while the guest held it open ($fl)"
  elif [ $(((8#$fl & 8#1000000) != 0)) = 1 ]; then
    r_pass preserve-noatime/host:o_noatime-kept-on-host
  else
    r_fail preserve-noatime/host:o_noatime-kept-on-host "the daemon's fd has flags 0$fl: no O_NOATIME"
  fi
}

# ---- entry: legacy (-o ..., -d, -f) -----------------------------------------------------------
e_legacy_prep() {
  prep_cache
  echo legacy >"$S/legacy-share.txt"
  mkdir -p "$DECOY"; chmod 0755 "$DECOY"; echo decoy >"$DECOY/decoy.txt"
  XATTR_OK=0
  "$GT" setxattr "$S/legacy-share.txt" user.probe p 2>/dev/null && XATTR_OK=1
  GUEST_ENV="VG_XATTR=$XATTR_OK"
}
e_legacy_guest() {
  cat <<'EOF'
if [ -e $M/legacy-share.txt ] && [ ! -e $M/decoy.txt ]; then pass legacy/o-source-served
else fail legacy/o-source-served "$(ls $M | oneline)"; fi
if [ "$VG_XATTR" = 1 ]; then
  ok legacy/o-xattr-setxattr $T setxattr $M/legacy-share.txt user.legacy yes
else
  skip legacy/o-xattr-setxattr "the host file system has no user xattrs"
fi
cache_scenario never legacy/o-cache=none
EOF
}
e_legacy_check() {
  [ "$XATTR_OK" != 1 ] || h_eq legacy/host:o-xattr-landed "$(hxattr legacy-share.txt user.legacy)" yes
  h_flag legacy/host:o-no_readdirplus 13 0
  h_true legacy/host:d-debug-log "no debug line" grep -q ' debug virtiofsd\] ' "$DLOG"
  h_levels_only legacy/host:d-no-trace error warn info debug
  h_true legacy/host:f-accepted "the guest did not complete" grep -q '^DATA: guest-done ' "$VG_RESULTS"
}

# ---- entries: the options being implemented ---------------------------------------------------
e_handles_mandatory_prep() {
  prep_tree
  echo 'mmap me please' >"$S/mm.txt"
  echo via-handle >"$S/tree/a/file-00007"
}
e_handles_mandatory_guest() {
  cat <<'EOF'
live proc
walk_tree
if $T mmap-write $M/mm.txt 0 MMAP 2>/tmp/mm.err; then data "mmap-write ok"
else data "mmap-write $(oneline </tmp/mm.err)"; fi
# the walked inodes are reached through their handles now
eq inode-file-handles/mandatory-read-after-walk "$(cat $M/tree/a/file-00007)" via-handle
ok inode-file-handles/mandatory-write-after-walk sh -c "echo appended >>$M/tree/b/file-00009"
ok inode-file-handles/mandatory-rename-after-walk mv $M/tree/b/file-00010 $M/tree/b/renamed
EOF
}
e_handles_mandatory_check() {
  check_walk inode-file-handles/host:mandatory-few-fds few
  h_eq inode-file-handles/host:mandatory-write-landed "$(content tree/b/file-00009)" appended
  h_true inode-file-handles/host:mandatory-rename-landed "tree/b/renamed missing or file-10 still there" \
    test -e "$S/tree/b/renamed" -a ! -e "$S/tree/b/file-00010"
  local f m
  f=$(init_flags) m=$(gdata mmap-write)
  if [ "$m" = ok ]; then
    h_eq allow-mmap/host:shared-mmap-write-landed "$(content mm.txt)" "MMAP me please"
  elif [ -n "$f" ] && [ $(((16#$f >> 36) & 1)) = 1 ]; then
    r_fail allow-mmap/shared-mmap-with-cache-never "FUSE_DIRECT_IO_ALLOW_MMAP negotiated, yet: $m"
  elif [[ $NOTIMPL == *" allow-mmap "* ]]; then
    r_skip allow-mmap/shared-mmap-with-cache-never "not implemented yet"
  else
    r_skip allow-mmap/shared-mmap-with-cache-never "the guest kernel ($(sed -n 's/^VG-START kernel=//p' "$VG_RESULTS")) does not offer FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6+), so it refuses MAP_SHARED of a direct-I/O file itself ($m)"
  fi
}
e_handles_prefer_prep() {
  prep_tree
  echo via-handle >"$S/tree/a/file-00007"
  mkdir -p "$S/sec"; chmod 0777 "$S/sec"
}
e_handles_prefer_guest() {
  cat <<'EOF'
live proc
walk_tree
eq inode-file-handles/prefer-read-after-walk "$(cat $M/tree/a/file-00007)" via-handle
ok security-label/create-works touch $M/sec/new
ok security-label/mkdir-works mkdir $M/sec/newdir
EOF
}
e_handles_prefer_check() {
  check_walk inode-file-handles/host:prefer-few-fds few
  h_flag security-label/host:init-security-ctx 32 1
  h_true security-label/host:created "sec/new missing" test -f "$S/sec/new" -a -d "$S/sec/newdir"
}

# How the daemon ended, with the signal named when it was killed by one.
daemon_end() {
  local s
  case $VG_DAEMON_END in
    exited:*)
      s=${VG_DAEMON_END#exited:}
      s=${s%%[!0-9]*}
      if [[ $s =~ ^[0-9]+$ ]] && [ "$s" -gt 128 ]; then
        echo "killed by SIG$(kill -l $((s - 128)) 2>/dev/null || echo "$((s - 128))")$([ $((s - 128)) = 31 ] && echo ' (seccomp)') ($VG_DAEMON_END)"
        return
      fi ;;
  esac
  echo "$VG_DAEMON_END"
}

# After a death by SIGSYS: start the daemon again with --seccomp=trap, which
# names the blocked system call.
blocked_syscall() { # DIR OPTS...
  local dir=$1
  shift
  timeout -k 2 3 "$VIRTIOFSD" --socket-path="$dir/trap.sock" --shared-dir="$S" "$@" \
    --seccomp=trap </dev/null >"$dir/trap.log" 2>&1 || true
  grep -o 'blocked system call [a-z0-9_]*' "$dir/trap.log" | head -1
}

# ---- one entry: prepare, boot with live requests, judge ----------------------------------------
run_entry() { # NAME SHARED-ARG OPTIONS
  local name=$1 which=$2 optstr=$3 dir script line completed=1 nfail_before=$NFAIL o
  local -a opts
  NOTIMPL=" " GUEST_ENV=""
  dir=$VG_TMP/e-$name
  S=$dir/share DECOY=$dir/decoy SOCK=$dir/vhost.sock DLOG=$dir/daemon.log FACTS=$dir/facts
  mkdir -p "$S/.vg-live"
  chmod 0755 "$dir" "$S" "$S/.vg-live"
  : >"$FACTS"
  "e_${name//-/_}_prep"
  script=$dir/guest.sh
  { guest_prologue; "e_${name//-/_}_guest"; guest_epilogue; } >"$script"
  optstr=${optstr//@S@/$S}
  optstr=${optstr//@DECOY@/$DECOY}
  optstr=${optstr//@GROUP@/$SOCK_GROUP}
  read -r -a opts <<<"$optstr"
  VG_GUEST_ENV="export $GUEST_ENV"
  [ -n "$GUEST_ENV" ] || VG_GUEST_ENV=""
  vg_log "$name: $optstr"
  VG_DAEMON_LOG=$DLOG
  if ! vg_daemon_start "$SOCK" "$([ "$which" = decoy ] && echo "$DECOY" || echo "$S")" "$DLOG" "${opts[@]}"; then
    # vg_daemon_start does not keep the status: start it once more to learn it
    local rc=0
    timeout -k 2 5 "$VIRTIOFSD" --socket-path="$dir/again.sock" --shared-dir="$S" \
      "${opts[@]}" </dev/null >"$dir/again.log" 2>&1 || rc=$?
    VG_DAEMON_END="exited:$rc"
    [ "$rc" != 159 ] || VG_DAEMON_END="$VG_DAEMON_END, $(blocked_syscall "$dir" "${opts[@]}")"
    r_fail "$name/daemon-start" "the daemon did not start: $(daemon_end) $([ "$rc" = 124 ] && echo '(ran when started again)'); log: $(tail -3 "$DLOG" | tr '\n' ' ')$(tail -2 "$dir/again.log" | tr '\n' ' ')"
    r_skip "$name/host-checks" "the daemon did not start"
    return 0
  fi
  vg_boot_start "$SOCK" "$script"
  live_serve
  vg_boot_wait || completed=0
  vg_daemon_term
  case $VG_DAEMON_END in
    exited:159*) VG_DAEMON_END="$VG_DAEMON_END, $(blocked_syscall "$dir" "${opts[@]}")" ;;
  esac
  for o in "${MAYBE_UNIMPLEMENTED[@]}"; do
    if grep -qiE -- "--$o.*not implemented|not implemented.*--$o" "$DLOG"; then NOTIMPL="$NOTIMPL$o "; fi
  done
  [ "$NOTIMPL" = " " ] || vg_log "$name: the daemon says not implemented:$NOTIMPL"
  # the guest's own verdicts
  while IFS= read -r line; do
    case $line in
      "PASS: "*) r_pass "${line#PASS: }" ;;
      "FAIL: "*) line=${line#FAIL: }; r_fail "${line%%: *}" "${line#*: }" ;;
      "SKIP: "*) line=${line#SKIP: }; r_skip "${line%%: *}" "${line#*: }" ;;
    esac
  done <"$VG_RESULTS"
  if grep -q '^VG-MOUNT failed' "$VG_RESULTS"; then
    r_fail "$name/guest-mount" "mount -t virtiofs failed in the guest (see the console log)"
  fi
  if [ "$completed" = 1 ] && grep -q '^DATA: guest-done ' "$VG_RESULTS"; then
    r_pass "$name/guest-completed"
  elif [ -n "$VG_DAEMON_DIED" ]; then
    r_fail "$name/guest-completed" "$VG_DAEMON_DIED ($(daemon_end))"; completed=0
  elif [ "$VG_QEMU_RC" = 124 ]; then
    r_fail "$name/guest-completed" "timed out after ${VG_TIMEOUT}s"; completed=0
  elif ! grep -q '^VG-START' "$VG_RESULTS" && [[ $VG_DAEMON_END == exited:* ]]; then
    # it died after creating its socket, before QEMU connected: the same as not starting
    r_fail "$name/daemon-start" "the daemon did not start: $(daemon_end); log: $(tail -3 "$DLOG" | tr '\n' ' ')"; completed=0
  else
    r_fail "$name/guest-completed" "the guest did not finish its script (qemu status $VG_QEMU_RC, daemon $(daemon_end))"; completed=0
  fi
  if [ "$completed" = 1 ]; then
    "e_${name//-/_}_check"
    if grep -q '^live_error=' "$FACTS"; then
      r_fail "$name/host:live-requests" "$(grep '^live_error=' "$FACTS" | tr '\n' ' ') $(head -c 300 "$FACTS.err" 2>/dev/null)"
    fi
  else
    r_skip "$name/host-checks" "the guest did not complete"
  fi
  for o in "${MOUNTS[@]}"; do umount -l "$o" 2>/dev/null || true; done
  MOUNTS=()
  vg_log "$name: accel=$VG_ACCEL, boot+checks ${VG_BOOT_SECS}s, daemon $VG_DAEMON_END"
  if [ "$NFAIL" != "$nfail_before" ]; then
    VG_DAEMON_LOG=$DLOG vg_show_logs 30
  fi
}

for row in "${TABLE[@]}"; do
  split_row "$row"
  if [ -n "$only" ] && [[ ",$only," != *",$ROW_NAME,"* ]]; then continue; fi
  run_entry "$ROW_NAME" "$ROW_SHARED" "$ROW_OPTS"
done

vg_log "total $(($(date +%s) - T_START))s"
echo "test-options: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

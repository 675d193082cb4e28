#!/usr/bin/env bash
# A guest that knows far more files than the daemon may open (run by `make check`).
#
# The daemon runs with --rlimit-nofile=512 (its default lockdown) on a share
# inside a larger file system, where inodes keep O_PATH fds (no file handles):
# the fd cache and the fd budget (inode_table.h, pt_handle_room) must keep it
# under the limit without the guest noticing.  One boot:
#   guest: walks and stats 20,000 files in 20 directories (the kernel keeps
#          every inode it saw), reads them all back (md5sum), creates 5,000
#          more, reads those back, removes them, then walks the tree again;
#          opens 600 files at once (more than the limit) and reports how many
#          opens failed, and that those failed with EMFILE only;
#   host:  the md5 lists match the host's files; the serving process's fd
#          count, sampled every 0.2 s, never reached the limit; the daemon
#          lives through it and its log has no error line.
#
# Usage: test-fd-limit.sh [--files=N] [--keep] [--verbose]
# Environment: as lib.sh.
# Output: "PASS: fd-limit/<name>", "FAIL: fd-limit/<name>: <reason>"; the last
# line is "test-fd-limit: N passed, N failed, N skipped".
set -euo pipefail
FILES=${VG_FDL_FILES:-20000}
LIMIT=512
while [ $# -gt 0 ]; do
  case $1 in
    --files=*) FILES=${1#*=} ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-fd-limit: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $FILES =~ ^[1-9][0-9]*$ ]] && [ $((FILES % 20)) = 0 ] ||
  { echo "test-fd-limit: --files must be a multiple of 20" >&2; exit 2; }
# The daemon's own lockdown, not the test default (none): the limit must hold in it.
export VIRTIOFSD_SANDBOX_OPTS=""
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NPASS=0 NFAIL=0 NSKIP=0
r_pass() { echo "PASS: fd-limit/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: fd-limit/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_eq() { if [ "$2" = "$3" ]; then r_pass "$1"; else r_fail "$1" "got '$2', want '$3'"; fi; }
finish() {
  echo "test-fd-limit: $NPASS passed, $NFAIL failed, $NSKIP skipped"
  [ "$NFAIL" = 0 ]
}

vg_setup
S=$VG_TMP/share
mkdir -p "$S/tree"
chmod 0755 "$S"
per=$((FILES / 20))
vg_log "creating $FILES files"
python3 - "$S/tree" "$per" <<'EOF'
import os, sys
root, per = sys.argv[1], int(sys.argv[2])
for d in range(20):
    os.mkdir(f"{root}/d{d}")
    for i in range(per):
        with open(f"{root}/d{d}/f{i}", "w") as f:
            f.write(f"d{d}/f{i} " + "x" * (i % 300) + "\n")
EOF
(cd "$S" && find tree -type f | sort | xargs md5sum) >"$VG_TMP/host.md5"

export VG_GUEST_ENV="export VG_FDL_PER=$per"
GUEST=$VG_TMP/fdl-guest.sh
cat >"$GUEST" <<'EOF'
#!/bin/sh
M=$VG_MNT
cd "$M" || exit 1
echo "DATA: walked $(find tree -type f | wc -l)"
echo "DATA: stat-fails $(find tree -type f -exec stat -c %s {} + 2>&1 >/dev/null | wc -l)"
find tree -type f | sort | xargs md5sum >/tmp/guest.md5
echo "DATA: read-fails $(($(find tree -type f | wc -l) - $(wc -l </tmp/guest.md5)))"
cat /tmp/guest.md5 >"$M/guest.md5"
mkdir new
i=0
while [ $i -lt 5000 ]; do echo "new $i" >"new/n$i"; i=$((i + 1)); done
echo "DATA: created $(ls new | wc -l)"
bad=0
i=0
while [ $i -lt 5000 ]; do
  line=
  read -r line <"new/n$i" || true
  if [ "$line" != "new $i" ]; then
    bad=$((bad + 1))
    [ $bad -gt 5 ] || echo "DATA: new-wrong n$i: '$line'"
  fi
  i=$((i + 1))
done
echo "DATA: new-bad $bad"
rm -r new
echo "DATA: removed $([ -e new ] && echo no || echo yes)"
echo "DATA: rewalked $(find tree -type f | wc -l)"
# More files open at once than the daemon may have fds: some opens fail, with EMFILE.
n=600
[ "$n" -le "$VG_FDL_PER" ] || n=$VG_FDL_PER
echo "DATA: holdopen $(guest-tool holdopen $n tree/d1/f 2>&1 | tail -1)"
echo "DATA: after-open-walk $(find tree -type f | wc -l)"
EOF

vg_log "booting; daemon with --rlimit-nofile=$LIMIT"
sock=$VG_TMP/fdl.sock
vg_daemon_start "$sock" "$S" "$VG_TMP/daemon.log" --rlimit-nofile=$LIMIT ||
  { r_fail daemon-start "the daemon did not start"; finish; exit 1; }
VG_DAEMON_LOG=$VG_TMP/daemon.log
vg_boot_start "$sock" "$GUEST"
peak=0 samples=0
while kill -0 "$VG_QEMU_PID" 2>/dev/null; do
  if spid=$(vg_serving_pid "$VG_DAEMON_PID") && n=$(vg_proc_fds "$spid"); then
    samples=$((samples + 1))
    [ "$n" -le "$peak" ] || peak=$n
  fi
  sleep 0.2
done
vg_boot_wait || true
alive=yes
kill -0 "$VG_DAEMON_PID" 2>/dev/null || alive=no
vg_daemon_stop
data() { sed -n "s/^DATA: $1 //p" "$VG_RESULTS" | head -1; }

r_eq guest-script-status "$VG_GUEST_RC" 0
r_eq walked "$(data walked)" "$FILES"
r_eq stat-failures "$(data stat-fails)" 0
r_eq read-failures "$(data read-fails)" 0
if cmp -s "$VG_TMP/host.md5" "$S/guest.md5"; then r_pass every-byte; else
  r_fail every-byte "$(diff "$VG_TMP/host.md5" "$S/guest.md5" | head -3 | tr '\n' ' ')"
fi
r_eq created "$(data created)" 5000
r_eq created-read-back-wrong "$(data new-bad)" 0
grep '^DATA: new-wrong' "$VG_RESULTS" | head -5 >&2 || true
r_eq removed "$(data removed)" yes
r_eq host-removed "$([ -e "$S/new" ] && echo no || echo yes)" yes
r_eq rewalked "$(data rewalked)" "$FILES"
hold=$(data holdopen)
vg_log "600 opens at once: $hold"
read -r _ opened _ failed _ emfile _ other <<<"$hold" || true
# 600 opens are more than the budget (7/8 of 512 - 128): some must fail, all with EMFILE.
if [ "${opened:-0}" -gt 100 ] && { [ "${failed:-0}" -gt 0 ] || [ "$per" -lt 600 ]; } &&
  [ "${emfile:-}" = "$failed" ] && [ "${other:-}" = 0 ]; then
  r_pass open-beyond-limit-fails-with-emfile
else
  r_fail open-beyond-limit-fails-with-emfile "guest-tool holdopen: '$hold'"
fi
r_eq walk-after-opens "$(data after-open-walk)" "$FILES"
vg_log "serving process: peak $peak fds in $samples samples (limit $LIMIT)"
if [ "$samples" -gt 5 ] && [ "$peak" -lt "$LIMIT" ]; then r_pass fds-under-limit; else
  r_fail fds-under-limit "peak $peak fds in $samples samples, limit $LIMIT"
fi
r_eq daemon-alive-at-end "$alive" yes
errs=$(grep -c ' error ' "$VG_DAEMON_LOG" || true)
r_eq daemon-log-errors "$errs" 0
[ "$NFAIL" = 0 ] || vg_show_logs 30
finish

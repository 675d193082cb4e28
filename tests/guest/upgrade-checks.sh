# shellcheck shell=sh
# The guest half of test-upgrade.sh (busybox sh; /init runs it with the share
# mounted on $VG_MNT and stdout on the results port, ttyS1).
#
# The guest never learns that the daemon was replaced.  It sets up state the
# daemon has to carry from process to process (an fd open for appending, one
# for reading and one on a file it removed, its cwd in the share, a POSIX lock
# and an flock held by a background process), starts a load that checks every
# byte it reads:
#   churn 1..N   guest-tool churn workers (guest-tool.c): create, append,
#                overwrite at an offset, read back, rename, mkdir, link,
#                symlink, unlink, rmdir, readdir, and a long-lived fd written
#                and read at every iteration; the even ones fsync
#   reader       O_DIRECT passes over big.bin with checksums
#   appender     a line a moment through the fd opened before (fd 7)
#   liner        the next line of lines.txt through fd 8 now and then
# Two more processes wait for the held locks (F_SETLKW, flock) all along.  It
# says READY, and waits for the host's step 1 in the share's up-ctl (read
# with O_DIRECT): the upgrades are over.  Then it stops the load, checks each
# part, the fds, the cwd, the locks, makes new files, and looks at dmesg.
# Each check prints "CHECK <name> ok" or "CHECK <name> FAIL <reason>"; the
# host turns them into PASS/FAIL lines.  Also "CHURN <id>:<iterations>",
# "APPENDS <n>", "READS <n>" for the host's checks of the files, and
# "DMESG <line>" for each kernel line about virtio or fuse.
# Variables from the host (/guest/env): VG_BIG_MD5, VG_WORKERS, VG_WAIT,
# VG_LOCK_WAITS (0: no lock waiters).
M=$VG_MNT
W=$M/up
T=/tmp/up
WAIT=${VG_WAIT:-300}
NW=${VG_WORKERS:-4}
mkdir -p "$T"
NFAIL=0
ok() { echo "CHECK $1 ok"; }
bad() { echo "CHECK $1 FAIL $2"; NFAIL=$((NFAIL + 1)); }
md5() { md5sum | cut -d' ' -f1; }
step() {
  s=$(dd if="$M/up-ctl" iflag=direct bs=4096 count=1 2>/dev/null | head -n 1 | cut -d' ' -f1)
  case $s in '' | *[!0-9]*) echo 0 ;; *) echo "$s" ;; esac
}
wait_step() { # N SECONDS
  n=0
  while [ "$(step)" -lt "$1" ]; do
    [ "$n" -lt $(($2 * 4)) ] || return 1
    sleep 0.25
    n=$((n + 1))
  done
}
wait_line() { # FILE ERE SECONDS
  n=0
  while ! grep -qE "$2" "$1" 2>/dev/null; do
    [ "$n" -lt $(($3 * 4)) ] || return 1
    sleep 0.25
    n=$((n + 1))
  done
}

# ---- state that must survive the upgrades ---------------------------------------
cd "$W" || { bad setup "cannot cd to $W"; exit 1; }
if exec 7>>"$W/log.txt" && echo "before" >&7; then ok fd-append-before; else bad fd-append-before "cannot append to log.txt"; fi
l1=
if exec 8<"$W/lines.txt" && read -r l1 <&8 && [ "$l1" = "line 1" ]; then
  ok fd-read-before
else
  bad fd-read-before "the first line of lines.txt read '$l1'"
fi
# a file removed while open (exec 6<>f; rm f): it has no name on the host, and
# without in-flight tracking (QEMU) no hidden one either; every upgrade must
# hand it over (as its fd), and the fd must still work afterwards
if exec 6<>"$W/deleted.txt" && echo "before" >&6 && rm "$W/deleted.txt" && [ ! -e "$W/deleted.txt" ]; then
  ok fd-deleted-before
else
  bad fd-deleted-before "cannot open, write or remove deleted.txt"
fi
guest-tool hold-locks "$W/lockfile" >"$T/hold.out" 2>&1 &
HOLD=$!
if wait_line "$T/hold.out" '^holding' 30; then ok locks-taken; else bad locks-taken "guest-tool hold-locks: $(cat "$T/hold.out")"; fi
# two processes blocked in lock waits (F_SETLKW, flock LOCK_EX) on that file
# across the upgrades: each must get its lock once the holder ends
WAITS="posix flock"
[ "${VG_LOCK_WAITS:-1}" != 0 ] || WAITS=
for t in $WAITS; do
  ( guest-tool lock-wait "$W/lockfile" "$t" >"$T/wait-$t.out" 2>&1; echo $? >"$T/wait-$t.rc" ) &
done
for t in $WAITS; do
  wait_line "$T/wait-$t.out" '^waiting' 30
  sleep 1
  if [ -e "$T/wait-$t.rc" ]; then
    bad "lock-wait-$t-blocked" "it did not wait: $(tr '\n' ' ' <"$T/wait-$t.out")"
  else
    ok "lock-wait-$t-blocked"
  fi
done

# ---- the load -------------------------------------------------------------------------
mkdir -p "$W/churn"
i=1
while [ "$i" -le "$NW" ]; do
  f=
  [ $((i % 2)) -eq 1 ] || f=fsync
  ( guest-tool churn "$W/churn" "$i" "$T/stop" $f >"$T/w$i.out" 2>&1; echo $? >"$T/w$i.rc" ) &
  i=$((i + 1))
done
( n=0
  while [ ! -e "$T/stop" ]; do
    n=$((n + 1))
    if s=$(dd if="$W/big.bin" iflag=direct bs=128k 2>"$T/dd.err" | md5) && [ "$s" = "$VG_BIG_MD5" ] &&
      ! grep -qi 'error' "$T/dd.err"; then
      echo "READ $n ok" >>"$T/reads"
    else
      echo "READ $n BAD ${s:-unreadable} $(head -1 "$T/dd.err")" >>"$T/reads"
    fi
  done
  echo "$n" >"$T/reader.done" ) &
( n=0
  while [ ! -e "$T/stop" ]; do
    n=$((n + 1))
    echo "append $n" >&7 || { echo "FAILED append $n" >"$T/appends"; exit 1; }
    sleep 0.1
  done
  echo "$n" >"$T/appends" ) &
( n=1
  while [ ! -e "$T/stop" ]; do
    sleep 0.5
    l=
    read -r l <&8 || { echo "FAILED read after line $n" >"$T/lines"; exit 1; }
    n=$((n + 1))
    [ "$l" = "line $n" ] || { echo "FAILED line $n read '$l'" >"$T/lines"; exit 1; }
  done
  echo "$n" >"$T/lines" ) &
if wait_line "$T/reads" '^READ 1 ' 120; then ok reader-started; else bad reader-started "no pass over big.bin in 120 s"; fi
echo "READY"

# ---- the host upgrades the daemon meanwhile ------------------------------------------
if wait_step 1 "$WAIT"; then ok host-done; else bad host-done "no signal from the host within ${WAIT}s"; fi
touch "$T/stop"
wait_rc() { # FILE SECONDS: the first line of FILE once it exists
  wait_line "$1" . "$2" && head -n 1 "$1"
}

# ---- checks ------------------------------------------------------------------------------
i=1
while [ "$i" -le "$NW" ]; do
  rc=$(wait_rc "$T/w$i.rc" 120)
  out=$(tr '\n' ' ' <"$T/w$i.out")
  if [ "$rc" = 0 ] && grep -q "^churn w$i ok" "$T/w$i.out"; then
    ok "churn-$i"
    echo "CHURN $i:$(sed -n 's/^churn w[0-9]* ok iterations=\([0-9]*\).*/\1/p' "$T/w$i.out")"
    echo "CHURN-STATS $out"
  else
    bad "churn-$i" "status ${rc:-none (still running after 120 s)}: $out"
  fi
  i=$((i + 1))
done
wait_line "$T/appends" . 30
a=$(cat "$T/appends" 2>/dev/null)
case $a in
  '' | *[!0-9]*) bad appender "${a:-no result}" ;;
  *) ok appender; echo "APPENDS $a" ;;
esac
wait_line "$T/lines" . 30
l=$(cat "$T/lines" 2>/dev/null)
case $l in
  '' | *[!0-9]*) bad fd-read-during "${l:-no result}" ;;
  *) ok fd-read-during ;;
esac
wait_line "$T/reader.done" . 60 || bad reader "the last pass did not end within 60 s"
nbad=$(grep -c ' BAD ' "$T/reads")
nreads=$(grep -c '^READ ' "$T/reads")
if [ "$nbad" -eq 0 ]; then
  ok reader
  echo "READS $nreads"
else
  bad reader "$nbad of $nreads passes over big.bin went wrong: $(grep ' BAD ' "$T/reads" | head -3 | tr '\n' ' ')"
fi

if echo "after" >&7; then ok fd-append-after; else bad fd-append-after "writing through fd 7 failed"; fi
l2=
if read -r l2 <&8 && [ "$l2" = "line $((l + 1))" ]; then
  ok fd-read-after
else
  bad fd-read-after "the line after line $l read '$l2'"
fi
# written through the old fd, read back through a new open of it (a FUSE OPEN
# of the unlinked file's nodeid, served by the last daemon)
if echo "after" >&6 && [ "$(cat /proc/$$/fd/6)" = "$(printf 'before\nafter')" ]; then
  ok fd-deleted-after
else
  bad fd-deleted-after "deleted.txt through fd 6 and /proc/$$/fd/6: '$(cat /proc/$$/fd/6 2>&1 | head -3 | tr '\n' ' ')'"
fi
if [ "$(pwd)" = "$W" ] && ls . >"$T/ls" 2>&1 && grep -qx log.txt "$T/ls" &&
  echo "via the cwd" >./cwd.txt && [ "$(cat ./cwd.txt)" = "via the cwd" ]; then
  ok cwd-after
else
  bad cwd-after "ls . / a relative create failed: $(head -3 "$T/ls" | tr '\n' ' ')"
fi
if kill -0 "$HOLD" 2>/dev/null; then ok lock-holder-alive; else bad lock-holder-alive "hold-locks ended: $(cat "$T/hold.out")"; fi
if out=$(guest-tool locks held "$W/lockfile" 2>&1); then ok locks-held-after; else bad locks-held-after "$out"; fi
kill "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null
for t in $WAITS; do
  if rc=$(wait_rc "$T/wait-$t.rc" 30) && [ "$rc" = 0 ]; then
    ok "lock-wait-$t-after"
  else
    bad "lock-wait-$t-after" "status ${rc:-none (still waiting 30 s after the holder ended)}: $(tr '\n' ' ' <"$T/wait-$t.out")"
  fi
done
guest-tool hold-locks "$W/lockfile" >"$T/hold2.out" 2>&1 &
H2=$!
if wait_line "$T/hold2.out" '^holding' 30; then ok locks-free-after-release; else bad locks-free-after-release "guest-tool hold-locks: $(cat "$T/hold2.out")"; fi
kill "$H2" 2>/dev/null
wait "$H2" 2>/dev/null

# new files after the upgrades: made, read, renamed, listed, removed, and one kept
k=1
okn=1
while [ "$k" -le 20 ]; do
  seq 1 "$((k * 50))" >"$W/new-$k.txt" || okn=0
  [ "$(md5 <"$W/new-$k.txt")" = "$(seq 1 "$((k * 50))" | md5)" ] || okn=0
  mv "$W/new-$k.txt" "$W/new-$k.dat" || okn=0
  k=$((k + 1))
done
set -- "$W"/new-*.dat
[ $# -eq 20 ] || okn=0
rm -f "$W"/new-*.dat || okn=0
set -- "$W"/new-*
[ "$1" = "$W/new-*" ] || okn=0
seq 1 1000 | sed 's/^/after the upgrades /' >"$W/after-upgrades.txt" || okn=0
sync
if [ "$okn" = 1 ]; then ok new-files-after; else bad new-files-after "creating, reading, renaming or removing new files failed"; fi

exec 6>&- 7>&- 8<&-
cd /
dmesg >"$T/dmesg"
grep -iE 'virtio|fuse' "$T/dmesg" | sed 's/^/DMESG /'
if grep -qiE 'call trace|BUG:|WARNING:|hung_task|blocked for more than|soft lockup' "$T/dmesg"; then
  bad dmesg-clean "$(grep -iE 'call trace|BUG:|WARNING:|hung_task|blocked for more than|soft lockup' "$T/dmesg" | head -3 | tr '\n' ' ')"
elif grep -iE 'virtio|fuse' "$T/dmesg" | grep -qiE 'error|fail|timed? ?out|broken|invalid|bad|abort|unexpected|reset'; then
  bad dmesg-clean "$(grep -iE 'virtio|fuse' "$T/dmesg" | grep -iE 'error|fail|timed? ?out|broken|invalid|bad|abort|unexpected|reset' | head -3 | tr '\n' ' ')"
else
  ok dmesg-clean
fi
echo "GUEST-DONE failures=$NFAIL"
[ "$NFAIL" -eq 0 ]

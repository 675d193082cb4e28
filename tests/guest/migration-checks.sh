# shellcheck shell=sh
# The guest half of test-migration.sh (busybox sh; /init runs it with the
# share mounted on $VG_MNT and stdout on the results port, ttyS1).
#
# The guest never learns that it moved: it sets up state the back-end has to
# carry across (an fd open for appending, an fd open for reading in the
# middle of a file, a cwd inside the share, a POSIX lock and an flock held by
# a background process) and keeps a reader busy (O_DIRECT passes over
# big.bin: each pass is FUSE READs the daemon writes straight into the
# reader's buffer), says READY, and follows the host's steps, a number the
# host writes into the share's file mig-ctl (read with O_DIRECT, so no guest
# cache can hide a change):
#   1 fill     pre-copy has sent all of RAM once: read fill.bin into the page
#              cache now.  Every page of it is written by the source daemon
#              after QEMU sent it, so only the daemon's dirty log makes QEMU
#              send it again; after the migration the guest checksums the
#              cached pages (with --cache=always: no FUSE READ again)
#   2 go       the migration completed and the source is gone: check
#   3 release  the host has looked at the locks from its side; let them go
# Each check prints "CHECK <name> ok", "CHECK <name> FAIL <reason>" or
# "CHECK <name> SKIP <reason>"; the host turns them into PASS/FAIL/SKIP
# lines.  Variables from the host (/guest/env): VG_BIG_MD5, VG_FILL_MD5 (of
# mig/big.bin, mig/fill.bin), VG_WAIT (limit of each wait, s), VG_CACHE_MODE.
M=$VG_MNT
W=$M/mig
T=/tmp/mig
WAIT=${VG_WAIT:-300}
mkdir -p "$T"
NFAIL=0
ok() { echo "CHECK $1 ok"; }
bad() { echo "CHECK $1 FAIL $2"; NFAIL=$((NFAIL + 1)); }
skip() { echo "CHECK $1 SKIP $2"; }
md5() { md5sum | cut -d' ' -f1; }
# the host's step (0 if unreadable)
step() {
  s=$(dd if="$M/mig-ctl" iflag=direct bs=4096 count=1 2>/dev/null | head -n 1 | cut -d' ' -f1)
  case $s in '' | *[!0-9]*) echo 0 ;; *) echo "$s" ;; esac
}
# until the host's step is at least N, at most SECONDS
wait_step() { # N SECONDS
  n=0
  while [ "$(step)" -lt "$1" ]; do
    [ "$n" -lt $(($2 * 4)) ] || return 1
    sleep 0.25
    n=$((n + 1))
  done
}
# until FILE (guest-local) has a line matching the ERE, at most SECONDS
wait_line() { # FILE ERE SECONDS
  n=0
  while ! grep -qE "$2" "$1" 2>/dev/null; do
    [ "$n" -lt $(($3 * 4)) ] || return 1
    sleep 0.25
    n=$((n + 1))
  done
}
reads() { grep -c '^READ ' "$T/reads" 2>/dev/null || echo 0; }

# ---- before the migration ---------------------------------------------------------
cd "$W" || { bad setup "cannot cd to $W"; exit 1; }
if exec 7>>"$W/log.txt" && echo "before 1" >&7 && echo "before 2" >&7; then
  ok fd-write-before
else
  bad fd-write-before "cannot append to log.txt"
fi
l1=
if exec 8<"$W/lines.txt" && read -r l1 <&8 && [ "$l1" = "line 1" ]; then
  ok fd-read-before
else
  bad fd-read-before "the first line of lines.txt read '$l1'"
fi
# the lock holder: a POSIX write lock on the whole file and an flock
guest-tool hold-locks "$W/lockfile" >"$T/hold.out" 2>&1 &
HOLD=$!
if wait_line "$T/hold.out" '^holding' 20; then
  ok locks-taken
else
  bad locks-taken "guest-tool hold-locks: $(cat "$T/hold.out")"
fi
# another process must see both locks (the check the guest repeats after)
if out=$(guest-tool locks held "$W/lockfile" 2>&1); then
  ok locks-held-before
else
  bad locks-held-before "$out"
fi

# the reader: whole-file checksums, O_DIRECT (no page cache in between)
(
  i=0
  while [ ! -e "$T/stop" ]; do
    i=$((i + 1))
    s=$(dd if="$W/big.bin" iflag=direct bs=4M 2>/dev/null | md5)
    if [ "$s" = "$VG_BIG_MD5" ]; then r="READ $i ok"; else r="READ $i BAD ${s:-unreadable}"; fi
    echo "$r" >>"$T/reads"
    echo "$r"
  done
) &
READER=$!
# the filler: fill.bin into the page cache when the host says so
(
  wait_step 1 "$WAIT" || exit 0
  if [ "$(step)" != 1 ]; then
    echo "the host was past step 1 (fill) when the guest looked" >"$T/fill"
    exit 0
  fi
  cat "$W/fill.bin" >/dev/null
  echo "FILLED $(md5 <"$W/fill.bin")" | tee "$T/fill"
) &
FILLER=$!
if wait_line "$T/reads" '^READ 2 ' 120; then
  ok reader-started
else
  bad reader-started "fewer than 2 passes over big.bin in 120 s"
fi
echo "READY"

# ---- the migration happens here; the guest just reads ---------------------------
if ! wait_step 2 "$WAIT"; then
  bad migrated "no signal from the host within ${WAIT}s"
  touch "$T/stop"
  kill "$HOLD" "$FILLER" 2>/dev/null
  wait
  exit 1
fi
echo "MIGRATED"

# ---- after the migration ------------------------------------------------------------
# first the pages the source daemon wrote into the page cache after QEMU had
# sent them (they are still cached: nothing was evicted, no FUSE READ now)
wait "$FILLER"
f=$(cat "$T/fill" 2>/dev/null)
case $f in
  "FILLED $VG_FILL_MD5")
    if [ "$VG_CACHE_MODE" != always ]; then
      skip cached-pages-after-migration "--cache=$VG_CACHE_MODE: reopening fill.bin may drop or bypass its page cache (needs always)"
    elif [ "$(md5 <"$W/fill.bin")" = "$VG_FILL_MD5" ]; then
      ok cached-pages-after-migration
    else
      bad cached-pages-after-migration "fill.bin, read into the page cache during pre-copy, has other content on the destination (pages the daemon wrote were not logged)"
    fi ;;
  FILLED*) bad cached-pages-after-migration "reading fill.bin during pre-copy gave wrong data: $f" ;;
  *) bad cached-pages-after-migration "no fill during pre-copy: ${f:-the host never said fill}" ;;
esac

# two more passes of the reader, through the destination daemon
n0=$(reads)
if wait_line "$T/reads" "^READ $((n0 + 2)) " 120; then
  ok reads-after-migration
else
  bad reads-after-migration "the reader did not finish two passes in 120 s ($(reads) after $n0)"
fi
touch "$T/stop"
wait "$READER"
nbad=$(grep -c ' BAD ' "$T/reads")
if [ "$nbad" -eq 0 ]; then
  ok checksums
  echo "READS total=$(reads) after-go=$(($(reads) - n0))"
else
  bad checksums "$nbad of $(reads) passes over big.bin read wrong data: $(grep ' BAD ' "$T/reads" | head -3 | tr '\n' ' ')"
fi

if echo "after 1" >&7 && echo "after 2" >&7; then
  ok fd-write-after
else
  bad fd-write-after "writing through the fd opened before the migration failed"
fi
want=$(printf 'before 1\nbefore 2\nafter 1\nafter 2\n' | md5)
got=$(md5 <"$W/log.txt")
if [ "$got" = "$want" ]; then
  ok log-content
else
  bad log-content "log.txt reads $(tr '\n' '|' <"$W/log.txt")"
fi
l2=
if read -r l2 <&8 && [ "$l2" = "line 2" ]; then
  ok fd-read-after
else
  bad fd-read-after "the next line of lines.txt read '$l2'"
fi
if ls . >"$T/ls" 2>&1 && grep -qx log.txt "$T/ls" && [ "$(pwd)" = "$W" ] &&
  echo "written via the cwd" >./cwd-after.txt && [ "$(cat ./cwd-after.txt)" = "written via the cwd" ]; then
  ok cwd-after
else
  bad cwd-after "ls . / a relative create failed: $(head -3 "$T/ls" | tr '\n' ' ')"
fi
if kill -0 "$HOLD" 2>/dev/null; then
  ok lock-holder-alive
else
  bad lock-holder-alive "hold-locks ended: $(cat "$T/hold.out")"
fi
if out=$(guest-tool locks held "$W/lockfile" 2>&1); then
  ok locks-held-after
else
  bad locks-held-after "$out"
fi
echo "CHECKED"

# the host checks the locks from its side, then says release
if ! wait_step 3 "$WAIT"; then
  bad released "no release signal from the host within ${WAIT}s"
fi
kill "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null
# free again: a new holder gets both locks without waiting
rm -f "$T/hold2.out"
guest-tool hold-locks "$W/lockfile" >"$T/hold2.out" 2>&1 &
H2=$!
if wait_line "$T/hold2.out" '^holding' 20; then
  ok locks-free-after-release
else
  bad locks-free-after-release "guest-tool hold-locks: $(cat "$T/hold2.out")"
fi
kill "$H2" 2>/dev/null
wait "$H2" 2>/dev/null
exec 7>&- 8<&-
cd /
echo "GUEST-DONE failures=$NFAIL"
[ "$NFAIL" -eq 0 ]

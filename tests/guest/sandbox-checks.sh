#!/bin/sh
# The guest half of test-sandbox.sh: escape attempts from inside the guest.
# Runs in the test guest (busybox ash, as root) with the share on $VG_MNT.
#
# The host prepared, next to the share (never inside it), $VG_OUT/secret.txt
# and $VG_OUT/dir/inner.txt holding random tokens this script is never told,
# and in the share: symlinks pointing out of it (absolute, relative, long ..
# chains, /proc/self/root and /proc/1/root magic links), a directory d with a
# decoy d/secret.txt, and d-link -> $VG_OUT, which a host loop swaps with d
# while the race below runs.  Everything here tries to read, write, chmod,
# chown, truncate, link or create through those; the host then checks that
# nothing outside the share changed and that no token reached the guest.
#
# Output (stdout = results channel):
#   PASS: guest:name | FAIL: guest:name: reason | SKIP: ...
#   TRY: name rc=N out=...    an attempt's outcome, for the host's token scan
#   RACE: ...                 what the race read that was not expected
#   DATA: key value...        facts for the host
# Files this script creates all have "vgsbx" in their names: the host looks
# for that name anywhere outside the share afterwards.
#
# shellcheck disable=SC3043,SC2015  # ash has `local`; `a && pass || fail` is fine
# shellcheck disable=SC2016  # sh_c's scripts expand "$1" in the inner shell
# shellcheck disable=SC2012,SC2010,SC2002  # ls output is compared as text, names are ours
M=${VG_MNT:-/mnt}
OUT=${VG_OUT:?VG_OUT (the host path of the outside dir) not set}
T=guest-tool

pass() { echo "PASS: guest:$1"; }
fail() { echo "FAIL: guest:$1: $2"; }
oneline() { tr '\n' ' ' | cut -c1-200; }
expect_eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
# try NAME CMD...: run an attempt, report its status and (short) output
try() {
  local name="$1" out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  echo "TRY: $name rc=$rc out=$(printf '%s' "$out" | oneline)"
  return "$rc"
}
# must_fail NAME CMD...: an attempt the guest kernel itself must refuse
must_fail() {
  local name="$1"
  shift
  if try "$name" "$@"; then fail "$name" "succeeded"; else pass "$name"; fi
}
sh_c() { sh -c "$1" _ "$2"; } # run "$1" with $1 = the path $2

# ---- links made on the host ---------------------------------------------------
# name|target, as the host created them
HOST_LINKS="abs-file|$OUT/secret.txt
rel-file|../outside/secret.txt
deep-rel|../../../../../../../../../..$OUT/secret.txt
sub/deeper/up-rel|../../../outside/secret.txt
proc-self-root|/proc/self/root$OUT/secret.txt
proc-1-root|/proc/1/root$OUT/secret.txt
abs-dir|$OUT/dir
rel-dir|../outside/dir
proc-self-root-dir|/proc/self/root
proc-1-root-dir|/proc/1/root
proc-self-cwd|/proc/self/cwd
proc-passwd|/proc/self/root/etc/passwd
d-link|$OUT"
# links the guest makes itself
GUEST_LINKS="g-abs|$OUT/secret.txt
g-rel|../outside/secret.txt
g-deep|../../../../../../..$OUT/secret.txt
g-proc-1-root|/proc/1/root$OUT/secret.txt
g-abs-dir|$OUT/dir
g-rel-dir|../outside/dir
g-proc-self-root-dir|/proc/self/root
g-proc-cwd|/proc/self/cwd"
FILE_LINKS="abs-file rel-file deep-rel sub/deeper/up-rel proc-self-root proc-1-root
g-abs g-rel g-deep g-proc-1-root"
DIR_LINKS="abs-dir rel-dir g-abs-dir g-rel-dir"
MAGIC_DIR_LINKS="proc-self-root-dir proc-1-root-dir g-proc-self-root-dir"

t_links_visible() {
  local l name target
  echo "$HOST_LINKS" | while IFS='|' read -r name target; do
    if [ -L "$M/$name" ]; then
      expect_eq "host-link-is-symlink:$name" "$(readlink "$M/$name")" "$target"
    else
      fail "host-link-is-symlink:$name" "not a symlink in the guest: $(ls -ld "$M/$name" 2>&1 | oneline)"
    fi
  done
  echo "$GUEST_LINKS" | while IFS='|' read -r name target; do
    if ln -s "$target" "$M/$name" 2>/dev/null && [ -L "$M/$name" ]; then
      expect_eq "guest-link-made:$name" "$(readlink "$M/$name")" "$target"
    else
      fail "guest-link-made:$name" "ln -s failed"
    fi
  done
}

# every operation through links to a file outside the share
t_file_links() {
  local l n
  for l in $FILE_LINKS; do
    n=$(echo "$l" | tr / _)
    # the guest resolves the link itself, in its own tree: nothing is there
    if try "read:$l" cat "$M/$l"; then fail "read-via-link-fails:$l" "read something (see TRY line)"
    else pass "read-via-link-fails:$l"; fi
    try "write:$l" sh_c 'echo vgsbx-write >"$1"' "$M/$l"
    try "append:$l" sh_c 'echo vgsbx-append >>"$1"' "$M/$l"
    try "truncate:$l" truncate -s 0 "$M/$l"
    try "chmod:$l" chmod 0777 "$M/$l"
    try "chown:$l" chown 1234:1234 "$M/$l"
    try "touch:$l" touch -d '2005-06-07 08:09:10' "$M/$l"
    try "dd:$l" dd if=/dev/zero of="$M/$l" bs=1 count=1 conv=notrunc
    try "cat-dotdot:$l" cat "$M/$l/.."
    try "ls-dotdot:$l" ls -la "$M/$l/.."
    try "create-under:$l" sh_c 'echo vgsbx >"$1"' "$M/$l/vgsbx-under"
    try "stat:$l" stat -L "$M/$l"
    # these act on the link itself (SETATTR/LINK on the symlink's inode)
    try "chown-h:$l" chown -h 2345:2345 "$M/$l"
    try "touch-h:$l" touch -h -d '2006-07-08 09:10:11' "$M/$l"
    try "utimens-h:$l" $T utimens "$M/$l" 1111111111 1111111111
    # a hard link to the symlink: must be another name for the symlink
    if try "hardlink:$l" ln "$M/$l" "$M/hl-$n" && [ -L "$M/hl-$n" ]; then
      expect_eq "hardlink-is-the-symlink:$l" "$(readlink "$M/hl-$n")" "$(readlink "$M/$l")"
      expect_eq "hardlink-same-inode:$l" "$(stat -c %i "$M/hl-$n")" "$(stat -c %i "$M/$l")"
    else
      fail "hardlink-is-the-symlink:$l" "$(ls -ld "$M/hl-$n" 2>&1 | oneline)"
    fi
    try "link-applet:$l" link "$M/$l" "$M/hl2-$n"
    try "read-hardlink:$l" cat "$M/hl-$n"
    try "write-hardlink:$l" sh_c 'echo vgsbx-hl >"$1"' "$M/hl-$n"
    try "truncate-hardlink:$l" truncate -s 0 "$M/hl-$n"
    try "chmod-hardlink:$l" chmod 0777 "$M/hl-$n"
  done
  # removing links removes the links, never their targets (busybox rm
  # strips a trailing slash: "rm -f link/" removes the link, so copies)
  try "rm:g-abs" rm "$M/g-abs"
  try "rm:hl2-g-rel" rm -f "$M/hl2-g-rel"
  ln -s "$OUT/secret.txt" "$M/rmme-abs-file"
  try "rm-slash:abs-file" rm -f "$M/rmme-abs-file/"
  try "unlink-applet:g-deep" unlink "$M/g-deep"
  if [ -e "$M/g-abs" ] || [ -L "$M/g-abs" ]; then fail rm-link "g-abs still there"; else pass rm-link; fi
}

# links to a directory outside the share
t_dir_links() {
  local l n
  for l in $DIR_LINKS; do
    n=$(echo "$l" | tr / _)
    if try "ls:$l" ls -la "$M/$l/"; then fail "list-via-dir-link-fails:$l" "listed something"
    else pass "list-via-dir-link-fails:$l"; fi
    if try "read-inner:$l" cat "$M/$l/inner.txt"; then fail "read-via-dir-link-fails:$l" "read something"
    else pass "read-via-dir-link-fails:$l"; fi
    try "create:$l" sh_c 'echo vgsbx-create >"$1"' "$M/$l/vgsbx-new-$n.txt"
    try "mkdir:$l" mkdir "$M/$l/vgsbx-mkdir-$n"
    try "hardlink:$l" ln "$M/$l" "$M/hl-$n"
    try "chown-h:$l" chown -h 2345:2345 "$M/$l"
    try "rm-inner:$l" rm -f "$M/$l/inner.txt"
    try "chmod-inner:$l" chmod 0777 "$M/$l/inner.txt"
    try "chmod-dir:$l" chmod 0777 "$M/$l/"
    try "chown-dir:$l" chown 1234:1234 "$M/$l/"
    try "touch-inner:$l" touch "$M/$l/inner.txt"
    try "ls-dotdot:$l" ls -la "$M/$l/.."
    try "dotdot-secret:$l" cat "$M/$l/../secret.txt"
    try "dotdot-create:$l" sh_c 'echo vgsbx >"$1"' "$M/$l/../vgsbx-dotdot-$n.txt"
    ln -s "$(readlink "$M/$l")" "$M/rmme-$n"
    try "rm-rf-slash:$l" rm -rf "$M/rmme-$n/"
    try "rm-rf-slash-inner:$l" rm -rf "$M/$l/inner.txt/"
  done
}

# magic links: the guest kernel follows them into its own /proc
t_magic_links() {
  local l n want
  want=$(ls -a / | oneline)
  for l in $MAGIC_DIR_LINKS; do
    n=$(echo "$l" | tr / _)
    expect_eq "magic-link-is-guest-root:$l" "$(ls -a "$M/$l/" 2>&1 | oneline)" "$want"
    try "read-outside:$l" cat "$M/$l$OUT/secret.txt" &&
      fail "magic-link-read-outside-fails:$l" "read something" ||
      pass "magic-link-read-outside-fails:$l"
    try "write-guest-tmp:$l" sh_c 'echo vgsbx >"$1"' "$M/$l/tmp/vgsbx-magic-$n"
    try "hardlink:$l" ln "$M/$l" "$M/hl-$n"
    if [ -L "$M/hl-$n" ]; then pass "magic-hardlink-is-symlink:$l"
    else fail "magic-hardlink-is-symlink:$l" "$(ls -ld "$M/hl-$n" 2>&1 | oneline)"; fi
    try "chown-h:$l" chown -h 2345:2345 "$M/$l"
    try "touch-h:$l" touch -h "$M/$l"
  done
  expect_eq proc-passwd-is-guest-passwd "$(cat "$M/proc-passwd" 2>&1 | oneline)" "$(oneline </etc/passwd)"
  try "proc-self-cwd" ls -la "$M/proc-self-cwd/"
  try "proc-cwd-create" sh_c 'cd /tmp && echo vgsbx >"$1"' "$M/g-proc-cwd/vgsbx-cwd.txt"
  [ -f /tmp/vgsbx-cwd.txt ] && pass proc-cwd-is-guest-cwd || fail proc-cwd-is-guest-cwd "/tmp/vgsbx-cwd.txt missing"
}

# '..' chains and '..' as a name
t_dotdot() {
  local want
  want=$(ls -a / | oneline)
  expect_eq dotdot-chain-is-guest-root "$(cd "$M/../../../.." && pwd)" /
  expect_eq dotdot-chain-lists-guest-root "$(ls -a "$M/../../.." 2>&1 | oneline)" "$want"
  expect_eq dotdot-from-subdir "$(cd "$M/sub/deeper/../../../../../.." && pwd)" /
  try "dotdot-create-root" sh_c 'cd "$1" && echo vgsbx >vgsbx-dotdot-root.txt && mkdir vgsbx-dotdot-dir' "$M/../../.."
  [ -f /vgsbx-dotdot-root.txt ] && pass dotdot-create-lands-in-guest ||
    fail dotdot-create-lands-in-guest "/vgsbx-dotdot-root.txt missing in the guest"
  try "dotdot-create-from-sub" sh_c 'cd "$1" && cd ../../../../.. && echo vgsbx >vgsbx-dotdot-sub.txt' "$M/sub/deeper"
  try "dotdot-outside-ls" ls -la "$M/../../../..$OUT"
  try "dotdot-outside-read" cat "$M/sub/../../../..$OUT/secret.txt"
  try "dotdot-outside-write" sh_c 'echo vgsbx >"$1"' "$M/sub/deeper/../../../..$OUT/vgsbx-dotdot-out.txt"
  try "dotdot-outside-mkdir" mkdir "$M/../../..$OUT/vgsbx-dotdot-mkdir"
  try "dotdot-relative-write" sh_c 'cd "$1" && echo vgsbx >../../../../../vgsbx-dotdot-rel.txt' "$M/sub/deeper"
  # '..' (and '.') as the name an operation acts on
  must_fail mkdir-dotdot mkdir "$M/.."
  must_fail mkdir-sub-dotdot mkdir "$M/sub/.."
  must_fail rmdir-sub-dotdot rmdir "$M/sub/.."
  must_fail unlink-sub-dotdot unlink "$M/sub/.."
  must_fail rename-sub-dotdot mv -T "$M/sub/.." "$M/vgsbx-renamed-dotdot"
  must_fail rename-onto-dotdot $T noreplace "$M/plain.txt" "$M/sub/.."
  must_fail exchange-dotdot $T exchange "$M/sub" "$M/.."
  must_fail mkfifo-dotdot $T mkfifo "$M/sub/.."
  must_fail symlink-dotdot ln -sT vgsbx "$M/sub/.."
  must_fail hardlink-dotdot ln -T "$M/plain.txt" "$M/sub/.."
  must_fail open-excl-dotdot $T open "$M/sub/.." excl
  # moving a file to the share's parent moves it into the guest's own /
  try "mv-to-dotdot" mv "$M/sub/vgsbx-mv1" "$M/.."
  try "mv-to-dotdot-chain" mv "$M/sub/vgsbx-mv2" "$M/sub/deeper/../../../.."
  [ -f /vgsbx-mv1 ] && [ ! -e "$M/sub/vgsbx-mv1" ] && pass mv-to-dotdot-is-guest-root ||
    fail mv-to-dotdot-is-guest-root "$(ls -la / "$M/sub" 2>&1 | oneline)"
  # names made only of dots are ordinary names
  try "dots-3" sh_c 'echo three >"$1"' "$M/..."
  try "dots-4" mkdir "$M/...."
  try "dots-x" sh_c 'echo dotx >"$1"' "$M/..x"
  [ -f "$M/..." ] && [ -d "$M/...." ] && [ -f "$M/..x" ] && pass dot-names ||
    fail dot-names "$(ls -la "$M" 2>&1 | oneline)"
}

# The host swaps d (a real directory, with a decoy d/secret.txt) and d-link
# (-> $VG_OUT) while this walks them, and moves m (held here as a working
# directory) out of the share, next to a secret-parent.txt, and back, while
# this walks '..' from m.  Runs until the host creates $M/vgsbx-race-stop
# (or 40 s of guest time).
t_race() {
  local start n=0 inside=0 missing=0 other=0 wok=0 wfail=0 lsok=0 out now
  local cn=0 cinside=0 cother=0 cwok=0
  start=$(date +%s)
  # a second walker that holds the real directory as its working directory
  (
    cd "$M/d" || exit 1
    while [ ! -e "$M/vgsbx-race-stop" ]; do
      out=$(cat secret.txt 2>&1)
      cn=$((cn + 1))
      if [ "$out" = inside-d ]; then cinside=$((cinside + 1))
      else cother=$((cother + 1)); [ "$cother" -gt 5 ] || echo "RACE: cwd-read $(echo "$out" | oneline)"; fi
      { echo vgsbx-race-cwd >vgsbx-race-cwd.txt; } 2>/dev/null && cwok=$((cwok + 1))
      out=$(cat ../secret.txt ../d/secret.txt ../d-link/secret.txt 2>&1 | grep -v -e '^inside-d$' -e 'No such file' | oneline)
      [ -z "$out" ] || echo "RACE: cwd-dotdot $out"
      ls .. >/dev/null 2>&1
      now=$(date +%s)
      [ $((now - start)) -lt 40 ] || break
    done
    echo "DATA: race-cwd n=$cn inside=$cinside other=$cother writes=$cwok"
  ) &
  local cwd_pid=$!
  # a third walker inside m, which the host moves out of the share and back
  (
    local mn=0 minside=0 mother=0 mwok=0 gone=0
    cd "$M/m" || exit 1
    while [ ! -e "$M/vgsbx-race-stop" ]; do
      mn=$((mn + 1))
      out=$(cat inside-m.txt 2>&1)
      if [ "$out" = inside-m ]; then minside=$((minside + 1))
      else mother=$((mother + 1)); [ "$mother" -gt 5 ] || echo "RACE: moved-read $(echo "$out" | oneline)"; fi
      [ -e "$M/m" ] || gone=$((gone + 1))
      { echo vgsbx-moved >vgsbx-moved-cwd.txt; } 2>/dev/null && mwok=$((mwok + 1))
      # '..' of m: the guest's own dcache says /mnt; secret-parent.txt is
      # next to m on the host only while m is moved out
      out=$(cat ../secret-parent.txt ../../secret-parent.txt ../../moved-out/secret-parent.txt 2>&1 | grep -v 'No such file' | oneline)
      [ -z "$out" ] || echo "RACE: moved-dotdot $out"
      out=$(ls -a .. ../.. 2>&1 | grep -e secret-parent -e moved-out -e outside | oneline)
      [ -z "$out" ] || echo "RACE: moved-dotdot-ls $out"
      { echo vgsbx-moved >../vgsbx-moved-dotdot.txt; } 2>/dev/null
      now=$(date +%s)
      [ $((now - start)) -lt 40 ] || break
    done
    echo "DATA: race-moved n=$mn inside=$minside other=$mother writes=$mwok gone=$gone"
  ) &
  local moved_pid=$!
  # both walkers hold their directories now: let the host start
  sleep 1
  echo go >"$M/vgsbx-race-go"
  while [ ! -e "$M/vgsbx-race-stop" ]; do
    n=$((n + 1))
    out=$(cat "$M/d/secret.txt" 2>&1)
    case $out in
      inside-d) inside=$((inside + 1)) ;;
      *"No such file"* | *"Not a directory"*) missing=$((missing + 1)) ;;
      *) other=$((other + 1)); [ "$other" -gt 10 ] || echo "RACE: read $(echo "$out" | oneline)" ;;
    esac
    if { echo vgsbx-race >"$M/d/vgsbx-race-new.txt"; } 2>/dev/null; then wok=$((wok + 1)); else wfail=$((wfail + 1)); fi
    ls "$M/d" >/dev/null 2>&1 && lsok=$((lsok + 1))
    out=$(cat "$M/d-link/secret.txt" "$M/d/../d-link/secret.txt" 2>&1 | grep -v -e '^inside-d$' -e 'No such file' -e 'Not a directory' | oneline)
    [ -z "$out" ] || echo "RACE: read-link $out"
    now=$(date +%s)
    [ $((now - start)) -lt 40 ] || break
  done
  wait "$cwd_pid" "$moved_pid"
  echo "DATA: race n=$n inside=$inside missing=$missing other=$other writes=$wok write_fail=$wfail ls=$lsok secs=$(($(date +%s) - start))"
}

echo "DATA: sandbox-mode ${VG_SBX_MODE:-?}"
grep -q " $M virtiofs " /proc/mounts && pass mount-is-virtiofs || fail mount-is-virtiofs "$(grep " $M " /proc/mounts)"
t_links_visible
t_file_links
t_dir_links
t_magic_links
t_dotdot
t_race
sync
echo "DATA: guest-done"

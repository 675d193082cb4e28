#!/bin/sh
# The guest half of test-guest.sh.  Runs inside the test guest (busybox ash,
# as root) with the share mounted on $VG_MNT; test-guest.sh prepared
# $VG_MNT/host beforehand and checks what this leaves in $VG_MNT/g afterwards.
#
# Output protocol (stdout = the results channel, read by test-guest.sh):
#   PASS: name | FAIL: name: reason | SKIP: name: reason
#   SUM: <sha256> <path relative to the share>   for the host to recompute
#   DATA: <key> <value...>                       other facts for the host
# stderr goes to the guest console log, which is shown when something fails.
#
# Every check runs independently: a failure is reported and the script goes
# on, so one run reports everything that is broken.
#
# shellcheck disable=SC3043,SC2015,SC2002,SC2012  # ash has `local`; `a && pass || fail` is fine: pass never fails

M=${VG_MNT:-/mnt}
H=$M/host          # files the host created before the boot
G=$M/g             # files this script creates for the host to inspect
T=guest-tool
XATTR=${VG_XATTR:-1}
FAILS=0

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; FAILS=$((FAILS + 1)); }
skip() { echo "SKIP: $1: $2"; }
# squash command output into one short line for a FAIL reason
oneline() { tr '\n' ' ' | cut -c1-300; }

# run "$@"; PASS if it exits 0, else FAIL with its output
check() {
  local name="$1" out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | oneline)"; fi
}
# expect_eq NAME GOT WANT
expect_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}
# Push everything to the daemon and forget it, so the next read really goes
# through virtio-fs (with --cache=always the guest page cache would otherwise
# serve it).
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# checksum through 1 MiB reads: with cache=never every read() is one FUSE
# request, and busybox sha256sum's small reads would make that crawl
sum() { dd if="$1" bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1; }
report_sum() { echo "SUM: $(sum "$M/$1") $1"; }

# ---------------------------------------------------------------------------
t_mount() {
  if grep -q " $M virtiofs " /proc/mounts; then pass mount-is-virtiofs
  else fail mount-is-virtiofs "$(grep " $M " /proc/mounts | oneline)"; fi
  echo "DATA: cache-mode ${VG_CACHE_MODE:-?}"
  mkdir -p "$G" || fail mkdir-g "cannot create $G"
}

# host-created files: read them; the host compares the sums
t_host_files() {
  local f
  for f in small.txt empty.txt random-8M.bin sparse-host.bin; do
    if [ -f "$H/$f" ]; then report_sum "host/$f"
    else fail "host-file-visible:$f" "$H/$f missing"; fi
  done
  expect_eq host-small-content "$(cat "$H/small.txt")" "hello from the host"
  # mmap (MAP_PRIVATE) must see the same bytes as read()
  expect_eq mmap-read "$($T mmap-cat "$H/random-8M.bin" | sha256sum | cut -d' ' -f1)" \
    "$(sum "$H/random-8M.bin")"
  # an unaligned read in the middle of a file
  expect_eq read-at-offset \
    "$(dd if="$H/random-8M.bin" bs=1000 skip=4321 count=7 2>/dev/null | sha256sum | cut -d' ' -f1)" \
    "$(tail -c +4321001 "$H/random-8M.bin" | head -c 7000 | sha256sum | cut -d' ' -f1)"
}

# small files of awkward sizes around page and block boundaries
t_small_files() {
  local s bad=""
  mkdir -p "$G/small" /tmp/small
  for s in 0 1 3 100 4095 4096 4097 65535 65536 131073; do
    head -c "$s" /dev/urandom >"/tmp/small/s$s"
    cp "/tmp/small/s$s" "$G/small/s$s" || bad="$bad write:s$s"
  done
  drop_caches
  for s in 0 1 3 100 4095 4096 4097 65535 65536 131073; do
    [ "$(sum "$G/small/s$s")" = "$(sum "/tmp/small/s$s")" ] || bad="$bad s$s"
    [ "$(stat -c %s "$G/small/s$s")" = "$s" ] || bad="$bad size:s$s"
    report_sum "g/small/s$s"
  done
  rm -rf /tmp/small
  if [ -z "$bad" ]; then pass small-files-reread; else fail small-files-reread "mismatch:$bad"; fi
  printf 'abc' >"$G/tiny.txt"
  echo "DATA: tiny-written abc"
}

# 20 MiB of random data: write, sync, drop caches, re-read
t_large_file() {
  local want got
  dd if=/dev/urandom of=/tmp/large bs=1M count=20 2>/dev/null
  want=$(sum /tmp/large)
  if ! dd if=/tmp/large of="$G/large.bin" bs=1M 2>/dev/null; then
    fail large-file-write "dd failed"; rm -f /tmp/large; return
  fi
  expect_eq large-file-cached-read "$(sum "$G/large.bin")" "$want"
  drop_caches
  got=$(sum "$G/large.bin")
  expect_eq large-file-reread "$got" "$want"
  expect_eq large-file-size "$(stat -c %s "$G/large.bin")" 20971520
  # overwrite 16 bytes in the middle, without truncating
  $T pwrite "$G/large.bin" 5000000 MIDDLE-OVERWRITE && $T pwrite /tmp/large 5000000 MIDDLE-OVERWRITE
  drop_caches
  got=$(sum "$G/large.bin")
  expect_eq overwrite-middle "$got" "$(sum /tmp/large)"
  echo "SUM: $got g/large.bin"
  expect_eq read-large-offset \
    "$(dd if="$G/large.bin" bs=4096 skip=1220 count=3 2>/dev/null | sha256sum)" \
    "$(dd if=/tmp/large bs=4096 skip=1220 count=3 2>/dev/null | sha256sum)"
  rm -f /tmp/large
  expect_eq mmap-read-large "$($T mmap-cat "$G/large.bin" | sha256sum | cut -d' ' -f1)" "$got"
  # append
  printf 'line1\n' >"$G/append.txt" && printf 'line2\n' >>"$G/append.txt"
  drop_caches
  expect_eq append "$(cat "$G/append.txt" | tr '\n' ,)" "line1,line2,"
}

# sparse files: the data/hole layout must come through lseek(SEEK_DATA/HOLE);
# a daemon without FUSE_LSEEK makes the kernel report the whole file as data
t_sparse() {
  local d h
  if ! $T sparse "$G/sparse.bin" 64M 1M 40M; then fail sparse-create "failed"; return; fi
  drop_caches
  d=$($T seek "$G/sparse.bin" data 0) h=$($T seek "$G/sparse.bin" hole "${d:-0}")
  if [ -n "$d" ] && [ -n "$h" ] && [ "$d" -gt 0 ] && [ "$d" -le 1048576 ] &&
     [ "$h" -ge 1052672 ] && [ "$h" -lt 41943040 ]; then pass sparse-seek-data-hole
  else fail sparse-seek-data-hole "first data at ${d:-?}, next hole at ${h:-?} (want data in (0,1M], hole in [1M+4K,40M))"; fi
  d=$($T seek "$G/sparse.bin" data 1052672)
  if [ -n "$d" ] && [ "$d" -gt 1052672 ] && [ "$d" -le 41943040 ]; then pass sparse-seek-second-extent
  else fail sparse-seek-second-extent "SEEK_DATA(1M+4K) = ${d:-?}, want (1M+4K, 40M]"; fi
  check sparse-seek-data-enxio $T -e ENXIO seek "$G/sparse.bin" data 41947136
  expect_eq sparse-size "$(stat -c %s "$G/sparse.bin")" 67108864
  report_sum g/sparse.bin
  # the file the host made sparse: 32 MiB with 4 KiB of data at 8 MiB
  d=$($T seek "$H/sparse-host.bin" data 0)
  if [ -n "$d" ] && [ "$d" -gt 0 ] && [ "$d" -le 8388608 ]; then pass sparse-host-file-seek
  else fail sparse-host-file-seek "SEEK_DATA(0) = ${d:-?}, want (0, 8M]"; fi
}

t_dirs() {
  mkdir -p "$G/d1/d2/d3" && [ -d "$G/d1/d2/d3" ] && pass mkdir-p || fail mkdir-p "d1/d2/d3 missing"
  if rmdir "$G/d1" 2>/dev/null; then fail rmdir-nonempty "removed a non-empty directory"
  else pass rmdir-nonempty; fi
  rmdir "$G/d1/d2/d3" && [ ! -e "$G/d1/d2/d3" ] && pass rmdir || fail rmdir "d3 still there"
  mkdir "$G/rmme" && rmdir "$G/rmme"
  drop_caches
  [ ! -e "$G/rmme" ] && [ -d "$G/d1/d2" ] && pass dirs-after-drop-caches || fail dirs-after-drop-caches "wrong layout"
  # names that need no escaping on the host but often break naive code
  local long
  long=$(printf '%0255d' 0)
  check name-255-bytes sh -c "echo x > '$G/$long'"
  check name-256-enametoolong $T -e ENAMETOOLONG open "$G/${long}1" creat
  check name-spaces-unicode sh -c "echo u > '$G/name with spaces & ünïcødé.txt'"
}

t_rename() {
  echo A >"$G/ren-a"; echo B >"$G/ren-b"
  # plain rename of a file, across directories, of a directory, over a file
  mv "$G/ren-a" "$G/ren-a2" && [ ! -e "$G/ren-a" ] && [ "$(cat "$G/ren-a2")" = A ] &&
    pass rename-file || fail rename-file "ren-a -> ren-a2"
  mkdir -p "$G/ren-dir/sub" && echo in >"$G/ren-dir/sub/f"
  mv "$G/ren-dir" "$G/ren-dir2" && [ "$(cat "$G/ren-dir2/sub/f")" = in ] &&
    pass rename-dir || fail rename-dir "ren-dir -> ren-dir2"
  mv "$G/ren-a2" "$G/ren-dir2/sub/moved" && pass rename-across-dirs || fail rename-across-dirs "mv failed"
  echo old >"$G/ren-over-target"; echo new >"$G/ren-over-src"
  mv -f "$G/ren-over-src" "$G/ren-over-target" && [ "$(cat "$G/ren-over-target")" = new ] &&
    pass rename-replace || fail rename-replace "target content $(cat "$G/ren-over-target")"
  # RENAME_EXCHANGE: two files, and a file with a directory
  echo X >"$G/xch-1"; echo Y >"$G/xch-2"
  if $T exchange "$G/xch-1" "$G/xch-2"; then
    drop_caches
    expect_eq rename-exchange "$(cat "$G/xch-1")$(cat "$G/xch-2")" YX
  else fail rename-exchange "renameat2(RENAME_EXCHANGE) failed"; fi
  echo F >"$G/xch-file"; mkdir "$G/xch-dir"
  if $T exchange "$G/xch-file" "$G/xch-dir"; then
    [ -d "$G/xch-file" ] && [ -f "$G/xch-dir" ] && pass rename-exchange-file-dir ||
      fail rename-exchange-file-dir "types not swapped"
  else fail rename-exchange-file-dir "renameat2(RENAME_EXCHANGE) failed"; fi
  # RENAME_NOREPLACE: EEXIST onto an existing name, works onto a free one
  check rename-noreplace-eexist $T -e EEXIST noreplace "$G/xch-1" "$G/xch-2"
  expect_eq rename-noreplace-untouched "$(cat "$G/xch-1")$(cat "$G/xch-2")" YX
  check rename-noreplace-free $T noreplace "$G/ren-b" "$G/ren-b2"
  # unlink, and an unlinked file still readable through an open descriptor
  echo gone >"$G/unlink-me"; rm "$G/unlink-me"
  [ ! -e "$G/unlink-me" ] && pass unlink || fail unlink "still exists"
  echo still-here >"$G/unlink-open"
  exec 4<"$G/unlink-open"
  rm "$G/unlink-open"
  drop_caches
  expect_eq unlink-open-file "$(cat <&4)" still-here
  exec 4<&-
}

t_links() {
  echo target-data >"$G/sym-target"
  ln -s sym-target "$G/sym-link" && ln -s does-not-exist "$G/sym-dangling"
  drop_caches
  expect_eq symlink-readlink "$(readlink "$G/sym-link")" sym-target
  expect_eq symlink-follow "$(cat "$G/sym-link")" target-data
  expect_eq symlink-dangling "$(readlink "$G/sym-dangling")" does-not-exist
  expect_eq symlink-lstat-type "$(stat -c %F "$G/sym-link")" "symbolic link"
  echo hl >"$G/hl-1"
  if ln "$G/hl-1" "$G/hl-2"; then
    drop_caches
    expect_eq hardlink-nlink "$(stat -c %h "$G/hl-1")" 2
    expect_eq hardlink-same-inode "$(stat -c %i "$G/hl-2")" "$(stat -c %i "$G/hl-1")"
    echo via-2 >>"$G/hl-2"
    drop_caches
    expect_eq hardlink-shared-data "$(cat "$G/hl-1" | tr '\n' ,)" "hl,via-2,"
  else fail hardlink "ln failed"; fi
  echo x >"$G/hl-3" && ln "$G/hl-3" "$G/hl-4" && rm "$G/hl-3"
  drop_caches
  expect_eq hardlink-nlink-after-unlink "$(stat -c %h "$G/hl-4")" 1
}

t_attrs() {
  echo m >"$G/mode.txt"; chmod 0640 "$G/mode.txt"
  mkdir "$G/sticky"; chmod 1777 "$G/sticky"
  echo o >"$G/owned.txt"; chown 1234:5678 "$G/owned.txt"
  drop_caches
  expect_eq chmod "$(stat -c %a "$G/mode.txt")" 640
  expect_eq chmod-sticky-dir "$(stat -c %a "$G/sticky")" 1777
  expect_eq chown "$(stat -c %u:%g "$G/owned.txt")" 1234:5678
  # truncate: grow with zeros, then shrink
  printf hello >"$G/trunc-grow.txt"
  truncate -s 1M "$G/trunc-grow.txt"
  printf hello >/tmp/tg; truncate -s 1M /tmp/tg
  drop_caches
  expect_eq truncate-grow "$(stat -c %s "$G/trunc-grow.txt") $(sum "$G/trunc-grow.txt")" "1048576 $(sum /tmp/tg)"
  rm -f /tmp/tg
  printf 'hello world' >"$G/trunc-shrink.txt"
  truncate -s 3 "$G/trunc-shrink.txt"
  drop_caches
  expect_eq truncate-shrink "$(cat "$G/trunc-shrink.txt")" hel
  # ftruncate on an open file (O_TRUNC)
  printf 'long content' >"$G/otrunc.txt"; printf 'x' >"$G/otrunc.txt"
  expect_eq open-o-trunc "$(cat "$G/otrunc.txt")" x
  # timestamps with nanoseconds, and through busybox touch -d (guest is UTC)
  echo t >"$G/times.txt"
  check utimensat $T utimens "$G/times.txt" 1000000000.123456789 1234567890.987654321
  echo t >"$G/touch-d.txt"
  check touch-d touch -d '2005-06-07 08:09:10' "$G/touch-d.txt"
  drop_caches
  local st
  st=$($T stat "$G/times.txt")
  case $st in
    *"atime=1000000000.123456789 mtime=1234567890.987654321"*) pass utimensat-readback ;;
    *) fail utimensat-readback "$st" ;;
  esac
  expect_eq touch-d-readback "$(stat -c %Y "$G/touch-d.txt")" 1118131750
}

# an unprivileged user: owns what it creates, is refused what it may not do
t_unprivileged() {
  mkdir -p "$G/userdir" && chmod 0777 "$G/userdir"
  check user-create $T runas 1000 1000 sh -c "echo user-data > '$G/userdir/u.txt' && mkdir '$G/userdir/udir'"
  drop_caches
  expect_eq user-owns-file "$(stat -c %u:%g "$G/userdir/u.txt" 2>&1)" 1000:1000
  expect_eq user-owns-dir "$(stat -c %u:%g "$G/userdir/udir" 2>&1)" 1000:1000
  check user-write-root-file-eacces $T runas 1000 1000 $T -e EACCES open "$H/root-file.txt" w
  check user-create-in-root-dir-eacces $T runas 1000 1000 $T -e EACCES open "$H/root-dir/new.txt" creat
  check user-read-0600-eacces $T runas 1000 1000 $T -e EACCES open "$H/root-secret.txt" r
  check user-unlink-in-root-dir-eacces $T runas 1000 1000 sh -c "! rm -f '$H/root-dir/keep.txt' 2>/dev/null"
  check user-can-read-0644 $T runas 1000 1000 cat "$H/root-file.txt"
  # the user may not chown a file to someone else
  check user-chown-eperm $T runas 1000 1000 sh -c "! chown 0 '$G/userdir/u.txt' 2>/dev/null"
}

t_many_entries() {
  # 3000 entries made by the host (fast there): list and count them
  expect_eq many-ls-count "$(ls "$H/many" | wc -l)" 3000
  expect_eq many-readdir-count "$($T count "$H/many")" 3000
  # 1200 made by the guest (each create is several round trips, slow under
  # TCG with cache=never), listed with a stat of each entry (readdirplus or
  # lookups: "total" line + 1200), then 100 of them removed
  mkdir -p "$G/many"
  if ! $T mkfiles "$G/many" 1200 entry-; then fail many-create "mkfiles failed"; return; fi
  drop_caches
  expect_eq many-guest-created-ls-l "$(ls -l "$G/many" | wc -l)" 1201
  rm -f "$G/many"/entry-003*
  drop_caches
  expect_eq many-after-unlink "$($T count "$G/many")" 1100
}

t_xattr() {
  local f="$G/xattr.txt" out
  echo x >"$f"
  if ! out=$($T setxattr "$f" user.guest guest-value 2>&1); then
    case $out in
      *EOPNOTSUPP*) if [ "$XATTR" = 1 ]; then fail xattr-set "$out"
                    else skip xattr "daemon runs without --xattr"; fi ;;
      *) fail xattr-set "$out" ;;
    esac
    return
  fi
  pass xattr-set
  expect_eq xattr-get "$($T getxattr "$f" user.guest 2>&1)" guest-value
  $T setxattr "$f" user.gone bye
  check xattr-remove $T removexattr "$f" user.gone
  check xattr-get-removed-enodata $T -e ENODATA getxattr "$f" user.gone
  check xattr-create-eexist $T -e EEXIST setxattr "$f" user.guest again create
  check xattr-replace-missing-enodata $T -e ENODATA setxattr "$f" user.nothere v replace
  case " $($T listxattr "$f" | tr '\n' ' ')" in
    *" user.guest "*) pass xattr-list ;;
    *) fail xattr-list "$($T listxattr "$f" 2>&1 | oneline)" ;;
  esac
  mkdir -p "$G/xattr-dir" && check xattr-on-dir $T setxattr "$G/xattr-dir" user.dir dir-value
  drop_caches
  expect_eq xattr-host-set "$($T getxattr "$H/xattr-host.txt" user.host 2>&1)" host-value
}

t_special() {
  mkfifo "$G/fifo" && expect_eq mkfifo-type "$(stat -c %F "$G/fifo")" fifo ||
    fail mkfifo "mkfifo failed"
  # data through the fifo stays in the guest kernel, but open() must work
  (echo through-fifo >"$G/fifo") &
  expect_eq fifo-io "$(timeout 10 cat "$G/fifo")" through-fifo
  wait
}

t_statfs() {
  local out
  if out=$($T statfs "$M"); then
    pass statfs
    echo "$out" | sed -n 's/^.*total_bytes=\([0-9]*\) avail_bytes=\([0-9]*\).*$/DATA: statfs \1 \2/p'
  else fail statfs "$out"; fi
  df -k "$M" >&2
}

t_fallocate() {
  local out h
  if ! out=$($T fallocate "$G/falloc.bin" alloc 0 4M 2>&1); then
    fail fallocate "$out"; return
  fi
  pass fallocate
  expect_eq fallocate-size "$(stat -c %s "$G/falloc.bin")" 4194304
  check fallocate-keep-size $T fallocate "$G/falloc.bin" keep 4M 1M
  drop_caches
  expect_eq fallocate-keep-size-unchanged "$(stat -c %s "$G/falloc.bin")" 4194304
  # punch a hole into random data; it must read back as zeros and seek as a hole
  dd if=/dev/urandom of="$G/punch.bin" bs=1M count=4 2>/dev/null
  check fallocate-punch $T fallocate "$G/punch.bin" punch 1M 1M
  drop_caches
  expect_eq punch-reads-zeros "$(dd if="$G/punch.bin" bs=1M skip=1 count=1 2>/dev/null | sha256sum)" \
    "$(head -c 1048576 /dev/zero | sha256sum)"
  h=$($T seek "$G/punch.bin" hole 0)
  expect_eq punch-seek-hole "$h" 1048576
  expect_eq punch-size "$(stat -c %s "$G/punch.bin")" 4194304
  report_sum g/punch.bin
  dd if=/dev/urandom of="$G/zero.bin" bs=64K count=4 2>/dev/null
  if out=$($T fallocate "$G/zero.bin" zero 64K 64K 2>&1); then
    drop_caches
    expect_eq fallocate-zero-range "$(dd if="$G/zero.bin" bs=64K skip=1 count=1 2>/dev/null | sha256sum)" \
      "$(head -c 65536 /dev/zero | sha256sum)"
    report_sum g/zero.bin
  else
    case $out in
      *EOPNOTSUPP*) skip fallocate-zero-range "not supported by the host fs/daemon: $out" ;;
      *) fail fallocate-zero-range "$out" ;;
    esac
  fi
}

t_fsync() {
  check fsync-file $T write-fsync "$G/fsync.txt" "synced data"
  check fsync-dir $T fsync "$G"
  check fsync-existing $T fsync "$G/large.bin"
  check sync-cmd sync
}

t_mmap_write() {
  local out
  printf 'AAAAAAAAAAAAAAAA' >"$G/mmap-w.txt"
  if out=$($T mmap-write "$G/mmap-w.txt" 4 mmap 2>&1); then
    drop_caches
    expect_eq mmap-write-shared "$(cat "$G/mmap-w.txt")" AAAAmmapAAAAAAAA
  else
    case $out in
      # 6.1 refuses shared maps of FOPEN_DIRECT_IO files, which is what the
      # daemon opens files as when the guest must not cache data
      # (cache=never, and metadata in some daemons)
      *ENODEV*) skip mmap-write-shared "MAP_SHARED refused for a direct-I/O file (cache=${VG_CACHE_MODE:-?}), as 6.1 does" ;;
      *) fail mmap-write-shared "$out" ;;
    esac
  fi
}

t_concurrent() {
  check concurrent-threads $T concurrent "$G/conc-threads.bin" 4 8M threads
  check concurrent-procs $T concurrent "$G/conc-procs.bin" 3 5000000 procs
  drop_caches
  check concurrent-threads-reread $T verify-pattern "$G/conc-threads.bin" 4 8M
  check concurrent-procs-reread $T verify-pattern "$G/conc-procs.bin" 3 5000000
}

t_copy_file_range() {
  local out
  if out=$($T copy-range "$H/random-8M.bin" "$G/cfr-copy.bin" 2>&1); then
    drop_caches
    expect_eq copy-file-range "$(sum "$G/cfr-copy.bin")" "$(sum "$H/random-8M.bin")"
    report_sum g/cfr-copy.bin
  else fail copy-file-range "$out"; fi
  # partial copy between offsets into an existing file
  head -c 300000 /dev/zero >"$G/cfr-part.bin"
  if out=$($T copy-range "$H/random-8M.bin" "$G/cfr-part.bin" 4096 8192 100000 2>&1); then
    drop_caches
    expect_eq copy-file-range-offsets \
      "$(dd if="$G/cfr-part.bin" bs=4096 skip=2 2>/dev/null | head -c 100000 | sha256sum)" \
      "$(dd if="$H/random-8M.bin" bs=4096 skip=1 2>/dev/null | head -c 100000 | sha256sum)"
    report_sum g/cfr-part.bin
  else fail copy-file-range-offsets "$out"; fi
}

t_tmpfile() {
  check tmpfile-linked $T tmpfile "$G" from-tmpfile.txt "made unnamed, then linked"
  expect_eq tmpfile-content "$(cat "$G/from-tmpfile.txt")" "made unnamed, then linked"
}

# locks are kept on the host: between guest processes, against a host holder
t_locks() {
  echo data >"$G/locks.txt"
  check locks-posix $T locks posix "$G/locks.txt"
  check locks-flock $T locks flock "$G/locks.txt"
  check locks-held-by-host $T locks held "$H/locked-by-host.txt"
}

for t in t_mount t_host_files t_small_files t_large_file t_sparse t_dirs t_rename \
  t_links t_attrs t_unprivileged t_many_entries t_xattr t_special t_statfs \
  t_fallocate t_fsync t_mmap_write t_concurrent t_copy_file_range t_tmpfile t_locks; do
  echo "== $t (uptime $(cut -d" " -f1 /proc/uptime)s)" >&2
  $t
done
sync
echo "DATA: guest-done $FAILS"
[ "$FAILS" = 0 ]

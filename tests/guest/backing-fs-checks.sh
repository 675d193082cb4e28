#!/bin/sh
# The guest half of test-backing-fs.sh.  Runs in the test guest (busybox ash,
# as root).  One virtio-fs device per backing file system, each served by its
# own daemon: the first is mounted by /init on $VG_MNT, the others here on
# /bfs/<name>.  For each one a small file-system suite runs in <mount>/g,
# then the conformance program on the file systems in $VG_BFS_CONFORM.
#
# Environment (from the host, /guest/env):
#   VG_BFS_LIST            the file systems, e.g. "ext4 xfs btrfs"
#   VG_BFS_TAG_<fs>        its virtio-fs tag
#   VG_BFS_KIND_<fs>       ext4|xfs|btrfs|tmpfs|overlay|sshfs
#   VG_BFS_XATTR_<fs>      1 if user.* xattrs work natively on it, else 0
#   VG_BFS_HLKEEP_<fs>     overlay: 1 if writing one name of a lower hard
#                          link changes the other natively (index=on)
#   VG_BFS_DIRREN_<fs>     overlay: what rename(2) of a lower directory gives
#                          natively: ok or EXDEV
#   VG_BFS_CONFORM         file systems to run posix-conform on
#   VG_BFS_UID             the unprivileged conformance user
#   VG_PROTECTED_<k>       the host's fs.protected_<k> sysctls
#
# Output (stdout = results channel):
#   PASS: <fs>/<check> | FAIL: <fs>/<check>: reason | SKIP: <fs>/<check>: reason
#   SUM: <fs> <sha256> <path relative to the share>   for the host to verify
#   DATA: <fs> <key> <value...>                        facts for the host
#   CONFORM <fs> <who> <posix-conform line>
#
# shellcheck disable=SC3043,SC2015,SC2012  # ash has `local`; `a && pass || fail` is fine
T=guest-tool
FS=   # the file system whose checks run now (result prefix)

pass() { echo "PASS: $FS/$1"; }
fail() { echo "FAIL: $FS/$1: $2"; }
skip() { echo "SKIP: $FS/$1: $2"; }
data() { echo "DATA: $FS $*"; }
oneline() { tr '\n' ' ' | cut -c1-300; }
check() {
  local name="$1" out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | oneline)"; fi
}
expect_eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
sum() { dd if="$1" bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1; }
var() { eval "echo \"\${$1:-}\""; } # the value of the variable named $1

# ---- the file-system suite -------------------------------------------------------------
t_data() { # D G
  local d=$1 g=$2 s bad=""
  mkdir -p /tmp/bfs
  for s in 0 1 4097 65536 1048579; do
    head -c "$s" /dev/urandom >"/tmp/bfs/f$s"
    cp "/tmp/bfs/f$s" "$g/f$s" || bad="$bad write:f$s"
  done
  drop_caches
  for s in 0 1 4097 65536 1048579; do
    [ "$(sum "$g/f$s")" = "$(sum "/tmp/bfs/f$s")" ] || bad="$bad f$s"
    [ "$(stat -c %s "$g/f$s")" = "$s" ] || bad="$bad size:f$s"
    # (f65536 is reported after the pwrite below)
    [ "$s" = 65536 ] || echo "SUM: $FS $(sum "$g/f$s") g/f$s"
  done
  rm -rf /tmp/bfs
  if [ -z "$bad" ]; then pass write-read-checksums; else fail write-read-checksums "mismatch:$bad"; fi
  $T pwrite "$g/f65536" 1000 OVERWRITE-IN-THE-MIDDLE && drop_caches &&
    expect_eq pwrite-middle "$(dd if="$g/f65536" bs=1 skip=1000 count=23 2>/dev/null)" OVERWRITE-IN-THE-MIDDLE ||
    fail pwrite-middle "pwrite failed"
  echo "SUM: $FS $(sum "$g/f65536") g/f65536"
  printf 'one\n' >"$g/append.txt" && printf 'two\n' >>"$g/append.txt"
  drop_caches
  expect_eq append "$(tr '\n' , <"$g/append.txt")" "one,two,"
}

t_dirs() { # D G
  local g=$2
  mkdir -p "$g/d1/d2/d3" && [ -d "$g/d1/d2/d3" ] && pass mkdir-p || fail mkdir-p "d1/d2/d3 missing"
  if rmdir "$g/d1" 2>/dev/null; then fail rmdir-nonempty "removed a non-empty directory"
  else pass rmdir-nonempty; fi
  rmdir "$g/d1/d2/d3" && [ ! -e "$g/d1/d2/d3" ] && pass rmdir || fail rmdir "d3 still there"
  drop_caches
  [ -d "$g/d1/d2" ] && [ ! -e "$g/d1/d2/d3" ] && pass dirs-after-drop-caches ||
    fail dirs-after-drop-caches "$(ls -R "$g/d1" 2>&1 | oneline)"
}

t_rename() { # D G
  local g=$2
  echo A >"$g/ren-a"
  mv "$g/ren-a" "$g/ren-a2" && [ ! -e "$g/ren-a" ] && [ "$(cat "$g/ren-a2")" = A ] &&
    pass rename-file || fail rename-file "ren-a -> ren-a2"
  mkdir -p "$g/ren-dir/sub" "$g/ren-other" && echo in >"$g/ren-dir/sub/f"
  mv "$g/ren-a2" "$g/ren-other/moved" && [ "$(cat "$g/ren-other/moved")" = A ] &&
    pass rename-across-dirs || fail rename-across-dirs "ren-a2 -> ren-other/moved"
  mv "$g/ren-dir" "$g/ren-other/dir2" && [ "$(cat "$g/ren-other/dir2/sub/f")" = in ] &&
    pass rename-dir-across-dirs || fail rename-dir-across-dirs "ren-dir -> ren-other/dir2"
  echo old >"$g/ren-target"; echo new >"$g/ren-src"
  mv -f "$g/ren-src" "$g/ren-target" && [ "$(cat "$g/ren-target")" = new ] &&
    pass rename-replace || fail rename-replace "target holds $(cat "$g/ren-target")"
  echo X >"$g/xch-1"; echo Y >"$g/xch-2"
  local out
  if out=$($T exchange "$g/xch-1" "$g/xch-2" 2>&1); then
    drop_caches
    expect_eq rename-exchange "$(cat "$g/xch-1")$(cat "$g/xch-2")" YX
  else
    if [ "$(var "VG_BFS_EXCH_$FS")" = 0 ]; then skip rename-exchange "fails natively too: $out"
    else fail rename-exchange "$out (works natively)"; fi
  fi
  drop_caches
  [ ! -e "$g/ren-dir" ] && [ -f "$g/ren-other/dir2/sub/f" ] && pass rename-after-drop-caches ||
    fail rename-after-drop-caches "$(ls -R "$g" 2>&1 | oneline)"
}

t_links() { # D G
  local g=$2
  echo target-data >"$g/sym-target"
  ln -s sym-target "$g/sym-link" && ln -s does-not-exist "$g/sym-dangling"
  drop_caches
  expect_eq symlink-readlink "$(readlink "$g/sym-link")" sym-target
  expect_eq symlink-follow "$(cat "$g/sym-link" 2>&1)" target-data
  expect_eq symlink-dangling "$(readlink "$g/sym-dangling")" does-not-exist
  local native
  native=$(var "VG_BFS_HLNAT_$FS")
  echo hl >"$g/hl-1"
  if ln "$g/hl-1" "$g/hl-2" 2>/dev/null; then
    drop_caches
    if [ "$native" = posix ]; then
      expect_eq hardlink-nlink "$(stat -c %h "$g/hl-1")" 2
      expect_eq hardlink-same-inode "$(stat -c %i "$g/hl-2")" "$(stat -c %i "$g/hl-1")"
    else
      skip hardlink-nlink-and-inode "natively: $native"
    fi
    echo via-2 >>"$g/hl-2"
    drop_caches
    # the other name's attributes (its size) stay cached on the host for a
    # second there, as on a network file system
    [ "$native" = posix ] || sleep 2
    expect_eq hardlink-shared-data "$(tr '\n' , <"$g/hl-1")" "hl,via-2,"
    rm "$g/hl-1"
    drop_caches
    expect_eq hardlink-nlink-after-unlink "$(stat -c %h "$g/hl-2")" 1
  else
    fail hardlink "ln failed: $(ln "$g/hl-1" "$g/hl-2" 2>&1 | oneline)"
  fi
}

# unlink a file the guest holds open, then read and write through the open fd
# and reopen it through /proc/self/fd (a FUSE OPEN of an inode with no name)
t_unlink_open() { # D G
  local g=$2 out
  printf 'still-here\n' >"$g/unlink-open"
  exec 4<>"$g/unlink-open"
  rm "$g/unlink-open"
  drop_caches
  [ ! -e "$g/unlink-open" ] && pass unlink-open-name-gone || fail unlink-open-name-gone "still there"
  expect_eq unlink-open-read "$(cat <&4)" still-here
  expect_eq unlink-open-nlink "$(stat -L -c %h /proc/self/fd/4 2>&1)" 0
  # the shell's offset is at the end now: this appends
  printf 'appended\n' >&4
  drop_caches
  out=$(cat "/proc/$$/fd/4" 2>&1)
  expect_eq unlink-open-write-reopen "$(echo "$out" | tr '\n' ,)" "still-here,appended,"
  exec 4>&-
}

t_attrs() { # D G
  local g=$2
  echo m >"$g/mode.txt" && chmod 0640 "$g/mode.txt"
  echo o >"$g/owned.txt" && chown 1234:5678 "$g/owned.txt"
  printf hello >"$g/trunc-grow.txt" && truncate -s 100000 "$g/trunc-grow.txt"
  printf 'hello world' >"$g/trunc-shrink.txt" && truncate -s 3 "$g/trunc-shrink.txt"
  printf hello >/tmp/tg && truncate -s 100000 /tmp/tg
  drop_caches
  expect_eq chmod "$(stat -c %a "$g/mode.txt")" 640
  expect_eq chown "$(stat -c %u:%g "$g/owned.txt")" 1234:5678
  expect_eq truncate-grow "$(stat -c %s "$g/trunc-grow.txt") $(sum "$g/trunc-grow.txt")" "100000 $(sum /tmp/tg)"
  expect_eq truncate-shrink "$(cat "$g/trunc-shrink.txt")" hel
  rm -f /tmp/tg
  check utimensat "$T" utimens "$g/mode.txt" 1000000000 1234567890
  drop_caches
  expect_eq utimensat-readback "$(stat -c %Y "$g/mode.txt")" 1234567890
}

t_xattr() { # D G
  local g=$2 want out
  want=$(var "VG_BFS_XATTR_$FS")
  echo x >"$g/xattr.txt"
  if ! out=$($T setxattr "$g/xattr.txt" user.bfs bfs-value 2>&1); then
    case $out in
      *EOPNOTSUPP*) if [ "$want" = 1 ]; then fail xattr-set "$out (works natively)"
                    else skip xattr "user.* xattrs do not work natively on this file system"; fi ;;
      *) fail xattr-set "$out" ;;
    esac
    return
  fi
  [ "$want" = 1 ] && pass xattr-set || fail xattr-set "worked in the guest but not natively"
  $T setxattr "$g/xattr.txt" user.gone bye
  drop_caches
  expect_eq xattr-get "$($T getxattr "$g/xattr.txt" user.bfs 2>&1)" bfs-value
  case " $($T listxattr "$g/xattr.txt" | tr '\n' ' ')" in
    *" user.bfs "*) pass xattr-list ;;
    *) fail xattr-list "$($T listxattr "$g/xattr.txt" 2>&1 | oneline)" ;;
  esac
  check xattr-remove "$T" removexattr "$g/xattr.txt" user.gone
  check xattr-get-removed-enodata "$T" -e ENODATA getxattr "$g/xattr.txt" user.gone
}

t_readdir() { # D G
  local g=$2
  mkdir -p "$g/many"
  if ! $T mkfiles "$g/many" 400 entry-with-a-longer-name- >/dev/null; then fail readdir-create "mkfiles failed"; return; fi
  drop_caches
  expect_eq readdir-count "$($T count "$g/many")" 400
  expect_eq readdir-ls-l "$(ls -l "$g/many" | grep -c entry-with)" 400
  rm -f "$g/many"/entry-with-a-longer-name-0001*
  drop_caches
  expect_eq readdir-after-unlink "$($T count "$g/many")" 390
}

t_fsync() { # D G
  local g=$2
  check fsync-file "$T" write-fsync "$g/fsync.txt" "synced data"
  check fsync-dir "$T" fsync "$g"
  expect_eq fsync-content "$(cat "$g/fsync.txt")" "synced data"
}

t_statfs() { # D G
  local out
  if out=$($T statfs "$1" 2>&1); then
    pass statfs
    data "statfs $(echo "$out" | sed -n 's/^.*total_bytes=\([0-9]*\) avail_bytes=\([0-9]*\).*$/\1 \2/p')"
  else fail statfs "$out"; fi
}

# the host replaces a file behind the guest's back (on the backing file
# system directly, or the sftp server's directory for sshfs): the fd opened
# before keeps the old file, the name gives the new one
t_behind_back() { # D G
  local g=$2 i=0 out
  echo old-content >"$g/swap-victim"
  echo gone >"$g/swap-gone" && cat "$g/swap-gone" >/dev/null
  exec 5<"$g/swap-victim"
  data "swap-ino-before $(stat -c %i "$g/swap-victim")"
  : >"$g/swap-req"
  while [ ! -e "$g/swap-done" ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
  if [ ! -e "$g/swap-done" ]; then fail behind-back "the host did not answer"; exec 5<&-; return; fi
  out=$(cat <&5 2>&1)
  case $out in
    old-content) pass behind-back-open-fd-keeps-old ;;
    *) fail behind-back-open-fd-keeps-old "read '$(echo "$out" | oneline)'" ;;
  esac
  exec 5<&-
  # dentries and attributes time out after 1 s with --cache=auto
  sleep 2
  expect_eq behind-back-name-gives-new "$(cat "$g/swap-victim" 2>&1)" new-content
  data "swap-ino-after $(stat -c %i "$g/swap-victim")"
  out=$(cat "$g/swap-gone" 2>&1)
  case $out in
    *"No such file"*) pass behind-back-removed-is-gone ;;
    *) fail behind-back-removed-is-gone "read '$(echo "$out" | oneline)'" ;;
  esac
}

# btrfs: subvolumes in the share are submounts in the guest
t_btrfs() { # D G
  local d=$1 dev_root dev_sub dev_nested
  [ -d "$d/sub" ] && [ -d "$d/sub/nested" ] || { fail subvolumes-visible "$(ls -la "$d" | oneline)"; return; }
  dev_root=$(stat -c %d "$d") dev_sub=$(stat -c %d "$d/sub/.") dev_nested=$(stat -c %d "$d/sub/nested/.")
  data "devs $dev_root $dev_sub $dev_nested"
  if [ "$dev_root" != "$dev_sub" ] && [ "$dev_sub" != "$dev_nested" ] && [ "$dev_root" != "$dev_nested" ]; then
    pass subvolume-own-st_dev
  else fail subvolume-own-st_dev "st_dev share=$dev_root sub=$dev_sub nested=$dev_nested"; fi
  grep -q " $d/sub virtiofs " /proc/mounts && pass subvolume-in-proc-mounts ||
    fail subvolume-in-proc-mounts "$(grep " $d" /proc/mounts | oneline)"
  grep -q " $d/sub/nested virtiofs " /proc/mounts && pass nested-subvolume-in-proc-mounts ||
    fail nested-subvolume-in-proc-mounts "$(grep " $d" /proc/mounts | oneline)"
  # btrfs numbers every subvolume's root 256: only separate mounts tell them apart
  data "root-inos $(stat -c %i "$d") $(stat -c %i "$d/sub/.") $(stat -c %i "$d/sub/nested/.")"
  expect_eq subvolume-host-file "$(cat "$d/sub/in-sub.txt" 2>&1) $(cat "$d/sub/nested/in-nested.txt" 2>&1)" "sub nested"
  echo guest-in-sub >"$d/sub/guest.txt" && echo guest-in-nested >"$d/sub/nested/guest.txt"
  mkdir -p "$d/sub/nested/gdir" && ln "$d/sub/nested/guest.txt" "$d/sub/nested/gdir/hl"
  drop_caches
  expect_eq subvolume-write "$(cat "$d/sub/guest.txt") $(cat "$d/sub/nested/gdir/hl")" "guest-in-sub guest-in-nested"
  check rename-across-subvolumes-exdev "$T" -e EXDEV noreplace "$d/sub/guest.txt" "$d/sub/nested/moved.txt"
  echo "SUM: $FS $(sum "$d/sub/nested/guest.txt") sub/nested/guest.txt"
  # a walk over the whole share sees every subvolume once (no loop warnings)
  expect_eq find-over-subvolumes "$(find "$d" -name 'in-*.txt' 2>&1 | sort | tr '\n' ' ')" \
    "$d/sub/in-sub.txt $d/sub/nested/in-nested.txt "
}

# overlayfs: the container-rootfs case (lower layer with files, upper+work)
t_overlay() { # D G
  local d=$1 want out n1 n2 got
  # copy-up of a lower file the guest writes
  expect_eq lower-file-visible "$(cat "$d/etc/conf" 2>&1)" "lower conf"
  data "conf-ino-before $(stat -c %i "$d/etc/conf")"
  echo "guest line" >>"$d/etc/conf"
  drop_caches
  expect_eq copy-up-content "$(tr '\n' , <"$d/etc/conf")" "lower conf,guest line,"
  data "conf-ino-after $(stat -c %i "$d/etc/conf")"
  # deleting a lower file (a whiteout in the upper layer)
  rm "$d/bin/del-me" && [ ! -e "$d/bin/del-me" ] && pass whiteout-lower-file || fail whiteout-lower-file "still there"
  rm -rf "$d/var/del-dir"
  drop_caches
  [ ! -e "$d/bin/del-me" ] && [ ! -e "$d/var/del-dir" ] && [ -f "$d/bin/tool" ] && pass whiteout-after-drop-caches ||
    fail whiteout-after-drop-caches "$(ls -la "$d/bin" "$d/var" 2>&1 | oneline)"
  expect_eq whiteout-readdir "$(ls "$d/bin" | tr '\n' ' ')" "tool "
  # renaming a lower directory: rename(2) as natively, then mv (which copies on EXDEV)
  want=$(var "VG_BFS_DIRREN_$FS")
  if out=$($T noreplace "$d/usr" "$d/usr-renamed" 2>&1); then got=ok; else
    case $out in *EXDEV*) got=EXDEV ;; *) got="$out" ;; esac
  fi
  expect_eq rename-lower-dir-syscall "$got" "$want"
  [ "$got" != ok ] || mv "$d/usr-renamed" "$d/usr"
  mv "$d/usr" "$d/usr2"
  drop_caches
  [ ! -e "$d/usr" ] && expect_eq rename-lower-dir "$(cat "$d/usr2/share/doc/readme" 2>&1) $(ls "$d/usr2/lib" | wc -l)" "lower readme 20" ||
    fail rename-lower-dir "usr still there"
  # hard links in the lower layer, across the copy-up of one name
  n1=$(stat -c %i "$d/hl/one") n2=$(stat -c %i "$d/hl/two")
  expect_eq lower-hardlink-same-inode "$n2" "$n1"
  echo "written via one" >>"$d/hl/one"
  drop_caches
  want="lower hl"
  [ "$(var "VG_BFS_HLKEEP_$FS")" != 1 ] || want="lower hl,written via one"
  expect_eq hardlink-copy-up-as-native "$(tr '\n' , <"$d/hl/two" | sed 's/,$//')" "$want"
  # a new hard link to a lower file (copies it up)
  ln "$d/etc/linked" "$d/etc/linked-2" && drop_caches &&
    expect_eq hardlink-to-lower "$(stat -c %h "$d/etc/linked-2") $(cat "$d/etc/linked-2")" "2 lower linked" ||
    fail hardlink-to-lower "ln failed"
  # chmod/xattr of a lower file copy up metadata only
  chmod 0600 "$d/etc/mode" && drop_caches && expect_eq chmod-lower "$(stat -c %a "$d/etc/mode") $(cat "$d/etc/mode")" "600 lower mode" ||
    fail chmod-lower "chmod failed"
  # a lower directory walked after its parent's copy-up
  expect_eq lower-tree-walk "$(find "$d/usr2/lib" -type f | wc -l)" 20
}

# sshfs: a FUSE file system below the daemon
t_sshfs() { # D G
  expect_eq fuse-backed-files "$(cat "$1/from-host.txt" 2>&1)" "over sftp"
  data "ino-of-from-host $(stat -c %i "$1/from-host.txt")"
}

suite() { # FS DIR
  FS=$1
  local d=$2 kind t
  kind=$(var "VG_BFS_KIND_$FS")
  mkdir -p "$d/g" || { fail suite "cannot create $d/g"; return; }
  for t in t_data t_dirs t_rename t_links t_unlink_open t_attrs t_xattr t_readdir t_fsync \
    t_statfs t_behind_back; do
    echo "== $FS $t (uptime $(cut -d' ' -f1 /proc/uptime)s)" >&2
    $t "$d" "$d/g"
  done
  case $kind in
    btrfs) t_btrfs "$d" "$d/g" ;;
    overlay) t_overlay "$d" "$d/g" ;;
    sshfs) t_sshfs "$d" "$d/g" ;;
  esac
  sync
  echo "DATA: $FS suite-done"
}

conform() { # FS DIR
  local fs=$1 d=$2/conform
  mkdir -p "$d" && chmod 0755 "$d"
  echo "== $fs posix-conform (uptime $(cut -d' ' -f1 /proc/uptime)s)" >&2
  { posix-conform "$d" --other /tmp/other; echo "rc=$?"; } | sed "s/^/CONFORM $fs root /"
  { posix-conform "$d" --other /tmp/other --uid "$VG_BFS_UID" --gid "$VG_BFS_UID"; echo "rc=$?"; } |
    sed "s/^/CONFORM $fs uid$VG_BFS_UID /"
}

# ---- main ------------------------------------------------------------------------------
for k in hardlinks symlinks regular fifos; do
  v=$(var "VG_PROTECTED_$k")
  [ -z "$v" ] || echo "$v" >"/proc/sys/fs/protected_$k" 2>/dev/null || echo "cannot set fs.protected_$k" >&2
done
mkdir -p /tmp/other && chmod 0755 /tmp/other
for fs in $VG_BFS_LIST; do
  tag=$(var "VG_BFS_TAG_$fs")
  FS=$fs
  if [ "$tag" = "$VG_TAG" ]; then dir=$VG_MNT; else
    dir=/bfs/$fs
    mkdir -p "$dir"
    if ! mount -t virtiofs "$tag" "$dir" 2>&1 >&2; then fail mount "mount -t virtiofs $tag failed"; continue; fi
  fi
  grep -q " $dir virtiofs " /proc/mounts && pass mount || fail mount "$(grep " $dir " /proc/mounts | oneline)"
  echo "DATA: $fs mountpoint $dir"
done
for fs in $VG_BFS_LIST; do
  tag=$(var "VG_BFS_TAG_$fs")
  if [ "$tag" = "$VG_TAG" ]; then dir=$VG_MNT; else dir=/bfs/$fs; fi
  grep -q " $dir virtiofs " /proc/mounts || continue
  suite "$fs" "$dir"
done
for fs in $VG_BFS_CONFORM; do
  tag=$(var "VG_BFS_TAG_$fs")
  if [ "$tag" = "$VG_TAG" ]; then dir=$VG_MNT; else dir=/bfs/$fs; fi
  grep -q " $dir virtiofs " /proc/mounts || continue
  conform "$fs" "$dir"
done
sync
for fs in $VG_BFS_LIST; do
  [ "$(var "VG_BFS_TAG_$fs")" = "$VG_TAG" ] || umount "/bfs/$fs" 2>&1 >&2 || umount -l "/bfs/$fs"
done
echo "DATA: guest-done"

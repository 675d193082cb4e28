#!/usr/bin/env bash
# The share on every backing file system users have, in one guest.
#
# The test makes each file system itself, in its temp dir: ext4, xfs and
# btrfs on loop devices (sparse image files), btrfs with a subvolume "sub"
# and a nested one "sub/nested" in the share; a tmpfs; overlayfs the way a
# container runtime stacks an image (an ext4 loop device holding a lower
# layer with files, directories and a hard link, an upper and a work dir),
# three times: index off with the daemon's default inode handling
# (overlay), the same with --inode-file-handles=prefer (overlay_prefer: the
# kernel gives no file handles there, so the daemon must fall back to fds),
# and index=on,nfs_export=on with prefer (overlay_nfs: handles that decode);
# and sshfs, a FUSE file system, to an sshd this test starts on 127.0.0.1
# with generated host and client keys (nothing of the system's ssh
# configuration is used).  A file system whose tools or kernel support are
# missing is skipped with the reason.
#
# Each file system gets its own daemon (default sandbox, --xattr,
# --announce-submounts for btrfs) and its own vhost-user-fs device with tag
# bfs-<fs>; ONE guest boots with all of them and runs backing-fs-checks.sh:
# per share write/read back with checksums, mkdir/rmdir, renames (across
# directories, of directories, RENAME_EXCHANGE), symlinks, hard links,
# unlink while open then read, write and reopen through the fd, chmod/
# chown/truncate/utimensat, user xattrs (expected exactly where they work
# natively), 400-entry readdir, fsync, statfs, a file replaced and one
# removed by the host behind the guest's back; btrfs: the subvolumes are
# submounts (own st_dev, in /proc/mounts) and usable; overlayfs: copy-up,
# whiteouts, renaming a lower directory, lower hard links across copy-up
# (each compared with what the same operation does natively there).  Then
# the conformance program (posix-conform, as root and as --uid) on the file
# systems of --conform, judged against a native run on the same file system
# as test-conformance.sh does: a check fails only if it passes natively.
# Afterwards the host verifies the bytes and the layout on the backing file
# systems (for overlay: the upper layer's copy-ups and whiteouts, the lower
# layer unchanged).  Everything (daemons, sshd, sshfs, mounts, loop
# devices) is removed at exit, also after a failure.
#
# Usage: test-backing-fs.sh [--only=FS,...] [--conform=FS,...] [--uid=N]
#                           [--keep] [--verbose]
#   --only=LIST     file systems (default: ext4,xfs,btrfs,tmpfs,overlay,
#                   overlay_prefer,overlay_nfs,sshfs)
#   --conform=LIST  file systems to run posix-conform on (default:
#                   xfs,btrfs,overlay; "none" for none)
#   --uid=N         the unprivileged conformance user (default 1000)
#   --keep          keep the temp dir (logs; the file systems are unmounted)
#   --verbose       print the guest console after the boot
# Environment: VIRTIOFSD (default build/virtiofsd), VIRTIOFSD_OPTS,
# VG_ACCEL, VG_TIMEOUT ... (see lib.sh).  Needs root.
#
# Output: "PASS: backing-fs/<fs>/<check>", "FAIL: ...: <reason>", "SKIP:
# ...: <reason>"; host: checks are judged on the host after the boot,
# conform/<who>/<check> the conformance program's.  "NOTE:" lines say what
# a file system cannot do natively.  The last line is "test-backing-fs: N
# passed, N failed, N skipped"; the exit status is non-zero if anything
# failed.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_FS=ext4,xfs,btrfs,tmpfs,overlay,overlay_prefer,overlay_nfs,sshfs
only=$ALL_FS
conform_list=xfs,btrfs,overlay
uid=1000
while [ $# -gt 0 ]; do
  case $1 in
    --only=*) only=${1#*=} ;;
    --conform=*) conform_list=${1#*=} ;;
    --uid=*) uid=${1#*=} ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vg_die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[ "$conform_list" != none ] || conform_list=
[[ $uid =~ ^[1-9][0-9]*$ ]] || vg_die "--uid must be a positive number"
[ "$(id -u)" = 0 ] || vg_die "needs root (loop devices, mounts, sshd)"
VG_TIMEOUT=${VG_TIMEOUT:-420}

T_START=$(date +%s)
NPASS=0 NFAIL=0 NSKIP=0
r_pass() { echo "PASS: backing-fs/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: backing-fs/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: backing-fs/$1: $2"; NSKIP=$((NSKIP + 1)); }
note() { echo "NOTE: backing-fs/$1"; }
h_eq() { # FS NAME GOT WANT
  if [ "$3" = "$4" ]; then r_pass "$1/host:$2"; else r_fail "$1/host:$2" "got '$3', want '$4'"; fi
}

# ---- cleanup: everything this test made, in reverse order, also after a failure ----------
MOUNTS=()     # mount points, unmounted last-first
LOOPS=()      # loop devices to detach
declare -A DPID=()
SSHD_PID="" SWAP_PID="" WATCH_PID="" SHM_OTHER=""
bfs_cleanup() {
  local i pid
  for pid in "$SWAP_PID" "$WATCH_PID"; do
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  done
  SWAP_PID="" WATCH_PID=""
  # QEMU first: the daemons then see their client go
  if [ -n "$VG_QEMU_PID" ] && vg_alive "$VG_QEMU_PID"; then
    kill -TERM "$VG_QEMU_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do vg_alive "$VG_QEMU_PID" || break; sleep 0.1; done
  fi
  for i in "${!DPID[@]}"; do
    VG_DAEMON_PID=${DPID[$i]}
    vg_daemon_term || true
    unset "DPID[$i]"
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    # (lazy as the last resort, so that no rm -rf can reach into a mount)
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  MOUNTS=()
  if [ -n "$SSHD_PID" ]; then
    kill "$SSHD_PID" 2>/dev/null || true
    wait "$SSHD_PID" 2>/dev/null || true
    SSHD_PID=""
  fi
  for i in "${LOOPS[@]}"; do losetup -d "$i" 2>/dev/null || true; done
  LOOPS=()
  [ -z "$SHM_OTHER" ] || rm -rf "$SHM_OTHER"
  SHM_OTHER=""
}

vg_setup
trap 'bfs_cleanup; vg_cleanup' EXIT
GT=$VG_IMG/guest-tool        # static: runs on the host as well
PC=$VG_IMG/posix-conform
W=$VG_TMP/bfs
mkdir -p "$W/img" "$W/mnt" "$W/log"
chmod 0711 "$VG_TMP" "$W"    # the unprivileged native conformance run walks down here

# ---- making the file systems ---------------------------------------------------------------
declare -A HLNAT=() EXCH=() SHARE=() HOSTVIEW=() KIND=() OPTS=() XATTR=() HLKEEP=() DIRREN=() LOWER=() UPPER=()
FS_LIST=()

have_fs() { # TYPE: the kernel knows it, or can load it
  grep -qw "$1" /proc/filesystems || { modprobe "$1" 2>/dev/null && grep -qw "$1" /proc/filesystems; }
}

# An image file on a loop device with a new file system, mounted at DIR.
loop_fs() { # NAME SIZE DIR MKFS...
  local name=$1 size=$2 dir=$3 dev
  shift 3
  truncate -s "$size" "$W/img/$name.img"
  dev=$(losetup -f --show "$W/img/$name.img") || return 1
  LOOPS+=("$dev")
  "$@" "$dev" >"$W/log/mkfs-$name.log" 2>&1 || { sed 's/^/    /' "$W/log/mkfs-$name.log" >&2; return 1; }
  mkdir -p "$dir"
  mount "$dev" "$dir" || return 1
  MOUNTS+=("$dir")
}

# Hard links natively in DIR: "posix", or what a second name looks like.
native_hardlink() {
  local r
  echo a >"$1/.bfs-hl1" && ln "$1/.bfs-hl1" "$1/.bfs-hl2" 2>/dev/null || { rm -f "$1/.bfs-hl1"; echo "no hard links"; return; }
  r=$(stat -c '%h %i' "$1/.bfs-hl1" "$1/.bfs-hl2" | tr '\n' ' ')
  rm -f "$1/.bfs-hl1" "$1/.bfs-hl2"
  case $r in
    "2 "*) [ "$(cut -d' ' -f2 <<<"$r")" = "$(cut -d' ' -f4 <<<"$r")" ] && echo posix && return ;;
  esac
  echo "a second name has its own inode number and both show nlink 1 (nlink/ino: $r)"
}

# Does renameat2(RENAME_EXCHANGE) work natively in DIR?
native_exchange() {
  local r=0
  echo a >"$1/.bfs-x1" && echo b >"$1/.bfs-x2"
  "$GT" exchange "$1/.bfs-x1" "$1/.bfs-x2" >/dev/null 2>&1 || r=1
  rm -f "$1/.bfs-x1" "$1/.bfs-x2"
  [ "$r" = 0 ] && echo 1 || echo 0
}

# Can user.* xattrs be set natively in DIR?
native_xattr() {
  local f=$1/.bfs-xattr-probe r=0
  : >"$f"
  "$GT" setxattr "$f" user.probe v >/dev/null 2>&1 || r=1
  rm -f "$f"
  [ "$r" = 0 ] && echo 1 || echo 0
}

setup_ext4() {
  have_fs ext4 && command -v mkfs.ext4 >/dev/null || { echo "no ext4 in the kernel or no mkfs.ext4 (e2fsprogs)"; return 1; }
  # (4 KiB blocks as on any real ext4: mke2fs gives an image this small 1 KiB
  # blocks, and with them a 1023-byte limit on symlink targets)
  loop_fs ext4 256M "$W/mnt/ext4" mkfs.ext4 -q -F -b 4096 || { echo "making the ext4 loop device failed"; return 1; }
  SHARE[ext4]=$W/mnt/ext4 KIND[ext4]=ext4 OPTS[ext4]="--xattr"
}

setup_xfs() {
  have_fs xfs && command -v mkfs.xfs >/dev/null || { echo "no xfs in the kernel or no mkfs.xfs (xfsprogs)"; return 1; }
  # (xfsprogs refuses file systems under 300 MB)
  loop_fs xfs 320M "$W/mnt/xfs" mkfs.xfs -q -f || { echo "making the xfs loop device failed"; return 1; }
  SHARE[xfs]=$W/mnt/xfs KIND[xfs]=xfs OPTS[xfs]="--xattr"
}

setup_btrfs() {
  local m=$W/mnt/btrfs
  have_fs btrfs && command -v mkfs.btrfs >/dev/null || { echo "no btrfs in the kernel or no mkfs.btrfs (btrfs-progs)"; return 1; }
  loop_fs btrfs 256M "$m" mkfs.btrfs -q -f || { echo "making the btrfs loop device failed"; return 1; }
  { btrfs subvolume create "$m/sub" && btrfs subvolume create "$m/sub/nested"; } >"$W/log/btrfs-subvol.log" 2>&1 ||
    { echo "btrfs subvolume create failed: $(tr '\n' ' ' <"$W/log/btrfs-subvol.log")"; return 1; }
  echo sub >"$m/sub/in-sub.txt"
  echo nested >"$m/sub/nested/in-nested.txt"
  SHARE[btrfs]=$m KIND[btrfs]=btrfs OPTS[btrfs]="--xattr --announce-submounts"
}

setup_tmpfs() {
  mkdir -p "$W/mnt/tmpfs"
  mount -t tmpfs -o size=256m,mode=0755 bfs-tmpfs "$W/mnt/tmpfs" || { echo "mounting a tmpfs failed"; return 1; }
  MOUNTS+=("$W/mnt/tmpfs")
  SHARE[tmpfs]=$W/mnt/tmpfs KIND[tmpfs]=tmpfs OPTS[tmpfs]="--xattr"
}

# The layers live on an ext4 loop device of their own (as /var/lib/docker
# or a Kata host's image store would), one lower/upper/work per overlay.
OVL_BASE=""
ovl_base() {
  [ -z "$OVL_BASE" ] || return 0
  have_fs overlay || { echo "no overlay in the kernel"; return 1; }
  have_fs ext4 && command -v mkfs.ext4 >/dev/null || { echo "overlay layers need ext4 (e2fsprogs)"; return 1; }
  loop_fs ovlbase 256M "$W/mnt/ovlbase" mkfs.ext4 -q -F -b 4096 || { echo "making the layers' ext4 failed"; return 1; }
  OVL_BASE=$W/mnt/ovlbase
}

# A container image's layer: files, directories, a hard link pair, a
# directory tree to rename, things to delete.
make_lower() { # DIR
  local l=$1 i
  mkdir -p "$l/etc" "$l/bin" "$l/var/del-dir" "$l/usr/share/doc" "$l/usr/lib" "$l/hl" "$l/nat/dir"
  echo "lower conf" >"$l/etc/conf"
  echo "lower linked" >"$l/etc/linked"
  echo "lower mode" >"$l/etc/mode"
  printf '#!/bin/sh\necho tool\n' >"$l/bin/tool" && chmod 0755 "$l/bin/tool"
  echo "delete me" >"$l/bin/del-me"
  echo x >"$l/var/del-dir/x" && echo y >"$l/var/del-dir/y"
  echo "lower readme" >"$l/usr/share/doc/readme"
  for i in $(seq -w 1 20); do echo "lib $i" >"$l/usr/lib/lib$i.so"; done
  echo "lower hl" >"$l/hl/one" && ln "$l/hl/one" "$l/hl/two"
  # for the native probes below
  echo "lower hl" >"$l/nat/hl1" && ln "$l/nat/hl1" "$l/nat/hl2"
  echo f >"$l/nat/dir/f"
}

setup_overlay_common() { # FS MOUNT-OPTIONS
  local fs=$1 o=$2 b m
  ovl_base || return 1
  b=$OVL_BASE/$fs m=$W/mnt/$fs
  mkdir -p "$b/lower" "$b/upper" "$b/work" "$m"
  make_lower "$b/lower"
  mount -t overlay "bfs-$fs" -o "lowerdir=$b/lower,upperdir=$b/upper,workdir=$b/work${o:+,$o}" "$m" 2>"$W/log/mount-$fs.log" ||
    { echo "mount -t overlay${o:+ -o $o} failed: $(tr '\n' ' ' <"$W/log/mount-$fs.log")"; return 1; }
  MOUNTS+=("$m")
  # what the same operations do natively on this overlay (the guest must see the same)
  echo "written via one" >>"$m/nat/hl1"
  if [ "$(wc -l <"$m/nat/hl2")" = 2 ]; then HLKEEP[$fs]=1; else HLKEEP[$fs]=0; fi
  if "$GT" noreplace "$m/nat/dir" "$m/nat/dir2" >/dev/null 2>&1; then DIRREN[$fs]=ok
  elif "$GT" -e EXDEV noreplace "$m/nat/dir" "$m/nat/dir2" >/dev/null 2>&1; then DIRREN[$fs]=EXDEV
  else DIRREN[$fs]="native rename failed: $("$GT" noreplace "$m/nat/dir" "$m/nat/dir2" 2>&1 | tr '\n' ' ')"; fi
  SHARE[$fs]=$m KIND[$fs]=overlay LOWER[$fs]=$b/lower UPPER[$fs]=$b/upper
}
setup_overlay() {
  setup_overlay_common overlay "" || return 1
  OPTS[overlay]="--xattr"
}
setup_overlay_prefer() {
  setup_overlay_common overlay_prefer "" || return 1
  OPTS[overlay_prefer]="--xattr --inode-file-handles=prefer --modcaps=+dac_read_search"
}
setup_overlay_nfs() {
  setup_overlay_common overlay_nfs "index=on,nfs_export=on" || return 1
  OPTS[overlay_nfs]="--xattr --inode-file-handles=prefer --modcaps=+dac_read_search"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# sshd on 127.0.0.1:PORT with its own host key, accepting one generated
# client key for root; sshfs mounts its directory sftp-src.
setup_sshfs() {
  local s=$W/ssh src=$W/sftp-src m=$W/mnt/sshfs port sshd
  command -v sshfs >/dev/null || { echo "no sshfs"; return 1; }
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  [ -x "$sshd" ] || { echo "no sshd (openssh-server)"; return 1; }
  command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || { echo "no ssh/ssh-keygen (openssh-client)"; return 1; }
  [ -c /dev/fuse ] && have_fs fuse || { echo "no /dev/fuse or no fuse in the kernel"; return 1; }
  mkdir -p "$s" "$src" "$m"
  chmod 0700 "$s"
  ssh-keygen -q -t ed25519 -N '' -f "$s/host_key" </dev/null >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$s/client_key" </dev/null >/dev/null
  cp "$s/client_key.pub" "$s/authorized_keys"
  port=$(free_port)
  cat >"$s/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $s/host_key
PidFile none
AuthorizedKeysFile $s/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# the keys live below /tmp (mode 1777), which StrictModes refuses; they are
# this test's own, on 127.0.0.1 only, removed at exit
StrictModes no
Subsystem sftp internal-sftp
EOF
  # sshd insists on its privilege separation directory (a runtime dir)
  [ -d /run/sshd ] || mkdir -p -m 0755 /run/sshd
  "$sshd" -D -e -f "$s/sshd_config" >"$W/log/sshd.log" 2>&1 &
  SSHD_PID=$!
  for _ in $(seq 1 50); do
    grep -q "Server listening" "$W/log/sshd.log" 2>/dev/null && break
    vg_alive "$SSHD_PID" || { echo "sshd did not start: $(tail -3 "$W/log/sshd.log" | tr '\n' ' ')"; return 1; }
    sleep 0.1
  done
  echo "over sftp" >"$src/from-host.txt"
  # -F /dev/null: none of the system's or root's ssh configuration;
  # dir_cache=no: the host's changes behind sshfs's back show at once;
  # allow_other: the daemon acts with the guest's credentials
  if ! sshfs -o "ssh_command=ssh -F /dev/null,port=$port,IdentityFile=$s/client_key" \
    -o StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR \
    -o allow_other,default_permissions,dir_cache=no \
    "root@127.0.0.1:$src" "$m" >"$W/log/sshfs.log" 2>&1; then
    echo "sshfs failed: $(tail -3 "$W/log/sshfs.log" | tr '\n' ' ')"
    return 1
  fi
  MOUNTS+=("$m")
  SHARE[sshfs]=$m HOSTVIEW[sshfs]=$src KIND[sshfs]=sshfs OPTS[sshfs]="--xattr"
}

IFS=', ' read -r -a want_fs <<<"$only"
for fs in "${want_fs[@]}"; do
  [[ ,$ALL_FS, == *,$fs,* ]] || vg_die "unknown file system '$fs' (known: $ALL_FS)"
  # (in this shell, not $(...): the set-up records mounts, loop devices, sshd)
  if "setup_$fs" >"$W/log/setup-$fs.txt" 2>&1; then
    FS_LIST+=("$fs")
    [ -n "${HOSTVIEW[$fs]:-}" ] || HOSTVIEW[$fs]=${SHARE[$fs]}
    chmod 0755 "${SHARE[$fs]}"
    XATTR[$fs]=$(native_xattr "${SHARE[$fs]}")
    HLNAT[$fs]=$(native_hardlink "${SHARE[$fs]}")
    EXCH[$fs]=$(native_exchange "${SHARE[$fs]}")
    [ "${HLNAT[$fs]}" = posix ] || note "$fs: hard links natively: ${HLNAT[$fs]}"
    [ "${EXCH[$fs]}" = 1 ] || note "$fs: renameat2(RENAME_EXCHANGE) fails natively"
    vg_log "$fs: $(findmnt -n -o FSTYPE,OPTIONS --target "${SHARE[$fs]}" | cut -c1-150)"
  else
    r_skip "$fs/setup" "$(tail -1 "$W/log/setup-$fs.txt")"
  fi
done
for fs in "${FS_LIST[@]}"; do
  [ "${KIND[$fs]}" != overlay ] ||
    note "$fs: natively: a write to one name of a lower hard link $([ "${HLKEEP[$fs]}" = 1 ] && echo keeps the link || echo breaks it \(the other name keeps the old data\)); rename(2) of a lower directory: ${DIRREN[$fs]}"
done
[ "${#FS_LIST[@]}" -gt 0 ] || { vg_log "no backing file system could be made"; echo "test-backing-fs: $NPASS passed, $NFAIL failed, $NSKIP skipped"; exit 0; }
CONFORM_FS=()
IFS=', ' read -r -a want_conform <<<"$conform_list"
for fs in "${want_conform[@]}"; do
  [[ " ${FS_LIST[*]} " == *" $fs "* ]] && CONFORM_FS+=("$fs")
done

# ---- conformance: the native baseline on each file system --------------------------------
declare -A NAT_STATE=() NAT_WHY=() G_STATE=() G_WHY=()
declare -a NAT_ORDER=() G_ORDER=()
parse_results() { # FILE KEY-PREFIX STATE-ARRAY WHY-ARRAY ORDER-ARRAY (as test-conformance.sh)
  local line st rest name
  local -n _st=$3 _why=$4 _ord=$5
  while IFS= read -r line; do
    case $line in "PASS: "* | "FAIL: "* | "SKIP: "*) ;; *) continue ;; esac
    st=${line%%: *} rest=${line#*: }
    name=${rest%%: *}
    _st[$2$name]=$st
    if [ "$rest" != "$name" ]; then _why[$2$name]=${rest#*: }; else _why[$2$name]=""; fi
    _ord+=("$2$name")
  done <"$1"
}
if [ "${#CONFORM_FS[@]}" -gt 0 ]; then
  SHM_OTHER=$(mktemp -d /dev/shm/vg-bfs.XXXXXX)
  chmod 0755 "$SHM_OTHER"
fi
for fs in "${CONFORM_FS[@]}"; do
  nd=${SHARE[$fs]}/conform-native
  mkdir -m 0755 "$nd"
  for who in root "uid$uid"; do
    ids=()
    [ "$who" = root ] || ids=(--uid "$uid" --gid "$uid")
    out=$W/log/native-$fs-$who.txt rc=0
    "$PC" "$nd" "${ids[@]}" --other "$SHM_OTHER" >"$out" 2>"$out.err" || rc=$?
    parse_results "$out" "$fs/$who/" NAT_STATE NAT_WHY NAT_ORDER
    summary=$(grep '^posix-conform: ' "$out" | tail -1 || true)
    if [ -n "$summary" ] && [ "$rc" -le 1 ]; then
      r_pass "$fs/conform/native/$who/completed"
      vg_log "$fs: native posix-conform $who: ${summary#posix-conform: }"
    else
      r_fail "$fs/conform/native/$who/completed" "status $rc: $(tail -3 "$out.err" | tr '\n' ' ')"
    fi
  done
  rm -rf "$nd"
done

# ---- the daemons and the guest ---------------------------------------------------------
declare -A SOCK=()
guest_env=""
for k in hardlinks symlinks regular fifos; do
  v=$(cat "/proc/sys/fs/protected_$k" 2>/dev/null || true)
  [ -z "$v" ] || guest_env+=$'\n'"VG_PROTECTED_$k=$v; export VG_PROTECTED_$k"
done
qemu_args=()
n=0
for fs in "${FS_LIST[@]}"; do
  SOCK[$fs]=$W/$fs.sock
  # shellcheck disable=SC2086  # the option list is word-split on purpose
  if ! vg_daemon_start "${SOCK[$fs]}" "${SHARE[$fs]}" "$W/log/daemon-$fs.log" ${OPTS[$fs]}; then
    r_fail "$fs/daemon-start" "$(tail -3 "$W/log/daemon-$fs.log" | tr '\n' ' ')"
    continue
  fi
  DPID[$fs]=$VG_DAEMON_PID
  VG_DAEMON_PID=
  guest_env+=$'\n'"VG_BFS_TAG_$fs=bfs-$fs VG_BFS_KIND_$fs=${KIND[$fs]} VG_BFS_XATTR_$fs=${XATTR[$fs]}"
  guest_env+=" VG_BFS_HLKEEP_$fs=${HLKEEP[$fs]:-} VG_BFS_DIRREN_$fs='${DIRREN[$fs]:-}'"
  guest_env+=" VG_BFS_HLNAT_$fs='${HLNAT[$fs]}' VG_BFS_EXCH_$fs=${EXCH[$fs]}"
  guest_env+=$'\n'"export VG_BFS_TAG_$fs VG_BFS_KIND_$fs VG_BFS_XATTR_$fs VG_BFS_HLKEEP_$fs VG_BFS_DIRREN_$fs VG_BFS_HLNAT_$fs VG_BFS_EXCH_$fs"
  if [ "$n" = 0 ]; then
    FIRST=$fs
  else
    qemu_args+=(-chardev "socket,id=vfs$n,path=${SOCK[$fs]}"
      -device "vhost-user-fs-pci,chardev=vfs$n,tag=bfs-$fs")
  fi
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "test-backing-fs: $NPASS passed, $NFAIL failed, $NSKIP skipped"; exit 1; }
# (a daemon that did not start is not in the guest's list)
started=()
for fs in "${FS_LIST[@]}"; do [ -z "${DPID[$fs]:-}" ] || started+=("$fs"); done
FS_LIST=("${started[@]}")
started=()
for fs in "${CONFORM_FS[@]}"; do [ -z "${DPID[$fs]:-}" ] || started+=("$fs"); done
CONFORM_FS=("${started[@]}")
guest_env="VG_BFS_LIST='${FS_LIST[*]}'; VG_BFS_CONFORM='${CONFORM_FS[*]}'; VG_BFS_UID=$uid
export VG_BFS_LIST VG_BFS_CONFORM VG_BFS_UID$guest_env"

# The host's side of the guest's "behind the back" check: when a share has
# g/swap-req, replace g/swap-victim and remove g/swap-gone on the backing
# file system (for sshfs: in the sftp server's directory, below sshfs), and
# note the serving process's open fds then.
swap_service() {
  set +e
  local fs h done_n=0 spid
  while [ "$done_n" -lt "${#FS_LIST[@]}" ]; do
    for fs in "${FS_LIST[@]}"; do
      h=${HOSTVIEW[$fs]}/g
      [ -e "$h/swap-req" ] && [ ! -e "$h/swap-done" ] || continue
      rm -f "$h/swap-victim" "$h/swap-gone"
      echo new-content >"$h/swap-victim"
      spid=$(vg_serving_pid "${DPID[$fs]}")
      echo "$fs fds=$(vg_proc_fds "$spid")" >>"$W/log/fds.txt"
      rm -f "$h/swap-req"
      : >"$h/swap-done"
      done_n=$((done_n + 1))
    done
    sleep 0.1
  done
}

# Stop the guest when any daemon dies (its requests would never be answered).
watch_daemons() { # QEMU_PID
  local fs
  while vg_alive "$1"; do
    for fs in "${FS_LIST[@]}"; do
      if ! vg_alive "${DPID[$fs]}"; then
        sleep 3
        vg_alive "$1" || return 0
        echo "the daemon of $fs died while the guest was running" >"$W/daemon-died"
        kill -TERM "$1" 2>/dev/null || true
        return 0
      fi
    done
    sleep 0.5
  done
}

VG_GUEST_ENV=$guest_env
VG_TAG=bfs-$FIRST
vg_log "booting one guest with ${#FS_LIST[@]} virtio-fs devices (${FS_LIST[*]}; conformance on ${CONFORM_FS[*]:-none}; daemon: $VIRTIOFSD)"
swap_service &
SWAP_PID=$!
vg_boot_start "${SOCK[$FIRST]}" "$VG_DIR/backing-fs-checks.sh" "${qemu_args[@]}"
watch_daemons "$VG_QEMU_PID" &
WATCH_PID=$!
completed=1
vg_boot_wait || completed=0
kill "$WATCH_PID" "$SWAP_PID" 2>/dev/null || true
wait "$WATCH_PID" "$SWAP_PID" 2>/dev/null || true
WATCH_PID="" SWAP_PID=""
died=$(cat "$W/daemon-died" 2>/dev/null || true)
vg_log "guest: accel=$VG_ACCEL, boot+checks ${VG_BOOT_SECS}s, qemu status $VG_QEMU_RC${died:+; $died}"
declare -A DEND=()
for fs in "${FS_LIST[@]}"; do
  VG_DAEMON_PID=${DPID[$fs]}
  vg_daemon_stop
  DEND[$fs]=$VG_DAEMON_END
  unset "DPID[$fs]"
done

# ---- the guest's verdicts ------------------------------------------------------------------
R=$VG_RESULTS
while IFS= read -r line; do
  case $line in
    "PASS: "*) echo "PASS: backing-fs/${line#PASS: }"; NPASS=$((NPASS + 1)) ;;
    "FAIL: "*) echo "FAIL: backing-fs/${line#FAIL: }"; NFAIL=$((NFAIL + 1)) ;;
    "SKIP: "*) echo "SKIP: backing-fs/${line#SKIP: }"; NSKIP=$((NSKIP + 1)) ;;
  esac
done <"$R"
if [ "$completed" = 1 ] && grep -q '^DATA: guest-done' "$R"; then r_pass guest-completed
else r_fail guest-completed "${died:-qemu status $VG_QEMU_RC}; last guest line: $(grep -E '^(PASS|FAIL|SKIP):' "$R" | tail -1)"; fi

# ---- the host's checks, per file system ------------------------------------------------
host_checks() { # FS
  local fs=$1 h=${HOSTVIEW[$fs]} line sha path got
  if grep -q "^DATA: $fs suite-done" "$R"; then r_pass "$fs/suite-completed"
  else r_fail "$fs/suite-completed" "the guest's suite did not finish on $fs"; fi
  if grep -q 'died of signal' "$W/log/daemon-$fs.log" || [[ $died == *" $fs "* ]]; then
    r_fail "$fs/daemon-survived" "$(grep -m1 'died of signal' "$W/log/daemon-$fs.log") $died"
  else r_pass "$fs/daemon-survived"; fi
  # (after its front-end left, the daemon waits for the next one: SIGTERM ends it)
  case ${DEND[$fs]} in
    exited:0 | terminated:0*) r_pass "$fs/daemon-exit-status" ;;
    *) r_fail "$fs/daemon-exit-status" "${DEND[$fs]}" ;;
  esac
  # every byte the guest wrote, read on the backing file system
  while read -r _ _ sha path; do
    h_eq "$fs" "sum:$path" "$(sha256sum "$h/$path" 2>&1 | cut -d' ' -f1)" "$sha"
  done < <(grep "^SUM: $fs " "$R")
  [ "$(grep -c "^SUM: $fs " "$R")" -ge 5 ] && r_pass "$fs/host:sums-reported" ||
    r_fail "$fs/host:sums-reported" "only $(grep -c "^SUM: $fs " "$R") checksums from the guest"
  h_eq "$fs" renamed-tree "$(cat "$h/g/ren-other/dir2/sub/f" "$h/g/ren-other/moved" 2>&1 | tr '\n' ,)" "in,A,"
  h_eq "$fs" rename-source-gone "$(ls "$h/g" | grep -c -e '^ren-dir$' -e '^ren-a$' -e '^ren-src$')" 0
  h_eq "$fs" symlink "$(readlink "$h/g/sym-link" 2>&1)" sym-target
  h_eq "$fs" hardlink "$(stat -c %h "$h/g/hl-2" 2>&1) $(tr '\n' , <"$h/g/hl-2")" "1 hl,via-2,"
  h_eq "$fs" unlinked-file-gone "$(ls -A "$h/g" | grep -c '^unlink-open$')" 0
  h_eq "$fs" readdir-files "$(ls "$h/g/many" | grep -c entry-with)" 390
  h_eq "$fs" truncate "$(stat -c %s "$h/g/trunc-grow.txt" "$h/g/trunc-shrink.txt" 2>&1 | tr '\n' ' ')" "100000 3 "
  h_eq "$fs" mode-mtime "$(stat -c '%a %Y' "$h/g/mode.txt" 2>&1)" "640 1234567890"
  h_eq "$fs" chown "$(stat -c %u:%g "$h/g/owned.txt" 2>&1)" 1234:5678
  h_eq "$fs" fsync-file "$(cat "$h/g/fsync.txt" 2>&1)" "synced data"
  if [ "${XATTR[$fs]}" = 1 ]; then
    h_eq "$fs" xattr "$("$GT" getxattr "${SHARE[$fs]}/g/xattr.txt" user.bfs 2>&1)" bfs-value
  fi
  # statfs in the guest is the backing file system's
  line=$(sed -n "s/^DATA: $fs statfs //p" "$R" | tail -1)
  got=$(stat -f -c '%b %S' "${SHARE[$fs]}")
  got=$((${got% *} * ${got#* }))
  h_eq "$fs" statfs-total-bytes "${line%% *}" "$got"
  h_eq "$fs" behind-back-swap "$(cat "$h/g/swap-victim" 2>&1)" new-content
  case ${KIND[$fs]} in
    btrfs)
      h_eq "$fs" subvolume-files "$(cat "$h/sub/guest.txt" "$h/sub/nested/gdir/hl" 2>&1 | tr '\n' ,)" "guest-in-sub,guest-in-nested,"
      h_eq "$fs" subvolumes "$(btrfs subvolume list "$h" 2>&1 | awk '{ print $NF }' | sort | tr '\n' ' ')" "sub sub/nested "
      h_eq "$fs" subvolume-nested-nlink "$(stat -c %h "$h/sub/nested/guest.txt" 2>&1)" 2
      ;;
    overlay) overlay_checks "$fs" ;;
  esac
  # what the daemon said about the file system (handles, fallbacks)
  grep -iE 'handle|submount|warn|error' "$W/log/daemon-$fs.log" | head -5 | sed "s|^|[vg] $fs daemon: |" >&2 || true
}

overlay_checks() { # FS
  local fs=$1 lo=${LOWER[$1]} up=${UPPER[$1]} m=${SHARE[$1]}
  h_eq "$fs" copy-up-in-upper "$(tr '\n' , <"$up/etc/conf" 2>&1)" "lower conf,guest line,"
  h_eq "$fs" lower-unchanged "$(tr '\n' , <"$lo/etc/conf") $(cat "$lo/bin/del-me") $(ls "$lo/usr/lib" | wc -l) $(cat "$lo/hl/two")" \
    "lower conf, delete me 20 lower hl"
  h_eq "$fs" whiteout-in-upper "$(stat -c '%F %t:%T' "$up/bin/del-me" 2>&1)" "character special file 0:0"
  h_eq "$fs" deleted-dir-gone "$(ls -A "$m/var" | tr '\n' ' ')" ""
  h_eq "$fs" renamed-lower-dir "$(ls "$m" | grep -c '^usr$') $(cat "$m/usr2/share/doc/readme" 2>&1) $(ls "$m/usr2/lib" | wc -l)" "0 lower readme 20"
  h_eq "$fs" hardlink-to-lower "$(stat -c %h "$m/etc/linked-2" 2>&1) $(stat -c %i "$m/etc/linked") $(cat "$up/etc/linked-2" 2>&1)" \
    "2 $(stat -c %i "$m/etc/linked-2") lower linked"
  h_eq "$fs" chmod-copy-up "$(stat -c %a "$up/etc/mode" 2>&1) $(stat -c %a "$lo/etc/mode")" "600 644"
}

for fs in "${FS_LIST[@]}"; do host_checks "$fs"; done
[ ! -s "$W/log/fds.txt" ] || vg_log "serving processes' open fds during the suite: $(tr '\n' ' ' <"$W/log/fds.txt")"

# ---- conformance in the guest, judged against the native run ---------------------------
for fs in "${CONFORM_FS[@]}"; do
  G_STATE=() G_WHY=() G_ORDER=()
  for who in root "uid$uid"; do
    f=$W/log/guest-conform-$fs-$who.txt
    sed -n "s|^CONFORM $fs $who ||p" "$R" >"$f"
    parse_results "$f" "$fs/$who/" G_STATE G_WHY G_ORDER
    summary=$(grep '^posix-conform: ' "$f" | tail -1 || true)
    if [ -n "$summary" ]; then vg_log "$fs: guest posix-conform $who: ${summary#posix-conform: }"
    else r_fail "$fs/conform/$who/completed" "posix-conform did not finish in the guest ($(grep '^rc=' "$f" || echo 'no status'))"; fi
  done
  declare -A seen=()
  natfail=()
  for key in "${G_ORDER[@]}"; do
    seen[$key]=1
    name=${key#"$fs"/}
    case ${G_STATE[$key]} in
      PASS) r_pass "$fs/conform/$name" ;;
      SKIP) r_skip "$fs/conform/$name" "${G_WHY[$key]}" ;;
      FAIL)
        case ${NAT_STATE[$key]:-none} in
          PASS) r_fail "$fs/conform/$name" "${G_WHY[$key]} (passes natively on $fs)" ;;
          FAIL) r_skip "$fs/conform/$name" "fails natively on $fs too (guest: ${G_WHY[$key]}; native: ${NAT_WHY[$key]})" ;;
          *) r_fail "$fs/conform/$name" "${G_WHY[$key]} (no native result: ${NAT_WHY[$key]:-not run})" ;;
        esac
        ;;
    esac
  done
  for key in "${NAT_ORDER[@]}"; do
    [[ $key == "$fs/"* ]] || continue
    [ "${NAT_STATE[$key]}" != FAIL ] || natfail+=("${key#"$fs"/}: ${NAT_WHY[$key]}")
    if [ -z "${seen[$key]:-}" ] && [ "${NAT_STATE[$key]}" = PASS ]; then
      r_fail "$fs/conform/${key#"$fs"/}" "passes natively but did not run in the guest"
    fi
  done
  unset seen
  if [ "${#natfail[@]}" -gt 0 ]; then
    note "$fs: ${#natfail[@]} conformance checks fail natively: $(printf '%s; ' "${natfail[@]}" | cut -c1-1500)"
  else
    note "$fs: every conformance check passes natively"
  fi
done

if [ "$NFAIL" -gt 0 ]; then
  echo "---- guest console (last 40 lines): $VG_CONSOLE" >&2
  tail -n 40 "$VG_CONSOLE" | sed 's/^/    /' >&2 || true
  for fs in "${FS_LIST[@]}"; do
    echo "---- daemon log of $fs (last 15 lines)" >&2
    tail -n 15 "$W/log/daemon-$fs.log" | sed 's/^/    /' >&2 || true
  done
fi
vg_log "total $(($(date +%s) - T_START))s"
echo "test-backing-fs: $NPASS passed, $NFAIL failed, $NSKIP skipped"
[ "$NFAIL" = 0 ]

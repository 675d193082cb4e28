#!/usr/bin/env bash
# Build (or reuse) the tiny test guest used by the real-guest virtio-fs tests.
#
# The guest is: the Debian 12 kernel (unpacked from its .deb, never installed
# on the host) + an uncompressed initramfs holding busybox-static, the kernel
# modules virtio-fs needs (in dependency order), the static C helpers
# guest-tool and posix-conform, and an /init that mounts the virtio-fs tag and
# runs a test script that lib.sh appends to the initramfs for each boot.
#
# Output: the image directory, printed as the last line on stdout:
#   vmlinuz          the kernel
#   initramfs.cpio   base initramfs (newc, uncompressed: nothing to inflate
#                    under TCG, and per-boot archives can simply be appended)
#   guest-tool       the helper, static, so the host-side checks can run it too
#   posix-conform    the POSIX conformance checker (test-conformance.sh), static,
#                    so the host baseline runs the very same binary
#   info             kernel version, module load order
#
# Cached in $VG_CACHE_DIR (default /var/cache/virtiofsd-tests)/<hash>, where
# <hash> covers this script and the C sources (guest-tool.c,
# posix-conform.c): editing any of them rebuilds, and
# the checkout itself stays clean.  Usage: build-image.sh [--force]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${VG_CACHE_DIR:-/var/cache/virtiofsd-tests}
log() { echo "build-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# VG_KERNEL_SUITE=trixie (say) takes the kernel from that Debian suite instead
# of the host's (its package index is fetched into the cache, apart from the
# host's apt state): the multi-queue test needs a kernel newer than 6.1.
SUITE=${VG_KERNEL_SUITE:-}
HASH=$({ cat "$HERE/build-image.sh" "$HERE/guest-tool.c" "$HERE/posix-conform.c"; echo "suite=$SUITE"; } |
  sha256sum | cut -c1-16)
IMG=$CACHE_ROOT/$HASH

if [ "${1:-}" != --force ] && [ -f "$IMG/.complete" ]; then
  touch "$IMG/.complete" 2>/dev/null || true   # "last used", for pruning
  echo "$IMG"          # fast path: nothing to do
  exit 0
fi

mkdir -p "$CACHE_ROOT"
# Serialise concurrent builders (e.g. two test runs started at once).
exec 9>"$CACHE_ROOT/.lock-$HASH"
flock 9
if [ "${1:-}" != --force ] && [ -f "$IMG/.complete" ]; then
  echo "$IMG"
  exit 0
fi

# ---- host packages ---------------------------------------------------------
# qemu is not needed to build, but every user of the image needs it, so it is
# installed here once.  busybox-static is NOT installed (it conflicts with the
# dynamic busybox package); its .deb is unpacked below like the kernel's.
need_pkgs=(qemu-system-x86 cpio zstd xz-utils gcc libc6-dev binutils coreutils)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
apt_updated=
apt_update() { [ -n "$apt_updated" ] || { log "apt-get update"; apt-get update -qq >&2; apt_updated=1; }; }
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # only refresh the package lists when the plain install fails (stale lists)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi

WORK=$(mktemp -d "$CACHE_ROOT/.build-$HASH.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# apt-get download as root into a dir _apt cannot write warns and falls back;
# running the download unsandboxed is what it would do anyway, minus the noise.
apt_download() { # PKG... into $WORK/debs
  mkdir -p "$WORK/debs"
  (cd "$WORK/debs" && apt-get -o APT::Sandbox::User=root download "$@" >&2) && return 0
  apt_update
  (cd "$WORK/debs" && apt-get -o APT::Sandbox::User=root download "$@" >&2)
}

# ---- kernel ------------------------------------------------------------------
# Another suite's kernel: apt with a private source list and state directory.
SUITE_APT=()
if [ -n "$SUITE" ]; then
  SA=$CACHE_ROOT/apt-$SUITE
  mkdir -p "$SA/lists/partial" "$SA/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" >"$SA/sources.list"
  SUITE_APT=(-o "Dir::Etc::sourcelist=$SA/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$SA/lists" -o "Dir::Cache=$SA/cache" -o APT::Get::List-Cleanup=0)
  log "fetching the $SUITE package index"
  apt-get "${SUITE_APT[@]}" update -qq >&2
fi
# The versioned image package the linux-image-amd64 metapackage points at.
kpkg_of_meta() {
  apt-cache "${SUITE_APT[@]}" depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
KPKG=${VG_KERNEL_PKG:-$(kpkg_of_meta)}
if [ -z "$KPKG" ]; then apt_update; KPKG=$(kpkg_of_meta); fi
[ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 to a kernel package"
log "kernel package: $KPKG"
if [ -n "$SUITE" ]; then
  mkdir -p "$WORK/debs"
  (cd "$WORK/debs" && apt-get "${SUITE_APT[@]}" -o APT::Sandbox::User=root download "$KPKG" >&2)
else
  apt_download "$KPKG"
fi
mkdir -p "$WORK/kernel"
dpkg -x "$WORK"/debs/"$KPKG"_*.deb "$WORK/kernel"
# Debian 12 ships /lib/modules; 13 (merged /usr) /usr/lib/modules.
MODROOT=$WORK/kernel/lib/modules
[ -d "$MODROOT" ] || MODROOT=$WORK/kernel/usr/lib/modules
KVER=$(basename "$(find "$MODROOT" -mindepth 1 -maxdepth 1 -type d | head -1)")
[ -n "$KVER" ] || die "no lib/modules in $KPKG"
MODDIR=$MODROOT/$KVER
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# ---- initramfs tree ------------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,mnt,run,guest,lib/modules}
chmod 0755 "$ROOT"; chmod 1777 "$ROOT/tmp"

if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  cp /bin/busybox "$ROOT/bin/busybox"
else
  apt_download busybox-static
  mkdir -p "$WORK/bb"
  dpkg -x "$WORK"/debs/busybox-static_*.deb "$WORK/bb"
  cp "$WORK/bb/bin/busybox" "$ROOT/bin/busybox"
fi
# A dynamic busybox would die in the initramfs without its libraries.
file_out=$(LC_ALL=C readelf -l "$ROOT/bin/busybox" 2>/dev/null || true)
grep -q 'INTERP' <<<"$file_out" && die "busybox is not statically linked"
for applet in $("$ROOT/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done

log "compiling guest-tool"
gcc -static -O2 -Wall -Wextra -Werror -o "$WORK/guest-tool" "$HERE/guest-tool.c" -lpthread
cp "$WORK/guest-tool" "$ROOT/bin/guest-tool"
log "compiling posix-conform"
gcc -static -O2 -Wall -Wextra -Werror -o "$WORK/posix-conform" "$HERE/posix-conform.c"
cp "$WORK/posix-conform" "$ROOT/bin/posix-conform"

# ---- kernel modules ------------------------------------------------------------
# What is a module and what is built in differs between kernel builds
# (Debian 6.1: virtio, virtio_ring, virtio_pci, fuse, virtiofs are all =m), so
# ask the kernel package rather than assume: a module has a .ko[.xz|.zst|.gz]
# file; a built-in one is listed in modules.builtin.  Dependencies come from
# each module's .modinfo "depends=" (the package ships no modules.dep, which
# depmod only writes at install time), and are loaded before their users.
find_ko() { # NAME -> path of its module file, or nothing
  local n=$1 alt=${1//_/-}
  find "$MODDIR/kernel" -type f \( -name "$n.ko" -o -name "$n.ko.*" -o -name "$alt.ko" -o -name "$alt.ko.*" \) | head -1
}
is_builtin() { grep -qE "/(${1}|${1//_/-})\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; }
plain_ko() { # PATH -> uncompressed copy in $WORK/ko/NAME.ko; prints that path
  local src=$1 name
  name=$(basename "$src"); name=${name%%.ko*}; name=${name//-/_}
  mkdir -p "$WORK/ko"
  case $src in
    *.ko) cp "$src" "$WORK/ko/$name.ko" ;;
    *.ko.xz) xz -dc "$src" >"$WORK/ko/$name.ko" ;;
    *.ko.zst) zstd -q -dc "$src" >"$WORK/ko/$name.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$WORK/ko/$name.ko" ;;
    *) die "unknown module format: $src" ;;
  esac
  echo "$WORK/ko/$name.ko"
}
mod_depends() { # PATH(.ko, uncompressed) -> dependency names, one a line
  objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null |
    tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' '\n' | sed '/^$/d; s/-/_/g'
}
ORDER=()          # load order, dependencies first
declare -A SEEN=()
add_module() { # NAME: depth-first, post-order => dependencies first
  local name=${1//-/_} src ko dep
  [ -z "${SEEN[$name]:-}" ] || return 0
  SEEN[$name]=1
  src=$(find_ko "$name")
  if [ -z "$src" ]; then
    if is_builtin "$name"; then log "module $name: built in"; return 0; fi
    die "module $name: neither a module file nor built in ($KVER)"
  fi
  ko=$(plain_ko "$src")
  for dep in $(mod_depends "$ko"); do add_module "$dep"; done
  ORDER+=("$name")
  cp "$ko" "$ROOT/lib/modules/$name.ko"
}
# virtio_pci: the transport of vhost-user-fs-pci; virtiofs: the filesystem
# (pulls in fuse, virtio, virtio_ring via its depends=).
for m in ${VG_MODULES:-virtio_pci virtiofs}; do add_module "$m"; done
printf '%s\n' "${ORDER[@]}" >"$ROOT/etc/modules.order"
log "modules (load order): ${ORDER[*]:-none}"

# ---- /etc and /init ------------------------------------------------------------
# passwd/group only give `ls -l` names; credentials are switched by guest-tool.
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:unprivileged test user:/tmp:/bin/sh
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
user:x:1000:
EOF

# /init protocol (see lib.sh):
#  kernel cmdline: vg.mode=probe|run  vg.tag=TAG  vg.mnt=DIR  vg.mountopts=OPTS
#  console (ttyS0): kernel log + stderr of everything; "VG-BOOTED" marker
#  results (ttyS1): VG-START, the script's stdout, VG-END rc=N, VG-UMOUNT ...
#  then poweroff -f (-no-reboot turns a panic, e.g. /init dying, into an exit)
cat >"$ROOT/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mode=run tag=myfs mnt=/mnt mountopts=
for arg in $(cat /proc/cmdline); do
  case $arg in
    vg.mode=*) mode=${arg#vg.mode=} ;;
    vg.tag=*) tag=${arg#vg.tag=} ;;
    vg.mnt=*) mnt=${arg#vg.mnt=} ;;
    vg.mountopts=*) mountopts=${arg#vg.mountopts=} ;;
  esac
done
for m in $(cat /etc/modules.order); do
  insmod /lib/modules/$m.ko || echo "VG-ERROR: insmod $m failed" >/dev/console
done
echo "VG-BOOTED" >/dev/console
if [ "$mode" = probe ]; then
  poweroff -f
fi
# the results channel: raw, so no \r\n conversion or echo gets in the way
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
echo "VG-START kernel=$(uname -r)" >&3
mkdir -p "$mnt"
if mount -t virtiofs ${mountopts:+-o "$mountopts"} "$tag" "$mnt" 2>/dev/console; then
  echo "VG-MOUNT ok" >&3
  rc=0
  if [ -f /guest/env ]; then . /guest/env; fi
  export VG_MNT="$mnt" VG_TAG="$tag"
  if [ -f /guest/script.sh ]; then
    (cd / && sh /guest/script.sh) >&3 2>/dev/console || rc=$?
  fi
  sync
  echo "VG-END rc=$rc" >&3
  cd /
  if umount "$mnt" 2>/dev/console; then echo "VG-UMOUNT ok" >&3; else echo "VG-UMOUNT failed" >&3; fi
else
  echo "VG-MOUNT failed" >&3
  echo "VG-END rc=99" >&3
fi
exec 3>&-
sync
poweroff -f
EOF
chmod 755 "$ROOT/init"

log "packing initramfs"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$WORK/initramfs.cpio"

{
  echo "kernel_suite=${SUITE:-host}"
  echo "kernel_package=$KPKG"
  echo "kernel_version=$KVER"
  echo "modules=${ORDER[*]:-}"
  echo "hash=$HASH"
} >"$WORK/info"

# Publish atomically: a half-built image never looks complete.
OUT=$WORK/out
mkdir "$OUT"
mv "$WORK/vmlinuz" "$WORK/initramfs.cpio" "$WORK/guest-tool" "$WORK/posix-conform" "$WORK/info" "$OUT/"
touch "$OUT/.complete"
rm -rf "$IMG"
mv "$OUT" "$IMG"
# Prune images of older versions of these scripts not used for 14 days, and
# KVM probe results of earlier host boots (see lib.sh vg_accel).
for old in "$CACHE_ROOT"/*/.complete; do
  [ -f "$old" ] || continue
  [ "$(dirname "$old")" = "$IMG" ] && continue
  if [ -n "$(find "$old" -mtime +14 2>/dev/null)" ]; then rm -rf "$(dirname "$old")"; fi
done
for lock in "$CACHE_ROOT"/.lock-*; do
  [ -e "$lock" ] && [ ! -d "$CACHE_ROOT/${lock##*/.lock-}" ] && rm -f "$lock"
done
boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
find "$CACHE_ROOT" -maxdepth 1 -name 'accel-*' ! -name "*-$boot_id" -delete 2>/dev/null || true
log "built $IMG ($(du -sh "$IMG" | cut -f1))"
echo "$IMG"

#!/usr/bin/env bash
# FUSE_ALLOW_IDMAP and --tag with a real guest (Debian trixie's 6.12 kernel).
#
# Boot 1 (idmap): QEMU's vhost-user-fs-pci; the guest makes an idmapped mount of the virtiofs
#   mount (guest-tool idmap-mount: uids and gids 0 -> 1000, one id) at /idm:
#   - the mount succeeds (a 6.12 guest refuses it unless the daemon agreed FUSE_ALLOW_IDMAP);
#   - a root-owned host file shows as 1000:1000 there and 0:0 on the plain mount;
#   - uid 1000 creates a file, a directory and a symlink through /idm in a root-owned 0755
#     directory: they are root's on the host (the kernel sends the idmapped ids);
#   - on the plain mount, with every other request carrying no caller ids, the guest kernel
#     still refuses uid 1000 a root 0600 file and a write into a root 0755 directory;
#   - an unmapped uid cannot create through /idm (EOVERFLOW from the guest kernel).
# Boot 2 (tag): QEMU's generic vhost-user-device-pci (virtio-id=26, config_size=40), which
#   takes the tag from the daemon (--tag, GET_CONFIG): the guest mounts the share by that tag
#   and reads a host file. Needs a QEMU >= 8.2 built to let -device create that device
#   (Debian's QEMU 10 from fetch-qemu10.sh does not): skipped otherwise.
#
# Usage: test-idmap-tag.sh [--only=idmap,tag] [--keep] [--verbose]
# Environment: as lib.sh; VG_KERNEL_SUITE (default trixie), VG_QEMU10 (a QEMU >= 8.2 for the
# tag boot; default: fetch-qemu10.sh's).
#
# Output: "PASS: idmap/<name>", "FAIL: ...", "SKIP: ..."; the last line is
# "test-idmap-tag: N passed, N failed, N skipped".
set -euo pipefail
export VG_KERNEL_SUITE=${VG_KERNEL_SUITE:-trixie}
ONLY=idmap,tag
while [ $# -gt 0 ]; do
  case $1 in
    --only=*) ONLY=${1#*=} ;;
    --keep) VG_KEEP=1 ;;
    --verbose) VG_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-idmap-tag: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

NPASS=0 NFAIL=0 NSKIP=0
r_pass() { echo "PASS: idmap/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: idmap/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: idmap/$1: $2"; NSKIP=$((NSKIP + 1)); }
r_eq() { if [ "$2" = "$3" ]; then r_pass "$1"; else r_fail "$1" "got '$2', want '$3'"; fi; }
data() { sed -n "s/^DATA: $1 //p" "$VG_RESULTS" | head -1; }
finish() {
  echo "test-idmap-tag: $NPASS passed, $NFAIL failed, $NSKIP skipped"
  [ "$NFAIL" = 0 ]
}
wanted() { [[ ,$ONLY, == *,$1,* ]]; }

vg_setup

idmap_boot() {
  local S=$VG_TMP/share-idmap
  mkdir -p "$S/dir"
  chmod 0755 "$S" "$S/dir"
  echo root >"$S/rootfile"
  echo secret >"$S/secret"
  chmod 0600 "$S/secret"
  chown 0:0 "$S" "$S/dir" "$S/rootfile" "$S/secret"
  local GUEST=$VG_TMP/idmap-guest.sh
  cat >"$GUEST" <<'EOF'
#!/bin/sh
M=$VG_MNT
echo "DATA: kernel $(uname -r)"
mkdir -p /idm
guest-tool idmap-mount "$M" /idm 0 1000 1 2>&1 | sed 's/^/DATA: mount-error /'
echo "DATA: mounted $(grep -c ' /idm ' /proc/mounts)"
echo "DATA: plain-owner $(stat -c %u:%g "$M/rootfile")"
echo "DATA: idm-owner $(stat -c %u:%g /idm/rootfile)"
echo "DATA: idm-read $(cat /idm/rootfile)"
guest-tool runas 1000 1000 sh -c 'echo new >/idm/dir/by-1000' && echo "DATA: idm-create ok"
guest-tool runas 1000 1000 mkdir /idm/dir/sub-1000 && echo "DATA: idm-mkdir ok"
guest-tool runas 1000 1000 ln -s rootfile /idm/dir/link-1000 && echo "DATA: idm-symlink ok"
echo "DATA: idm-new-owner $(stat -c %u:%g /idm/dir/by-1000)"
echo "DATA: plain-new-owner $(stat -c %u:%g "$M/dir/by-1000")"
echo "DATA: plain-new-read $(guest-tool runas 1000 1000 cat "$M/dir/by-1000")"
guest-tool runas 1000 1000 guest-tool -e EACCES open "$M/secret" r && echo "DATA: plain-secret refused"
guest-tool runas 1000 1000 guest-tool -e EACCES open "$M/dir/x" creat && echo "DATA: plain-create refused"
guest-tool runas 2000 2000 guest-tool -e EOVERFLOW open /idm/dir/x2 creat && echo "DATA: unmapped-create refused"
guest-tool runas 1000 1000 guest-tool open "$M/dir/by-1000" r >/dev/null && echo "DATA: plain-read-own ok"
umount /idm && echo "DATA: umount ok"
EOF
  vg_log "booting a $VG_KERNEL_SUITE guest for the idmapped mount"
  if ! vg_run_guest "$S" "$GUEST" --allow-idmap; then
    vg_show_logs 40
    r_fail boot "the guest did not run the script (qemu rc $VG_QEMU_RC)"
    return
  fi
  vg_log "guest kernel $(data kernel)"
  r_eq guest-script-status "$VG_GUEST_RC" 0
  r_eq mount-error "$(data mount-error)" ""
  r_eq idmapped-mount "$(data mounted)" 1
  r_eq plain-owner "$(data plain-owner)" 0:0
  r_eq idmapped-owner "$(data idm-owner)" 1000:1000
  r_eq idmapped-read "$(data idm-read)" root
  r_eq idmapped-create "$(data idm-create)" ok
  r_eq idmapped-mkdir "$(data idm-mkdir)" ok
  r_eq idmapped-symlink "$(data idm-symlink)" ok
  r_eq idmapped-new-owner "$(data idm-new-owner)" 1000:1000
  r_eq plain-new-owner "$(data plain-new-owner)" 0:0
  r_eq plain-new-read "$(data plain-new-read)" new
  r_eq plain-secret-refused "$(data plain-secret)" refused
  r_eq plain-create-refused "$(data plain-create)" refused
  r_eq unmapped-create-refused "$(data unmapped-create)" refused
  r_eq plain-read-own "$(data plain-read-own)" ok
  r_eq idmapped-umount "$(data umount)" ok
  local o
  for f in dir/by-1000 dir/sub-1000 dir/link-1000; do
    o=$(stat -c %u:%g "$S/$f" 2>/dev/null || echo missing)
    r_eq "host-owner-${f#dir/}" "$o" 0:0
  done
  r_eq host-no-x "$(find "$S/dir" -name 'x*' | wc -l)" 0
  if grep -qi "fuse: session initialized.*flags" "$VG_DAEMON_LOG"; then
    local flags
    flags=$(sed -n 's/.*session initialized, protocol [0-9.]*, flags 0x\([0-9a-f]*\).*/\1/p' \
      "$VG_DAEMON_LOG" | tail -1)
    r_eq init-allow-idmap "$(((0x$flags >> 40) & 1))" 1
  fi
  r_eq daemon-errors "$(grep -c ' ERROR ' "$VG_DAEMON_LOG" || true)" 0
}

tag_boot() {
  local qemu=${VG_QEMU10:-} S=$VG_TMP/share-tag
  if [ -z "$qemu" ]; then
    qemu=$(bash "$HERE/fetch-qemu10.sh" 2>/dev/null | tail -1) || qemu=
  fi
  # QEMU >= 8.2 has the device, but only some builds let the user create it (Debian's
  # QEMU 10 answers "Parameter 'driver' expects a pluggable device type").
  if [ -z "$qemu" ] || ! "$qemu" -device help 2>&1 | grep -q '"vhost-user-device-pci"'; then
    r_skip tag "no QEMU that lets -device create vhost-user-device-pci (set VG_QEMU10)"
    return
  fi
  mkdir -p "$S"
  echo "served by tag" >"$S/hello"
  local GUEST=$VG_TMP/tag-guest.sh
  cat >"$GUEST" <<'EOF'
#!/bin/sh
echo "DATA: tag $VG_TAG"
echo "DATA: hello $(cat "$VG_MNT/hello")"
echo "DATA: sysfs-tag $(cat /sys/fs/virtiofs/*/tag 2>/dev/null | head -1)"
EOF
  local n sock rc=0
  VG_QEMU=$qemu vg_boot_prepare "$GUEST"
  n=$VG_BOOT_DIR sock=$VG_BOOT_DIR/vhost.sock
  VG_DAEMON_LOG=$n/daemon.log
  if ! vg_daemon_start "$sock" "$S" "$VG_DAEMON_LOG" --tag="$VG_TAG"; then
    r_fail tag-daemon "the daemon did not start"
    return
  fi
  vg_log "booting with vhost-user-device-pci (the tag from the daemon)"
  VG_QEMU=$qemu vg_qemu "$VG_ACCEL" "$VG_CONSOLE" "$VG_RESULTS" "$VG_TIMEOUT" "$VG_INITRD" \
    "vg.mode=run vg.tag=$VG_TAG" \
    -object "memory-backend-memfd,id=mem,size=$VG_MEM,share=on" -numa node,memdev=mem \
    -chardev "socket,id=vfs,path=$sock" \
    -device "vhost-user-device-pci,chardev=vfs,virtio-id=26,num_vqs=2,config_size=40,vq_size=128" ||
    rc=$?
  vg_daemon_stop
  sed -i 's/\r$//' "$VG_RESULTS"
  r_eq tag-qemu-status "$rc" 0
  r_eq tag-mount "$(sed -n 's/^VG-MOUNT //p' "$VG_RESULTS" | head -1)" ok
  r_eq tag-read "$(data hello)" "served by tag"
  r_eq tag-sysfs "$(data sysfs-tag)" "$VG_TAG"
  [ "$NFAIL" = 0 ] || vg_show_logs 30
}

if wanted idmap; then idmap_boot; fi
if wanted tag; then tag_boot; fi
[ "$NFAIL" = 0 ] || vg_show_logs 30
finish

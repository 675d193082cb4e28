#!/usr/bin/env bash
# A short, human-readable demonstration of the daemon (run by `make demo`):
# share a host directory with a real Linux guest over virtio-fs, look at it
# from inside the guest, write a file there, and read that file back on the
# host after the guest has powered off.
#
# Environment: VIRTIOFSD (daemon; default build/virtiofsd), DEMO_DIR
# (default /tmp/virtiofsd-demo), VIRTIOFSD_OPTS, VG_ACCEL=kvm|tcg, ...
# (see tests/guest/lib.sh).  Needs root (QEMU, the daemon, apt for the
# one-time guest image build).
set -euo pipefail
# demo defaults, set before lib.sh fills in its own
VG_TIMEOUT=${VG_TIMEOUT:-90}
VG_TAG=${VG_TAG:-demofs}
# shellcheck source=guest/lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/guest/lib.sh"

DEMO_DIR=${DEMO_DIR:-/tmp/virtiofsd-demo}
SHARE=$DEMO_DIR/share

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
t0=$(date +%s)

say "Preparing the guest image (cached after the first run)"
vg_setup
echo "image: $VG_IMG ($(sed -n 's/^kernel_version=//p' "$VG_IMG/info"))"

say "Host: creating the shared directory $SHARE"
rm -rf "$SHARE"
mkdir -p "$SHARE/docs"
chmod 0755 "$DEMO_DIR" "$SHARE"
echo "Hello from the host ($(hostname)), written at $(date -u '+%F %T') UTC." >"$SHARE/hello.txt"
printf 'line %d\n' $(seq 1 100) >"$SHARE/docs/numbers.txt"
ln -s hello.txt "$SHARE/link-to-hello"
ls -l "$SHARE"

# The guest-side script: its stdout comes back to us over a serial line.
cat >"$VG_TMP/demo-guest.sh" <<'EOF'
run() { echo "guest# $1"; sh -c "$1" 2>&1 | sed 's/^/    /'; }
run "uname -sr"
run "grep virtiofs /proc/mounts"
run "ls -l /mnt"
run "cat /mnt/hello.txt"
run "wc -l < /mnt/docs/numbers.txt"
run 'echo "Hello from the guest! Kernel $(uname -r), written at $(date -u "+%F %T") UTC." > /mnt/from-guest.txt'
run "mkdir /mnt/made-in-guest"
run "ls -l /mnt"
run "df -h /mnt"
echo "guest# poweroff"
EOF

say "Starting the daemon ($VIRTIOFSD) and booting the guest"
vg_accel
echo "accelerator: $VG_ACCEL$([ "$VG_ACCEL" = tcg ] && echo ' (software emulation: KVM is absent or unusable here)')"
echo "daemon: $VIRTIOFSD --socket-path=... --shared-dir=$SHARE --cache=$VG_CACHE_MODE $VIRTIOFSD_SANDBOX_OPTS $VIRTIOFSD_OPTS"
echo "qemu:   -device vhost-user-fs-pci,tag=$VG_TAG  (guest: mount -t virtiofs $VG_TAG /mnt)"
ok=0
vg_run_guest "$SHARE" "$VG_TMP/demo-guest.sh" || ok=$?

say "Guest output"
grep -v '^VG-' "$VG_RESULTS" || true
if [ "$ok" != 0 ] || [ "${VG_GUEST_RC:-1}" != 0 ]; then
  grep -q '^VG-MOUNT failed' "$VG_RESULTS" && echo "(mount -t virtiofs failed in the guest)"
  vg_show_logs 30
  say "Demo FAILED"
  exit 1
fi
case $VG_DAEMON_END in
  exited:0) how="the daemon exited when the guest disconnected" ;;
  terminated*) how="the daemon was stopped with SIGTERM" ;;
  *) how="daemon: $VG_DAEMON_END" ;;
esac
echo "(the guest powered off after ${VG_BOOT_SECS}s; $how)"

say "Host: the file the guest wrote"
ls -l "$SHARE"
echo "host\$ cat $SHARE/from-guest.txt"
cat "$SHARE/from-guest.txt"

say "Done in $(($(date +%s) - t0))s; the shared directory is left in $SHARE"

#!/usr/bin/env bash
# Boot the test guest once against a virtio-fs daemon and run a script in it.
#
#   run-guest.sh [options] SCRIPT          run a busybox-sh script file
#   run-guest.sh [options] -c 'COMMANDS'   run a command string
#
# Options:
#   --shared-dir=DIR   directory to export (default: a fresh empty temp dir)
#   --cache=MODE       daemon --cache (default: $VG_CACHE_MODE or auto)
#   --timeout=SECS     hard limit for the boot (default: $VG_TIMEOUT or 240)
#   --xattr            pass --xattr to the daemon
#   --console          print the guest console log afterwards
#   -- OPTS...         everything after -- is passed to the daemon
#
# In the guest the share is mounted on $VG_MNT (/mnt), busybox is on PATH,
# and /bin/guest-tool is the C helper.  The script's stdout is printed here;
# its stderr goes to the console log.  Exit status: the script's, or 1 if
# the guest never finished (boot failure, mount failure, timeout).
# Environment: see lib.sh (VIRTIOFSD, VIRTIOFSD_OPTS, VG_ACCEL, VG_KEEP...).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

shared='' script='' cmd='' show_console=0
daemon_opts=()
while [ $# -gt 0 ]; do
  case $1 in
    --shared-dir=*) shared=${1#*=} ;;
    --cache=*) VG_CACHE_MODE=${1#*=} ;;
    --timeout=*) VG_TIMEOUT=${1#*=} ;;
    --xattr) daemon_opts+=(--xattr) ;;
    --console) show_console=1 ;;
    -c) cmd=${2:?-c needs a command string}; shift ;;
    --) shift; daemon_opts+=("$@"); break ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) vg_die "unknown option $1" ;;
    *) [ -z "$script" ] || vg_die "only one script"; script=$1 ;;
  esac
  shift
done
[ -n "$script" ] || [ -n "$cmd" ] || vg_die "give a SCRIPT or -c 'COMMANDS' (see --help)"

vg_setup
if [ -z "$shared" ]; then
  shared=$VG_TMP/share
  mkdir -p "$shared"
fi
if [ -n "$cmd" ]; then
  script=$VG_TMP/cmd.sh
  printf '%s\n' "$cmd" >"$script"
fi

ok=0
vg_run_guest "$shared" "$script" "${daemon_opts[@]}" || ok=$?
# the script's own output, without the protocol lines
grep -v '^VG-' "$VG_RESULTS" || true
vg_log "accel=$VG_ACCEL boot+run=${VG_BOOT_SECS}s daemon=${VG_DAEMON_END:-?}"
if [ "$show_console" = 1 ]; then vg_show_logs 200; fi
if [ "$ok" != 0 ]; then
  grep -q '^VG-MOUNT failed' "$VG_RESULTS" && vg_log "mount -t virtiofs failed in the guest"
  vg_show_logs 30
  exit 1
fi
grep -q '^VG-UMOUNT ok' "$VG_RESULTS" || vg_log "warning: umount in the guest failed"
exit "$VG_GUEST_RC"

#!/bin/sh
# The guest half of test-libvirt.sh: runs in a guest that libvirt started, with the share
# mounted on $VG_MNT (the domain's <filesystem>, served by our daemon).
#
# VG_LV_RUN=write  the share must be the one the domain names: the host's marker file is
#                  there; the guest writes a file, sets an xattr on it, takes POSIX locks
#                  and flock between two of its processes, and sees the locks a host process
#                  holds (they are kept on the host: <lock posix='on' flock='on'/>). Then the
#                  guest powers off (the image's /init).
# VG_LV_RUN=wait   says "VG-READY" and keeps using the share until the host destroys the VM.
#
# Output (the results channel): PASS: name | FAIL: name: reason | DATA: key value
# shellcheck disable=SC3043  # ash has `local`

M=${VG_MNT:-/mnt}
T=guest-tool
FAILS=0

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; FAILS=$((FAILS + 1)); }
check() {
  local name="$1" out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | tr '\n' ' ' | cut -c1-300)"; fi
}

case ${VG_LV_RUN:-write} in
  write)
    echo "DATA: marker $(tr '\n' ' ' <"$M/served-marker.txt" 2>&1)"
    if echo "written by the guest" >"$M/guest-wrote.txt" && sync &&
      [ "$(cat "$M/guest-wrote.txt")" = "written by the guest" ]; then
      pass write
    else
      fail write "could not write and read back $M/guest-wrote.txt"
    fi
    check xattr-set $T setxattr "$M/guest-wrote.txt" user.libvirt from-guest
    got=$($T getxattr "$M/guest-wrote.txt" user.libvirt 2>&1)
    if [ "$got" = from-guest ]; then pass xattr-get; else fail xattr-get "got '$got'"; fi
    : >"$M/locks.txt"
    check locks-posix $T locks posix "$M/locks.txt"
    check locks-flock $T locks flock "$M/locks.txt"
    check locks-held-by-host $T locks held "$M/host-locked.txt"
    ;;
  wait)
    echo "VG-READY"
    # Keep the session busy until the VM is destroyed.
    while :; do
      ls "$M" >/dev/null
      sleep 1
    done
    ;;
esac
[ "$FAILS" -eq 0 ]

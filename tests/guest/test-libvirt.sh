#!/usr/bin/env bash
# libvirt as a real client of the daemon: libvirt starts it, from a domain's <filesystem>, as
# it starts any virtiofsd (--fd=N -o source=...,xattr,flock,posix_lock, a locked pid file it
# keeps open across exec, then moves the process into the VM's cgroup), and stops it with the
# VM. Two transient TCG domains (type='qemu', memfd shared memory, direct kernel boot of the
# test guest from build-image.sh, two serial ports: console and results as in lib.sh):
#
#  write    our daemon as <binary path=...> with xattr='on' and <lock posix='on' flock='on'/>,
#           sharing a directory whose name holds a comma ("share,b"; a decoy "share" next to
#           it). The guest (libvirt-checks.sh) reads the host's marker, writes a file, sets an
#           xattr, takes POSIX locks and flock, sees a host process's locks, and powers off.
#  destroy  no <binary>: libvirt picks the back-end from the vhost-user.json files, and ours
#           (40-virtiofsd-c.json, put into /etc/qemu/vhost-user for the run when it is not
#           there yet, naming this build's binary) must come first by name; the guest says it
#           is ready and keeps using the share, the host reads the cgroups, then
#           `virsh destroy`.
#
# Checked (PASS/FAIL/SKIP lines): the guest's own checks; the right directory served (the
# marker, and the guest's file and xattr in "share,b", nothing in the decoy); the serving
# process in the domain's cgroups while it runs (libvirt moves only the process it started,
# our monitor: the serving process must follow; SKIP when libvirt put QEMU in no cgroup of its
# own); the daemon gone when the VM is (no process left, its log says it exited because the
# front-end went, not that libvirt killed it); no warning or error of the daemon's lifecycle in
# libvirtd's log (virPidFileAcquirePath "Resource temporarily unavailable" when the daemon
# outlived QEMU, "Unable to kill virtiofsd process"); and that meson installs the
# vhost-user.json where libvirt reads it.
#
# libvirt: `libvirt-daemon-system libvirt-clients` (tests/install-deps.sh test). Without
# systemd (containers, CI) virtlogd and libvirtd are started here, libvirtd logging warnings
# and errors to a file of ours, and stopped at the end; a libvirtd already running is used
# as it is (its log is then not read: SKIP). Needs root. About a minute with TCG.
#
# Usage: test-libvirt.sh [--keep] [--verbose]
# Environment: VIRTIOFSD (default build/virtiofsd), VG_TIMEOUT (per domain, default 240).
# Output: "PASS: libvirt/<run>/<check>" ...; last line "test-libvirt: N passed, N failed,
# N skipped"; the exit status is non-zero if anything failed.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do
  case $arg in
    --keep) export VG_KEEP=1 ;;
    --verbose) export VG_VERBOSE=1 ;;
    *) echo "usage: $0 [--keep] [--verbose]" >&2; exit 2 ;;
  esac
done

NPASS=0 NFAIL=0 NSKIP=0
r_pass() { echo "PASS: libvirt/$1"; NPASS=$((NPASS + 1)); }
r_fail() { echo "FAIL: libvirt/$1: $2"; NFAIL=$((NFAIL + 1)); }
r_skip() { echo "SKIP: libvirt/$1: $2"; NSKIP=$((NSKIP + 1)); }
finish() {
  echo "test-libvirt: $NPASS passed, $NFAIL failed, $NSKIP skipped"
  [ "$NFAIL" -eq 0 ]
}

URI=qemu:///system
LV_LIBVIRTD_PID='' LV_VIRTLOGD_PID='' LV_LOG='' LV_JSON_PLACED='' LV_JSON_DIRS='' LV_HOLDER='' LV_DOMS=()

if [ "$(id -u)" != 0 ]; then
  r_skip all "needs root (libvirt's system instance)"
  finish; exit
fi
missing=
for c in virsh libvirtd virtlogd; do
  command -v "$c" >/dev/null || missing="$missing $c"
done
if [ -n "$missing" ]; then
  # CI installs them (tests/install-deps.sh test): there, missing is a failure.
  if [ "${CI:-}" = true ]; then r_fail all "not installed:$missing"; else
    r_skip all "not installed:$missing (libvirt-daemon-system libvirt-clients)"; fi
  finish; exit
fi
[ -x "$VIRTIOFSD" ] || { r_fail all "daemon not executable: $VIRTIOFSD"; finish; exit; }
VIRTIOFSD=$(readlink -f "$VIRTIOFSD")

# ---- libvirt's daemons -------------------------------------------------------------------

lv_alive() { virsh -c "$URI" version >/dev/null 2>&1; }

# Only what this script started, by pid.
lv_stop_daemons() {
  local pid
  for pid in $LV_LIBVIRTD_PID $LV_VIRTLOGD_PID; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  LV_LIBVIRTD_PID='' LV_VIRTLOGD_PID=''
}

# Our vhost-user.json, and the directories made for it, go again.
lv_unplace_json() {
  [ -n "$LV_JSON_PLACED" ] || return 0
  rm -f "$LV_JSON_PLACED"
  local d
  for d in $LV_JSON_DIRS; do rmdir "$d" 2>/dev/null || true; done
  LV_JSON_PLACED='' LV_JSON_DIRS=''
}

lv_cleanup() {
  local d
  for d in "${LV_DOMS[@]}"; do
    virsh -c "$URI" destroy "$d" >/dev/null 2>&1 || true
  done
  LV_DOMS=()
  if [ -n "$LV_HOLDER" ]; then
    kill "$LV_HOLDER" 2>/dev/null || true
    wait "$LV_HOLDER" 2>/dev/null || true
    LV_HOLDER=
  fi
  lv_unplace_json
  lv_stop_daemons
}

vg_setup
trap 'lv_cleanup; vg_cleanup' EXIT
T=$VG_TMP
GT=$VG_IMG/guest-tool

if lv_alive; then
  vg_log "using the libvirtd that runs already"
else
  LV_LOG=$T/libvirtd.log
  if [ ! -S /run/libvirt/virtlogd-sock ]; then
    virtlogd >"$T/virtlogd.out" 2>&1 &
    LV_VIRTLOGD_PID=$!
  fi
  # Warnings and errors only (3): what the lifecycle checks read. The domains are TCG: in
  # its own mount namespace libvirtd sees no /dev/kvm. Where /dev/kvm exists but the QEMU user
  # cannot open it (a container's root-only node), libvirt would otherwise find its QEMU
  # capabilities outdated at every call and probe every QEMU binary again (a minute a domain).
  # shellcheck disable=SC2016  # expanded by that sh
  LIBVIRT_LOG_OUTPUTS="3:file:$LV_LOG" unshare -m --propagation slave -- sh -c \
    '[ ! -e /dev/kvm ] || mount --bind /dev/null /dev/kvm || exit 1; exec libvirtd' \
    >"$T/libvirtd.out" 2>&1 &
  LV_LIBVIRTD_PID=$!
  for _ in $(seq 1 300); do
    lv_alive && break
    kill -0 "$LV_LIBVIRTD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! lv_alive; then
    r_fail all "libvirtd did not start: $(tail -5 "$T/libvirtd.out" "$LV_LOG" 2>/dev/null | tr '\n' ' ')"
    finish; exit
  fi
fi

# ---- the domain ----------------------------------------------------------------------------

# The domain's XML: NAME SHARE INITRD CONSOLE RESULTS [BINARY]. With BINARY: <binary> with
# xattr and locks; without: libvirt's vhost-user.json discovery.
lv_xml() {
  local name=$1 share=$2 initrd=$3 console=$4 results=$5 binary=${6:-} driver
  if [ -n "$binary" ]; then
    driver="<binary path='$binary' xattr='on'><lock posix='on' flock='on'/></binary>"
  else
    driver=
  fi
  cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$VG_IMG/vmlinuz</kernel>
    <initrd>$initrd</initrd>
    <cmdline>console=ttyS0 quiet loglevel=4 panic=-1 vg.mode=run vg.tag=$VG_TAG</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs'/>
      $driver
      <source dir='$share'/>
      <target dir='$VG_TAG'/>
    </filesystem>
    <serial type='file'><source path='$console'/><target port='0'/></serial>
    <serial type='file'><source path='$results'/><target port='1'/></serial>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
EOF
}

lv_running() { virsh -c "$URI" domid "$1" >/dev/null 2>&1; }

# The daemon libvirt started for domain NAME: the pid in its pid file, once it names a live
# process (waits up to 30 s).
lv_daemon_pid() {
  local f pid
  for _ in $(seq 1 300); do
    for f in /run/libvirt/qemu/*-"$1"-fs0-fs.pid; do
      pid=$(cat "$f" 2>/dev/null || true)
      if [[ $pid =~ ^[0-9]+$ ]] && vg_alive "$pid"; then echo "$pid"; return 0; fi
    done
    sleep 0.1
  done
  return 1
}

# "hierarchy path" lines of /proc/PID/cgroup: "4:memory /machine/qemu-1-x.libvirt-qemu/emulator".
lv_cgroups() { sed -n 's/^\([0-9]*:[^:]*\):\(.*\)$/\1 \2/p' "/proc/$1/cgroup" 2>/dev/null; }

# The serving process in the domain's cgroups: libvirt moves the process it started (our
# monitor) into cgroups of the domain (v1: the controllers of its "emulator" cgroup; v2: all);
# in each hierarchy where the monitor is in a cgroup naming the domain, the serving process
# must be in that same cgroup, and it must be wherever the monitor is.
lv_check_cgroups() { # RUN NAME MONITOR_PID
  local run=$1 name=$2 mon=$3 srv h path sp n=0 bad=
  srv=$(vg_serving_pid "$mon") || { r_fail "$run/cgroup" "no serving process"; return; }
  if [ "$srv" = "$mon" ]; then
    r_fail "$run/cgroup" "no monitor: the daemon runs without its namespace sandbox"
    return
  fi
  while read -r h path; do
    case $path in *"$name"*) ;; *) continue ;; esac
    n=$((n + 1))
    sp=$(lv_cgroups "$srv" | awk -v h="$h" '$1 == h { print $2 }')
    [ "$sp" = "$path" ] || bad="$bad $h: serving process in '$sp', the daemon in '$path';"
  done < <(lv_cgroups "$mon")
  if [ "$n" -eq 0 ]; then
    r_skip "$run/cgroup" "libvirtd put the daemon in no cgroup of the domain (cgroups unusable here?): $(lv_cgroups "$mon" | tr '\n' ' ')"
    return
  fi
  if ! diff <(lv_cgroups "$mon") <(lv_cgroups "$srv") >/dev/null; then
    bad="$bad not where the monitor is: monitor $(lv_cgroups "$mon" | tr '\n' ' '), serving $(lv_cgroups "$srv" | tr '\n' ' ');"
  fi
  if [ -z "$bad" ]; then r_pass "$run/cgroup ($n hierarchies)"; else r_fail "$run/cgroup" "$bad"; fi
}

# Lines of libvirtd's log since byte OFFSET about the daemon's lifecycle.
lv_lifecycle_errors() { # OFFSET
  tail -c +"$(($1 + 1))" "$LV_LOG" 2>/dev/null |
    grep -E ': (warning|error) : .*(virPidFile|virtiofsd|VirtioFS)' || true
}

lv_log_size() { stat -c %s "$LV_LOG" 2>/dev/null || echo 0; }

# Processes whose command line holds TEXT (without procps).
lv_pids_with() { # TEXT
  local f p
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}
    p=${p%/cmdline}
    if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "$1" && vg_alive "$p"; then printf '%s ' "$p"; fi
  done
}

# After the domain ended: the daemon gone (within 5 s), by itself, and libvirt quiet about it.
lv_check_end() { # RUN NAME MONITOR_PID LOG_OFFSET
  local run=$1 name=$2 mon=$3 off=$4 left dlog lines
  for _ in $(seq 1 50); do vg_alive "$mon" || break; sleep 0.1; done
  left=$(lv_pids_with "source=$T/share")
  if vg_alive "$mon" || [ -n "$left" ]; then
    r_fail "$run/no-daemon-left" "still running: $mon $left"
  else
    r_pass "$run/no-daemon-left"
  fi
  dlog=/var/log/libvirt/qemu/$name-fs0-virtiofsd.log
  if grep -q 'exiting (--on-disconnect=exit)' "$dlog" 2>/dev/null; then
    r_pass "$run/daemon-exited-with-front-end"
  else
    r_fail "$run/daemon-exited-with-front-end" "its log ($dlog): $(tail -3 "$dlog" 2>/dev/null | tr '\n' ' ')"
  fi
  if [ -z "$LV_LOG" ]; then
    r_skip "$run/libvirtd-log-clean" "libvirtd was already running; its log is not ours to read"
    return
  fi
  # libvirt stops the daemon's pid file after QEMU: give it that moment
  for _ in $(seq 1 30); do [ -e "/run/libvirt/qemu/$name.pid" ] || break; sleep 0.1; done
  sleep 0.5
  lines=$(lv_lifecycle_errors "$off")
  if [ -z "$lines" ]; then r_pass "$run/libvirtd-log-clean"; else
    r_fail "$run/libvirtd-log-clean" "$(echo "$lines" | head -3 | tr '\n' ' ')"; fi
}

# Boots domain NAME (transient) from XML; returns once it runs. Sets LV_MON (the daemon).
lv_start() { # RUN NAME XMLFILE
  local out
  LV_DOMS+=("$2")
  if ! out=$(virsh -c "$URI" create "$3" 2>&1); then
    r_fail "$1/start" "$(echo "$out" | tr '\n' ' ')"
    return 1
  fi
  r_pass "$1/start"
  if ! LV_MON=$(lv_daemon_pid "$2"); then
    r_fail "$1/daemon" "no live pid in /run/libvirt/qemu/*-$2-fs0-fs.pid"
    return 1
  fi
}

lv_wait_gone() { # NAME TIMEOUT
  local end=$(($(date +%s) + $2))
  while lv_running "$1"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.5
  done
}

# Reads the guest's PASS/FAIL lines into ours.
lv_guest_results() { # RUN RESULTS
  local line
  sed -i 's/\r$//' "$2"
  while IFS= read -r line; do
    case $line in
      "PASS: "*) r_pass "$1/guest:${line#PASS: }" ;;
      "FAIL: "*) r_fail "$1/guest:${line#FAIL: }" "" ;;
    esac
  done <"$2"
}

t0=$(date +%s)

# The shared directory's name holds a comma; a decoy without it would be served instead if
# the comma (written ",," by libvirt) were taken for the end of the path.
S="$T/share,b"
mkdir -p "$S" "$T/share"
token=lv-$RANDOM-$RANDOM
echo "$token" >"$S/served-marker.txt"
echo decoy >"$T/share/served-marker.txt"
echo locked >"$S/host-locked.txt"
"$GT" hold-locks "$S/host-locked.txt" >/dev/null &
LV_HOLDER=$!

# ---- run 1: <binary>, xattr, locks; the guest powers off -----------------------------------
run=write name=vfslvwrite$$
mkdir -p "$T/$run"
VG_GUEST_ENV="VG_LV_RUN=write; export VG_LV_RUN"
vg_boot_prepare "$VG_DIR/libvirt-checks.sh"
cp "$VG_INITRD" "$T/$run/initrd.cpio"
lv_xml "$name" "$S" "$T/$run/initrd.cpio" "$T/$run/console.log" "$T/$run/results.txt" \
  "$VIRTIOFSD" >"$T/$run/domain.xml"
off=$(lv_log_size)
if lv_start "$run" "$name" "$T/$run/domain.xml"; then
  mon=$LV_MON
  if lv_wait_gone "$name" "$VG_TIMEOUT"; then
    r_pass "$run/guest-powered-off"
  else
    r_fail "$run/guest-powered-off" "still running after ${VG_TIMEOUT}s; destroyed"
    virsh -c "$URI" destroy "$name" >/dev/null 2>&1 || true
  fi
  lv_guest_results "$run" "$T/$run/results.txt"
  rc=$(sed -n 's/^VG-END rc=\([0-9]*\)$/\1/p' "$T/$run/results.txt" | tail -1)
  if [ "$rc" = 0 ]; then r_pass "$run/guest-script"; else
    r_fail "$run/guest-script" "VG-END rc=${rc:-none}; console: $(tail -5 "$T/$run/console.log" | tr '\n' ' ')"; fi
  marker=$(sed -n 's/^DATA: marker //p' "$T/$run/results.txt" | tr -d ' ')
  if [ "$marker" = "$token" ] && [ -f "$S/guest-wrote.txt" ] && [ ! -e "$T/share/guest-wrote.txt" ]; then
    r_pass "$run/served-the-comma-path"
  else
    r_fail "$run/served-the-comma-path" "marker '$marker' (want '$token'); guest file in share,b: $([ -f "$S/guest-wrote.txt" ] && echo yes || echo no), in the decoy: $([ -e "$T/share/guest-wrote.txt" ] && echo yes || echo no)"
  fi
  xa=$(getfattr --only-values -n user.libvirt "$S/guest-wrote.txt" 2>/dev/null || true)
  if [ "$xa" = from-guest ]; then r_pass "$run/xattr-on-host"; else r_fail "$run/xattr-on-host" "got '$xa'"; fi
  lv_check_end "$run" "$name" "$mon" "$off"
  [ "${VG_VERBOSE:-0}" != 1 ] || sed 's/^/    /' "$T/$run/console.log" >&2
fi

# ---- run 2: the vhost-user.json choice; the cgroups; virsh destroy ------------------------
run=destroy name=vfslvdestroy$$
mkdir -p "$T/$run"
json=/etc/qemu/vhost-user/40-virtiofsd-c.json
if [ -e "$json" ]; then
  vg_log "$json exists: using it as it is"
else
  [ -d /etc/qemu/vhost-user ] || LV_JSON_DIRS=/etc/qemu/vhost-user
  [ -d /etc/qemu ] || LV_JSON_DIRS="$LV_JSON_DIRS /etc/qemu"
  mkdir -p /etc/qemu/vhost-user
  LV_JSON_PLACED=$json
  printf '{\n  "description": "virtiofsd (C), test-libvirt.sh",\n  "type": "fs",\n  "binary": "%s"\n}\n' \
    "$VIRTIOFSD" >"$json"
fi
VG_GUEST_ENV="VG_LV_RUN=wait; export VG_LV_RUN"
vg_boot_prepare "$VG_DIR/libvirt-checks.sh"
cp "$VG_INITRD" "$T/$run/initrd.cpio"
lv_xml "$name" "$S" "$T/$run/initrd.cpio" "$T/$run/console.log" "$T/$run/results.txt" \
  >"$T/$run/domain.xml"
off=$(lv_log_size)
if lv_start "$run" "$name" "$T/$run/domain.xml"; then
  mon=$LV_MON
  exe=$(readlink "/proc/$mon/exe" 2>/dev/null || true)
  if [ "$exe" = "$VIRTIOFSD" ]; then r_pass "$run/vhost-user-json-chose-ours"; else
    r_fail "$run/vhost-user-json-chose-ours" "libvirt started '$exe' ($(find /usr/share/qemu/vhost-user /etc/qemu/vhost-user -name '*.json' 2>/dev/null | tr '\n' ' '))"; fi
  if vg_wait_line "$T/$run/results.txt" '^VG-READY' "$VG_TIMEOUT"; then
    r_pass "$run/guest-ready"
    lv_check_cgroups "$run" "$name" "$mon"
  else
    r_fail "$run/guest-ready" "console: $(tail -5 "$T/$run/console.log" | tr '\n' ' ')"
  fi
  if out=$(virsh -c "$URI" destroy "$name" 2>&1); then r_pass "$run/virsh-destroy"; else
    r_fail "$run/virsh-destroy" "$(echo "$out" | tr '\n' ' ')"; fi
  lv_check_end "$run" "$name" "$mon" "$off"
fi
lv_unplace_json

# ---- where meson installs the vhost-user.json ---------------------------------------------
bdir=$(dirname "$VIRTIOFSD")
if [ -f "$bdir/build.ninja" ] && command -v meson >/dev/null; then
  dest=$(meson introspect "$bdir" --installed 2>/dev/null |
    python3 -c 'import json, sys; print(*[v for k, v in json.load(sys.stdin).items() if k.endswith(".json")])')
  case $dest in
    /usr/share/qemu/vhost-user/40-virtiofsd-c.json | /etc/qemu/vhost-user/40-virtiofsd-c.json)
      r_pass "install/vhost-user-json ($dest)" ;;
    *) r_fail "install/vhost-user-json" "installed to '$dest', where libvirt does not look" ;;
  esac
else
  r_skip "install/vhost-user-json" "no meson build dir next to $VIRTIOFSD"
fi

vg_log "took $(($(date +%s) - t0)) s"
finish

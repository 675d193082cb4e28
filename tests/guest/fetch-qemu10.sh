#!/usr/bin/env bash
# A private QEMU 10 for the tests: qemu-system-x86 from Debian bookworm-backports, unpacked
# with dpkg -x into the test cache, so that the system's QEMU (7.2) stays what it is.
# QEMU 10's vhost-user-fs is the front-end that migrates a back-end's state (DEVICE_STATE,
# LOG_SHMFD); 7.2's cannot migrate at all.
#
# Prints the path of a qemu-system-x86_64 wrapper (the binary with its own firmware and
# option ROMs first on the data path) as the last line of stdout. Cached under
# $VG_CACHE_DIR/qemu10-<hash of this script>: a change here fetches again.
# Needs root for apt-get's download (it runs unprivileged where it can).
set -euo pipefail
CACHE=${VG_CACHE_DIR:-/var/cache/virtiofsd-tests}
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
dir=$CACHE/qemu10-$key
if [ -f "$dir/.complete" ]; then
  echo "$dir/qemu-system-x86_64"
  exit 0
fi
log() { echo "[qemu10] $*" >&2; }
rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs"
cat >"$dir/apt/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
EOF
# A private apt state: the system's sources, lists and pins are neither read nor changed.
apt_opts=(-o "Dir::Etc::sourcelist=$dir/apt/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
  -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
log "fetching qemu-system-x86 from bookworm-backports"
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download \
  qemu-system-x86 qemu-system-common qemu-system-data >&2)
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
bin=$dir/root/usr/bin/qemu-system-x86_64
# The libraries come from the system: the bookworm QEMU's dependencies cover 10's.
missing=$(ldd "$bin" | awk '/not found/ {print $1}')
[ -z "$missing" ] || { log "missing libraries: $missing (apt-get install qemu-system-x86)"; exit 1; }
cat >"$dir/qemu-system-x86_64" <<EOF
#!/bin/sh
# QEMU 10 unpacked by tests/guest/fetch-qemu10.sh: its own data directory first, then the
# system's (firmware such as SeaBIOS lives there, as symlinks from this package point).
exec "$bin" -L "$dir/root/usr/share/qemu" -L /usr/share/qemu "\$@"
EOF
chmod +x "$dir/qemu-system-x86_64"
"$dir/qemu-system-x86_64" --version | head -1 >&2
rm -rf "$dir/apt" "$dir/debs"
touch "$dir/.complete"
echo "$dir/qemu-system-x86_64"

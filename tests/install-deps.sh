#!/usr/bin/env bash
# Installs the Debian packages the build (`build`) or the tests and demo (`test`) need,
# only those missing, so that a fresh Debian 12 machine needs nothing else.
set -euo pipefail
build_pkgs=(meson ninja-build pkg-config gcc libc6-dev libcap-ng-dev libseccomp-dev
            libglib2.0-dev liburcu-dev)
test_pkgs=(qemu-system-x86 busybox-static cpio zstd xz-utils attr python3 uidmap clang
           libclang-rt-14-dev
           # test-backing-fs.sh: the file systems it makes, and sshfs to its own sshd
           e2fsprogs xfsprogs btrfs-progs util-linux sshfs openssh-server openssh-client
           # test-libvirt.sh: libvirt starts the daemon from a domain's <filesystem>
           libvirt-daemon-system libvirt-clients)
want=("${build_pkgs[@]}")
[ "${1:-build}" = test ] && want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

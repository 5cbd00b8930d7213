#!/bin/bash
# Install what the SPP fork needs to fetch, build and test QEMU on Debian 12.
# Idempotent: safe to run again.  Needs root (or sudo) and apt.
set -euo pipefail

step() { echo "==> install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "run as root or install sudo"
    SUDO=sudo
fi

LIST=/etc/apt/sources.list.d/qemu-spp-fork.sources
want=$(cat <<'SRC'
# Added by qemu-spp-fork scripts/spp/install-deps.sh
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
)
stamp=/var/lib/apt/qemu-spp-fork.stamp
if [ ! -f "$LIST" ] || [ "$(cat "$LIST")" != "$want" ]; then
    step "enabling deb-src (trixie) and bookworm-backports in $LIST"
    echo "$want" | $SUDO tee "$LIST" >/dev/null
    $SUDO rm -f "$stamp"
fi

PKGS="build-essential dpkg-dev ninja-build pkg-config python3 python3-venv
      flex bison libglib2.0-dev libpixman-1-dev zlib1g-dev libslirp-dev
      libfdt-dev seabios ccache xz-utils bzip2 ca-certificates rsync patch
      gdb socat ipxe-qemu"
BPO_PKGS="meson python3-pycotap"
# For the libvirt test; without recommends, which would pull in
# Debian's own QEMU.
NOREC_PKGS="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
# The libraries of the features Debian's own qemu-system-x86 is built
# with (the Build-Depends of the pinned source's debian/control, whose
# comments build.sh turns into configure options), as Debian 12 names
# them.  libblkio-dev is not packaged in Debian 12: no --enable-blkio.
NOREC_PKGS="$NOREC_PKGS libcapstone-dev libaio-dev libjack-dev libpulse-dev
      libasound2-dev libpipewire-0.3-dev libbpf-dev libbrlapi-dev
      libcap-ng-dev libcurl4-gnutls-dev libfuse3-dev libgnutls28-dev
      libgtk-3-dev libvte-2.91-dev libiscsi-dev libncurses-dev
      libvirglrenderer-dev libepoxy-dev libdrm-dev libgbm-dev libnfs-dev
      libnuma-dev libcacard-dev librbd-dev libglusterfs-dev libsasl2-dev
      libsdl2-dev libseccomp-dev libspice-server-dev librdmacm-dev
      libibverbs-dev libibumad-dev liburing-dev libusb-1.0-0-dev
      libusbredirparser-dev libssh-dev libzstd-dev libvdeplug-dev nettle-dev
      libudev-dev libjpeg-dev libpng-dev libpmem-dev"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PKGS $BPO_PKGS $NOREC_PKGS" ]; then
    step "packages already installed"
    exit 0
fi

step "apt-get update"
$SUDO apt-get update -q || die "apt-get update failed"
step "installing build dependencies"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS ||
    die "apt-get install failed"
step "installing meson and python3-pycotap from bookworm-backports"
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q -t bookworm-backports $BPO_PKGS ||
    die "apt-get install -t bookworm-backports failed"
step "installing the libvirt daemon and client, and the libraries of Debian's QEMU features (no recommends)"
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends $NOREC_PKGS ||
    die "apt-get install (without recommends) failed"
echo "$PKGS $BPO_PKGS $NOREC_PKGS" | $SUDO tee "$stamp" >/dev/null
step "done"

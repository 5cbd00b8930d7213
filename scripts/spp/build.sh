#!/bin/bash
# Build the fork: fetch the base, assemble build/src, configure once,
# build qemu-system-x86_64 (plus any extra ninja targets given as
# arguments), install firmware and link build/qemu-system-x86_64.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$TOP/scripts/spp/fetch-base.sh"
"$TOP/scripts/spp/assemble.sh"

need ninja meson cc make
# Debian's ccache masquerades as cc/gcc from /usr/lib/ccache.
# Paths under the clone are hashed relative to it, so that another clone
# on the same machine (CI's fresh clone) reuses the cache.
if [ -d /usr/lib/ccache ] && [ -z "${SPP_NO_CCACHE:-}" ]; then
    export PATH=/usr/lib/ccache:$PATH
    export CCACHE_BASEDIR=$TOP CCACHE_NOHASHDIR=1
fi
# The features Debian builds its own qemu-system-x86 with, so that the
# fork can replace it (libvirt's usual domains: vhost-net, VNC, SPICE,
# audio...).  Debian keeps them as comments in debian/control, which its
# debian/extract-config-opts turns into configure options.  Left out:
# --enable-blkio (libblkio is not packaged in Debian 12) and Debian's
# --enable-modules (one binary, run from the build tree, is simpler to
# test; the same code is linked in).
DEBIAN_OPTS=$(sh "$BASE/debian/extract-config-opts" linux-amd64 \
                 "$BASE/debian/control" | grep -v -x -e --enable-blkio) ||
    die "cannot read the feature list from $BASE/debian/control"
[ -n "$DEBIAN_OPTS" ] || die "no feature list in $BASE/debian/control"
CONFIGURE_ARGS="--target-list=x86_64-softmmu --enable-kvm --enable-tcg
 --disable-docs --disable-download --disable-xen --disable-xkbcommon
 --disable-containers --disable-werror --disable-install-blobs
 --python=/usr/bin/python3 ${DEBIAN_OPTS//$'\n'/ }"
stamp=$OBJ/.spp-configure-args
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$CONFIGURE_ARGS" ] ||
   [ ! -f "$OBJ/build.ninja" ]; then
    step configure "configuring QEMU in $OBJ"
    rm -rf "$OBJ"
    mkdir -p "$OBJ"
    # shellcheck disable=SC2086
    if ! (cd "$OBJ" && "$SRC/configure" $CONFIGURE_ARGS) \
            >"$BUILD/configure.log" 2>&1; then
        tail -30 "$BUILD/configure.log" >&2
        rm -rf "$OBJ"
        die "configure failed (full log: $BUILD/configure.log)"
    fi
    echo "$CONFIGURE_ARGS" >"$stamp"
fi

step compile "ninja qemu-system-x86_64 $*"
jobs=${SPP_JOBS:-$(($(nproc) + 1))}
ninja -C "$OBJ" -j "$jobs" qemu-system-x86_64 "$@" ||
    die "ninja failed in $OBJ"

step firmware "option ROMs and SeaBIOS"
# configure only writes the ROMs' config.mak when it finds an i386 cross
# compiler; the x86_64 host toolchain builds these 16/32-bit ROMs fine.
rom_dir=$OBJ/pc-bios/optionrom
[ -f "$rom_dir/Makefile" ] || die "$rom_dir/Makefile missing (configure failed?)"
if [ ! -f "$rom_dir/config.mak" ]; then
    printf '%s\n' "TOPSRC_DIR=$SRC" "EXTRA_CFLAGS=" "CC=cc" "CCAS=cc" \
        "AR=ar" "AS=as" "LD=ld" "NM=nm" "OBJCOPY=objcopy" "RANLIB=ranlib" \
        "STRIP=strip" >"$rom_dir/config.mak"
fi
make -C "$rom_dir" >"$BUILD/optionrom.log" 2>&1 || {
    cat "$BUILD/optionrom.log" >&2
    die "building pc-bios/optionrom failed"
}
# A binary run from the build tree finds its data in qemu-bundle/.
datadir=$OBJ/qemu-bundle/usr/local/share/qemu
mkdir -p "$datadir"
for rom in kvmvapic.bin linuxboot_dma.bin multiboot_dma.bin linuxboot.bin \
           multiboot.bin pvh.bin; do
    [ -f "$rom_dir/$rom" ] ||
        die "option ROM $rom was not built (see $BUILD/optionrom.log)"
    ln -sfn "$rom_dir/$rom" "$datadir/$rom"
done
[ -f /usr/share/seabios/bios-256k.bin ] ||
    die "/usr/share/seabios/bios-256k.bin missing (install Debian's seabios package)"
for f in /usr/share/seabios/*.bin; do
    ln -sfn "$f" "$datadir/$(basename "$f")"
done
# Network boot ROMs of the default NICs, from Debian's ipxe-qemu.
for f in /usr/lib/ipxe/qemu/*.rom; do
    [ -e "$f" ] && ln -sfn "$f" "$datadir/$(basename "$f")"
done
ln -sfn qemu-build/qemu-system-x86_64 "$BUILD/qemu-system-x86_64"
echo "==> built $BUILD/qemu-system-x86_64"

#!/bin/bash
# Fetch the pinned Debian "qemu" source package and unpack it, with its
# Debian patches applied, into build/base.  Does nothing when build/base
# already holds the pinned version.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
read_pin

stamp=$BASE/.spp-base-pin
if [ -f "$stamp" ] && cmp -s "$stamp" "$TOP/qemu-base.pin"; then
    exit 0
fi

need apt-get dpkg-source sha256sum
step fetch "downloading Debian source package qemu=$QEMU_DEB_VERSION"
mkdir -p "$DL"
ver=${QEMU_DEB_VERSION#*:}
dsc=$DL/qemu_$ver.dsc
orig=$DL/qemu_${QEMU_UPSTREAM_VERSION}+ds.orig.tar.xz
if [ ! -f "$dsc" ] || [ ! -f "$orig" ]; then
    if ! (cd "$DL" && apt-get source --download-only -q \
            "qemu=$QEMU_DEB_VERSION") >"$DL/apt-source.log" 2>&1; then
        cat "$DL/apt-source.log" >&2
        echo >&2
        echo "Debian no longer offers qemu=$QEMU_DEB_VERSION (or apt has" >&2
        echo "no deb-src entry for trixie: run scripts/spp/install-deps.sh)." >&2
        echo "Available versions:" >&2
        apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: /  /p' >&2
        echo "To move the pin, edit qemu-base.pin: set QEMU_DEB_VERSION to" >&2
        echo "an offered 10.0.x version and QEMU_ORIG_SHA256 to the sha256" >&2
        echo "of its .orig.tar.xz ('apt-cache showsrc qemu'), then re-run." >&2
        die "cannot download qemu=$QEMU_DEB_VERSION"
    fi
fi
[ -f "$orig" ] || die "download did not produce $orig"

step verify "checking sha256 of $(basename "$orig")"
sum=$(sha256sum "$orig" | cut -d' ' -f1)
if [ "$sum" != "$QEMU_ORIG_SHA256" ]; then
    rm -f "$orig"
    die "sha256 mismatch for $orig: got $sum, pinned $QEMU_ORIG_SHA256 (file removed)"
fi

step unpack "unpacking $(basename "$dsc") with its Debian patches"
rm -rf "$BASE" "$BASE.tmp"
if ! dpkg-source --no-check -x "$dsc" "$BASE.tmp" >"$DL/unpack.log" 2>&1; then
    cat "$DL/unpack.log" >&2
    rm -rf "$BASE.tmp"
    die "dpkg-source -x $dsc failed"
fi
grep -qx "$QEMU_UPSTREAM_VERSION" "$BASE.tmp/VERSION" ||
    die "unpacked VERSION is $(cat "$BASE.tmp/VERSION"), expected $QEMU_UPSTREAM_VERSION"
cp "$TOP/qemu-base.pin" "$BASE.tmp/.spp-base-pin"
mv "$BASE.tmp" "$BASE"

# Shared helpers for the SPP fork's build scripts.  Sourced, not run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${SPP_BUILD_DIR:-$TOP/build}
BASE=$BUILD/base            # pristine upstream tree (Debian patches applied)
SRC=$BUILD/src              # assembled tree: base + our files + patches/
OBJ=$BUILD/qemu-build       # QEMU's own build directory
DL=$BUILD/dl                # downloaded source package
SPP_STEP=${SPP_STEP:-setup}

# Directories of the repository whose files are laid over the base tree
# at the same path.
OVERLAY_DIRS="accel target system monitor qapi hw include tests docs
              linux-headers contrib migration"

step() { SPP_STEP=$1; shift; echo "==> [$SPP_STEP] $*"; }
die() { echo "error: [$SPP_STEP] $*" >&2; exit 1; }
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 ||
            die "missing tool '$t' (run scripts/spp/install-deps.sh)"
    done
}

read_pin() {
    local pin=$TOP/qemu-base.pin
    [ -f "$pin" ] || die "missing $pin"
    QEMU_DEB_VERSION=$(sed -n 's/^QEMU_DEB_VERSION=//p' "$pin")
    QEMU_ORIG_SHA256=$(sed -n 's/^QEMU_ORIG_SHA256=//p' "$pin")
    [ -n "$QEMU_DEB_VERSION" ] && [ -n "$QEMU_ORIG_SHA256" ] ||
        die "$pin must set QEMU_DEB_VERSION and QEMU_ORIG_SHA256"
    # Upstream version without epoch and Debian revision: 10.0.13
    QEMU_UPSTREAM_VERSION=${QEMU_DEB_VERSION#*:}
    QEMU_UPSTREAM_VERSION=${QEMU_UPSTREAM_VERSION%%+*}
    QEMU_UPSTREAM_VERSION=${QEMU_UPSTREAM_VERSION%%-*}
}

# List the repository's own files that belong in the QEMU tree, relative
# to $TOP.  Uses git when available so stray local files are not copied.
overlay_files() {
    local d
    if git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        git -C "$TOP" ls-files --cached --others --exclude-standard \
            -- $OVERLAY_DIRS | while read -r f; do
            [ -f "$TOP/$f" ] && echo "$f"
        done
    else
        for d in $OVERLAY_DIRS; do
            [ -d "$TOP/$d" ] && (cd "$TOP" && find "$d" -type f)
        done
    fi | LC_ALL=C sort
}

series_patches() {
    [ -f "$TOP/patches/series" ] || return 0
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TOP/patches/series"
}

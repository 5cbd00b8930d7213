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

# Debian's ccache masquerades as cc/gcc from /usr/lib/ccache.
# Paths under the clone are hashed relative to it, so that another clone
# on the same machine (CI's fresh clone) reuses the cache.
use_ccache() {
    if [ -d /usr/lib/ccache ] && [ -z "${SPP_NO_CCACHE:-}" ]; then
        export PATH=/usr/lib/ccache:$PATH
        export CCACHE_BASEDIR=$TOP CCACHE_NOHASHDIR=1
    fi
}

# configure_qemu SRC OBJ LOG: configure the tree SRC in OBJ, unless OBJ
# was configured with the same arguments already.
#
# The features Debian builds its own qemu-system-x86 with, so that the
# fork can replace it (libvirt's usual domains: vhost-net, VNC, SPICE,
# audio...).  Debian keeps them as comments in debian/control, which its
# debian/extract-config-opts turns into configure options.  Left out:
# --enable-blkio (libblkio is not packaged in Debian 12) and Debian's
# --enable-modules (one binary, run from the build tree, is simpler to
# test; the same code is linked in).
configure_qemu() {
    local src=$1 obj=$2 log=$3 debian_opts args stamp
    debian_opts=$(sh "$BASE/debian/extract-config-opts" linux-amd64 \
                     "$BASE/debian/control" | grep -v -x -e --enable-blkio) ||
        die "cannot read the feature list from $BASE/debian/control"
    [ -n "$debian_opts" ] || die "no feature list in $BASE/debian/control"
    args="--target-list=x86_64-softmmu --enable-kvm --enable-tcg
 --disable-docs --disable-download --disable-xen --disable-xkbcommon
 --disable-containers --disable-werror --disable-install-blobs
 --python=/usr/bin/python3 ${debian_opts//$'\n'/ }"
    stamp=$obj/.spp-configure-args
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$args" ] &&
       [ -f "$obj/build.ninja" ]; then
        return 0
    fi
    step configure "configuring QEMU in $obj"
    rm -rf "$obj"
    mkdir -p "$obj"
    # shellcheck disable=SC2086
    if ! (cd "$obj" && "$src/configure" $args) >"$log" 2>&1; then
        tail -30 "$log" >&2
        rm -rf "$obj"
        die "configure failed (full log: $log)"
    fi
    echo "$args" >"$stamp"
}

# stage_tree DIR [N]: DIR becomes the base with our files laid over it
# and the first N patches of the series applied (all without N).  DIR is
# made of hard links to the base; patch(1) replaces a file it changes
# instead of writing through the link.
stage_tree() {
    local dir=$1 n=${2:-} i=0 p out
    rm -rf "$dir"
    cp -al "$BASE" "$dir"
    rm -f "$dir/.spp-base-pin"
    overlay_files | while read -r f; do
        mkdir -p "$dir/$(dirname "$f")"
        # Never write through the hard link into the pristine base.  Keep
        # the file's time, so update-patches can tell an edit made in
        # build/src (newer) from one made in the repository.
        cp -p --remove-destination "$TOP/$f" "$dir/$f" ||
            die "cannot copy $f"
    done
    while read -r p; do
        [ -n "$n" ] && [ "$i" -ge "$n" ] && break
        i=$((i + 1))
        [ -f "$TOP/patches/$p" ] ||
            die "patches/series names missing file patches/$p"
        if ! out=$(patch -d "$dir" -p1 --forward --batch -F0 \
                   --no-backup-if-mismatch -i "$TOP/patches/$p" 2>&1); then
            echo "$out" >&2
            rm -rf "$dir"
            die "patches/$p does not apply to the base"
        fi
        if grep -Eq '\(offset -?[0-9]+ lines?\)|with fuzz' <<<"$out"; then
            echo "$out" >&2
            rm -rf "$dir"
            die "patches/$p applies only with offset or fuzz"
        fi
    done < <(series_patches)
}

# install_firmware SRC OBJ: the option ROMs built from SRC in OBJ, and
# Debian's SeaBIOS and iPXE ROMs, where a binary run from OBJ finds them.
install_firmware() {
    local src=$1 obj=$2 rom_dir datadir rom f log
    # configure only writes the ROMs' config.mak when it finds an i386
    # cross compiler; the x86_64 host toolchain builds these 16/32-bit
    # ROMs fine.
    rom_dir=$obj/pc-bios/optionrom
    log=$obj/optionrom.log
    [ -f "$rom_dir/Makefile" ] ||
        die "$rom_dir/Makefile missing (configure failed?)"
    if [ ! -f "$rom_dir/config.mak" ]; then
        printf '%s\n' "TOPSRC_DIR=$src" "EXTRA_CFLAGS=" "CC=cc" "CCAS=cc" \
            "AR=ar" "AS=as" "LD=ld" "NM=nm" "OBJCOPY=objcopy" \
            "RANLIB=ranlib" "STRIP=strip" >"$rom_dir/config.mak"
    fi
    make -C "$rom_dir" >"$log" 2>&1 || {
        cat "$log" >&2
        die "building pc-bios/optionrom failed"
    }
    # A binary run from the build tree finds its data in qemu-bundle/.
    datadir=$obj/qemu-bundle/usr/local/share/qemu
    mkdir -p "$datadir"
    for rom in kvmvapic.bin linuxboot_dma.bin multiboot_dma.bin \
               linuxboot.bin multiboot.bin pvh.bin; do
        [ -f "$rom_dir/$rom" ] ||
            die "option ROM $rom was not built (see $log)"
        ln -sfn "$rom_dir/$rom" "$datadir/$rom"
    done
    [ -f /usr/share/seabios/bios-256k.bin ] ||
        die "/usr/share/seabios/bios-256k.bin missing (install Debian's seabios package)"
    for f in /usr/share/seabios/*.bin; do
        ln -sfn "$f" "$datadir/$(basename "$f")"
    done
    # Network boot ROMs of the default NICs, from Debian's ipxe-qemu.
    for f in /usr/lib/ipxe/qemu/*.rom; do
        if [ -e "$f" ]; then
            ln -sfn "$f" "$datadir/$(basename "$f")"
        fi
    done
}

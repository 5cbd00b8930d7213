#!/bin/bash
# Build the fork: fetch the base, assemble build/src, configure once,
# build qemu-system-x86_64 (plus any extra ninja targets given as
# arguments), install firmware and link build/qemu-system-x86_64.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$TOP/scripts/spp/fetch-base.sh"
"$TOP/scripts/spp/assemble.sh"

need ninja meson cc make
use_ccache
configure_qemu "$SRC" "$OBJ" "$BUILD/configure.log"

step compile "ninja qemu-system-x86_64 $*"
jobs=${SPP_JOBS:-$(($(nproc) + 1))}
ninja -C "$OBJ" -j "$jobs" qemu-system-x86_64 "$@" ||
    die "ninja failed in $OBJ"

step firmware "option ROMs and SeaBIOS"
install_firmware "$SRC" "$OBJ"
ln -sfn qemu-build/qemu-system-x86_64 "$BUILD/qemu-system-x86_64"
echo "==> built $BUILD/qemu-system-x86_64"

#!/bin/bash
# Run the SPP demonstration against build/qemu-system-x86_64: the
# real-kernel demo, or with "tiny" the demo with the tiny test guest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -x "$BUILD/qemu-system-x86_64" ] || die "build first: make"
if [ "${1:-}" != tiny ]; then
    step demo "a real Linux kernel, watched by symbol"
    exec timeout 300 python3 "$TOP/scripts/spp/demo-linux.py" \
        "$BUILD/qemu-system-x86_64" "$SRC/python"
fi
step demo "building the demo guest from tests/qtest/spp-guest.S"
python3 "$TOP/tests/qtest/spp-guest-build.py" cc \
    "$TOP/tests/qtest/spp-guest.S" "$BUILD/spp-demo-guest.bin" \
    -DSPP_AUTORUN=5
exec python3 "$TOP/scripts/spp/demo.py" "$BUILD/qemu-system-x86_64" \
    "$BUILD/spp-demo-guest.bin" "$SRC/python"

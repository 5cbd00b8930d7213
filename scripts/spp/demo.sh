#!/bin/bash
# Run the SPP demonstration against build/qemu-system-x86_64.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -x "$BUILD/qemu-system-x86_64" ] || die "build first: make"
step demo "building the demo guest from tests/qtest/spp-guest.S"
python3 "$TOP/tests/qtest/spp-guest-build.py" cc \
    "$TOP/tests/qtest/spp-guest.S" "$BUILD/spp-demo-guest.bin" \
    -DSPP_AUTORUN=5
exec python3 "$TOP/scripts/spp/demo.py" "$BUILD/qemu-system-x86_64" \
    "$BUILD/spp-demo-guest.bin" "$SRC/python"

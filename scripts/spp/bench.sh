#!/bin/bash
# Run the SPP benchmarks and write bench/results.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
read_pin
[ -x "$BUILD/qemu-system-x86_64" ] || die "build first: make"
step bench "protection changes"
python3 "$TOP/scripts/spp/bench.py" "$BUILD/qemu-system-x86_64" \
    "$SRC/python" "QEMU $QEMU_UPSTREAM_VERSION (Debian $QEMU_DEB_VERSION)" \
    "$TOP/bench/results.md"

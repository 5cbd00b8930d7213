#!/bin/bash
# make bench: run the SPP benchmarks, write bench/results.md and
# bench/results.png.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
read_pin
[ -x "$BUILD/qemu-system-x86_64" ] || die "build first: make"
if ! /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
    step bench "installing python3-matplotlib for the chart"
    ${SUDO:-} apt-get install -y -q python3-matplotlib >/dev/null ||
        echo "bench: no matplotlib, the chart is skipped" >&2
fi
step bench "building the guest and the KVM floor program"
python3 "$TOP/tests/qtest/spp-guest-build.py" cc \
    "$TOP/tests/qtest/spp-guest.S" "$BUILD/spp-bench-guest.bin"
cc -O2 -Wall -o "$BUILD/kvm-floor" "$TOP/scripts/spp/kvm-floor.c" ||
    die "cannot build scripts/spp/kvm-floor.c"
step bench "running (a few minutes)"
/usr/bin/python3 "$TOP/scripts/spp/bench.py" "$BUILD/qemu-system-x86_64" \
    "$BUILD/spp-bench-guest.bin" "$SRC/python" \
    "QEMU $QEMU_UPSTREAM_VERSION (Debian $QEMU_DEB_VERSION)" \
    "$TOP/bench" "$BUILD/kvm-floor"

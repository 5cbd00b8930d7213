#!/bin/bash
# Build and test every prefix of the patch series (bisectability).
#
# For each N from 1 to the length of patches/series, the tree is the base
# with our files laid over it and the first N patches applied (our files
# are always there; a patch's meson.build hunk decides what is built).
# The prefixes are built one after the other in build/series-build, from
# build/series-src, which is updated by content so that each step only
# rebuilds what the next patch touched (and ccache remembers the rest
# from the last run).  At each prefix:
#  - qemu-system-x86_64 builds;
#  - a few upstream qtests pass that cover what the series touches: QMP
#    (qmp-test), every HMP "info" command (test-hmp), a firmware boot
#    under TCG (boot-order-test);
#  - the series' own tests that exist at that prefix pass (unit tests;
#    spp-test with its TCG and QMP cases; the KVM cases run in the lab
#    with "make check").
#
# Usage: check-series.sh [FIRST [LAST]]   (default: every prefix)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need ninja meson cc make patch rsync

"$TOP/scripts/spp/fetch-base.sh"
use_ccache

SERIES_SRC=$BUILD/series-src
SERIES_OBJ=$BUILD/series-build
STAGE=$BUILD/series-stage
trap 'rm -rf "$STAGE"' EXIT

total=$(series_patches | wc -l)
first=${1:-1}
last=${2:-$total}
[ "$first" -ge 1 ] && [ "$last" -le "$total" ] && [ "$first" -le "$last" ] ||
    die "prefixes $first..$last: the series has $total patches"

UPSTREAM_QTESTS="qmp-test test-hmp boot-order-test"
SPP_QTESTS="spp-test"
SPP_UNIT_TESTS="test-kvm-spp test-kvm-spp-insn test-spp-diff"
jobs=${SPP_JOBS:-$(($(nproc) + 1))}
fail=0

for n in $(seq "$first" "$last"); do
    p=$(series_patches | sed -n "${n}p")
    SPP_STEP=series
    step series "prefix $n/$total: up to $p"
    start=$(date +%s)
    stage_tree "$STAGE" "$n"
    mkdir -p "$SERIES_SRC"
    rsync -rlpgoD --checksum --delete "$STAGE/" "$SERIES_SRC/"
    configure_qemu "$SERIES_SRC" "$SERIES_OBJ" "$BUILD/series-configure.log"
    log=$BUILD/series-$n.log
    # Regenerate build.ninja first, so the targets of this prefix exist.
    if ! ninja -C "$SERIES_OBJ" build.ninja >"$log" 2>&1; then
        tail -30 "$log"
        echo "FAIL: prefix $n ($p): meson cannot set up the build (see $log)"
        fail=1
        continue
    fi
    known=$(ninja -C "$SERIES_OBJ" -t targets all 2>/dev/null |
            sed -n 's|^\(tests/[a-z]*/[a-z0-9-]*\): .*|\1|p' | sort -u)
    targets="qemu-system-x86_64"
    names=""
    for t in $UPSTREAM_QTESTS $SPP_QTESTS; do
        if grep -qx "tests/qtest/$t" <<<"$known"; then
            targets="$targets tests/qtest/$t"
            names="$names qtest-x86_64/$t"
        fi
    done
    for t in $SPP_UNIT_TESTS; do
        if grep -qx "tests/unit/$t" <<<"$known"; then
            targets="$targets tests/unit/$t"
            names="$names $t"
        fi
    done
    # shellcheck disable=SC2086
    if ! ninja -C "$SERIES_OBJ" -j "$jobs" $targets >>"$log" 2>&1; then
        grep -E 'error|FAILED' "$log" | head -30
        echo "FAIL: prefix $n ($p) does not build (see $log)"
        fail=1
        continue
    fi
    install_firmware "$SERIES_SRC" "$SERIES_OBJ"
    # shellcheck disable=SC2086
    if ! (cd "$SERIES_OBJ" && SPP_TEST_KVM=no "$SERIES_OBJ/pyvenv/bin/meson" \
              test --no-rebuild --print-errorlogs $names) >>"$log" 2>&1; then
        grep -E '^[ 0-9]+/[0-9]+ |^Ok:|^Fail:' "$log" | tail -20
        echo "FAIL: prefix $n ($p): tests failed (see $log)"
        fail=1
        continue
    fi
    echo "ok: prefix $n builds; passed:$names ($(($(date +%s) - start)) s)"
done

[ "$fail" = 0 ] || die "a prefix of the series does not build or pass its tests"
echo "==> check-series: prefixes $first..$last build and pass their tests"

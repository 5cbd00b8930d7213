#!/bin/bash
# make bench-compare BASELINE=REV: build the fork as it was at REV (in
# build/baseline/, ccache reusing this tree's objects) and measure
# sections 1 and 2 of make bench, and the violation-to-event latency,
# for that build and this tree side by side in one run; writes
# bench/compare.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
read_pin
rev=${1:-}
[ -n "$rev" ] || die "usage: make bench-compare BASELINE=<git revision>"
[ -x "$BUILD/qemu-system-x86_64" ] || die "build first: make"
sha=$(git -C "$TOP" rev-parse --verify -q "$rev^{commit}") ||
    die "'$rev' is not a revision of this repository"
tree=$BUILD/baseline/${sha:0:12}
if [ ! -x "$tree/build/qemu-system-x86_64" ]; then
    step bench "building the baseline ${sha:0:12} ($rev) in $tree"
    git -C "$TOP" worktree remove --force "$tree" 2>/dev/null || true
    rm -rf "$tree"
    # a worktree: the build takes the files git lists there
    git -C "$TOP" worktree add --force --detach "$tree" "$sha" >/dev/null ||
        die "cannot check out $rev in $tree"
    mkdir -p "$tree/build"
    # the same source package, without fetching it again
    cp -al "$DL" "$tree/build/dl" 2>/dev/null || cp -a "$DL" "$tree/build/dl"
    (cd "$tree" && env -u SPP_BUILD_DIR make build) ||
        die "the baseline ${sha:0:12} does not build (see above)"
fi
step bench "building the guest"
python3 "$TOP/tests/qtest/spp-guest-build.py" cc \
    "$TOP/tests/qtest/spp-guest.S" "$BUILD/spp-bench-guest.bin"
step bench "running: baseline ${sha:0:12} and this tree (several minutes)"
/usr/bin/python3 "$TOP/scripts/spp/bench.py" --compare \
    "$BUILD/qemu-system-x86_64" "$tree/build/qemu-system-x86_64" \
    "$(git -C "$TOP" log -1 --format='%h %s' "$sha" | cut -c1-100)" \
    "$BUILD/spp-bench-guest.bin" "$SRC/python" "$TOP/bench/compare.md"

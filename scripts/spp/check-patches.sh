#!/bin/bash
# Check the fork's patch series and files:
#  1. every patch applies to the pristine base with no offset or fuzz;
#  2. regenerating the series from the result gives byte-identical
#     patches (update-patches is reproducible and patches/ is current);
#  3. QEMU's scripts/checkpatch.pl reports no error on the patches and on
#     our own C sources and headers;
#  4. every prefix of the series builds and passes the tests that exist
#     at that point (check-series.sh; SPP_SKIP_SERIES=1 skips it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need patch perl python3

"$TOP/scripts/spp/fetch-base.sh"
STAGE=$BUILD/check-stage
trap 'rm -rf "$STAGE" "$STAGE.regen"' EXIT
rm -rf "$STAGE.regen"
# Our files over the base, no patch yet: each is applied and reported
# below, and a failure does not stop the others.
stage_tree "$STAGE" 0

fail=0
step check-patches "applying patches/series to the pristine base"
while read -r p; do
    out=$(patch -d "$STAGE" -p1 --forward --batch -F0 \
          --no-backup-if-mismatch -i "$TOP/patches/$p" 2>&1) || {
        echo "$out"; echo "FAIL: $p does not apply"; fail=1; continue; }
    if grep -Eq '\(offset -?[0-9]+ lines?\)|with fuzz' <<<"$out"; then
        echo "$out"; echo "FAIL: $p applies only with offset or fuzz"; fail=1
    else
        echo "ok: $p"
    fi
done < <(series_patches)

step check-patches "regenerating the series (must be byte-identical)"
python3 "$TOP/scripts/spp/update-patches.py" --base "$BASE" --tree "$STAGE" \
    --out "$STAGE.regen" >/dev/null
if diff -r -u "$TOP/patches" "$STAGE.regen"; then
    echo "ok: patches/ is what update-patches produces"
else
    echo "FAIL: patches/ differs from a regenerated series"; fail=1
fi

step check-patches "the size of the hooks in upstream files"
# Lines added or removed in the diffs (not the messages), all patches.
changed=$(while read -r p; do cat "$TOP/patches/$p"; done < <(series_patches) |
          awk '/^diff --git/ { d = 1 } /^-- $/ { d = 0 }
               d && /^[+-]/ && !/^(\+\+\+|---) / { n++ } END { print n + 0 }')
if [ "$changed" -lt 300 ]; then
    echo "ok: $changed changed lines in upstream files (the limit is 300)"
else
    echo "FAIL: $changed changed lines in upstream files; keep them under" \
         "300 and move logic into our own files"
    fail=1
fi

step check-patches "scripts/checkpatch.pl"
cp_pl="$BASE/scripts/checkpatch.pl"
check_one() {
    local out
    out=$(cd "$TOP" && perl "$cp_pl" --no-tree --terse "$@" 2>&1) || true
    if grep -q 'ERROR' <<<"$out"; then
        echo "$out"; echo "FAIL: checkpatch: $*"; fail=1
    else
        grep -q 'WARNING' <<<"$out" && echo "$out"
        echo "ok: checkpatch $*"
    fi
}
while read -r p; do
    check_one "patches/$p"
done < <(series_patches)
while read -r f; do
    case "$f" in
    *.c|*.h) check_one -f "$f" ;;
    esac
done < <(overlay_files)

if [ -n "${SPP_SKIP_SERIES:-}" ]; then
    echo "note: SPP_SKIP_SERIES is set: the prefixes of the series are not built"
elif [ "$fail" = 0 ]; then
    step check-patches "every prefix of the series builds and passes its tests"
    "$TOP/scripts/spp/check-series.sh" || fail=1
fi

if [ "$fail" != 0 ]; then
    die "the patch series or our files need attention (see above)"
fi
echo "==> check-patches: all good"

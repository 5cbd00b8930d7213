#!/bin/bash
# Assemble build/src: the pristine base, our files laid over it at their
# QEMU paths, and the patch series applied.  The tree is first built in
# build/stage (hard links to the base, so it is cheap) and then synced
# into build/src by content, so files whose content did not change keep
# their timestamps and the next ninja run stays incremental.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need rsync patch

STAGE=$BUILD/stage
[ -f "$BASE/.spp-base-pin" ] || die "no base tree in $BASE (run scripts/spp/fetch-base.sh)"

# Edits made in build/src since the last assembly would be overwritten:
# they must first become patches (or be discarded on purpose).
SPP_STEP=assemble
stamp=$BUILD/.assembled
if [ -f "$stamp" ] && [ -d "$SRC" ] && [ -z "${SPP_DISCARD_SRC_EDITS:-}" ]; then
    edited=$(find "$SRC" -type f -newer "$stamp" ! -path '*/__pycache__/*' \
             ! -name '*.pyc' | sed "s|^$SRC/||" | head -20)
    if [ -n "$edited" ]; then
        echo "$edited" | sed 's/^/  build\/src\//' >&2
        die "these files were edited in build/src: run 'make update-patches' to keep the edits, or set SPP_DISCARD_SRC_EDITS=1 to drop them"
    fi
fi

step assemble "laying our files over the base"
rm -rf "$STAGE"
cp -al "$BASE" "$STAGE"
rm -f "$STAGE/.spp-base-pin"
overlay_files | while read -r f; do
    mkdir -p "$STAGE/$(dirname "$f")"
    # Never write through the hard link into the pristine base.  Keep
    # the file's time, so update-patches can tell an edit made in
    # build/src (newer) from one made in the repository.
    cp -p --remove-destination "$TOP/$f" "$STAGE/$f" ||
        die "cannot copy $f"
done

step patch "applying patches/series"
while read -r p; do
    [ -f "$TOP/patches/$p" ] || die "patches/series names missing file patches/$p"
    if ! out=$(patch -d "$STAGE" -p1 --forward --batch -F0 \
               --no-backup-if-mismatch -i "$TOP/patches/$p" 2>&1); then
        echo "$out" >&2
        rm -rf "$STAGE"
        die "patches/$p does not apply to the base"
    fi
done < <(series_patches)

step sync "updating $SRC"
mkdir -p "$SRC"
# Content decides what is copied; unchanged files keep their time (no -t),
# changed ones get a new one, which is what ninja needs to see.
rsync -rlpgoD --checksum --delete "$STAGE/" "$SRC/"
rm -rf "$STAGE"
touch "$stamp"

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

step assemble "laying our files over the base, applying patches/series"
stage_tree "$STAGE"

step sync "updating $SRC"
mkdir -p "$SRC"
# Content decides what is copied; unchanged files keep their time (no -t),
# changed ones get a new one, which is what ninja needs to see.
rsync -rlpgoD --checksum --delete "$STAGE/" "$SRC/"
rm -rf "$STAGE"
touch "$stamp"

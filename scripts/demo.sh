#!/usr/bin/env bash
# haypack's main job on the embedded default store: pack the shipped sample tree into a local
# archive, read records back by key, check everything, change it, and show what it did.
# Usage: scripts/demo.sh [ARCHIVE_DIR]   (default: a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p haypack
hp="$PWD/target/release/haypack"
work=$(mktemp -d)
archive=${1:-$work/sample.haypack}

run() {
    printf '\n$ %s\n' "$*"
    "$@"
}

run "$hp" pack testdata/sample "$archive"
run "$hp" info "$archive"
run "$hp" ls --long "$archive" products/00/ | head -n 5
run "$hp" get "$archive" products/00/00007.json
printf '\n$ haypack get ... | cmp - testdata/sample/products/00/00007.json\n'
"$hp" get "$archive" products/00/00007.json | cmp - testdata/sample/products/00/00007.json && echo "identical"
run "$hp" get "$archive" "notes/note 03.txt"
run "$hp" verify "$archive"
run "$hp" extract "$archive" "$work/restored"
printf '\n$ diff -r testdata/sample %s\n' "$work/restored"
diff -r testdata/sample "$work/restored" && echo "no differences"
if command -v zstd >/dev/null; then
    printf '\n$ zstd -dc %s/packs/*.hpk.zst | wc -c   # a pack is a plain zstd stream\n' "$archive"
    zstd -dc "$archive"/packs/*.hpk.zst | wc -c
fi

# Changing it: delete a prefix, reclaim the space, and collect the old pack.
run "$hp" rm "$archive" --prefix products/00/
run "$hp" get "$archive" products/00/00007.json || true
run "$hp" compact --min-garbage 0.05 --gc 0s "$archive"
run "$hp" verify "$archive"
printf '\nThe archive is in %s\n' "$archive"

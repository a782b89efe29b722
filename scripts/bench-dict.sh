#!/usr/bin/env bash
# Stored bytes with and without a trained zstd dictionary, next to a solid `tar | zstd -3`, on
# text and JSON: the generated corpus without its binary files, and a real tree of source code.
# Prints a Markdown report on stdout.
# Usage: scripts/bench-dict.sh [FILES] [TREE]   (default 100000 files; the cargo registry sources)
set -euo pipefail
cd "$(dirname "$0")/.."

files=${1:-100000}
tree=${2:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n 1)}
command -v zstd >/dev/null || { echo "bench-dict needs zstd" >&2; exit 1; }
cargo build --release --quiet -p haypack
hp=$PWD/target/release/haypack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "bench-dict: writing $files files" >&2
python3 scripts/gen-corpus.py "$files" "$work/corpus"
find "$work/corpus" -name '*.bin' -delete

# row NAME DIR: one Markdown row of bytes and seconds for the three ways to store DIR.
row() {
    local name=$1 dir=$2 t0 t1 t2 t3
    local n raw
    n=$(find "$dir" -type f | wc -l)
    raw=$(find "$dir" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    tar -cf - -C "$dir" . | cat >/dev/null   # warm the page cache
    rm -rf "$work/plain" "$work/dict" "$work/solid.tar.zst"
    t0=$(date +%s.%N)
    "$hp" -q pack "$dir" "$work/plain"
    t1=$(date +%s.%N)
    "$hp" -q pack --dict "$dir" "$work/dict"
    t2=$(date +%s.%N)
    tar -cf - -C "$dir" . | zstd -3 -T0 -q -o "$work/solid.tar.zst"
    t3=$(date +%s.%N)
    # An archive's bytes: its packs, index and manifest (which holds the dictionary).
    local plain dict solid
    plain=$(du -sb --apparent-size "$work/plain" | cut -f1)
    dict=$(du -sb --apparent-size "$work/dict" | cut -f1)
    solid=$(stat -c %s "$work/solid.tar.zst")
    python3 - "$name" "$n" "$raw" "$plain" "$dict" "$solid" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
name, n, raw, plain, dict_, solid = sys.argv[1], *map(int, sys.argv[2:7])
t0, t1, t2, t3 = map(float, sys.argv[7:11])
mib = lambda b: f"{b / 1048576:.1f}"
print(f"| {name} | {n:,} | {mib(raw)} | {mib(solid)} ({t3 - t2:.2f} s) | {mib(plain)} ({t1 - t0:.2f} s) | "
      f"**{plain / solid:.2f}×** | {mib(dict_)} ({t2 - t1:.2f} s) | **{dict_ / solid:.2f}×** |")
PY
}

echo "| corpus | files | raw MiB | tar \| zstd -3 MiB (s) | haypack MiB (s) | vs solid | haypack --dict MiB (s) | vs solid |"
echo "|---|---|---|---|---|---|---|---|"
row "gen-corpus $files, text + JSON" "$work/corpus"
row "$(basename "$(dirname "$tree")")/$(basename "$tree") (source code)" "$tree"

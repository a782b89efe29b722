#!/usr/bin/env bash
# Packs a real tree with haypack and with `tar -cf - | zstd -3 -T0` in the same run, then times
# 10,000 random gets through the library. Prints a Markdown report on stdout.
# Usage: scripts/bench-pack.sh [TREE] [RUNS]   (default: the cargo registry sources, 3 runs)
set -euo pipefail
cd "$(dirname "$0")/.."

tree=${1:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n 1)}
runs=${2:-3}
command -v zstd >/dev/null || { echo "bench-pack needs zstd" >&2; exit 1; }
cargo build --release --quiet -p haypack -p haypack-read --examples --bins
hp="$PWD/target/release/haypack"
gets="$PWD/target/release/examples/random_gets"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

files=$(find "$tree" -type f | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
cat "$(find "$tree" -type f | head -n 1)" >/dev/null
tar -cf - "$tree" 2>/dev/null | cat >/dev/null   # warm the page cache

# measure NAME CMD...: wall seconds and peak RSS (KiB) of one run, appended to $work/NAME.
measure() {
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>&1
    cat "$work/time" >> "$work/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for _ in $(seq "$runs"); do
    rm -rf "$work/archive" "$work/tree.tar.zst"
    measure haypack "$hp" -q pack "$tree" "$work/archive"
    measure tarzstd sh -c "tar -cf - '$tree' 2>/dev/null | zstd -3 -T0 -q -o '$work/tree.tar.zst'"
done

hp_s=$(cut -d' ' -f1 "$work/haypack" | median)
hp_rss=$(cut -d' ' -f2 "$work/haypack" | median)
tz_s=$(cut -d' ' -f1 "$work/tarzstd" | median)
tz_rss=$(cut -d' ' -f2 "$work/tarzstd" | median)
hp_bytes=$(du -sb "$work/archive/packs" | cut -f1)
idx_bytes=$(du -sb "$work/archive/index" | cut -f1)
man_bytes=$(stat -c %s "$work/archive/manifest.json")
tz_bytes=$(stat -c %s "$work/tree.tar.zst")
records=$("$hp" info --json "$work/archive" | awk -F'[:,]' '/"records"/ {gsub(/ /,"",$2); print $2}')

awk -v f="$files" -v b="$bytes" -v r="$records" -v hs="$hp_s" -v hr="$hp_rss" -v ts="$tz_s" -v tr="$tz_rss" \
    -v hb="$hp_bytes" -v tb="$tz_bytes" -v ib="$idx_bytes" -v mb="$man_bytes" -v tree="$tree" -v runs="$runs" '
BEGIN {
    printf "Tree: `%s`: %d files, %.1f MiB (%d records packed; the rest are symlinks/special files). Median of %d runs, page cache warm.\n\n", tree, f, b/1048576, r, runs
    print "| tool | wall s | files/s | MiB/s | peak RSS MiB | output MiB | ratio (raw/out) |"
    print "|---|---|---|---|---|---|---|"
    printf "| haypack pack (zstd -3) | %.2f | %.0f | %.1f | %.1f | %.2f | %.2f |\n", hs, r/hs, b/1048576/hs, hr/1024, (hb+ib+mb)/1048576, b/(hb+ib+mb)
    printf "| tar -cf - \\| zstd -3 -T0 | %.2f | %.0f | %.1f | %.1f | %.2f | %.2f |\n", ts, f/ts, b/1048576/ts, tr/1024, tb/1048576, b/tb
    printf "\nhaypack / tar+zstd: wall time %.2fx, output size %.2fx. Archive index: %d bytes = %.2f bytes per record (keys included); manifest (root) %d bytes.\n", hs/ts, (hb+ib+mb)/tb, ib, ib/r, mb
}'
echo
"$gets" "$work/archive" 10000 | sed 's/^/Library: /'

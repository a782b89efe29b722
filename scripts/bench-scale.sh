#!/usr/bin/env bash
# The archive index at scale: archives of generated tiny records (scripts/gen-tar.py --tiny,
# streamed through `haypack pack -`, nothing on disk but the archive), then per archive:
# manifest bytes, bytes and requests of a cold get, warm get p50/p99, index bytes per record,
# list rate and first key, pack rate and peak RSS, and a fresh process's `haypack get` against
# `haypack --version` (medians of RUNS).
#
#   scripts/bench-scale.sh [COUNT...]       (default: 10000 1000000 10000000)
#
# Archives are kept in $SCALE_DIR (default ~/.cache/haypack/scale) and reused; results go to
# $SCALE_DIR/results-COUNT.txt as `name value` lines. At 10 M records it also adds and removes
# 1,000 keys (`lookups --change 1000`) on a copy of the archive's manifest generation. Needs the
# release binary and example: cargo build --release -p haypack --bin haypack, then
# cargo build --release -p haypack-read --example lookups.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${SCALE_DIR:-$HOME/.cache/haypack/scale}"
runs="${RUNS:-200}"
mkdir -p "$dir"
hp=target/release/haypack
lookups=target/release/examples/lookups
[ $# -gt 0 ] || set -- 10000 1000000 10000000

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

for count in "$@"; do
    archive="$dir/tiny-$count"
    out="$dir/results-$count.txt"
    : >"$out"
    if [ ! -f "$archive/manifest.json" ]; then
        rm -rf "$archive"
        echo "packing $count records" >&2
        start=$(date +%s.%N)
        python3 scripts/gen-tar.py "$count" --tiny |
            /usr/bin/time -f "%M" -o "$dir/rss-$count" "$hp" -q pack - "$archive"
        end=$(date +%s.%N)
        echo "pack_s $(echo "$end - $start" | bc)" >"$dir/pack-$count"
        echo "pack_peak_rss_kib $(cat "$dir/rss-$count")" >>"$dir/pack-$count"
    fi
    cat "$dir/pack-$count" >>"$out"
    echo "archive_bytes $(du -sb "$archive" | cut -f1)" >>"$out"
    change=()
    [ "$count" -ge 10000000 ] && [ "$count" -lt 100000000 ] && change=(--change 1000)
    if [ ${#change[@]} -gt 0 ]; then
        # Changes must not alter the archive later runs measure: change a copy of its index
        # and manifest, with the packs linked.
        work="$dir/change-$count"
        rm -rf "$work" && mkdir -p "$work"
        cp -r "$archive/index" "$archive/manifest.json" "$work/"
        mkdir "$work/packs" && ln "$archive"/packs/* "$work/packs/"
        "$lookups" "$work" 10000 "${change[@]}" >>"$out"
        rm -rf "$work"
    else
        "$lookups" "$archive" 10000 >>"$out"
    fi
    # A fresh process: `haypack get` of one key against `haypack --version`, interleaved.
    key=$(printf 'shard-%04d/rec-%010d.txt' $(( count / 2 / 10000 )) $(( count / 2 )))
    for _ in $(seq "$runs"); do
        a=$(date +%s%N); "$hp" --version >/dev/null; b=$(date +%s%N)
        "$hp" get "$archive" "$key" >/dev/null; c=$(date +%s%N)
        echo "$(( (b - a) / 1000 )) $(( (c - b) / 1000 ))"
    done >"$dir/fresh-$count"
    echo "process_version_us $(cut -d' ' -f1 "$dir/fresh-$count" | median)" >>"$out"
    echo "process_get_us $(cut -d' ' -f2 "$dir/fresh-$count" | median)" >>"$out"
    echo "== $count records" >&2
    cat "$out" >&2
done

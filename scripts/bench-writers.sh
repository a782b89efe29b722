#!/usr/bin/env bash
# Many writers, one archive: the corpus packed into a local Garage by N segment writers at once
# (separate processes, `haypack pack PART URL --segment-out SEG`), then one `haypack commit`.
#
# Usage: scripts/bench-writers.sh        (BENCH_FILES=1000000, WRITERS="1 2 4")
# For each N: wall time of the N writers together, of the commit, the commit's peak RSS, and the
# index bytes the commit reads (the segments' runs) and writes (the new archive index). Then the
# same segments of the largest N committed once more on top of the archive the first commit made
# (twice the records): how the commit's cost grows with the archive it lands on. Markdown on
# stdout, the log on stderr. The corpus is made once by scripts/gen-corpus.py in
# ~/.cache/haypack/corpora (the 1M corpus is ~5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$PWD/target/release/haypack
files=${BENCH_FILES:-1000000}
writers=${WRITERS:-1 2 4}
corpora=${XDG_CACHE_HOME:-$HOME/.cache}/haypack/corpora
work=${BENCH_WORK:-$PWD/target/bench/writers}
log() { printf 'bench-writers: %s\n' "$*" >&2; }
[ -x "$bin" ] || { log "build it first: cargo build --release -p haypack"; exit 1; }
mkdir -p "$work" "$corpora"
trap 'if [ -n "${GARAGE_PID:-}" ]; then kill "$GARAGE_PID" 2>/dev/null || true; fi' EXIT

src=$corpora/small-$files-m3000-s42
if [ ! -d "$src" ]; then
    log "writing corpus $src"
    rm -rf "$src.tmp"
    python3 scripts/gen-corpus.py "$files" "$src.tmp" --median 3000
    mv "$src.tmp" "$src"
fi
rm -rf "$work/garage"
scripts/s3-servers.sh garage "$work/garage" "$work/env" >&2
# shellcheck disable=SC1091
. "$work/env"
GARAGE_PID=$HAYPACK_TEST_GARAGE_PID
bucket=s3://$HAYPACK_TEST_GARAGE_BUCKET
hp() { "$bin" -q --no-cache "$@"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
# Index bytes a segment file says its run takes.
run_bytes() { python3 -c 'import json, sys; print(sum(o["size"] for f in sys.argv[1:] for o in json.load(open(f))["index"]["objects"]))' "$@"; }
index_bytes() { hp info --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["index_bytes"])'; }

# Part k of N: every N-th of the corpus's top-level directories, as links (followed), so that
# the N parts' keys together are the corpus's.
parts() {
    local n=$1 k i dirs
    mapfile -t dirs < <(find "$src" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
    rm -rf "$work/parts"
    for k in $(seq 0 $((n - 1))); do
        mkdir -p "$work/parts/$k"
        for i in "${!dirs[@]}"; do
            [ $((i % n)) = "$k" ] && ln -s "$src/${dirs[$i]}" "$work/parts/$k/${dirs[$i]}"
        done
    done
}

echo "| writers | writers' wall | per writer | commit | commit peak RSS | index runs read | index written | records |"
echo "|---|---|---|---|---|---|---|---|"
last=
for n in $writers; do
    parts "$n"
    url=$bucket/w$n
    rm -f "$work"/seg-*.json
    log "$n writer(s) into $url"
    t0=$(now)
    pids=()
    for k in $(seq 0 $((n - 1))); do
        /usr/bin/time -f '%e %M' -o "$work/writer-$k.time" \
            "$bin" -q --no-cache pack --follow-symlinks "$work/parts/$k" "$url" --segment-out "$work/seg-$k.json" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(now)
    read_bytes=$(run_bytes "$work"/seg-*.json)
    /usr/bin/time -f '%e %M' -o "$work/commit.time" "$bin" -q --no-cache commit "$url" "$work"/seg-*.json
    read -r commit_wall commit_rss <"$work/commit.time"
    records=$(hp info --json "$url" | python3 -c 'import json, sys; print(json.load(sys.stdin)["records"])')
    [ "$records" = "$files" ] || { log "the archive holds $records records, not $files"; exit 1; }
    per=$(awk '{print $1}' "$work"/writer-*.time | sort -g | tr '\n' ' ')
    echo "| $n | $(secs "$t0" "$t1") s | ${per% } s | ${commit_wall} s | $((commit_rss / 1024)) MiB |" \
        "$(mib "$read_bytes") | $(mib "$(index_bytes "$url")") | $records |"
    last=$n
done

# The last run's parts written again as new segments (same keys) and committed onto the archive
# they made: the commit now merges with an archive index as large as theirs, every key replaced.
url=$bucket/w$last
log "$last new segment(s) of the same keys, onto the $files records already there"
rm -f "$work"/seg-*.json
pids=()
for k in $(seq 0 $((last - 1))); do
    "$bin" -q --no-cache pack --follow-symlinks "$work/parts/$k" "$url" --segment-out "$work/seg-$k.json" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
before=$(index_bytes "$url")
/usr/bin/time -f '%e %M' -o "$work/recommit.time" "$bin" -q --no-cache commit "$url" "$work"/seg-*.json
read -r wall rss <"$work/recommit.time"
echo
echo "| commit of $last segments | onto | index runs read | archive index read | index written | wall | peak RSS |"
echo "|---|---|---|---|---|---|---|"
echo "| $files records | $files records (the same keys, all replaced) | $(mib "$(run_bytes "$work"/seg-*.json)") |" \
    "$(mib "$before") | $(mib "$(index_bytes "$url")") | ${wall} s | $((rss / 1024)) MiB |"
rm -rf "$work/parts"

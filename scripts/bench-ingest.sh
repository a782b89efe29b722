#!/usr/bin/env bash
# Records from streams, measured: ingesting a tar.zst straight into an archive against extracting
# it first; 10 M records from a tar on stdin; committing 8 segments of 1 M records each.
#
# Usage: scripts/bench-ingest.sh [SECTION...]     (default: ingest stream commit)
#   ingest  the 100k corpus as a .tar.zst: `haypack pack CORPUS.tar.zst DEST` against
#           `zstd -dc | tar -x` then `haypack pack DIR DEST`, into a local archive and into a
#           local Garage, BENCH_RUNS (3) times each, medians and ratios
#   stream  STREAM_RECORDS (10,000,000) generated records as a tar.zst on stdin: records/s, peak RSS
#   commit  SEGMENTS (8) segments of SEGMENT_RECORDS (1,000,000) interleaved keys, then one
#           `haypack commit`: wall time, peak RSS, bytes read and written, objects' sizes
# Results are printed as Markdown tables on stdout; the log goes to stderr. Work files live in
# BENCH_WORK (target/bench/ingest); generated inputs are kept in ~/.cache/haypack/corpora.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$PWD/target/release/haypack
runs=${BENCH_RUNS:-3}
stream_records=${STREAM_RECORDS:-10000000}
segments=${SEGMENTS:-8}
segment_records=${SEGMENT_RECORDS:-1000000}
corpora=${XDG_CACHE_HOME:-$HOME/.cache}/haypack/corpora
work=${BENCH_WORK:-$PWD/target/bench/ingest}
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(ingest stream commit)

log() { printf 'bench-ingest: %s\n' "$*" >&2; }
want() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
[ -x "$bin" ] || { log "build it first: cargo build --release -p haypack"; exit 1; }
[ -x /usr/bin/time ] || { log "needs GNU time (/usr/bin/time)"; exit 1; }
mkdir -p "$work" "$corpora"
trap 'if [ -n "${GARAGE_PID:-}" ]; then kill "$GARAGE_PID" 2>/dev/null || true; fi' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# timed FILE CMD...: runs CMD (stdout to $work/out), appends "wall_s peak_rss_kib" to FILE.
timed() {
    local file=$1; shift
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out"
    cat "$work/time" >>"$file"
}
col() { awk -v c="$2" '{print $c}' "$1" | median; }

# io CMD...: runs CMD and prints "read_bytes written_bytes" it and its children passed through
# read/write calls (rchar and wchar: the page cache included), from the shell's /proc/PID/io
# once the command has been reaped into it.
io() {
    bash -c '"$@" >/dev/null; awk "/^rchar|^wchar/ {print \$2}" /proc/$$/io | paste -sd" "' io "$@"
}

corpus_tar() {
    local dir=$corpora/small-100000-m3000-s42 tarball=$corpora/small-100000-m3000-s42.tar.zst
    if [ ! -d "$dir" ]; then
        log "writing corpus $dir"
        rm -rf "$dir.tmp"
        python3 scripts/gen-corpus.py 100000 "$dir.tmp" --median 3000
        mv "$dir.tmp" "$dir"
    fi
    if [ ! -f "$tarball" ]; then
        log "writing $tarball"
        tar -cf - -C "$dir" . | zstd -q -3 -T0 >"$tarball.tmp"
        mv "$tarball.tmp" "$tarball"
    fi
    echo "$tarball"
}

if want ingest; then
    tarball=$(corpus_tar)
    log "ingest: $(du -h "$tarball" | cut -f1) tar.zst of 100k files"
    scripts/s3-servers.sh garage "$work/garage" "$work/env" >&2
    # shellcheck disable=SC1091
    . "$work/env"
    GARAGE_PID=$HAYPACK_TEST_GARAGE_PID
    bucket=s3://$HAYPACK_TEST_GARAGE_BUCKET
    rm -f "$work"/ingest-*
    for i in $(seq "$runs"); do
        for dest in local s3; do
            if [ "$dest" = local ]; then d1=$work/direct; d2=$work/viadir; else d1=$bucket/direct$i; d2=$bucket/viadir$i; fi
            rm -rf "$work/direct" "$work/viadir" "$work/extracted"
            log "ingest into $dest, run $i of $runs: straight from the tar.zst"
            timed "$work/ingest-$dest-direct" "$bin" -q --no-cache pack "$tarball" "$d1"
            log "ingest into $dest, run $i of $runs: zstd -dc | tar -x, then pack the directory"
            mkdir "$work/extracted"
            timed "$work/ingest-$dest-extract" bash -c "zstd -dc '$tarball' | tar -x -C '$work/extracted'"
            sync "$work/extracted"
            timed "$work/ingest-$dest-pack" "$bin" -q --no-cache pack "$work/extracted" "$d2"
            # Same records, same keys: the two archives list alike.
            cmp <("$bin" -q ls "$d1") <("$bin" -q ls "$d2") || { log "the two archives differ"; exit 1; }
        done
    done
    rm -rf "$work/direct" "$work/viadir" "$work/extracted"
    echo "### Ingesting a tar.zst of the 100k corpus"
    echo
    echo "| into | straight from the tar.zst | \`tar -x\` | then \`pack DIR\` | extract + pack | ratio | peak RSS straight / pack DIR |"
    echo "|---|---|---|---|---|---|---|"
    for dest in local s3; do
        direct=$(col "$work/ingest-$dest-direct" 1)
        extract=$(col "$work/ingest-$dest-extract" 1)
        packdir=$(col "$work/ingest-$dest-pack" 1)
        both=$(awk -v a="$extract" -v b="$packdir" 'BEGIN {print a + b}')
        echo "| $dest | ${direct} s | ${extract} s | ${packdir} s | ${both} s | $(ratio "$direct" "$both")x |" \
            "$(( $(col "$work/ingest-$dest-direct" 2) / 1024 )) / $(( $(col "$work/ingest-$dest-pack" 2) / 1024 )) MiB |"
    done
    echo
fi

if want stream; then
    input=$corpora/gen-tar-$stream_records.tar.zst
    if [ ! -f "$input" ]; then
        log "stream: writing $input"
        python3 scripts/gen-tar.py "$stream_records" | zstd -q -3 -T0 >"$input.tmp"
        mv "$input.tmp" "$input"
    fi
    rm -rf "$work/stream"
    log "stream: $stream_records records on stdin"
    : >"$work/stream-time"
    timed "$work/stream-time" bash -c "'$bin' -q pack - '$work/stream' <'$input'"
    read -r wall rss <"$work/stream-time"
    count=$("$bin" -q info "$work/stream" | awk '/^records/ {gsub(",", "", $2); print $2}')
    [ "$count" = "$stream_records" ] || { log "the archive holds $count records, not $stream_records"; exit 1; }
    echo "### $stream_records records from a tar.zst on stdin"
    echo
    echo "| records | input | archive | wall | records/s | peak RSS |"
    echo "|---|---|---|---|---|---|"
    echo "| $stream_records | $(du -h "$input" | cut -f1) | $(du -sh "$work/stream" | cut -f1) | ${wall} s |" \
        "$(awk -v n="$stream_records" -v w="$wall" 'BEGIN {printf "%.0f", n / w}') | $((rss / 1024)) MiB |"
    echo
    rm -rf "$work/stream"
fi

if want commit; then
    arch=$work/commit
    rm -rf "$arch" "$work"/seg-*.json
    : >"$work/segment-time"
    for k in $(seq 0 $((segments - 1))); do
        log "commit: segment $k of $segments ($segment_records records, keys interleaved)"
        timed "$work/segment-time" bash -c "python3 scripts/gen-tar.py $segment_records --start $k --step $segments \
            | '$bin' -q pack - '$arch' --segment-out '$work/seg-$k.json'"
    done
    runs_bytes=$(du -cb "$arch"/index/segment-*.hpi | tail -1 | cut -f1)
    log "commit: $segments segments"
    : >"$work/commit-time"
    read -r rbytes wbytes < <(io /usr/bin/time -f '%e %M' -o "$work/commit-time" "$bin" -q commit "$arch" "$work"/seg-*.json)
    read -r wall rss <"$work/commit-time"
    index_bytes=$(du -cb "$arch"/index/0*.hpi | tail -1 | cut -f1)
    count=$("$bin" -q info "$arch" | awk '/^records/ {gsub(",", "", $2); print $2}')
    [ "$count" = "$((segments * segment_records))" ] || { log "the archive holds $count records"; exit 1; }
    echo "### Committing $segments segments of $segment_records records"
    echo
    echo "| segments | records | segments' index runs | new index | read | written | wall | peak RSS |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| $segments | $count | $((runs_bytes / 1048576)) MiB | $((index_bytes / 1048576)) MiB |" \
        "$((rbytes / 1048576)) MiB | $((wbytes / 1048576)) MiB | ${wall} s | $((rss / 1024)) MiB |"
    echo
    echo "(Writing each segment, generator included: median $(col "$work/segment-time" 1) s, peak RSS $(( $(col "$work/segment-time" 2) / 1024 )) MiB.)"
    rm -rf "$arch"
fi

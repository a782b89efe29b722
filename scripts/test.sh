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
# The record-source tests read archives made by the real tools.
command -v tar >/dev/null || need_apt+=(tar)
command -v zip >/dev/null || need_apt+=(zip)
command -v xz >/dev/null || need_apt+=(xz-utils)
command -v bzip2 >/dev/null || need_apt+=(bzip2)
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} with apt"
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

# warcio (the Webrecorder WARC library) writes the WARC test inputs, from a venv of our own.
venv="${HOME}/.cache/haypack/py-venv"
if ! "$venv/bin/python" -c 'import warcio' 2>/dev/null; then
    echo "installing warcio into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q warcio
fi
export HAYPACK_PYTHON="$venv/bin/python"

env_file=$(mktemp)
trap 'scripts/s3-servers.sh stop "$env_file"; rm -f "$env_file"' EXIT
scripts/s3-servers.sh start "$env_file"
# shellcheck disable=SC1090
. "$env_file"

# Tests that need a server or a tool outside the Rust toolchain are #[ignore]d in a bare
# `cargo test` (reported ignored, never passed); here everything is there, so they all run, and
# one that finds no server or tool fails.
cargo test --workspace --all-targets -- --include-ignored
cargo test --workspace --doc

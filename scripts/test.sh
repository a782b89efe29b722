#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs every test.
# Idempotent: what is already installed is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v zstd >/dev/null || need_apt+=(zstd)
command -v gzip >/dev/null || need_apt+=(gzip)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (the CLI tests check that packs are plain zstd/gzip files)"
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

cargo test --workspace --all-targets
cargo test --workspace --doc

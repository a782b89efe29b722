#!/usr/bin/env bash
# Python random-access benchmark: haypack vs WebDataset shards (read as wids does) vs loose
# objects (boto3), on a Garage of its own on 127.0.0.1. Prints a Markdown report (the "Python"
# section of docs/BENCHMARKS.md).
# Usage: scripts/bench-python.sh [COUNT] [READS]   (default 100000 files, 2000 reads per run)
# Installs haypack from crates/haypack-py (a release build), webdataset and boto3 into
# ~/.cache/haypack/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
reads=${2:-2000}
venv="${HOME}/.cache/haypack/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import webdataset, boto3' 2>/dev/null || "$venv/bin/pip" install -q webdataset boto3
"$venv/bin/pip" install -q --force-reinstall ./crates/haypack-py

work=$(mktemp -d "${TMPDIR:-/tmp}/haypack-bench-py.XXXXXX")
env_file="$work/env"
trap 'scripts/s3-servers.sh stop "$env_file"; rm -rf "$work"' EXIT
mkdir -p "$work/garage"
scripts/s3-servers.sh garage "$work/garage" "$env_file"
# shellcheck disable=SC1090
. "$env_file"
python3 scripts/gen-corpus.py "$count" "$work/corpus" >/dev/null
"$venv/bin/python" scripts/bench-python.py "$work/corpus" "$HAYPACK_TEST_GARAGE_BUCKET" "$work/run" --reads "$reads"

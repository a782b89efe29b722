# Everyday recipes; each is a thin call of something that also works without just.

# Pack the shipped sample into a local archive and read it back.
demo:
    scripts/demo.sh

# Install what the tests need and run every test (the README's test command).
test:
    scripts/test.sh

# Everything CI checks.
ci:
    .ci/run

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Fuzz one target for a minute: just fuzz footer
fuzz target:
    cd fuzz && mkdir -p corpus/{{target}} && RUSTC_BOOTSTRAP=1 cargo fuzz run {{target}} corpus/{{target}} seeds/{{target}} -- -max_total_time=60

# Run haypack and its peers and rewrite docs/BENCHMARKS.md and docs/img/: `just bench` runs every
# section, `just bench pack mem` some (see scripts/bench.sh).
bench *sections:
    scripts/bench.sh {{sections}}

# Only the S3 section: upload, reads and extract against s5cmd and the aws CLI on a local Garage.
bench-s3:
    scripts/bench.sh s3

# Measure compaction locally and on a local Garage, against download-and-reupload.
bench-compact *args:
    scripts/bench-compact.sh {{args}}

# Stored bytes with and without a trained dictionary, next to tar | zstd.
bench-dict *args:
    scripts/bench-dict.sh {{args}}

# Load-test `haypack serve` (local archive and Garage) next to nginx with wrk.
bench-serve *args:
    scripts/bench-serve.sh {{args}}

# Random access from Python on a local Garage: haypack vs WebDataset (read as wids does) vs loose
# objects with boto3 (the "Python" section of docs/BENCHMARKS.md): `just bench-python 100000 1000`.
bench-python *args:
    scripts/bench-python.sh {{args}}

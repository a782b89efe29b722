#!/usr/bin/env python3
"""Writes a deterministic corpus of small files for haypack's benchmarks.

Usage: gen-corpus.py COUNT DIR [--median BYTES] [--seed N]

Sizes are log-normal, clamped to 100 B .. 100 KB, around the median (default 3 KB). Kinds are
mixed: 40% text (English-like lines), 40% JSON records, 20% incompressible binary. Files are
spread over 100 directories. The same arguments always give the same bytes.
"""

import argparse
import json
import math
import os
import random

WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an have not which "
    "archive pack record index key value small file large object bucket request latency storage "
    "read write delete compact manifest generation checksum offset length block cache stream"
).split()


def text(rng, size):
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + ".\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:size].encode()


def record(rng, size, i):
    # About 120 bytes per item once indented: the file lands near the requested size.
    items = [
        {
            "id": i * 1000 + n,
            "name": " ".join(rng.choice(WORDS) for _ in range(3)),
            "price": round(rng.uniform(1, 500), 2),
            "tags": rng.sample(WORDS, 3),
            "in_stock": rng.random() < 0.7,
        }
        for n in range(max(1, size // 120))
    ]
    return json.dumps({"page": i, "items": items}, indent=1).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", type=int)
    ap.add_argument("dir")
    ap.add_argument("--median", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    mu, sigma = math.log(args.median), 1.0
    for d in range(100):
        os.makedirs(os.path.join(args.dir, f"d{d:02d}"), exist_ok=True)
    for i in range(args.count):
        size = int(min(100_000, max(100, rng.lognormvariate(mu, sigma))))
        kind = rng.random()
        if kind < 0.4:
            data, ext = text(rng, size), "txt"
        elif kind < 0.8:
            data, ext = record(rng, size, i), "json"
        else:
            data, ext = rng.randbytes(size), "bin"
        with open(os.path.join(args.dir, f"d{i % 100:02d}", f"f{i:07d}.{ext}"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

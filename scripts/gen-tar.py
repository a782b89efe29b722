#!/usr/bin/env python3
"""Writes a tar stream of COUNT small generated records to stdout: no file touches the disk.

Usage: gen-tar.py COUNT [--start N] [--step S] [--seed SEED] [--tiny]

Record i (for i = start, start + step, ...) is `shard-NNNN/rec-IIIIIIIIII.txt`, a few hundred
bytes of text drawn from a fixed vocabulary, so it compresses like prose and the same arguments
always give the same bytes. `--step` interleaves the keys of several streams (stream k of n:
`--start k --step n`), so that segments written from them must be merged, not appended. The
headers are plain ustar, built here rather than by `tarfile` (which would be the bottleneck at
millions of members). `--tiny` makes each record's content its number alone (a few bytes), for
archives of a hundred million records where what is measured is the index.
"""

import argparse
import random
import sys

BLOCK = 512
MTIME = 1_700_000_000


def header(name: bytes, size: int) -> bytes:
    h = bytearray(BLOCK)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % MTIME
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("count", type=int)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    # A pool of bodies: record i takes one, with its own number in front, so no two are equal.
    bodies = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 80))).encode() + b"\n" for _ in range(4096)]

    out = sys.stdout.buffer
    chunk = []
    for n in range(args.count):
        i = args.start + n * args.step
        name = b"shard-%04d/rec-%010d.txt" % (i // 10_000, i)
        body = b"%d\n" % i if args.tiny else b"record %d: " % i + bodies[i % len(bodies)]
        chunk.append(header(name, len(body)))
        chunk.append(body)
        chunk.append(b"\0" * (-len(body) % BLOCK))
        if len(chunk) >= 3000:
            out.write(b"".join(chunk))
            chunk.clear()
    chunk.append(b"\0" * (2 * BLOCK))
    out.write(b"".join(chunk))
    out.flush()


if __name__ == "__main__":
    main()

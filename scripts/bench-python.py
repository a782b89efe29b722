#!/usr/bin/env python3
"""Random access from Python, on one S3 server: haypack against WebDataset shards read the way
`wids` reads them and against loose objects read with boto3. Driven by scripts/bench-python.sh,
which starts the server and sets AWS_* in the environment; prints a Markdown report.

Usage: bench-python.py CORPUS_DIR BUCKET WORKDIR [--reads N]

- haypack: `haypack.pack` into s3://BUCKET/hp; a read is `Archive.get` (one ranged GET once
  the index block is cached).
- WebDataset: `webdataset.ShardWriter` (64 MiB shards) over the same files in key order,
  uploaded to s3://BUCKET/wds/; a read is what `wids` does: find the shard holding the sample,
  download it whole into a local cache directory unless it is there, index its tar members once,
  and read the member from the local file.
- loose: one object per file under s3://BUCKET/loose/, a read is one boto3 `get_object`.

Requests and bytes per sample are counted by a TCP proxy in front of the server (a separate,
untimed run of the same reads): requests are HTTP request lines sent, bytes are bytes received.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import boto3
import botocore.config
import webdataset

import haypack
import haypack.data as hd

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
REGION = os.environ.get("AWS_REGION", "garage")
SHARD = 64 << 20


def s3(endpoint: str = ENDPOINT):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=botocore.config.Config(max_pool_connections=64, retries={"max_attempts": 3}),
    )


# ---------------------------------------------------------------- counting proxy


class Proxy:
    """A TCP proxy counting HTTP requests sent and bytes received."""

    def __init__(self, target: str) -> None:
        host, port = target.split("//")[1].split(":")
        self.target = (host, int(port))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self.received = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.requests = self.received = 0

    def _accept(self) -> None:
        while True:
            client, _ = self.sock.accept()
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, outgoing: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                with self.lock:
                    if outgoing:
                        self.requests += data.count(b" HTTP/1.1\r\n")
                    else:
                        self.received += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# ---------------------------------------------------------------- readers


class HaypackReader:
    def __init__(self, bucket: str, endpoint: str = ENDPOINT) -> None:
        self.archive = haypack.open(f"s3://{bucket}/hp", endpoint_url=endpoint, region=REGION)

    def get(self, key: str) -> bytes:
        return self.archive.get(key)


class LooseReader:
    def __init__(self, bucket: str, endpoint: str = ENDPOINT) -> None:
        self.client, self.bucket = s3(endpoint), bucket

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=f"loose/{key}")["Body"].read()


class WidsReader:
    """What wids does for a random sample: the shard list says which shard holds index i; the
    shard is downloaded whole into a local cache (once), its tar members indexed, and the sample
    read from the local file."""

    def __init__(self, bucket: str, shards: List[Tuple[str, int]], cache: Path, endpoint: str = ENDPOINT) -> None:
        self.client, self.bucket, self.cache = s3(endpoint), bucket, cache
        self.starts: List[int] = []
        total = 0
        for _, n in shards:
            self.starts.append(total)
            total += n
        self.shards = shards
        self.index: Dict[int, Dict[str, Tuple[int, int]]] = {}
        self.locks = [threading.Lock() for _ in shards]

    def _shard(self, s: int) -> Dict[str, Tuple[int, int]]:
        with self.locks[s]:
            if s not in self.index:
                name = self.shards[s][0]
                path = self.cache / name
                if not path.exists():
                    tmp = path.with_suffix(".part")
                    self.client.download_file(self.bucket, f"wds/{name}", str(tmp))
                    tmp.rename(path)
                with tarfile.open(path) as tar:
                    self.index[s] = {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
            return self.index[s]

    def get_index(self, i: int) -> bytes:
        s = max(0, next((j for j, st in enumerate(self.starts) if st > i), len(self.starts)) - 1)
        members = self._shard(s)
        offset, size = members[f"{i:08d}.bin"]
        with open(self.cache / self.shards[s][0], "rb") as f:
            f.seek(offset)
            return f.read(size)


# ---------------------------------------------------------------- setup


def setup(corpus: Path, bucket: str, work: Path, keys: List[str]) -> List[Tuple[str, int]]:
    client = s3()
    t = time.time()
    haypack.pack(corpus, f"s3://{bucket}/hp", endpoint_url=ENDPOINT, region=REGION, force=True)
    print(f"setup: haypack pack {time.time() - t:.1f} s", file=sys.stderr)

    t = time.time()

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=f"loose/{key}", Body=(corpus / key).read_bytes())

    with cf.ThreadPoolExecutor(32) as pool:
        list(pool.map(put, keys))
    print(f"setup: {len(keys)} loose objects {time.time() - t:.1f} s", file=sys.stderr)

    t = time.time()
    shard_dir = work / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    with webdataset.ShardWriter(str(shard_dir / "shard-%06d.tar"), maxsize=SHARD, maxcount=10**9, verbose=0) as w:
        for i, key in enumerate(keys):
            w.write({"__key__": f"{i:08d}", "bin": (corpus / key).read_bytes()})
    shards = []
    for path in sorted(shard_dir.iterdir()):
        with tarfile.open(path) as tar:
            n = len(tar.getmembers())
        client.upload_file(str(path), bucket, f"wds/{path.name}")
        shards.append((path.name, n))
    print(f"setup: {len(shards)} WebDataset shards {time.time() - t:.1f} s", file=sys.stderr)
    return shards


# ---------------------------------------------------------------- measurements


def timed_reads(read: Callable[[int], bytes], picks: List[int], threads: int) -> float:
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(read, picks):
            pass
    return len(picks) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("bucket")
    ap.add_argument("work", type=Path)
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    keys = sorted(str(p.relative_to(args.corpus)) for p in args.corpus.rglob("*") if p.is_file())
    sizes = [(args.corpus / k).stat().st_size for k in keys]
    shards = setup(args.corpus, args.bucket, args.work, keys)
    rng = random.Random(42)
    picks = [rng.randrange(len(keys)) for _ in range(args.reads)]
    proxy = Proxy(ENDPOINT)

    def wids_cache(tag: str) -> Path:
        d = args.work / f"wids-cache-{tag}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    systems = {
        "haypack": lambda ep, tag: (lambda r: (lambda i: r.get(keys[i])))(HaypackReader(args.bucket, ep)),
        "WebDataset (wids-style)": lambda ep, tag: (lambda r: r.get_index)(
            WidsReader(args.bucket, shards, wids_cache(tag), ep)
        ),
        "loose objects (boto3)": lambda ep, tag: (lambda r: (lambda i: r.get(keys[i])))(LooseReader(args.bucket, ep)),
    }
    mean = sum(sizes) / len(sizes)
    print(f"## Python: random access from S3 ({len(keys)} files, mean {mean / 1024:.1f} KiB, "
          f"{sum(sizes) / 2**20:.0f} MiB; {len(shards)} WebDataset shards of up to 64 MiB)\n")

    print(f"Random single-sample reads: {args.reads} uniformly random samples per run, each reader "
          "fresh (cold: nothing cached) at the start of its run.\n")
    print("| reader | 1 thread | 8 threads | 32 threads | requests / sample | bytes received / sample |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, make in systems.items():
        rates = []
        for threads in (1, 8, 32):
            read = make(ENDPOINT, f"{threads}")
            rates.append(timed_reads(read, picks, threads))
        read = make(proxy.url, "count")
        proxy.reset()
        timed_reads(read, picks, 8)
        req, got = proxy.requests / len(picks), proxy.received / len(picks)
        print(f"| {name} | {rates[0]:,.0f}/s | {rates[1]:,.0f}/s | {rates[2]:,.0f}/s | {req:.2f} | {got / 1024:,.1f} KiB |")

    print("\nTime to first sample, a fresh reader in a fresh process (open, then one random sample):\n")
    print("| reader | time to first sample |")
    print("|---|---:|")
    for name in systems:
        out = subprocess.run(
            [sys.executable, __file__, "--first", name, str(args.corpus), args.bucket, str(args.work),
             str(picks[0])],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        print(f"| {name} | {float(out) * 1000:,.0f} ms |")

    print("\nAn epoch of shuffled batches of 64 through `Dataset.__getitems__` (one `get_many` per "
          "batch), 8 threads taking batches as DataLoader workers would:\n")
    print("| order | samples/s | requests / batch |")
    print("|---|---:|---:|")
    for label, locality in (("global shuffle", None), ("locality-aware (groups of 1024)", 1024)):
        for ep, counting in ((ENDPOINT, False), (proxy.url, True)):
            ds = hd.Dataset(haypack.open(f"s3://{args.bucket}/hp", endpoint_url=ep, region=REGION))
            sampler = hd.Sampler(ds, seed=1, locality=locality)
            batches = list(sampler.batches(64, 0, 1))
            if counting:
                batches = batches[:200]
                proxy.reset()
            t = time.perf_counter()
            with cf.ThreadPoolExecutor(8) as pool:
                n = sum(len(b) for b in pool.map(ds.__getitems__, batches))
            rate = n / (time.perf_counter() - t)
            if not counting:
                epoch_rate = rate
        print(f"| {label} | {epoch_rate:,.0f}/s | {proxy.requests / len(batches):.1f} |")


def first() -> None:
    name, corpus, bucket, work, pick = sys.argv[2:7]
    keys = sorted(str(p.relative_to(corpus)) for p in Path(corpus).rglob("*") if p.is_file())
    i = int(pick)
    t = time.perf_counter()
    if name == "haypack":
        HaypackReader(bucket).get(keys[i])
    elif name.startswith("loose"):
        LooseReader(bucket).get(keys[i])
    else:
        shard_dir = Path(work) / "shards"
        shards = []
        for path in sorted(shard_dir.iterdir()):
            with tarfile.open(path) as tar:
                shards.append((path.name, len(tar.getmembers())))
        cache = Path(work) / "wids-cache-first"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        t = time.perf_counter()  # the shard list is known beforehand, as wids' JSON describes it
        WidsReader(bucket, shards, cache).get_index(i)
    print(time.perf_counter() - t)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--first":
        first()
    else:
        main()

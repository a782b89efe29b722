"""Every reading API on local and S3 archives, bytes compared with the source files."""

from __future__ import annotations

import io
import pickle
import random
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Tuple

import haypack

from conftest import LARGE, Packed


def test_opens_the_generation_with_every_record(packed: Packed) -> None:
    a = packed.open()
    assert a.generation == 1
    assert len(a) == len(packed.files)
    assert repr(a).startswith("<haypack.Archive")
    assert a.url == packed.url


def test_get_and_getitem_return_the_source_bytes(packed: Packed) -> None:
    a = packed.open()
    for key, data in packed.files.items():
        assert a.get(key) == data, key
        assert a[key] == data, key


def test_contains(packed: Packed) -> None:
    a = packed.open()
    assert "empty" in a and "d0/sub0/f0000.bin" in a
    assert "nope" not in a and "d0" not in a and 42 not in a


def test_stat_describes_the_record(packed: Packed) -> None:
    a = packed.open()
    e = a.stat("large/blob.bin")
    assert isinstance(e, haypack.Entry)
    assert (e.key, e.size) == ("large/blob.bin", LARGE)
    assert e.stored_size > 0 and e.mode & 0o777 and e.mtime > 1_000_000_000
    assert a.stat("empty").size == 0


def test_list_and_keys_are_lazy_and_in_key_order(packed: Packed) -> None:
    a = packed.open()
    listing = a.list()
    assert isinstance(listing, types.GeneratorType)
    assert [e.key for e in listing] == sorted(packed.files)
    assert list(a.keys()) == sorted(packed.files)
    assert list(a) == sorted(packed.files)
    under = sorted(k for k in packed.files if k.startswith("d3/sub1/"))
    assert [e.key for e in a.list("d3/sub1/")] == under
    assert [e.size for e in a.list("d3/sub1/")] == [len(packed.files[k]) for k in under]
    assert list(a.keys("zzz")) == []
    # Past one page (1,000 entries) the next is fetched as the iterator goes.
    first = next(a.keys("d"))
    assert first == min(k for k in packed.files if k.startswith("d"))


def test_get_many_keeps_the_callers_order(packed: Packed) -> None:
    a = packed.open()
    keys = list(packed.files)
    random.Random(1).shuffle(keys)
    keys = keys[:120] + keys[:5] + ["large/blob.bin"]
    assert a.get_many(keys) == [packed.files[k] for k in keys]
    assert a.get_many([]) == []


def test_verify_finds_nothing_wrong(packed: Packed) -> None:
    report = packed.open().verify()
    assert report.ok and report.problems == []
    assert report.records == len(packed.files) and report.packs >= 2


def test_open_record_streams_a_large_record(packed: Packed) -> None:
    a = packed.open()
    expected = packed.files["large/blob.bin"]
    with a.open_record("large/blob.bin") as r:
        assert r.readable() and r.name == "large/blob.bin" and r.entry.size == LARGE
        first = r.read(1000)
        pieces = [first]
        while True:
            piece = r.read(300_000)
            assert len(piece) <= 300_000
            if not piece:
                break
            pieces.append(piece)
    assert b"".join(pieces) == expected
    buffered = io.BufferedReader(a.open_record("d1/sub1/f0001.bin"))
    assert buffered.read() == packed.files["d1/sub1/f0001.bin"]
    with a.open_record("empty") as r:
        assert r.read() == b""


def test_pickled_archive_reads_the_same_generation(packed: Packed) -> None:
    a = packed.open()
    b = pickle.loads(pickle.dumps(a))
    assert (b.url, b.generation, len(b)) == (a.url, a.generation, len(a))
    assert b["d2/sub2/f0002.bin"] == packed.files["d2/sub2/f0002.bin"]


def test_threads_reading_at_once_get_the_right_bytes(packed: Packed) -> None:
    a = packed.open()
    keys = [k for k in packed.files if k != "large/blob.bin"]
    wrong: list = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            k = rng.choice(keys)
            if a[k] != packed.files[k]:
                wrong.append(k)
        batch = rng.sample(keys, 20)
        if a.get_many(batch) != [packed.files[k] for k in batch]:
            wrong.append(batch)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


class _Zeros:
    """A binary file of `size` zero bytes, made as it is read."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


_PEAK = """
import sys, haypack

def status(field):  # kB, from the kernel: VmRSS now, VmHWM the peak so far
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

a = haypack.open(sys.argv[1])
a.get("small")
before = status("VmRSS")
if sys.argv[2] == "stream":
    n = 0
    with a.open_record("zeros") as f:
        while True:
            piece = f.read(1 << 20)
            if not piece:
                break
            n += len(piece)
else:
    n = len(a.get("zeros"))
print(n, status("VmHWM") - before)
"""


def test_streaming_a_record_holds_a_bounded_amount(tmp_path: Path) -> None:
    size = 128 << 20  # a few hundred KB stored, 128 MiB decoded
    with haypack.Writer(tmp_path / "a") as w:
        w.write("zeros", _Zeros(size))
        w.write("small", b"x")

    def peak(how: str) -> Tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "a"), how], check=True,
                             capture_output=True, text=True).stdout.split()
        return int(out[0]), int(out[1])

    streamed, stream_peak = peak("stream")
    whole, whole_peak = peak("whole")
    assert streamed == whole == size
    assert size <= whole_peak < size * 3 // 2  # get() holds a large record once, in its bytes...
    assert stream_peak < 32 << 20, stream_peak  # ...and streaming holds a few chunks, not the record


def test_index_memory_bounds_what_a_reader_keeps_and_travels_with_it(packed: Packed) -> None:
    a = haypack.open(packed.url, index_memory=64 << 10, **packed.options)
    # Every record still reads back whole and verified with a 64 KiB bound...
    for key, content in list(packed.files.items())[::7]:
        assert a[key] == content
    # ...and a worker that unpickles the archive keeps the same bound.
    b = pickle.loads(pickle.dumps(a))
    assert (a._native.index_memory, b._native.index_memory) == (64 << 10, 64 << 10)
    assert haypack.open(packed.url, **packed.options)._native.index_memory is None


def test_a_cache_dir_keeps_a_remote_archives_index_blocks(packed: Packed, tmp_path: Path) -> None:
    cache = tmp_path / "blocks"
    a = haypack.open(packed.url, cache_dir=cache, **packed.options)
    assert a["empty"] == b""
    cached = list(cache.glob("*.hpb")) if cache.exists() else []
    if packed.url.startswith("s3://"):
        assert cached, "a remote archive's index blocks are kept on disk"
        # A second reader (another process, with its own memory) starts from them.
        b = haypack.open(packed.url, cache_dir=cache, **packed.options)
        assert b["d0/sub0/f0000.bin"] == packed.files["d0/sub0/f0000.bin"]
    else:
        assert cached == [], "a local archive's blocks are on disk already"

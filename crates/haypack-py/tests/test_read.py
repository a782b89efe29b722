"""Every reading API on local and S3 archives, bytes compared with the source files."""

from __future__ import annotations

import io
import pickle
import random
import threading
import types

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

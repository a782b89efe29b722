"""Writing from code: the Writer, segments and their commit, and pack."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest

import haypack

from conftest import Place


def test_a_clean_block_commits(where: Place) -> None:
    with haypack.Writer(where.url, **where.options) as w:
        w.write("b.txt", b"bee", mtime=1_700_000_000.25, mode=0o600, content_type="text/x-bee")
        w.write("a.txt", bytearray(b"ay"))
        w.write("stream.bin", io.BytesIO(b"s" * 100_000))
        w.write("view.bin", memoryview(b"viewed"))
    assert w.result is not None and w.result[0] == 4
    a = haypack.open(where.url, **where.options)
    assert a.generation == w.result[2]
    assert list(a.keys()) == ["a.txt", "b.txt", "stream.bin", "view.bin"]
    assert (a["a.txt"], a["b.txt"], a["stream.bin"], a["view.bin"]) == (b"ay", b"bee", b"s" * 100_000, b"viewed")
    e = a.stat("b.txt")
    assert (e.mtime, e.mode & 0o777, e.content_type) == (1_700_000_000, 0o600, "text/x-bee")


def test_a_block_that_raises_commits_nothing(where: Place) -> None:
    with haypack.Writer(where.url, **where.options) as w:
        w.write("kept.txt", b"1")
    with pytest.raises(RuntimeError, match="boom"):
        with haypack.Writer(where.url, **where.options) as w:
            w.write("lost.txt", b"2")
            raise RuntimeError("boom")
    a = haypack.open(where.url, **where.options)
    assert a.generation == 1 and list(a.keys()) == ["kept.txt"]


def test_nothing_written_commits_nothing(tmp_path: Path) -> None:
    with haypack.Writer(tmp_path / "a") as w:
        pass
    assert w.result == (0, 0, None)
    with pytest.raises(haypack.NoArchiveError):
        haypack.open(tmp_path / "a")


def test_a_key_written_twice_commits_nothing(tmp_path: Path) -> None:
    with pytest.raises(haypack.Error, match="written twice"):
        with haypack.Writer(tmp_path / "a") as w:
            w.write("k", b"1")
            w.write("k", b"2")
    with pytest.raises(haypack.NoArchiveError):
        haypack.open(tmp_path / "a")


def test_a_writer_is_used_once(tmp_path: Path) -> None:
    w = haypack.Writer(tmp_path / "a")
    w.write("k", b"1")
    w.commit()
    with pytest.raises(haypack.InvalidError, match="already committed"):
        w.write("j", b"2")


def test_segments_pickle_and_commit_as_one_generation(where: Place) -> None:
    segments = []
    for part in range(3):
        w = haypack.Writer(where.url, codec="gzip" if part == 1 else "zstd", **where.options)
        for i in range(50):
            w.write(f"p{part}/{i:03d}", f"part {part} record {i}".encode())
        s = w.segment()
        assert s is not None and s.records == 50
        segments.append(pickle.loads(pickle.dumps(s)))
    report = haypack.commit(where.url, segments, **where.options)
    assert (report.added, report.generation) == (150, 1)
    again = haypack.commit(where.url, [s.json for s in segments], **where.options)
    assert again.generation is None and sorted(again.already) == sorted(s.token for s in segments)
    a = haypack.open(where.url, **where.options)
    assert len(a) == 150 and a["p1/049"] == b"part 1 record 49"
    assert a.verify().ok


def test_pack_a_directory_and_a_tar(where: Place, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "x" / "1.txt").write_bytes(b"one")
    (src / "2.txt").write_bytes(b"two")
    report = haypack.pack(src, where.url, codec="gzip", level=9, **where.options)
    assert (report.generation, report.records, report.bytes) == (1, 2, 6)
    with pytest.raises(haypack.Error, match="already holds a haypack archive"):
        haypack.pack(src, where.url, **where.options)
    tar_path = tmp_path / "in.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data in [("t/a", b"tar a"), ("t/b", b"tar b")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = haypack.pack(tar_path, where.url, force=True, prefix="from-tar/", **where.options)
    assert report.records == 2
    a = haypack.open(where.url, **where.options)
    assert dict(zip(a.keys(), a.get_many(list(a.keys())))) == {"from-tar/t/a": b"tar a", "from-tar/t/b": b"tar b"}


def test_a_writer_shared_by_threads_refuses_the_second_at_once(tmp_path: Path) -> None:
    import threading

    w = haypack.Writer(tmp_path / "a")
    errors: list = []
    started = threading.Event()

    class Slow:
        """A file that blocks until the other thread has tried."""

        def __init__(self) -> None:
            self.done = False

        def read(self, n: int = -1) -> bytes:
            started.set()
            if self.done:
                return b""
            self.done = True
            finished.wait(10)
            return b"slow"

    finished = threading.Event()
    t = threading.Thread(target=lambda: w.write("slow", Slow()))
    t.start()
    started.wait(10)
    try:
        w.write("other", b"x")
    except haypack.InvalidError as e:
        errors.append(str(e))
    finished.set()
    t.join()
    assert errors and "another thread" in errors[0]
    w.commit()
    assert haypack.open(tmp_path / "a")["slow"] == b"slow"


def test_a_writer_uses_the_archives_dictionary(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"{i:03d}.json").write_text(f'{{"id": {i}, "name": "record number {i}", "tags": ["a", "b"]}}\n')
    haypack.pack(src, tmp_path / "a", dict="on")
    with haypack.Writer(tmp_path / "a") as w:
        w.write("new.json", b'{"id": 999, "name": "record number 999", "tags": ["a", "b"]}\n')
    a = haypack.open(tmp_path / "a")
    assert a["new.json"].startswith(b'{"id": 999') and a["007.json"].startswith(b'{"id": 7,')
    assert a.verify().ok
    with pytest.raises(haypack.InvalidError, match="cannot train"):
        haypack.Writer(tmp_path / "a", dict="on")

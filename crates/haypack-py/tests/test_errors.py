"""Errors arrive as classes a caller can catch, each with the CLI's message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import haypack

from conftest import Packed, make_tree


def test_hierarchy() -> None:
    assert issubclass(haypack.NotFoundError, KeyError) and issubclass(haypack.NotFoundError, haypack.Error)
    assert issubclass(haypack.StoreError, OSError) and issubclass(haypack.StoreError, haypack.Error)
    assert issubclass(haypack.NoArchiveError, haypack.StoreError)
    assert issubclass(haypack.NoArchiveError, FileNotFoundError)
    assert issubclass(haypack.CorruptError, haypack.Error) and issubclass(haypack.ChangedError, haypack.Error)
    assert issubclass(haypack.InvalidError, ValueError)


def test_a_missing_key_is_a_key_error(packed: Packed) -> None:
    a = packed.open()
    with pytest.raises(KeyError) as caught:
        a["no/such/key"]
    assert isinstance(caught.value, haypack.NotFoundError)
    assert str(caught.value) == f'no record "no/such/key" in {packed.url}'
    for call in (lambda: a.get("x"), lambda: a.stat("x"), lambda: a.get_many(["empty", "x"]), lambda: a.open_record("x")):
        with pytest.raises(haypack.NotFoundError):
            call()


def test_no_archive(where) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(haypack.NoArchiveError) as caught:
        haypack.open(where.url, **where.options)
    assert "no haypack archive at" in str(caught.value) and "manifest.json" in str(caught.value)


def test_an_unreachable_store_is_an_os_error() -> None:
    with pytest.raises(haypack.StoreError) as caught:
        haypack.open("s3://some-bucket/x", endpoint_url="http://127.0.0.1:9", region="us-east-1", credentials=("a", "b"))
    assert isinstance(caught.value, OSError)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(haypack.InvalidError, match="local directory or s3://"):
        haypack.open("http://example.invalid/archive")
    with pytest.raises(haypack.InvalidError, match="codec"):
        haypack.Writer(tmp_path / "a", codec="brotli")
    with pytest.raises(haypack.InvalidError):
        with haypack.Writer(tmp_path / "a") as w:
            w.write("", b"x")


def _local(tmp_path: Path) -> tuple:
    files = make_tree(tmp_path / "src", count=40)
    del files["large/blob.bin"]
    os.remove(tmp_path / "src" / "large" / "blob.bin")
    haypack.pack(tmp_path / "src", tmp_path / "a")
    return tmp_path / "a", files


def test_corruption_is_its_own_class(tmp_path: Path) -> None:
    root, files = _local(tmp_path)
    a = haypack.open(root)
    key = next(k for k, v in sorted(files.items()) if len(v) > 2000)
    e = a.stat(key)
    (pack,) = [p for p in (root / "packs").iterdir()]
    raw = bytearray(pack.read_bytes())
    # Flip a byte inside the record's stored content (its last bytes).
    at = raw.index(key.encode()) + len(key) + 200
    raw[at] ^= 0xFF
    pack.write_bytes(bytes(raw))
    with pytest.raises(haypack.CorruptError) as caught:
        haypack.open(root).get(key)
    # Where: the pack, and the record's key.
    assert "packs/" in str(caught.value) and key in str(caught.value)
    assert not haypack.open(root).verify().ok
    assert e.size == len(files[key])


def test_an_object_replaced_under_the_reader(tmp_path: Path) -> None:
    root, files = _local(tmp_path)
    a = haypack.open(root)
    assert a["d0/sub0/f0000.bin"] == files["d0/sub0/f0000.bin"]
    (pack,) = [p for p in (root / "packs").iterdir()]
    data = pack.read_bytes()
    pack.unlink()
    pack.write_bytes(data)  # the same bytes, but another file than the one pinned
    with pytest.raises(haypack.ChangedError) as caught:
        a["d1/sub1/f0001.bin"]
    assert "open the archive again" in str(caught.value)

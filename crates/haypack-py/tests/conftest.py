"""Fixtures: source trees packed into archives on every store the suite runs against: a local
directory, and the Garage and moto servers `scripts/s3-servers.sh` starts (described in the
environment as HAYPACK_TEST_{GARAGE,MOTO}_*). With HAYPACK_REQUIRE_S3=1, as `scripts/test.sh`
sets, a missing server fails the run instead of skipping."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import pytest

import haypack

STORES = ["local", "garage", "moto"]
# Past the reader's 16 MiB budget: read in chunks and streamed, never held whole.
LARGE = 17 << 20


class Server(NamedTuple):
    endpoint: str
    key_id: str
    secret: str
    bucket: str
    region: str

    def options(self) -> Dict[str, Any]:
        return {"endpoint_url": self.endpoint, "region": self.region, "credentials": (self.key_id, self.secret)}


def server(name: str) -> Optional[Server]:
    fields = ["ENDPOINT", "KEY_ID", "SECRET", "BUCKET", "REGION"]
    values = [os.environ.get(f"HAYPACK_TEST_{name.upper()}_{f}") for f in fields]
    if all(values):
        return Server(*values)  # type: ignore[arg-type]
    if os.environ.get("HAYPACK_REQUIRE_S3") == "1":
        pytest.fail(f"the {name} test server is not running: run the tests with scripts/test.sh")
    pytest.skip(f"no {name} test server (scripts/test.sh starts one)")
    return None


class Place(NamedTuple):
    """Where an archive goes, and the options that reach it."""

    url: str
    options: Dict[str, Any]


def place(store: str, tmp: Path) -> Place:
    if store == "local":
        return Place(str(tmp / f"archive-{uuid.uuid4().hex[:8]}"), {})
    s = server(store)
    assert s is not None
    return Place(f"s3://{s.bucket}/pytest-{uuid.uuid4().hex}", s.options())


def make_tree(root: Path, count: int = 300, seed: int = 7) -> Dict[str, bytes]:
    """Files of many shapes: empty, tiny text, compressible, incompressible, nested, and one
    large enough to be streamed. Returns key -> content."""
    rng = random.Random(seed)
    files: Dict[str, bytes] = {}
    for i in range(count):
        kind = i % 4
        if kind == 0:
            data = f"record {i}\n".encode() * rng.randint(0, 50)
        elif kind == 1:
            data = rng.randbytes(rng.randint(0, 5000))
        elif kind == 2:
            data = bytes(rng.randint(0, 3) for _ in range(rng.randint(1, 20000)))
        else:
            data = b"{}"
        key = f"d{i % 7}/sub{i % 3}/f{i:04d}.bin"
        files[key] = data
    files["empty"] = b""
    files["large/blob.bin"] = rng.randbytes(LARGE // 2) * 2
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


class Packed(NamedTuple):
    url: str
    options: Dict[str, Any]
    files: Dict[str, bytes]

    def open(self) -> haypack.Archive:
        return haypack.open(self.url, **self.options)


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("src")
    return root, make_tree(root)


@pytest.fixture(scope="session", params=STORES)
def packed(request: pytest.FixtureRequest, tree: Any, tmp_path_factory: pytest.TempPathFactory) -> Packed:
    root, files = tree
    p = place(request.param, tmp_path_factory.mktemp("dest"))
    report = haypack.pack(root, p.url, pack_size=2 << 20, **p.options)
    assert report.records == len(files)
    return Packed(p.url, p.options, files)


@pytest.fixture(params=STORES)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return place(request.param, tmp_path)

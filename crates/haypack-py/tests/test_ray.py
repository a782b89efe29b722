"""haypack.ray on a real local Ray (2 CPUs) against Garage and moto: a dataset written through
the sink and read back through read_haypack, a write task that fails once and is run again, and
a job that fails. Ray is an optional extra: under a bare pytest without it these tests are
skipped (and say so); under scripts/test.sh, which installs it, a missing Ray fails the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator

import pytest

from conftest import place

if os.environ.get("HAYPACK_REQUIRE_S3") == "1":
    import ray
else:
    ray = pytest.importorskip("ray")

import haypack
import haypack.ray

S3 = ["garage", "moto"]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # Ray's workers import this file's functions by name, as the driver does.
    here = {"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env=here)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


def record(i: int) -> Dict[str, Any]:
    """Row ``i``: a key and content that say which row they are, of varied sizes."""
    return {"key": f"r/{i % 97:02d}/{i:06d}.txt", "data": (f"record {i} " * (i % 40 + 1)).encode()}


def records(n: int) -> Dict[str, bytes]:
    return {r["key"]: r["data"] for r in map(record, range(n))}


def dataset(n: int, blocks: int = 8) -> "ray.data.Dataset":
    return ray.data.range(n, override_num_blocks=blocks).map(lambda row: record(row["id"]))


def read_back(url: str, options: Dict[str, Any], **kwargs: Any) -> Dict[str, bytes]:
    rows = haypack.ray.read_haypack(url, **options, **kwargs).take_all()
    got: Dict[str, bytes] = {}
    for row in rows:
        assert row["key"] not in got, f"{row['key']} read twice"
        got[row["key"]] = bytes(row["data"])
    return got


@pytest.mark.parametrize("store", S3)
def test_a_dataset_written_through_the_sink_reads_back_the_same(store: str, tmp_path: Path) -> None:
    url, options = place(store, tmp_path)
    expected = records(20_000)
    sink = haypack.ray.HaypackDatasink(url, writer_options={"pack_size": 1 << 20}, **options)
    dataset(20_000).write_datasink(sink)

    archive = haypack.open(url, **options)
    # Every write task's segment lands in one commit: one generation, every record once.
    assert (archive.generation, len(archive)) == (1, 20_000)
    assert sink.committed is not None and sink.committed.added == 20_000
    assert archive.verify().ok
    # Read tasks split the archive along its index blocks: several, each a disjoint key range.
    source = haypack.ray.HaypackDatasource(url, **options)
    tasks = source.get_read_tasks(4)
    assert len(tasks) > 1 and sum(t.metadata.num_rows for t in tasks) == 20_000
    assert read_back(url, options) == expected
    # A prefix reads its keys only.
    assert read_back(url, options, prefix="r/13/") == {k: v for k, v in expected.items() if k.startswith("r/13/")}


class FailsOnce(haypack.ray.HaypackDatasink):
    """A sink whose first write task breaks off after writing part of its rows, the first time
    it runs: Ray runs it again."""

    def __init__(self, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._marker = marker

    def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
        if ctx.task_idx == 0 and not os.path.exists(self._marker):
            open(self._marker, "w").close()
            blocks = broken(blocks)
        return super().write(blocks, ctx)


def broken(blocks: Iterable[Any]) -> Iterator[Any]:
    for block in blocks:
        yield block
        raise RuntimeError("a worker lost half-way through its task")


@pytest.mark.parametrize("store", S3)
def test_a_task_that_fails_once_is_run_again_and_no_record_lands_twice(store: str, tmp_path: Path) -> None:
    url, options = place(store, tmp_path)
    marker = str(tmp_path / "failed-once")
    sink = FailsOnce(marker, url=url, writer_options={"pack_size": 1 << 20}, **options)
    dataset(4_000, blocks=4).write_datasink(sink, ray_remote_args={"max_retries": 2, "retry_exceptions": True})
    assert os.path.exists(marker), "the first attempt did fail"

    archive = haypack.open(url, **options)
    assert (archive.generation, len(archive)) == (1, 4_000)
    assert archive.verify().ok
    assert read_back(url, options) == records(4_000)


def explode(row: Dict[str, Any]) -> Dict[str, Any]:
    if row["id"] == 1234:
        raise ValueError("a bad row")
    return record(row["id"])


@pytest.mark.parametrize("store", S3)
def test_a_job_that_fails_commits_nothing(store: str, tmp_path: Path) -> None:
    url, options = place(store, tmp_path)
    sink = haypack.ray.HaypackDatasink(url, **options)
    with pytest.raises(Exception, match="a bad row"):
        ray.data.range(4_000, override_num_blocks=4).map(explode).write_datasink(sink)
    assert sink.committed is None
    with pytest.raises(haypack.NoArchiveError):
        haypack.open(url, **options)

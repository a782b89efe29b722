"""Ray Data: read an archive as a :class:`ray.data.Dataset`, write a dataset into an archive.

Needs Ray (``pip install haypack[ray]``)::

    import ray, haypack.ray

    ds = haypack.ray.read_haypack("s3://bucket/crawl", prefix="2024/")   # rows: key, data, ...
    ds = ds.map(lambda row: {"key": row["key"], "data": row["data"].upper()})
    ds.write_datasink(haypack.ray.HaypackDatasink("s3://bucket/crawl-upper"))

**Reading** splits the archive along its index pages (or leaves): each read task takes a run of
whole parts, so tasks read disjoint key ranges, and fetches its records with coalesced range reads
(:meth:`haypack.Archive.get_many`), a batch at a time. Nothing is listed or opened up front but
the manifest. Rows are ``{key, data, size, mtime, mode, content_type}``.

**Writing**: each write task writes its rows as a segment (:meth:`haypack.Writer.segment`), and
the driver commits every task's segment at once, in one generation, when all have finished
(:func:`haypack.commit`). A job that fails commits nothing; a task that Ray runs again writes a
new segment and only the attempt that returned is committed, so no record lands twice; the
packs of attempts that did not return are collected by ``haypack gc`` once past its grace.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa  # type: ignore[import-untyped]
import ray.data
from ray.data.block import Block, BlockAccessor, BlockMetadata
from ray.data.datasource import Datasink, Datasource, ReadTask, WriteResult

import haypack

__all__ = ["HaypackDatasink", "HaypackDatasource", "read_haypack"]

# A batch of records fetched with one get_many, and the most stored bytes it may hold: a block
# of rows stays far below what a Ray worker holds, however small the records are.
_BATCH_ROWS = 1024
_BATCH_BYTES = 64 << 20
# Parts the index is split into at most, before they are grouped into read tasks.
_PARTS = 1024


class HaypackDatasource(Datasource):
    """The records of an archive (or of the keys under ``prefix``) as Ray Data blocks."""

    def __init__(self, url: str, prefix: str = "", **open_options: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._archive = haypack.open(url, **open_options)
        self._prefix = prefix
        manifest = json.loads(self._archive._native.manifest_json())
        # Disjoint key ranges of the index (its pages, or their leaves if pages are few): part
        # i holds the keys from its first key up to the next part's; it can hold keys under
        # the prefix if that range meets [prefix, the prefix's end).
        parts = self._archive._native.index_parts(_PARTS)
        firsts = [first for first, _ in parts]
        self._blocks = [
            ((firsts[i], firsts[i + 1] if i + 1 < len(parts) else None), n)
            for i, (first, n) in enumerate(parts)
            if (i + 1 == len(parts) or firsts[i + 1] > prefix) and (first.startswith(prefix) or first < prefix)
        ]
        self._raw_per_record = manifest.get("raw_bytes", 0) / max(1, manifest.get("records", 1))

    def get_name(self) -> str:
        return "Haypack"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return int(sum(n for _, n in self._blocks) * self._raw_per_record)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: Optional[int] = None,
        data_context: Optional[Any] = None,
    ) -> List[ReadTask]:
        groups = _split(self._blocks, max(1, parallelism))
        tasks = []
        for group in groups:
            records = sum(n for _, n in group)
            metadata = BlockMetadata(
                # Exact without a prefix; with one, the blocks at its edges hold other keys too.
                num_rows=records if not self._prefix else None,
                size_bytes=int(records * self._raw_per_record),
                exec_stats=None,
                input_files=None,
            )
            tasks.append(ReadTask(functools.partial(_read, self._archive, [i for i, _ in group], self._prefix), metadata))
        return tasks


def _split(blocks: Sequence[Any], parts: int) -> List[List[Any]]:
    """Contiguous runs of ``(block, records)``, ``parts`` of them (fewer if there are fewer
    blocks), each holding about the same number of records."""
    parts = min(parts, len(blocks))
    total = sum(n for _, n in blocks)
    runs: List[List[Any]] = []
    run: List[Any] = []
    held = 0
    for i, block in enumerate(blocks):
        run.append(block)
        held += block[1]
        runs_to_come = parts - len(runs) - 1
        blocks_to_come = len(blocks) - i - 1
        # Close the run at its share of the records, or when each run to come needs a block.
        if runs_to_come > 0 and (held >= total * (len(runs) + 1) / parts or blocks_to_come == runs_to_come):
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs


def _read(archive: haypack.Archive, ranges: List[Tuple[str, Optional[str]]], prefix: str) -> Iterator[Block]:
    """The records of the key ranges ``ranges`` under ``prefix``, a batch (one ``get_many``)
    per Arrow table."""
    for first, past in ranges:
        rows = archive._native.range_entries(first, past, prefix)
        start = 0
        while start < len(rows):
            end, stored = start, 0
            while end < len(rows) and end - start < _BATCH_ROWS and (end == start or stored + rows[end][2] <= _BATCH_BYTES):
                stored += rows[end][2]
                end += 1
            batch = rows[start:end]
            keys = [r[0] for r in batch]
            yield pa.table(
                {
                    "key": pa.array(keys, pa.string()),
                    "data": pa.array(archive.get_many(keys), pa.large_binary()),
                    "size": pa.array([r[1] for r in batch], pa.uint64()),
                    "mtime": pa.array([r[3] for r in batch], pa.int64()),
                    "mode": pa.array([r[4] for r in batch], pa.uint32()),
                    "content_type": pa.array([r[5] for r in batch], pa.string()),
                }
            )
            start = end


def read_haypack(
    url: str,
    prefix: str = "",
    *,
    override_num_blocks: Optional[int] = None,
    **open_options: Any,
) -> "ray.data.Dataset":
    """The records of the archive at ``url`` (those whose keys start with ``prefix``) as a
    dataset of ``{key, data, size, mtime, mode, content_type}`` rows. ``open_options`` are
    :func:`haypack.open`'s (``endpoint_url``, ``region``, ``credentials``, ``cache_dir``)."""
    source = HaypackDatasource(url, prefix, **open_options)
    dataset: ray.data.Dataset = ray.data.read_datasource(source, override_num_blocks=override_num_blocks)
    return dataset


class HaypackDatasink(Datasink[Optional[str]]):
    """Writes a dataset's rows into the archive at ``url`` (created if there is none), one new
    generation for the whole job. Each row gives a record: its key from ``key_column``, its
    content (bytes or str) from ``data_column``, and if the rows have them ``mtime`` (seconds),
    ``mode`` and ``content_type``. ``keep_last`` settles a key written twice (by default an
    error, and nothing is committed). ``writer_options`` are :class:`haypack.Writer`'s (``codec``,
    ``level``, ``pack_size``); ``store_options`` reach the store (``endpoint_url``, ``region``,
    ``credentials``)."""

    def __init__(
        self,
        url: str,
        *,
        key_column: str = "key",
        data_column: str = "data",
        keep_last: bool = False,
        writer_options: Optional[Dict[str, Any]] = None,
        **store_options: Any,
    ) -> None:
        self._url = url
        self._key = key_column
        self._data = data_column
        self._keep_last = keep_last
        self._writer_options = dict(writer_options or {})
        self._store_options = store_options
        self.committed: Optional[haypack.CommitReport] = None
        """After the job: what the commit did."""

    def get_name(self) -> str:
        return "Haypack"

    def write(self, blocks: Iterable[Block], ctx: Any) -> Optional[str]:
        """Writes one task's rows as a segment; returns its JSON (``None`` if it had no rows)."""
        writer = haypack.Writer(self._url, **self._writer_options, **self._store_options)
        try:
            for block in blocks:
                row: Any
                for row in BlockAccessor.for_block(block).iter_rows(public_row_format=False):
                    data = row[self._data]
                    writer.write(
                        row[self._key],
                        data.encode() if isinstance(data, str) else bytes(data),
                        mtime=row.get("mtime"),
                        mode=row.get("mode"),
                        content_type=row.get("content_type"),
                    )
        except BaseException:
            writer.close()
            raise
        segment = writer.segment()
        return None if segment is None else segment.json

    def on_write_complete(self, write_result: WriteResult[Optional[str]]) -> None:
        """Commits every task's segment, in one generation."""
        segments = [s for s in write_result.write_returns if s is not None]
        if segments:
            self.committed = haypack.commit(self._url, segments, keep_last=self._keep_last, **self._store_options)

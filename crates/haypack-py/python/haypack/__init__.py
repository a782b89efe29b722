"""Read and write haypack archives: millions of small records packed into a few large packs,
each compressed and checksummed on its own, any one read back by key with a single range read.

Archives live in a local directory or under any S3 prefix (``s3://bucket/prefix``; credentials
and region from the standard AWS chain, ``endpoint_url`` for S3-compatible servers)::

    import haypack

    haypack.pack("photos/", "photos.haypack")          # a directory, or a tar, zip or WARC
    archive = haypack.open("photos.haypack")
    data = archive["2024/cat.jpg"]                      # verified bytes
    for entry in archive.list("2024/"):                 # lazily, in key order
        print(entry.key, entry.size)

    with haypack.Writer("s3://bucket/ds", endpoint_url="http://127.0.0.1:3900") as w:
        w.write("a/1.json", b"{}")                      # committed when the block ends cleanly

Every call that reads, writes or decodes releases the GIL, so threads reading at once scale.
An :class:`Archive` keeps working in processes started with ``fork`` and, pickled, with
``spawn``: each process gets its own connections, reading the same generation. For PyTorch,
see :mod:`haypack.data`.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from . import _haypack
from .errors import (
    ChangedError,
    CorruptError,
    Error,
    InvalidError,
    NoArchiveError,
    NotFoundError,
    StoreError,
)

__version__: str = _haypack.__version__

__all__ = [
    "Archive",
    "ChangedError",
    "CorruptError",
    "Entry",
    "Error",
    "InvalidError",
    "NoArchiveError",
    "NotFoundError",
    "PackReport",
    "RecordReader",
    "Segment",
    "StoreError",
    "VerifyReport",
    "Writer",
    "commit",
    "open",
    "pack",
]

PathLike = Union[str, "os.PathLike[str]"]
Credentials = Optional[Tuple[str, str]]

# Entries fetched per listing request: a page is cut from the index blocks already cached.
_PAGE = 1000


class Entry(NamedTuple):
    """A record's entry in the archive index."""

    key: str
    """The record's key."""
    size: int
    """Content length in bytes."""
    stored_size: int
    """Bytes the record takes in its pack, compressed, header included."""
    mtime: int
    """Modification time, whole seconds since 1970 (the index keeps seconds)."""
    mode: int
    """Unix permission bits."""
    content_type: Optional[str]
    """Media type, if known."""


class VerifyReport(NamedTuple):
    """What :meth:`Archive.verify` found."""

    packs: int
    records: int
    bytes: int
    problems: List[str]
    """Everything wrong, one line each; empty when all is well."""

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems


def _location(url: PathLike) -> str:
    return os.fspath(url)


class RecordReader(io.RawIOBase):
    """A record's content as a read-only binary file, streamed: memory holds one piece (at most
    256 KiB) and one chunk of stored bytes, however large the record. Returned by
    :meth:`Archive.open_record`; wrap it in ``io.BufferedReader`` for ``readline``.

    The content is checked as it streams: a record that fails its checksum raises
    :class:`CorruptError` from the read that reaches the failure, and what was read before must
    be discarded. The last bytes come out only once the whole record passed.
    """

    def __init__(self, stream: _haypack.NativeStream, entry: Entry) -> None:
        super().__init__()
        self._stream: Optional[_haypack.NativeStream] = stream
        self._piece = b""
        self._at = 0
        self.entry = entry
        """The record's index entry."""

    @property
    def name(self) -> str:
        """The record's key."""
        return self.entry.key

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while self._at >= len(self._piece):
            if self._stream is None:
                return False
            piece = self._stream.next_piece()
            if not piece:
                self._stream.close()
                self._stream = None
                return False
            self._piece, self._at = piece, 0
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(buffer).cast("B")
        if not self._fill():
            return 0
        n = min(len(view), len(self._piece) - self._at)
        view[:n] = self._piece[self._at : self._at + n]
        self._at += n
        return n

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if size is None or size < 0:
            return self.readall()
        if not self._fill():
            return b""
        n = min(size, len(self._piece) - self._at)
        out = self._piece[self._at : self._at + n]
        self._at += n
        return out

    def readall(self) -> bytes:
        parts = []
        while self._fill():
            parts.append(self._piece[self._at :])
            self._at = len(self._piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


class Archive:
    """An open archive, pinned to the generation it opened: a commit by another writer is not
    seen until the archive is opened again, and an object replaced under it raises
    :class:`ChangedError` rather than returning bytes of another generation.

    Use :func:`open` to make one. Thread-safe: share one archive between threads. Picklable:
    the pickle carries the location, the S3 options, the index memory bound and the generation's
    manifest (not caches), so the unpickled archive reads exactly the same generation through
    connections of its own.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _haypack.NativeArchive) -> None:
        self._native = native

    def __reduce__(self) -> Any:
        return (Archive, (self._native,))

    def __repr__(self) -> str:
        return f"<haypack.Archive {self.url!r} generation {self.generation}, {len(self)} records>"

    @property
    def url(self) -> str:
        """The archive's location, as given."""
        return self._native.url

    @property
    def generation(self) -> int:
        """The generation this reader is pinned to."""
        return self._native.generation

    def __len__(self) -> int:
        """Records in the pinned generation."""
        return self._native.records

    def get(self, key: str) -> bytes:
        """The content of ``key``, verified. Raises :class:`NotFoundError` if there is no such
        record. One range read once the index block is cached (three reads cold)."""
        return self._native.get(key)

    def __getitem__(self, key: str) -> bytes:
        return self._native.get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._native.contains(key)

    def stat(self, key: str) -> Entry:
        """The index entry of ``key`` (no read of the record itself)."""
        return Entry(*self._native.stat(key))

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """The entries whose keys start with ``prefix``, in key order, fetched a page at a time
        as the iterator is consumed."""
        after: Optional[str] = None
        while True:
            rows, more = self._native.list_page(prefix, after, _PAGE)
            for row in rows:
                yield Entry(*row)
            if not more or not rows:
                return
            after = rows[-1][0]

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys starting with ``prefix``, in key order, lazily."""
        return (e.key for e in self.list(prefix))

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def get_many(self, keys: Iterable[str]) -> List[bytes]:
        """The contents of ``keys``, in the order given (a key may repeat). Records of one pack
        less than 1 MiB apart share one range read (up to 16 MiB), four in flight: a batch of
        neighbouring records costs a request or two instead of one each."""
        return self._native.get_many(list(keys))

    def open_record(self, key: str) -> RecordReader:
        """``key``'s content as a streaming, read-only binary file (see :class:`RecordReader`):
        for records too large to hold whole."""
        stream, row = self._native.stream(key)
        return RecordReader(stream, Entry(*row))

    def verify(self) -> VerifyReport:
        """Reads the whole archive and checks everything: every pack's checksum, footer and own
        index, every record, and that the archive index and the packs agree. Problems are
        reported, not raised; an exception means the store itself failed."""
        packs, records, nbytes, problems = self._native.verify()
        return VerifyReport(packs, records, nbytes, list(problems))


def open(
    url: PathLike,
    *,
    endpoint_url: Optional[str] = None,
    region: Optional[str] = None,
    credentials: Credentials = None,
    cache_dir: Optional[PathLike] = None,
    index_memory: Optional[int] = None,
) -> Archive:
    """Opens the archive at ``url``: a local directory or ``s3://bucket/prefix``. Reads its
    manifest (one request).

    ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) reaches an S3-compatible server; ``region`` and
    ``credentials`` (an access key id and secret) override the standard AWS chain. With
    ``cache_dir``, a remote archive's index blocks are kept on disk there too, so the next
    process starts warm; files are named by checksum and written by rename, so processes can
    share the directory safely. ``index_memory`` bounds, in bytes, the index each process keeps
    in memory (128 MiB by default): past it, a lookup searches a compressed leaf or reads one
    again instead of keeping more.
    """
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    native = _haypack.NativeArchive(_location(url), endpoint_url, region, credentials, cache, None, index_memory)
    return Archive(native)


class Segment:
    """What a :class:`Writer` wrote without committing (:meth:`Writer.segment`): packs and a
    sorted index run in the archive's store, described by a small JSON document. Picklable and
    JSON-serialisable (:attr:`json`), so workers can send theirs to one process that calls
    :func:`commit`."""

    __slots__ = ("json",)

    def __init__(self, json_text: str) -> None:
        self.json: str = json_text
        """The segment's description, as the CLI's ``--segment-out`` writes it."""

    def _field(self, name: str) -> Any:
        return json.loads(self.json)[name]

    @property
    def records(self) -> int:
        """Records in the segment."""
        return int(self._field("records"))

    @property
    def token(self) -> str:
        """The name part unique to the writer."""
        return str(self._field("token"))

    def __reduce__(self) -> Any:
        return (Segment, (self.json,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Segment) and other.json == self.json

    def __hash__(self) -> int:
        return hash(self.json)

    def __repr__(self) -> str:
        return f"<haypack.Segment {self.token} with {self.records} records>"


class Writer:
    """Writes records, in any key order, into new packs of the archive at ``url`` (created at
    the first commit if there is none)::

        with haypack.Writer("out.haypack") as w:
            w.write("a.txt", b"hello")
            w.write("big.bin", open("big.bin", "rb"))   # a file streams, however large

    Leaving the ``with`` block normally commits (one new generation; a key already there gets
    the new record). If the block raises, nothing is committed and the exception goes on; what
    was written stays unreferenced until ``haypack gc`` removes it. Outside a ``with`` block,
    end with :meth:`commit` or :meth:`segment`.

    ``codec`` is ``"zstd"`` (default), ``"gzip"`` or ``"stored"``; ``level`` its level;
    ``pack_size`` the target pack size in bytes. ``dict``: small records are compressed against
    the archive's newest zstd dictionary whenever it has one (``dict=None``, the only choice a
    writer has: records arrive one at a time, so a writer cannot train one; :func:`pack` with
    ``dict="on"`` trains one on a directory, and later writers use it).

    A writer belongs to the process that made it (it compresses on a thread pool that does not
    survive ``fork``): make writers in the processes that use them, and send their
    :class:`Segment` to one process for :func:`commit`.
    """

    def __init__(
        self,
        url: PathLike,
        *,
        codec: str = "zstd",
        level: Optional[int] = None,
        pack_size: Optional[int] = None,
        dict: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        credentials: Credentials = None,
    ) -> None:
        if dict is not None:
            raise InvalidError(
                f"dict={dict!r}: a Writer compresses with the archive's dictionary when it has one "
                "and cannot train one; train it with haypack.pack(..., dict=\"on\") (or `haypack pack --dict`)"
            )
        self._url = _location(url)
        self._native = _haypack.NativeWriter(self._url, endpoint_url, region, credentials, codec, level, pack_size)
        self.result: Optional[Tuple[int, int, Optional[int]]] = None
        """After a commit: (records added, records replaced, the new generation)."""

    def write(
        self,
        key: str,
        data: Union[bytes, bytearray, memoryview, Any],
        mtime: Optional[float] = None,
        mode: Optional[int] = None,
        content_type: Optional[str] = None,
    ) -> None:
        """Writes one record: ``data`` is bytes or a binary file (read to its end before this
        returns). ``mtime`` is seconds since 1970 (default: now), ``mode`` Unix permission bits
        (default 0o644), ``content_type`` a media type (default: guessed from the key). Writing
        a key twice in one writer is an error at the commit."""
        if isinstance(data, memoryview):
            data = data.tobytes()
        self._native.write(key, data, mtime, mode, content_type)

    def commit(self) -> Tuple[int, int, Optional[int]]:
        """Commits the records as the archive's next generation: (added, replaced, generation);
        the generation is ``None`` when nothing was written. Nothing is committed if it fails."""
        self.result = self._native.commit()
        return self.result

    def segment(self) -> Optional[Segment]:
        """Ends without committing: the records' packs and index run stay in the store,
        described by the returned :class:`Segment` (``None`` if nothing was written), for
        :func:`commit` to merge with other writers' in one generation."""
        text = self._native.segment()
        return None if text is None else Segment(text)

    def close(self) -> None:
        """Ends without committing (what was written is left for ``haypack gc``)."""
        self._native.close()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.close()


class CommitReport(NamedTuple):
    """What :func:`commit` did."""

    added: int
    replaced: int
    generation: Optional[int]
    """The new generation; ``None`` when every segment was committed before."""
    already: List[str]
    """Tokens of segments skipped because the archive already holds them."""


def commit(
    url: PathLike,
    segments: Sequence[Union[Segment, str]],
    *,
    keep_last: bool = False,
    endpoint_url: Optional[str] = None,
    region: Optional[str] = None,
    credentials: Credentials = None,
) -> CommitReport:
    """Commits segments (from :meth:`Writer.segment`, or their JSON) into the archive at ``url``
    as one generation. A key in two segments is an error unless ``keep_last`` (the later
    segment's wins); a segment committed before is skipped, so committing twice adds nothing
    twice."""
    texts = [s.json if isinstance(s, Segment) else str(s) for s in segments]
    added, replaced, generation, already = _haypack.commit(
        _location(url), texts, endpoint_url, region, credentials, keep_last
    )
    return CommitReport(added, replaced, generation, list(already))


class PackReport(NamedTuple):
    """What :func:`pack` did."""

    generation: int
    records: int
    bytes: int
    """Raw content bytes packed."""
    skipped: List[Tuple[str, str]]
    """Entries passed over (links, devices, unreadable files when skipping): (path, reason)."""


def pack(
    src: PathLike,
    dest: PathLike,
    *,
    codec: str = "zstd",
    level: Optional[int] = None,
    pack_size: Optional[int] = None,
    dict: str = "off",
    force: bool = False,
    prefix: str = "",
    skip_unreadable: bool = False,
    format: Optional[str] = None,
    endpoint_url: Optional[str] = None,
    region: Optional[str] = None,
    credentials: Credentials = None,
) -> PackReport:
    """Packs ``src`` — a directory, or a tar (plain or compressed), zip or WARC file — into a new
    archive at ``dest``, as ``haypack pack`` does. ``dict="on"`` trains a zstd dictionary on a
    directory's small files (``"auto"``: only if they are small); ``force`` replaces an archive
    already at ``dest``; ``prefix`` is put before every key; ``format`` insists on ``"dir"``,
    ``"tar"``, ``"zip"`` or ``"warc"`` instead of recognising the input by its bytes."""
    generation, records, nbytes, skipped = _haypack.pack(
        os.fspath(src),
        _location(dest),
        endpoint_url,
        region,
        credentials,
        codec,
        level,
        pack_size,
        dict,
        force,
        prefix,
        skip_unreadable,
        format,
    )
    return PackReport(generation, records, nbytes, list(skipped))

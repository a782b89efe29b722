"""The exceptions haypack raises: one hierarchy, so a caller can catch as broadly or as
narrowly as it needs. Each message is the one the ``haypack`` command prints for the same error.

::

    Error                    every haypack failure
    ├── NotFoundError        no record has the key (also a KeyError)
    ├── StoreError           the store failed: network, permissions, a missing bucket (also an OSError)
    │   └── NoArchiveError   nothing at the location is a haypack archive (also a FileNotFoundError)
    ├── CorruptError         stored bytes failed a check; nothing from them was returned
    ├── ChangedError         an object was replaced after the reader opened its generation
    └── InvalidError         an argument that cannot be used (also a ValueError)
"""

from __future__ import annotations

__all__ = [
    "Error",
    "NotFoundError",
    "StoreError",
    "NoArchiveError",
    "CorruptError",
    "ChangedError",
    "InvalidError",
]


class Error(Exception):
    """Base class of every error haypack raises."""


class NotFoundError(Error, KeyError):
    """No record has this key. A ``KeyError``, so ``archive[key]`` behaves like a mapping's."""

    def __str__(self) -> str:
        # KeyError quotes its argument; the message is a sentence, not a key.
        return Exception.__str__(self)


class StoreError(Error, OSError):
    """The store failed: a network error, a refusal (credentials, a missing bucket), a full disk."""


class NoArchiveError(StoreError, FileNotFoundError):
    """There is no haypack archive at the location (it has no manifest.json)."""


class CorruptError(Error):
    """Stored bytes failed a check (checksum, framing, index). Nothing from them was returned;
    run ``haypack verify`` on the archive."""


class ChangedError(Error):
    """An object of the archive was replaced after this reader opened its generation (a
    rewrite, or a ``gc`` after ``compact``). Open the archive again."""


class InvalidError(Error, ValueError):
    """An argument that cannot be used: an unknown codec, a key the format cannot hold, a
    location that is neither a directory nor ``s3://bucket/prefix``."""

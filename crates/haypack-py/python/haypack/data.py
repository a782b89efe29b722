"""Feeding a training loop: a map-style dataset over an archive (or a prefix of it) and a
sampler with a deterministic global shuffle, for PyTorch's ``DataLoader`` or any loop.

torch is not a dependency: :class:`Dataset` and :class:`Sampler` have the methods
``DataLoader`` calls (``__len__``, ``__getitem__``, ``__getitems__``, ``__iter__``,
``set_epoch``), and torch is imported only if it is installed, to ask which worker runs.

::

    import haypack, haypack.data
    from torch.utils.data import DataLoader

    ds = haypack.data.Dataset("s3://bucket/train", transform=decode)
    sampler = haypack.data.Sampler(ds, seed=0, rank=rank, world_size=world_size)
    loader = DataLoader(ds, batch_size=64, sampler=sampler, num_workers=8,
                        collate_fn=collate)          # a batch is one get_many: few range reads
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            ...

**Workers.** ``DataLoader`` (``fork`` on Linux, ``spawn`` elsewhere) copies or pickles the
dataset into each worker; the archive inside rebuilds its connections and runtime there,
reading the same generation (index ``i`` is the same record in every process). There is no
shared cache file: each process caches index blocks in its own memory. Python 3.12 and newer
warn (``DeprecationWarning``) when a process with threads forks, and an archive that has read
has the runtime's threads: the child never uses them or any lock they hold (it makes its own), so
the warning is harmless here; ``DataLoader(multiprocessing_context="spawn")`` (or
``"forkserver"``) avoids it, at the cost of pickling the dataset into each worker.

**Order.** An epoch's global order is a permutation of all indices drawn from ``(seed,
epoch)`` alone, so every rank computes the same one and takes a contiguous share of it: no
record is lost or read twice across ranks (shares differ by at most one record unless
``drop_last``). Within a rank, ``DataLoader`` hands whole batches to its workers in turn, so
each index is read by exactly one worker; :meth:`Sampler.batches` does the same split for a
loop that runs its own workers.

**Locality.** With ``locality=G``, the order shuffles groups of ``G`` neighbouring records
(neighbours in key order, which is pack order for an archive made by ``pack``), then the
records inside each group: a batch of 64 drawn from one or two groups is read with one or two
range requests instead of 64. The cost in randomness: records are only shuffled among
``G``-sized groups, so a batch holds records that were neighbours in the archive (same
directory, same source file, written together) instead of a sample of the whole; the order of
groups is uniform, and over an epoch every record is still seen once. Choose ``G`` no smaller
than the batch size, and much larger (4-16 batches) to keep batches mixed.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from . import Archive, PathLike
from . import open as _open

__all__ = ["Dataset", "Sampler", "worker_info"]


def worker_info() -> "tuple[int, int]":
    """(worker id, number of workers) of the ``DataLoader`` worker this runs in, from torch if
    it is installed; (0, 1) in the main process or without torch."""
    try:
        from torch.utils.data import get_worker_info  # type: ignore[import-not-found]
    except ImportError:
        return (0, 1)
    info = get_worker_info()
    return (0, 1) if info is None else (int(info.id), int(info.num_workers))


class Dataset:
    """The records of an archive whose keys start with ``prefix``, by index in key order, so
    index ``i`` names the same record for the archive's pinned generation in every process.

    ``archive`` is an :class:`haypack.Archive` or a location (opened with ``open_options``).
    An item is the record's bytes, or ``transform(bytes)``; with ``return_key``, the pair
    ``(key, item)``. The keys are listed from the index on first use (once per process; about a
    second per million keys) and are not pickled.
    """

    def __init__(
        self,
        archive: Union[Archive, PathLike],
        prefix: str = "",
        transform: Optional[Callable[[bytes], Any]] = None,
        *,
        return_key: bool = False,
        **open_options: Any,
    ) -> None:
        self.archive: Archive = archive if isinstance(archive, Archive) else _open(archive, **open_options)
        self.prefix = prefix
        self.transform = transform
        self.return_key = return_key
        self._keys: Optional[List[str]] = None

    @property
    def keys(self) -> List[str]:
        """The keys, in index order."""
        if self._keys is None:
            self._keys = list(self.archive.keys(self.prefix))
        return self._keys

    def __len__(self) -> int:
        if self._keys is None and not self.prefix:
            return len(self.archive)
        return len(self.keys)

    def _item(self, key: str, data: bytes) -> Any:
        item = data if self.transform is None else self.transform(data)
        return (key, item) if self.return_key else item

    def __getitem__(self, index: int) -> Any:
        keys = self.keys
        key = keys[index]
        return self._item(key, self.archive.get(key))

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """A batch with one :meth:`haypack.Archive.get_many`: neighbouring records share range
        reads, several in flight. ``DataLoader`` calls this for each batch."""
        keys = self.keys
        batch = [keys[i] for i in indices]
        return [self._item(k, d) for k, d in zip(batch, self.archive.get_many(batch))]

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_keys"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)


class Sampler:
    """Indices of a dataset for one rank, in an order drawn from ``(seed, epoch)``.

    ``data`` is the dataset (anything with ``len``) or its length. ``rank`` of ``world_size``
    takes a contiguous share of the epoch's global order; with ``drop_last`` every rank takes
    ``n // world_size`` (the rest are skipped this epoch), without it the first ``n %
    world_size`` ranks take one more. ``shuffle=False`` keeps index order; ``locality=G``
    shuffles groups of ``G`` neighbours (see the module's notes on what that costs).

    ``state_dict()`` / ``load_state_dict()`` resume an epoch exactly where it stopped: the state
    is the epoch and how many of this rank's indices were consumed. The count is what
    ``__iter__`` handed out; a ``DataLoader`` prefetches ahead of the training loop, so save the
    count the loop really consumed: ``state_dict(consumed=steps * batch_size)``.
    """

    def __init__(
        self,
        data: Union[int, Any],
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        locality: Optional[int] = None,
        drop_last: bool = False,
    ) -> None:
        n = data if isinstance(data, int) else len(data)
        if n < 0:
            raise ValueError("a dataset has no negative length")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world size {world_size}: need 0 <= rank < world_size")
        if locality is not None and locality < 1:
            raise ValueError("locality is a group size of at least 1")
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.locality = locality
        self.drop_last = drop_last
        self.epoch = 0
        self._start = 0
        self._handed = 0

    def set_epoch(self, epoch: int) -> None:
        """Chooses the epoch whose order the next iteration follows, from its start."""
        self.epoch = epoch
        self._start = 0
        self._handed = 0

    def order(self, epoch: Optional[int] = None) -> List[int]:
        """The global order of an epoch (this one by default): every index once."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return list(range(self.n))
        # Seeded by the pair alone (not Python's hash, which varies by process).
        rng = random.Random(f"haypack:{self.seed}:{epoch}")
        if self.locality is None:
            order = list(range(self.n))
            rng.shuffle(order)
            return order
        g = self.locality
        starts = list(range(0, self.n, g))
        rng.shuffle(starts)
        order = []
        for s in starts:
            group = list(range(s, min(s + g, self.n)))
            rng.shuffle(group)
            order.extend(group)
        return order

    def indices(self) -> List[int]:
        """This rank's share of the epoch's order, whole (ignoring a resumed position)."""
        order = self.order()
        if self.drop_last:
            each = self.n // self.world_size
            return order[self.rank * each : (self.rank + 1) * each]
        base, extra = divmod(self.n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return order[start : start + base + (1 if self.rank < extra else 0)]

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self._start)

    def __iter__(self) -> Iterator[int]:
        share = self.indices()
        start = self._start
        self._handed = 0
        for i in share[start:]:
            self._handed += 1
            yield i
        # A finished epoch: the next one starts at its beginning.
        self._start = 0
        self._handed = 0

    def batches(
        self, batch_size: int, worker_id: Optional[int] = None, num_workers: Optional[int] = None
    ) -> Iterator[List[int]]:
        """This rank's remaining indices in batches, the ones a worker reads: batch ``j`` goes
        to worker ``j % num_workers``, as ``DataLoader`` deals them. Worker id and count default
        to :func:`worker_info`. For loops (an ``IterableDataset``, a process pool) that run
        their own workers; every index of the share lands in exactly one worker's batches."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if worker_id is None or num_workers is None:
            worker_id, num_workers = worker_info()
        rest = self.indices()[self._start :]
        for j, at in enumerate(range(0, len(rest), batch_size)):
            if j % num_workers == worker_id:
                yield rest[at : at + batch_size]

    def state_dict(self, consumed: Optional[int] = None) -> Dict[str, Any]:
        """Where this rank stands: its epoch and the indices of its share consumed so far (by
        default, what ``__iter__`` handed out this epoch)."""
        position = self._start + (self._handed if consumed is None else consumed)
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": position,
            "n": self.n,
            "rank": self.rank,
            "world_size": self.world_size,
            "locality": self.locality,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resumes from :meth:`state_dict`: the next iteration yields exactly the indices of
        that epoch's share not consumed yet. The dataset and the sharding must be the ones the
        state was saved with."""
        for name in ("n", "rank", "world_size", "seed", "locality", "shuffle", "drop_last"):
            if name in state and state[name] != getattr(self, name):
                raise ValueError(
                    f"the saved state has {name}={state[name]!r}, this sampler {getattr(self, name)!r}: "
                    "an epoch resumes only over the same dataset, seed and sharding"
                )
        self.epoch = int(state["epoch"])
        self._start = int(state["position"])
        self._handed = 0

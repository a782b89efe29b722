"""haypack.data: the dataset, the sampler's order and partitions, resuming, and worker processes
started with fork and spawn (the way DataLoader starts them), without torch."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import pickle
from typing import Any, Dict, List, Tuple

import pytest

import haypack
import haypack.data as hd

from conftest import Packed

RANKS, WORKERS, BATCH = 2, 3, 16


def test_dataset_indexes_keys_in_order(packed: Packed) -> None:
    ds = hd.Dataset(packed.open(), return_key=True)
    keys = sorted(packed.files)
    assert len(ds) == len(keys) and ds.keys == keys
    assert ds[5] == (keys[5], packed.files[keys[5]])
    batch = [9, 3, 3, len(keys) - 1]
    assert ds.__getitems__(batch) == [(keys[i], packed.files[keys[i]]) for i in batch]
    sized = hd.Dataset(packed.url, prefix="d2/", transform=len, **packed.options)
    under = sorted(k for k in packed.files if k.startswith("d2/"))
    assert len(sized) == len(under) and sized[0] == len(packed.files[under[0]])
    assert pickle.loads(pickle.dumps(sized)).__getitems__([0, 1]) == [len(packed.files[k]) for k in under[:2]]


def test_the_order_is_a_permutation_drawn_from_seed_and_epoch() -> None:
    a, b = hd.Sampler(1000, seed=3), hd.Sampler(1000, seed=3)
    assert a.order() == b.order() and sorted(a.order()) == list(range(1000))
    assert a.order(1) != a.order(0) and hd.Sampler(1000, seed=4).order() != a.order()
    assert list(hd.Sampler(10, shuffle=False)) == list(range(10))
    local = hd.Sampler(1000, seed=3, locality=64).order()
    assert sorted(local) == list(range(1000)) and local != list(range(1000))
    # Each run of 64 comes from one group of neighbours.
    groups = [{i // 64 for i in local[at : at + 64]} for at in range(0, 960, 64)]
    assert sum(len(g) for g in groups) <= 2 * len(groups)


@pytest.mark.parametrize("n,world", [(1000, 2), (1001, 3), (5, 8), (0, 2)])
def test_ranks_share_an_epoch_without_loss_or_repeat(n: int, world: int) -> None:
    shares = [list(hd.Sampler(n, seed=1, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shares for i in s) == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    dropped = [hd.Sampler(n, seed=1, rank=r, world_size=world, drop_last=True).indices() for r in range(world)]
    assert {len(s) for s in dropped} == {n // world}


def test_worker_batches_split_a_share() -> None:
    s = hd.Sampler(1000, seed=2, rank=1, world_size=2)
    parts = [list(s.batches(BATCH, w, WORKERS)) for w in range(WORKERS)]
    seen = [i for p in parts for b in p for i in b]
    assert sorted(seen) == sorted(s.indices())
    assert list(s.batches(BATCH)) == [s.indices()[at : at + BATCH] for at in range(0, 500, BATCH)]


def test_resume_mid_epoch_reads_exactly_the_rest() -> None:
    s = hd.Sampler(500, seed=9, rank=0, world_size=2)
    s.set_epoch(4)
    it = iter(s)
    first = [next(it) for _ in range(77)]
    state = s.state_dict()
    assert state["position"] == 77 and state["epoch"] == 4
    r = hd.Sampler(500, seed=9, rank=0, world_size=2)
    r.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert len(r) == 250 - 77
    rest = list(r)
    assert first + rest == s.indices()
    assert list(r) == s.indices()  # the next pass starts the epoch from its beginning
    w = hd.Sampler(500, seed=9, rank=0, world_size=2)
    w.load_state_dict(state)
    parts = [i for k in range(WORKERS) for b in w.batches(BATCH, k, WORKERS) for i in b]
    assert sorted(parts) == sorted(rest)
    with pytest.raises(ValueError, match="same dataset"):
        hd.Sampler(501, seed=9, world_size=2).load_state_dict(state)
    explicit = s.state_dict(consumed=10)
    assert explicit["position"] == 10


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def worker(dataset: hd.Dataset, state: Dict[str, Any], worker_id: int, out: Any) -> None:
    """A DataLoader worker: this rank's batches for this worker, each one __getitems__ call."""
    sampler = hd.Sampler(len(dataset), seed=state["seed"], rank=state["rank"], world_size=state["world_size"])
    sampler.load_state_dict(state)
    got: List[Tuple[str, str]] = []
    for batch in sampler.batches(BATCH, worker_id, WORKERS):
        got.extend((k, digest(d)) for k, d in dataset.__getitems__(batch))
    out.put(got)


def run_epoch(ctx: Any, dataset: hd.Dataset, position: int = 0) -> List[Tuple[str, str]]:
    out = ctx.Queue()
    procs = []
    for rank in range(RANKS):
        sampler = hd.Sampler(len(dataset), seed=11, rank=rank, world_size=RANKS)
        sampler.set_epoch(2)
        state = sampler.state_dict(consumed=position)
        for w in range(WORKERS):
            p = ctx.Process(target=worker, args=(dataset, state, w, out))
            p.start()
            procs.append(p)
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return [r for rs in results for r in rs]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_read_every_record_of_an_epoch_once(packed: Packed, method: str) -> None:
    dataset = hd.Dataset(packed.open(), return_key=True)
    # Used in the parent first: its runtime and connections exist when the children start.
    assert dataset[0][1] == packed.files[dataset.keys[0]]
    got = run_epoch(mp.get_context(method), dataset)
    keys = [k for k, _ in got]
    assert len(keys) == len(packed.files) and set(keys) == set(packed.files)
    assert all(d == digest(packed.files[k]) for k, d in got)
    # The parent still reads after its children came and went.
    assert dataset[1][1] == packed.files[dataset.keys[1]]


def test_workers_resume_mid_epoch(packed: Packed) -> None:
    dataset = hd.Dataset(packed.open(), return_key=True)
    position = 40
    got = run_epoch(mp.get_context("fork"), dataset, position)
    expected = set()
    for rank in range(RANKS):
        s = hd.Sampler(len(dataset), seed=11, rank=rank, world_size=RANKS)
        s.set_epoch(2)
        expected |= {dataset.keys[i] for i in s.indices()[position:]}
    assert sorted(k for k, _ in got) == sorted(expected)


def test_a_forked_child_reads_an_archive_made_in_the_parent(packed: Packed) -> None:
    a = packed.open()
    key = "d4/sub1/f0004.bin"
    assert a[key] == packed.files[key]
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_child_get, args=(a, key, out))
    p.start()
    assert out.get(timeout=120) == digest(packed.files[key])
    p.join(timeout=60)
    assert p.exitcode == 0


def _child_get(a: haypack.Archive, key: str, out: Any) -> None:
    out.put(digest(a[key]))


def _map_worker(dataset: hd.Dataset, inbox: Any, out: Any) -> None:
    """A map-style DataLoader worker: fetches each batch of indices it is dealt with one
    __getitems__ call, until it is dealt None."""
    while True:
        batch = inbox.get(timeout=120)
        if batch is None:
            return
        out.put([(k, digest(d)) for k, d in dataset.__getitems__(batch)])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_sampler_drives_map_style_workers_as_dataloader_does(packed: Packed, method: str) -> None:
    """DataLoader's map-style model: the sampler runs in the main process of each rank, its
    indices are cut into batches, and batch j goes to worker j % workers."""
    ctx = mp.get_context(method)
    dataset = hd.Dataset(packed.open(), return_key=True)
    assert len(dataset[0][1]) == len(packed.files[dataset.keys[0]])
    out = ctx.Queue()
    got: List[Tuple[str, str]] = []
    for rank in range(RANKS):
        sampler = hd.Sampler(dataset, seed=5, rank=rank, world_size=RANKS, locality=32)
        inboxes = [ctx.Queue() for _ in range(WORKERS)]
        procs = [ctx.Process(target=_map_worker, args=(dataset, q, out)) for q in inboxes]
        for p in procs:
            p.start()
        indices = list(sampler)
        batches = [indices[at : at + BATCH] for at in range(0, len(indices), BATCH)]
        for j, batch in enumerate(batches):
            inboxes[j % WORKERS].put(batch)
        for q in inboxes:
            q.put(None)
        for _ in batches:
            got.extend(out.get(timeout=300))
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    keys = [k for k, _ in got]
    assert len(keys) == len(packed.files) and set(keys) == set(packed.files)
    assert all(d == digest(packed.files[k]) for k, d in got)

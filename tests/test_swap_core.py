"""The swap core: folios, swap areas, the swap cache, batching, the swap_ops registry,
and the built-in backends (``swap_bdev_ops`` on a file-backed disk and on zram via the
bio path, ``swap_fs_ops`` on a swap file).

Checks the invariants of shared/research/swap-core.md section 4 that apply to the
core (1-7, 9-12, 14-15): every submitted batch ends exactly once, batches never
exceed 32 folios nor mix areas, the bdev/fs backends only merge adjacent folios,
completion semantics on success and failure, counters, slot leaks, the registry
contract.  zram's own swap_ops path is in test_zram_swap.py, which reuses the
fixture and helpers of this file.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import threading
import warnings
from collections import Counter

import numpy as np
import pytest

from pyzram import Zram
from pyzram.block.filedev import FileDisk
from pyzram.mm import page_io, swapfile
from pyzram.mm import swap_ops as swap_ops_mod
from pyzram.mm.folio import (
    PAGE_SIZE,
    Folio,
    PG_dirty,
    PG_locked,
    PG_reclaim,
    PG_swapcache,
    PG_uptodate,
    PG_writeback,
    SwpEntry,
)
from pyzram.mm.page_io import (
    sio_pool,
    swap_bdev_ops,
    swap_bdev_submit_read,
    swap_bdev_submit_write,
    swap_fs_ops,
    swap_iocb_folio,
    swap_iocb_nr_folios,
    swap_read_folio,
    swap_read_submit,
    swap_write_submit,
    swap_writeout,
)
from pyzram.mm.swap import (
    SWAP_CLUSTER_MAX,
    SWAP_HAS_CACHE,
    SWAP_MAP_BAD,
    SWP_BLKDEV,
    SWP_SOLIDSTATE,
    SWP_SYNCHRONOUS_IO,
    SWP_WRITEOK,
    SwapIoCtx,
    vm_events,
)
from pyzram.mm.swap_ops import (
    READ,
    WRITE,
    SwapOps,
    lookup_swap_block_ops,
    registered_block_ops,
    swap_register_block_ops,
    swap_unregister_block_ops,
)
from pyzram.mm.swapfile import (
    active_areas,
    folio_alloc_swap,
    folio_free_swap,
    mkswap,
    swap_cache_alloc_folio,
    swap_cache_del_folio,
    swap_cache_get_folio,
    swap_duplicate,
    swap_free,
    swapoff,
    swapon,
    swp_swap_info,
)
from pyzram.workload.pages import capture, synthetic_mix
from pyzram.zram import swap as zswap
from pyzram.zram.swap import zram_exit, zram_init, zram_swap_ops

P = PAGE_SIZE

# -- the fixture: clean module-level state, count end calls ------------------------------------

#: End calls per swap_iocb (the objects are kept alive, so no id reuse).
ENDS: Counter = Counter()
_READ_END = page_io.swap_read_end
_WRITE_END = page_io.swap_write_end


def _counting(end):
    def counted(sio, failed):
        ENDS[sio] += 1
        return end(sio, failed)

    return counted


def _drop_all_refs(entry: SwpEntry, folio: Folio) -> int:
    return swp_swap_info(entry).swap_count(entry.offset)


def _teardown_swap() -> None:
    """Swap off whatever a test left, unregister any block ops."""
    for si in active_areas():
        for folio in {id(f): f for f in list(si.swap_cache.values())}.values():
            if folio.test(PG_writeback):
                continue
            if not folio.trylock():  # a failed test left a read in flight: nobody
                folio.unlock()  # will end it, and swapoff would wait for it forever
                folio.lock()
            if folio.swap is not None and folio.swap.type == si.type:
                swap_cache_del_folio(folio)
            folio.unlock()
        try:
            swapoff(si, unuse=_drop_all_refs)
        except OSError:
            swapfile._release_area(si)
    zram_exit()
    fops, _ = registered_block_ops()
    if fops is not None:
        swap_unregister_block_ops(fops)


@pytest.fixture(autouse=True)
def swap_env(monkeypatch):
    """Fresh swap state; swap_read_end/swap_write_end count their calls in ENDS."""
    _teardown_swap()
    vm_events.reset()
    ENDS.clear()
    swap_ops_mod._registry.warned.clear()
    for mod in (page_io, zswap):
        monkeypatch.setattr(mod, "swap_read_end", _counting(_READ_END))
        monkeypatch.setattr(mod, "swap_write_end", _counting(_WRITE_END))
    yield
    _teardown_swap()
    vm_events.reset()
    leaked = sio_pool.outstanding
    sio_pool.outstanding = 0  # don't let one leak starve the next tests
    assert all(n == 1 for n in ENDS.values()), "a swap_iocb was ended more than once"
    assert leaked == 0, f"{leaked} swap_iocb(s) never ended"


# -- helpers -----------------------------------------------------------------------------------


class OpsSpy:
    """Wraps an area's ops: records each batch and checks invariants around the submit."""

    def __init__(self, si):
        self.si = si
        self.inner = si.ops
        self.batches: dict[int, list[list[tuple[int, int]]]] = {READ: [], WRITE: []}
        self.sios = []
        si.ops = dataclasses.replace(si.ops, submit_write=self._write, submit_read=self._read)

    def _check(self, ctx, rw):
        sio = ctx.sio
        assert sio is not None and ctx.sis is self.si
        assert 1 <= swap_iocb_nr_folios(sio) <= SWAP_CLUSTER_MAX
        assert sio.len == sum(f.size for f in sio.bvecs)
        folios = [swap_iocb_folio(sio, i) for i in range(swap_iocb_nr_folios(sio))]
        assert all(swp_swap_info(f.swap) is self.si for f in folios), "batch mixes areas"
        for f in folios:  # one direction; queued state (invariant 4)
            if rw == WRITE:
                assert f.test(PG_writeback) and not f.test(PG_locked)
            else:
                assert f.test(PG_locked) and not f.test(PG_uptodate)
        self.batches[rw].append([(f.swap.offset, f.order) for f in folios])
        self.sios.append(sio)
        return sio

    def _write(self, ctx):
        sio = self._check(ctx, WRITE)
        self.inner.submit_write(ctx)
        assert ENDS[sio] == 1, "submit_write must end its batch exactly once"

    def _read(self, ctx):
        sio = self._check(ctx, READ)
        self.inner.submit_read(ctx)
        assert ENDS[sio] == 1, "submit_read must end its batch exactly once"

    def nr(self, rw):
        return len(self.batches[rw])


def rand_pages(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, P), dtype=np.uint8)


def folios_of(pages: np.ndarray, order: int = 0) -> list[Folio]:
    nr = 1 << order
    return [Folio(order, pages[i : i + nr].tobytes()) for i in range(0, len(pages), nr)]


def alloc(folios, refs: int = 1) -> list[SwpEntry]:
    """Reclaim's first step: swap slots (folio in the swap cache) and PTE references."""
    entries = []
    for f in folios:
        f.lock()
        f.mark_uptodate()  # anonymous memory under reclaim
        f.mark_dirty()
        e = folio_alloc_swap(f)
        for _ in range(refs):
            swap_duplicate(e, f.nr_pages)
        f.unlock()
        entries.append(e)
    return entries


def writeout(folios, ctx: SwapIoCtx | None = None, submit: bool = True) -> SwapIoCtx:
    """``pageout``: lock, PG_reclaim, swap_writeout into one ctx; submit at the end."""
    ctx = ctx if ctx is not None else SwapIoCtx()
    for f in folios:
        f.lock()
        f.mark_dirty()
        f.set(PG_reclaim)
        swap_writeout(ctx, f)
    if submit:
        swap_write_submit(ctx)
    return ctx


def swap_out(folios, refs: int = 1) -> list[SwpEntry]:
    entries = alloc(folios, refs)
    writeout(folios)
    return entries


def evict(folios) -> None:
    """Reclaim frees the written folios (they leave the swap cache)."""
    for f in folios:
        assert not f.test(PG_writeback)
        f.lock()
        swap_cache_del_folio(f)
        f.unlock()


def swap_in(entries, orders=None, ctx: SwapIoCtx | None = None, submit: bool = True):
    """Fault path: a new swap-cache folio per entry, all read through one ctx."""
    ctx = ctx if ctx is not None else SwapIoCtx()
    orders = orders or [0] * len(entries)
    folios = []
    for e, order in zip(entries, orders, strict=True):
        g = swap_cache_alloc_folio(e, order)
        swap_read_folio(ctx, g)
        folios.append(g)
    if submit:
        swap_read_submit(ctx)
    return folios


def release(folios, refs: int = 1) -> None:
    """The PTEs go away and the folios leave the swap cache: their slots are freed."""
    for g in folios:
        e = g.swap
        for _ in range(refs):
            swap_free(e, g.nr_pages)
        g.lock()
        assert folio_free_swap(g)
        g.unlock()


def new_zram(size: str = "16M") -> Zram:
    z = Zram()
    z.sysfs["disksize"] = size
    mkswap(z.disk)
    return z


def new_filedisk(tmp_path, name: str = "swapdisk", size: int = 8 << 20) -> FileDisk:
    fd = FileDisk(tmp_path / name, size=size)
    mkswap(fd.disk)
    return fd


def new_swapfile(tmp_path, name: str = "swapfile", size: int = 8 << 20):
    path = tmp_path / name
    path.write_bytes(bytes(size))  # fully allocated: no holes
    mkswap(path)
    return path


def assert_runs_adjacent(batches) -> None:
    """Every batch covers consecutive slots (sector/position adjacency)."""
    for batch in batches:
        for (off, order), (noff, _) in zip(batch, batch[1:], strict=False):
            assert noff == off + (1 << order), batch


def zram_slots_used(z: Zram) -> int:
    return int(z.table.allocated_mask().sum())


# -- folios ------------------------------------------------------------------------------------


def test_folio_flags_and_lock():
    f = Folio(2)
    assert f.nr_pages == 4 and f.size == 4 * P and len(f.data) == 4 * P
    assert bytes(f.page(3)) == bytes(P)
    with pytest.raises(ValueError):
        Folio(10)
    with pytest.raises(ValueError):
        Folio(0, bytes(100))
    with pytest.raises(RuntimeError):
        f.unlock()
    f.lock()
    assert f.test(PG_locked) and not f.trylock()
    f.unlock()
    assert f.trylock()
    f.mark_dirty()
    f.set(PG_reclaim)
    f.start_writeback()
    assert f.test(PG_writeback) and not f.test(PG_dirty)
    with pytest.raises(RuntimeError):
        f.start_writeback()
    f.end_writeback()
    assert not f.test(PG_writeback) and not f.test(PG_reclaim)
    with pytest.raises(RuntimeError):
        f.end_writeback()
    f.unlock()


# -- swap areas, slots, the swap cache ---------------------------------------------------------


def test_swapon_checks_header_and_sets_flags(tmp_path):
    raw = FileDisk(tmp_path / "raw", size=1 << 20)
    with pytest.raises(OSError) as e:
        swapon(raw.disk)
    assert e.value.errno == errno.EINVAL
    assert not active_areas() and raw.disk._openers == 0

    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(fd.disk)
    assert si.ops is swap_bdev_ops
    assert si.flags & SWP_BLKDEV and si.flags & SWP_SYNCHRONOUS_IO and si.flags & SWP_SOLIDSTATE
    assert si.flags & SWP_WRITEOK
    assert si.max == 256 and si.pages == 255 and si.swap_map[0] == SWAP_MAP_BAD
    assert fd.disk._openers == 1
    with pytest.raises(OSError) as e:
        swapon(fd.disk)
    assert e.value.errno == errno.EBUSY

    path = new_swapfile(tmp_path, size=1 << 20)
    sf = swapon(path)
    assert sf.ops is swap_fs_ops and not sf.flags & SWP_BLKDEV
    with pytest.raises(OSError) as e:
        swapon(path)
    assert e.value.errno == errno.EBUSY
    swapoff(sf)
    swapoff(si)
    assert fd.disk._openers == 0 and si.ops is None and not active_areas()
    fd.close()
    raw.close()


def test_swapfile_with_holes_is_refused(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    mkswap(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.lseek(fd, 0, os.SEEK_HOLE) >= 1 << 20:
            pytest.skip("filesystem does not report holes")
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        swapon(path)
    assert e.value.errno == errno.EINVAL
    assert not active_areas()


def test_slot_allocation_clusters_and_alignment(tmp_path):
    fd = new_filedisk(tmp_path, size=8 << 20)  # 2048 slots, 4 clusters
    si = swapon(fd.disk)
    small = folios_of(rand_pages(3), 0)
    e_small = alloc(small)
    assert [e.offset for e in e_small] == [1, 2, 3]  # slot 0 is the header
    big = [Folio(2), Folio(4), Folio(2)]
    e_big = alloc(big)
    for f, e in zip(big, e_big, strict=True):
        assert e.offset % f.nr_pages == 0, "large folios get aligned slots"
        assert all(si.swap_cache[e.offset + j] is f for j in range(f.nr_pages))
        assert f.test(PG_swapcache) and f.swap == e
    assert si.inuse_pages == 3 + 4 + 16 + 4
    # fill the area with order-0 folios until ENOMEM
    rest = []
    with pytest.raises(OSError) as exc:
        while True:
            f = Folio(0)
            f.lock()
            try:
                folio_alloc_swap(f)
            finally:
                f.unlock()
            rest.append(f)
    assert exc.value.errno == errno.ENOMEM
    # order 0 steals from the order-2/order-4 clusters: every usable slot gets used
    assert si.inuse_pages == si.pages == 2047
    assert all(f.swap.offset != 0 for f in rest)
    for f in small + big + rest:  # no PTE refs for `rest`: dropping the cache frees them
        if f.swap is not None and si.swap_count(f.swap.offset):
            swap_free(f.swap, f.nr_pages)
        f.lock()
        swap_cache_del_folio(f)
        f.unlock()
    assert si.inuse_pages == 0 and sorted(si.free_clusters) == [1, 2, 3]
    assert set(si.swap_map.tolist()) == {0, SWAP_MAP_BAD}
    swapoff(si)
    fd.close()


def test_priority_picks_area(tmp_path):
    a = swapon(new_filedisk(tmp_path, "a", 1 << 20).disk, prio=5)
    b = swapon(new_filedisk(tmp_path, "b", 1 << 20).disk, prio=10)
    (e1,) = alloc([Folio(0)])
    assert e1.type == b.type
    b.prio = 1
    (e2,) = alloc([Folio(0)])
    assert e2.type == a.type


def test_swap_counts_and_swap_cache(tmp_path):
    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(fd.disk)
    f = Folio(0, rand_pages(1).tobytes())
    (e,) = alloc([f], refs=2)
    assert si.swap_map[e.offset] == SWAP_HAS_CACHE | 2 and si.swap_count(e.offset) == 2
    assert swap_cache_get_folio(e) is f
    with pytest.raises(OSError) as exc:
        swap_cache_alloc_folio(e)
    assert exc.value.errno == errno.EEXIST
    f.lock()
    assert not folio_free_swap(f)  # still referenced
    f.unlock()
    swap_free(e)
    swap_free(e)
    assert si.swap_map[e.offset] == SWAP_HAS_CACHE and si.inuse_pages == 1  # count-0, cached
    f.lock()
    f.clear(PG_dirty)
    assert folio_free_swap(f)
    f.unlock()
    assert f.test(PG_dirty) and not f.test(PG_swapcache) and f.swap is None
    assert si.swap_map[e.offset] == 0 and si.inuse_pages == 0
    with pytest.raises(OSError) as exc:
        swap_cache_alloc_folio(e)  # nobody references the slot
    assert exc.value.errno == errno.ENOENT
    with pytest.raises(OSError):
        swap_free(e)
    with pytest.raises(OSError):
        swap_duplicate(e)


def test_swap_writeout_of_unreferenced_folio_just_drops_it(tmp_path):
    si = swapon(new_filedisk(tmp_path, size=1 << 20).disk)
    spy = OpsSpy(si)
    f = Folio(0, rand_pages(1).tobytes())
    alloc([f], refs=0)
    ctx = writeout([f], submit=False)
    assert ctx.sio is None and not f.test(PG_swapcache) and not f.test(PG_locked)
    swap_write_submit(ctx)
    assert spy.nr(WRITE) == 0 and vm_events["pswpout"] == 0 and si.inuse_pages == 0


def test_swapoff_needs_references_dropped(tmp_path):
    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(fd.disk)
    folios = folios_of(rand_pages(5, seed=3))
    data = [bytes(f.data) for f in folios]
    entries = swap_out(folios)
    evict(folios)
    with pytest.raises(OSError) as exc:
        swapoff(si)  # nobody drops the PTE references
    assert exc.value.errno == errno.EBUSY
    assert si.flags & SWP_WRITEOK and swap_info_has(si)
    seen = {}

    def unuse(entry, folio):
        seen[entry] = bytes(folio.data)
        return si.swap_count(entry.offset)

    swapoff(si, unuse=unuse)
    assert seen == dict(zip(entries, data, strict=True))
    assert not swap_info_has(si) and fd.disk._openers == 0


def swap_info_has(si) -> bool:
    return swapfile.swap_info[si.type] is si


def test_swapoff_drops_cache_only_slots(tmp_path):
    """try_to_unuse also frees slots that only the swap cache holds (count 0), as the
    kernel's find_next_to_unuse/folio_free_swap loop does."""
    si = swapon(new_filedisk(tmp_path, size=1 << 20).disk)
    folios = folios_of(rand_pages(3))
    swap_out(folios)
    for f in folios:
        swap_free(f.swap)  # the PTEs are gone; the folios stay in the swap cache
    assert si.inuse_pages == 3
    swapoff(si)
    assert not swap_info_has(si)
    assert all(not f.test(PG_swapcache) and f.test(PG_dirty) for f in folios)


# -- batching ----------------------------------------------------------------------------------


def test_queued_state_ctx_reset_and_empty_submit(tmp_path):
    si = swapon(new_filedisk(tmp_path, size=1 << 20).disk)
    spy = OpsSpy(si)
    empty = SwapIoCtx()
    swap_write_submit(empty)
    swap_read_submit(empty)
    assert vm_events["nrswpout"] == vm_events["nrswpin"] == 0 and spy.nr(READ) == spy.nr(WRITE) == 0

    folios = folios_of(rand_pages(4, seed=1))
    entries = alloc(folios)
    ctx = writeout(folios, submit=False)
    assert ctx.sis is si and ctx.sio is not None and ctx.sio.nr_bvecs == 4
    for f in folios:  # queued writes: under writeback, unlocked, counted already
        assert f.test(PG_writeback) and not f.test(PG_locked) and not f.test(PG_dirty)
    assert vm_events["pswpout"] == 4 and vm_events["nrswpout"] == 0
    swap_write_submit(ctx)
    assert ctx.sio is None and ctx.sis is None
    assert vm_events["nrswpout"] == 1 and spy.nr(WRITE) == 1
    assert all(not f.test(PG_writeback) for f in folios)
    evict(folios)

    ctx = SwapIoCtx()
    back = swap_in(entries, ctx=ctx, submit=False)
    for g in back:  # queued reads stay locked, not uptodate
        assert g.test(PG_locked) and not g.test(PG_uptodate)
    assert vm_events["pswpin"] == 0 and vm_events["nrswpin"] == 0
    swap_read_submit(ctx)
    assert ctx.sio is None and ctx.sis is None
    assert all(g.test(PG_uptodate) and not g.test(PG_locked) for g in back)
    assert vm_events["pswpin"] == 4 and vm_events["nrswpin"] == 1
    release(back)


def entries_of(si) -> list[SwpEntry]:
    """Referenced slots of an area, in order."""
    return [SwpEntry(si.type, o) for o in range(1, si.max) if si.swap_count(o)]


@pytest.mark.parametrize("kind", ["filedisk", "swapfile", "zram_bio"])
def test_batches_cap_at_32_and_merge_only_adjacent(kind, tmp_path):
    if kind == "filedisk":
        si = swapon(new_filedisk(tmp_path).disk)
    elif kind == "swapfile":
        si = swapon(new_swapfile(tmp_path))
    else:
        zram_init()
        si = swapon(new_zram().disk, use_block_ops=False)
    assert si.ops is (swap_fs_ops if kind == "swapfile" else swap_bdev_ops)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(70, seed=2))
    alloc(folios)
    writeout(folios)  # adjacent slots 1..70
    assert [len(b) for b in spy.batches[WRITE]] == [32, 32, 6]
    assert vm_events["nrswpout"] == 3 and vm_events["pswpout"] == 70
    # rewrite in a shuffled order: only adjacent runs merge
    order = list(range(70))
    random.Random(5).shuffle(order)
    writeout([folios[i] for i in order])
    assert_runs_adjacent(spy.batches[WRITE])
    assert vm_events["nrswpout"] == len(spy.batches[WRITE]) > 3
    evict(folios)
    back = swap_in([SwpEntry(si.type, 1 + i) for i in order])
    assert_runs_adjacent(spy.batches[READ])
    assert vm_events["nrswpin"] == len(spy.batches[READ])
    for i, g in zip(order, back, strict=True):
        assert bytes(g.data) == bytes(folios[i].data)
    release(back)
    assert si.inuse_pages == 0


def test_bdev_bio_per_batch_at_first_sector(tmp_path):
    fd = new_filedisk(tmp_path)
    swapon(fd.disk)
    folios = [Folio(0, rand_pages(1, 1).tobytes()), Folio(2, rand_pages(4, 2).tobytes())]
    folios += folios_of(rand_pages(3, seed=3))
    entries = alloc(folios)
    fd.bios.clear()
    writeout(folios)
    runs: list[list[Folio]] = []
    for f in folios:
        if runs and f.swap.offset == runs[-1][-1].swap.offset + runs[-1][-1].nr_pages:
            runs[-1].append(f)
        else:
            runs.append([f])
    expect = [("WRITE", r[0].swap.offset * 8, sum(f.size for f in r)) for r in runs]
    assert fd.bios == expect
    assert len(entries) == 5


def test_bdev_write_batches_split_by_blkcg_reads_do_not(tmp_path):
    si = swapon(new_filedisk(tmp_path).disk)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(6, seed=4))
    cg_a, cg_b = object(), object()
    for i, f in enumerate(folios):
        f.memcg = cg_a if i < 3 else cg_b
    entries = alloc(folios)
    writeout(folios)
    assert [len(b) for b in spy.batches[WRITE]] == [3, 3]
    evict(folios)
    back = swap_in(entries)
    assert [len(b) for b in spy.batches[READ]] == [6]
    release(back)


def test_batches_never_mix_areas(tmp_path):
    a = swapon(new_filedisk(tmp_path, "a", 1 << 20).disk, prio=10)
    spy_a = OpsSpy(a)
    fa = folios_of(rand_pages(4, seed=5))
    alloc(fa)
    b = swapon(new_filedisk(tmp_path, "b", 1 << 20).disk, prio=20)
    spy_b = OpsSpy(b)
    fb = folios_of(rand_pages(4, seed=6))
    alloc(fb)
    assert {f.swap.type for f in fa} == {a.type} and {f.swap.type for f in fb} == {b.type}
    mixed = [x for pair in zip(fa, fb, strict=True) for x in pair]
    writeout(mixed)
    assert spy_a.nr(WRITE) == spy_b.nr(WRITE) == 4  # every switch of area submits
    entries = [f.swap for f in mixed]
    evict(mixed)
    back = swap_in(entries)
    assert spy_a.nr(READ) == spy_b.nr(READ) == 4
    for f, g in zip(mixed, back, strict=True):
        assert bytes(f.data) == bytes(g.data)
    release(back)


def test_ended_twice_raises_and_delegating_provider_must_not_end(tmp_path):
    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(fd.disk)
    folios = folios_of(rand_pages(2, seed=7))
    alloc(folios)
    writeout(folios)
    evict(folios)

    def bad_read(ctx):
        sio = ctx.sio
        swap_bdev_submit_read(ctx)  # its completion ends the batch ...
        page_io.swap_read_end(sio, False)  # ... so this is a second end

    si.ops = dataclasses.replace(swap_bdev_ops, submit_read=bad_read)
    with pytest.raises(RuntimeError):
        swap_in(entries_of(si))
    assert max(ENDS.values()) == 2
    ENDS.clear()  # acknowledged: the fixture checks every other batch
    si.ops = swap_bdev_ops
    # an empty batch ended twice: the pool itself refuses the second free
    sio = sio_pool.alloc()
    _WRITE_END(sio, False)
    with pytest.raises(RuntimeError, match="ended twice"):
        _WRITE_END(sio, False)
    assert sio_pool.outstanding == 0


# -- completion: failures ----------------------------------------------------------------------


def test_bdev_write_failure_redirties_whole_batch(tmp_path):
    fd = new_filedisk(tmp_path)
    si = swapon(fd.disk)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(40, seed=8))
    old = rand_pages(40, seed=9)
    entries = alloc(folios)
    for f, o in zip(folios, old, strict=True):  # old content on disk
        f.data[:] = o.tobytes()
    writeout(folios)
    new = rand_pages(40, seed=10)
    for f, n in zip(folios, new, strict=True):
        f.data[:] = n.tobytes()
    fd.fail_sectors = {entries[5].offset * 8}  # inside the first batch of 32
    writeout(folios)
    assert [len(b) for b in spy.batches[WRITE]] == [32, 8, 32, 8]
    for i, f in enumerate(folios):
        assert not f.test(PG_writeback)
        assert f.test(PG_swapcache) and f.swap == entries[i]
        if i < 32:  # the failed batch: every folio re-dirtied, reclaim cleared
            assert f.test(PG_dirty) and not f.test(PG_reclaim)
        else:
            assert not f.test(PG_dirty)
        assert bytes(f.data) == new[i].tobytes()  # nothing lost in memory
    assert vm_events["pswpout"] == 80  # counted at queue time, failure or not
    assert si.inuse_pages == 40
    for i, e in enumerate(entries):  # the failed bio wrote nothing: old bytes on disk
        on_disk = os.pread(fd.fd, P, e.offset * P)
        assert on_disk == (old[i] if i < 32 else new[i]).tobytes()
    # retry once the device is healthy: the data reaches the disk
    fd.fail_sectors = set()
    writeout(folios[:32])
    evict(folios)
    back = swap_in(entries)
    assert [bytes(g.data) for g in back] == [n.tobytes() for n in new]
    release(back)


def test_bdev_read_failure_leaves_batch_not_uptodate(tmp_path):
    fd = new_filedisk(tmp_path)
    si = swapon(fd.disk)
    folios = folios_of(rand_pages(6, seed=11))
    entries = swap_out(folios)
    evict(folios)
    fd.fail_sectors = {entries[3].offset * 8}
    back = swap_in(entries)
    assert all(not g.test(PG_uptodate) and not g.test(PG_locked) for g in back)
    assert vm_events["pswpin"] == 0 and vm_events["nrswpin"] == 1
    assert not any(name == "swpin" for _, name in vm_events.mthp)
    assert all(g.test(PG_swapcache) for g in back)
    fd.fail_sectors = set()
    for g in back:  # drop the failed folios; read again
        g.lock()
        swap_cache_del_folio(g)
        g.unlock()
    back = swap_in(entries)
    assert [bytes(g.data) for g in back] == [bytes(f.data) for f in folios]
    release(back)
    assert si.inuse_pages == 0


def test_swapfile_io_errors(tmp_path):
    path = new_swapfile(tmp_path, size=1 << 20)
    si = swapon(path)
    folios = folios_of(rand_pages(5, seed=12))
    entries = alloc(folios)
    good_fd = si.swap_file_fd
    si.swap_file_fd = os.open(path, os.O_RDONLY)  # pwritev fails: EBADF
    try:
        writeout(folios)
    finally:
        os.close(si.swap_file_fd)
        si.swap_file_fd = good_fd
    assert all(f.test(PG_dirty) and not f.test(PG_writeback) for f in folios)
    writeout(folios)
    assert all(not f.test(PG_dirty) for f in folios)
    evict(folios)
    si.swap_file_fd = os.open(path, os.O_WRONLY)  # preadv fails
    try:
        back = swap_in(entries)
    finally:
        os.close(si.swap_file_fd)
        si.swap_file_fd = good_fd
    assert all(not g.test(PG_uptodate) and not g.test(PG_locked) for g in back)
    assert vm_events["pswpin"] == 0


# -- counters ----------------------------------------------------------------------------------


def test_counters_zero_pages_and_mthp(tmp_path):
    si = swapon(new_filedisk(tmp_path).disk)
    spy = OpsSpy(si)
    zero = [Folio(0), Folio(2)]
    data = [Folio(0, rand_pages(1, 1).tobytes()), Folio(2, rand_pages(4, 2).tobytes())]
    data += [Folio(4, rand_pages(16, 3).tobytes()), Folio(4, rand_pages(16, 4).tobytes())]
    folios = zero + data
    entries = alloc(folios)
    writeout(folios)
    assert vm_events["swpout_zero"] == 1 + 4
    assert vm_events["pswpout"] == 1 + 4 + 16 + 16
    assert vm_events.mthp[(2, "swpout")] == 1 and vm_events.mthp[(4, "swpout")] == 2
    assert (2, "swpin") not in vm_events.mthp
    assert vm_events["nrswpout"] == spy.nr(WRITE) >= 1
    assert all(si.count_zero(f.swap.offset, f.nr_pages) == f.nr_pages for f in zero)
    assert all(not z.test(PG_dirty) and not z.test(PG_writeback) for z in zero)
    evict(folios)
    back = swap_in(entries, [f.order for f in folios])
    for f, g in zip(folios, back, strict=True):
        assert g.test(PG_uptodate) and bytes(g.data) == bytes(f.data)
    assert vm_events["swpin_zero"] == 5
    assert vm_events["pswpin"] == 37
    assert vm_events.mthp[(2, "swpin")] == 1 and vm_events.mthp[(4, "swpin")] == 2
    assert vm_events["nrswpin"] == spy.nr(READ)
    assert (0, "swpout") not in vm_events.mthp, "count_mthp_stat ignores order 0"
    release(back)


def test_thp_swpout_counted_for_pmd_folio(tmp_path):
    si = swapon(new_filedisk(tmp_path).disk)
    f = Folio(9, rand_pages(512, 5).tobytes())
    (e,) = swap_out([f])
    assert e.offset % 512 == 0
    assert vm_events["thp_swpout"] == 1 and vm_events.mthp[(9, "swpout")] == 1
    assert vm_events["pswpout"] == 512
    evict([f])
    (g,) = swap_in([e], [9])
    assert bytes(g.data) == bytes(f.data)
    release([g])
    assert si.inuse_pages == 0


def test_mixed_zero_large_folio_read_is_an_error(tmp_path):
    si = swapon(new_filedisk(tmp_path).disk)
    f = Folio(2, rand_pages(4, 6).tobytes())
    (e,) = swap_out([f])
    evict([f])
    si.set_zero(e.offset, 1, True)  # one zero slot among data slots
    (g,) = swap_in([e], [2])
    assert not g.test(PG_uptodate) and not g.test(PG_locked)
    assert vm_events["nrswpin"] == 0


# -- the registry ------------------------------------------------------------------------------


def _fake_ops(calls: list[str], name: str = "fake") -> SwapOps:
    def w(ctx):
        calls.append("w")
        swap_bdev_submit_write(ctx)

    def r(ctx):
        calls.append("r")
        swap_bdev_submit_read(ctx)

    return SwapOps(name, submit_write=w, submit_read=r, can_merge=page_io.swap_bdev_can_merge)


def test_register_einval(tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    ops = _fake_ops([])
    with pytest.warns(RuntimeWarning):
        with pytest.raises(OSError) as e:
            swap_register_block_ops(None, ops)
    assert e.value.errno == errno.EINVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bad in (
            None,
            dataclasses.replace(ops, submit_read=None),
            dataclasses.replace(ops, submit_write=None),
        ):
            with pytest.raises(OSError) as e:
                swap_register_block_ops(fd.fops, bad)
            assert e.value.errno == errno.EINVAL
    assert registered_block_ops() == (None, None)
    # can_merge and slot_free_notify are optional
    swap_register_block_ops(fd.fops, dataclasses.replace(ops, can_merge=None))
    assert registered_block_ops()[0] is fd.fops


def test_register_ebusy_even_for_same_fops(tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    other = FileDisk(tmp_path / "o", size=1 << 20)
    ops = _fake_ops([])
    swap_register_block_ops(fd.fops, ops)
    for fops, o in ((fd.fops, ops), (fd.fops, _fake_ops([], "x")), (other.fops, ops)):
        with pytest.raises(OSError) as e:
            swap_register_block_ops(fops, o)
        assert e.value.errno == errno.EBUSY
    assert registered_block_ops() == (fd.fops, ops)


def test_unregister_mismatch_warns_and_keeps_empty_is_noop(tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    other = FileDisk(tmp_path / "o", size=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swap_unregister_block_ops(fd.fops)  # nothing registered: silent no-op
    assert registered_block_ops() == (None, None)
    ops = _fake_ops([])
    swap_register_block_ops(fd.fops, ops)
    with pytest.warns(RuntimeWarning):
        swap_unregister_block_ops(other.fops)
    assert registered_block_ops() == (fd.fops, ops)
    swap_unregister_block_ops(fd.fops)
    assert registered_block_ops() == (None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swap_unregister_block_ops(fd.fops)


def test_registered_ops_captured_at_swapon_until_swapoff(tmp_path):
    calls: list[str] = []
    fd = new_filedisk(tmp_path, "d", 1 << 20)
    other = new_filedisk(tmp_path, "o", 1 << 20)
    ops = _fake_ops(calls)
    swap_register_block_ops(fd.fops, ops)
    si = swapon(fd.disk)
    assert si.ops is ops and lookup_swap_block_ops(si) is ops
    so = swapon(other.disk)  # a non-matching block device
    assert so.ops is swap_bdev_ops and lookup_swap_block_ops(so) is None
    sf = swapon(new_swapfile(tmp_path, size=1 << 20))  # swap files never match
    assert sf.ops is swap_fs_ops and lookup_swap_block_ops(sf) is None
    swapoff(sf)
    swapoff(so)
    swap_unregister_block_ops(fd.fops)
    assert si.ops is ops  # kept until swapoff
    so = swapon(other.disk)
    so.prio = -1000
    folios = folios_of(rand_pages(3, seed=13))
    entries = swap_out(folios)
    assert {e.type for e in entries} == {si.type}
    evict(folios)
    back = swap_in(entries)
    assert calls == ["w", "r"]
    release(back)
    swapoff(si)
    assert si.ops is None
    si2 = swapon(fd.disk)  # swapped on after unregister
    assert si2.ops is swap_bdev_ops
    # use_block_ops=False models a kernel without the series
    swapoff(si2)
    swap_register_block_ops(fd.fops, ops)
    si3 = swapon(fd.disk, use_block_ops=False)
    assert si3.ops is swap_bdev_ops


def test_slot_free_notify_under_area_lock_once_per_slot(tmp_path):
    fd = new_filedisk(tmp_path, size=4 << 20)
    freed: list[int] = []

    def notify(si, offset):
        assert si.lock._is_owned(), "slot_free_notify runs under the cluster lock"
        freed.append(offset)

    ops = dataclasses.replace(_fake_ops([]), slot_free_notify=notify)
    swap_register_block_ops(fd.fops, ops)
    si = swapon(fd.disk)
    folios = [Folio(0, rand_pages(1, 1).tobytes()), Folio(2, rand_pages(4, 2).tobytes())]
    entries = swap_out(folios, refs=2)
    evict(folios)
    assert freed == []
    for f, e in zip(folios, entries, strict=True):
        swap_free(e, f.nr_pages)
    assert freed == []
    for f, e in zip(folios, entries, strict=True):
        swap_free(e, f.nr_pages)
    assert sorted(freed) == [entries[0].offset] + [entries[1].offset + j for j in range(4)]
    assert si.inuse_pages == 0


# -- data integrity on real pages, every path --------------------------------------------------


@pytest.fixture(scope="module")
def real_pages() -> np.ndarray:
    """Pages of a real Python process plus the synthetic mix (zero, same-filled, text...)."""
    return np.concatenate([capture("python", scale=0.1, limit=600), synthetic_mix(256, seed=3)])


def real_folios(pages: np.ndarray) -> list[Folio]:
    """The first 64 pages as order-2 folios, two order-4 folios, the rest order 0."""
    return folios_of(pages[:64], 2) + folios_of(pages[64:96], 4) + folios_of(pages[96:], 0)


def make_area(kind: str, tmp_path):
    """A swapped-on area of each path; returns (si, zram or None)."""
    if kind in ("zram_ops", "zram_bio"):
        zram_init()
        z = new_zram()
        si = swapon(z.disk, use_block_ops=kind == "zram_ops")
        assert si.ops is (zram_swap_ops if kind == "zram_ops" else swap_bdev_ops)
        return si, z
    if kind == "filedisk":
        return swapon(new_filedisk(tmp_path, size=16 << 20).disk), None
    return swapon(new_swapfile(tmp_path, size=16 << 20)), None


@pytest.mark.parametrize("kind", ["zram_ops", "zram_bio", "filedisk", "swapfile"])
def test_real_pages_roundtrip(kind, real_pages, tmp_path):
    si, z = make_area(kind, tmp_path)
    spy = OpsSpy(si)
    folios = real_folios(real_pages)
    want = [bytes(f.data) for f in folios]
    zero = [f.data.count(0) == f.size for f in folios]
    swap_out(folios)
    entries = [f.swap for f in folios]
    orders = [f.order for f in folios]
    evict(folios)
    order = list(range(len(folios)))
    random.Random(11).shuffle(order)
    back = swap_in([entries[i] for i in order], [orders[i] for i in order])
    for i, g in zip(order, back, strict=True):
        assert g.test(PG_uptodate) and not g.test(PG_locked), (kind, entries[i])
        assert bytes(g.data) == want[i], (kind, entries[i])

    n_zero = sum(f.nr_pages for f, zf in zip(folios, zero, strict=True) if zf)
    n_data = len(real_pages) - n_zero
    nr_write = sum(1 for zf in zero if not zf)
    assert n_zero > 0 and n_data > 0
    assert vm_events["pswpout"] == vm_events["pswpin"] == n_data
    assert vm_events["swpout_zero"] == vm_events["swpin_zero"] == n_zero
    assert (
        vm_events.mthp[(2, "swpout")]
        == vm_events.mthp[(2, "swpin")]
        == sum(1 for f, zf in zip(folios, zero, strict=True) if f.order == 2 and not zf)
    )
    assert vm_events["nrswpout"] == spy.nr(WRITE) and vm_events["nrswpin"] == spy.nr(READ)
    if kind == "zram_ops":  # any folios merge: full batches of 32
        assert spy.nr(WRITE) == spy.nr(READ) == -(-nr_write // SWAP_CLUSTER_MAX)
    else:  # only adjacent ones: the shuffled swap-in splits
        assert_runs_adjacent(spy.batches[READ])
        assert_runs_adjacent(spy.batches[WRITE])
        assert spy.nr(READ) > -(-nr_write // SWAP_CLUSTER_MAX)

    release(back)
    assert si.inuse_pages == 0
    assert set(si.swap_map.tolist()) == {0, SWAP_MAP_BAD}
    swapoff(si)
    if z is not None:
        assert zram_slots_used(z) == 1  # only the swap header (slot 0) remains
        assert z.stats.notify_free == len(real_pages)  # every slot freed was notified
        assert z.stats.miss_free == 0
        z.check()
        z.sysfs["reset"] = "1"


def test_vm_events_are_per_thread_and_sum_exactly():
    """``count_vm_events`` adds to the caller's own counters (per-CPU in the
    kernel) with no lock; reads sum every thread's, those of threads that
    have ended included, and nothing is lost to concurrent adds."""
    from pyzram.mm.swap import VmEvents

    ev = VmEvents()
    threads, per = 8, 20_000
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(per):
            ev.count("pswpout")
            ev.count_mthp(4, "swpout", 2)
        ev.count("nrswpout", i)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert ev["pswpout"] == threads * per
    assert ev.counts["nrswpout"] == sum(range(threads))
    assert ev.mthp[(4, "swpout")] == 2 * threads * per
    ev.count_mthp(0, "swpout")  # order 0 has no mTHP stat
    assert (0, "swpout") not in ev.mthp
    # A new thread registering folds the ended ones into the base: totals stay.
    t = threading.Thread(target=ev.count, args=("pswpin", 3))
    t.start()
    t.join()
    assert len(ev._threads) <= 2
    assert ev["pswpout"] == threads * per and ev["pswpin"] == 3
    ev.restore(Counter({"pswpin": 7}), Counter())
    assert ev["pswpin"] == 7 and ev["pswpout"] == 0
    ev.count("pswpin")
    assert ev.counts == Counter({"pswpin": 8})
    ev.reset()
    assert not +ev.counts and not +ev.mthp

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

import errno
import os
import random
import threading
import time
import warnings
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from pyzram import Zram
from pyzram.block.filedev import FileDisk
from pyzram.lib.atomic import atomic64_read
from pyzram.mm import page_io
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
from pyzram.mm.machine import Machine
from pyzram.mm.page_io import (
    AOP_WRITEPAGE_ACTIVATE,
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
    SWAPFILE_CLUSTER,
    SWP_BLKDEV,
    SWP_SOLIDSTATE,
    SWP_SYNCHRONOUS_IO,
    SWP_WRITEOK,
    SwapIoCtx,
)
from pyzram.mm.swap_ops import (
    READ,
    WRITE,
    SwapOps,
    lookup_swap_block_ops,
    registered_block_ops,
    swap_ops_defines,
    swap_register_block_ops,
    swap_unregister_block_ops,
)
from pyzram.mm.swapfile import (
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
from pyzram.zram.swap import zram_init, zram_swap_ops

P = PAGE_SIZE

# -- the fixture: every batch ended --------------------------------------------------------------


@pytest.fixture(autouse=True)
def swap_env(m):
    """A fresh machine per test (the ``m`` fixture); at its end every swap_iocb was
    ended (its ``sio_pool`` is full again).  A second end of one batch raises at
    once (``SioPool.free``), so no batch is ended twice unnoticed."""
    yield
    assert m.sio_pool.outstanding == 0, f"{m.sio_pool.outstanding} swap_iocb(s) never ended"


# -- helpers -----------------------------------------------------------------------------------


_HOOKS = ("submit_write", "submit_read", "can_merge", "slot_free_notify")


class HookedOps(SwapOps):
    """``inner``'s ops with some hooks replaced by plain functions (a test's spies,
    which call ``inner``'s own where they want it); name and flags are
    ``inner``'s unless given."""

    def __init__(self, inner: SwapOps, name: str | None = None, flags: int | None = None, **hooks):
        SwapOps.__init__(
            self, inner.name if name is None else name, inner.flags if flags is None else flags
        )
        for key in hooks:
            if key not in _HOOKS:
                raise TypeError(f"no swap_ops hook {key!r}")
        self.inner = inner
        self.hooks = hooks

    def submit_write(self, ctx):
        self.hooks.get("submit_write", self.inner.submit_write)(ctx)

    def submit_read(self, ctx):
        self.hooks.get("submit_read", self.inner.submit_read)(ctx)

    def can_merge(self, si, folio, prev, prev_size, rw):
        return self.hooks.get("can_merge", self.inner.can_merge)(si, folio, prev, prev_size, rw)

    def slot_free_notify(self, si, offset):
        self.hooks.get("slot_free_notify", self.inner.slot_free_notify)(si, offset)


class OpsSpy:
    """Wraps an area's ops: records each batch and checks invariants around the submit."""

    def __init__(self, si):
        self.si = si
        self.inner = si.ops
        self.batches: dict[int, list[list[tuple[int, int]]]] = {READ: [], WRITE: []}
        self.sios = []
        si.ops = HookedOps(si.ops, submit_write=self._write, submit_read=self._read)

    def _check(self, ctx, rw):
        sio = ctx.sio
        assert sio is not None and ctx.sis is self.si
        assert 1 <= swap_iocb_nr_folios(sio) <= SWAP_CLUSTER_MAX
        assert sio.len == sum(f.size for f in sio.bvecs)
        folios = [swap_iocb_folio(sio, i) for i in range(swap_iocb_nr_folios(sio))]
        assert all(swp_swap_info(self.si.machine, f.swap) is self.si for f in folios), "mixed"
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
        assert sio._ended, "submit_write must end its batch"

    def _read(self, ctx):
        sio = self._check(ctx, READ)
        self.inner.submit_read(ctx)
        assert sio._ended, "submit_read must end its batch"

    def nr(self, rw):
        return len(self.batches[rw])


def rand_pages(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, P), dtype=np.uint8)


def folios_of(pages: np.ndarray, order: int = 0) -> list[Folio]:
    nr = 1 << order
    return [Folio(order, pages[i : i + nr].tobytes()) for i in range(0, len(pages), nr)]


def alloc(m, folios, refs: int = 1) -> list[SwpEntry]:
    """Reclaim's first step: swap slots (folio in the swap cache) and PTE references."""
    entries = []
    for f in folios:
        f.lock()
        f.mark_uptodate()  # anonymous memory under reclaim
        f.mark_dirty()
        e = folio_alloc_swap(m, f)
        for _ in range(refs):
            swap_duplicate(m, e, f.nr_pages)
        f.unlock()
        entries.append(e)
    return entries


def writeout(m, folios, ctx: SwapIoCtx | None = None, submit: bool = True) -> SwapIoCtx:
    """``pageout``: lock, PG_reclaim, swap_writeout into one ctx; submit at the end."""
    ctx = ctx if ctx is not None else SwapIoCtx(m)
    for f in folios:
        f.lock()
        f.mark_dirty()
        f.set(PG_reclaim)
        swap_writeout(ctx, f)
    if submit:
        swap_write_submit(ctx)
    return ctx


def swap_out(m, folios, refs: int = 1) -> list[SwpEntry]:
    entries = alloc(m, folios, refs)
    writeout(m, folios)
    return entries


def evict(m, folios) -> None:
    """Reclaim frees the written folios (they leave the swap cache)."""
    for f in folios:
        assert not f.test(PG_writeback)
        f.lock()
        swap_cache_del_folio(m, f)
        f.unlock()


def swap_in(m, entries, orders=None, ctx: SwapIoCtx | None = None, submit: bool = True):
    """Fault path: a new swap-cache folio per entry, all read through one ctx."""
    ctx = ctx if ctx is not None else SwapIoCtx(m)
    orders = orders or [0] * len(entries)
    folios = []
    for e, order in zip(entries, orders, strict=True):
        g = swap_cache_alloc_folio(m, e, order)
        swap_read_folio(ctx, g)
        folios.append(g)
    if submit:
        swap_read_submit(ctx)
    return folios


def release(m, folios, refs: int = 1) -> None:
    """The PTEs go away and the folios leave the swap cache: their slots are freed."""
    for g in folios:
        e = g.swap
        for _ in range(refs):
            swap_free(m, e, g.nr_pages)
        g.lock()
        assert folio_free_swap(m, g)
        g.unlock()


def new_zram(size: str = "16M") -> Zram:
    z = Zram()
    z.sysfs["disksize"] = size
    mkswap(z.disk, uuid=bytes(16))  # a fixed UUID: the header page compresses the same
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


def test_folio_lock_sleeps_until_unlock_and_wakes_every_waiter():
    """``folio_lock`` sleeps on the folio's hashed wait queue (``PG_waiters``) and
    ``folio_unlock`` wakes it; waiters of other folios on the same queue are not
    lost, and every lock hand-over is exclusive."""
    from pyzram.mm.folio import PAGE_WAIT_TABLE_BITS, PG_waiters, folio_waitqueue

    folios = [Folio(0) for _ in range(4 << PAGE_WAIT_TABLE_BITS)]
    by_queue: dict[int, list[Folio]] = {}
    for f in folios:
        by_queue.setdefault(folio_waitqueue(f), []).append(f)
    shared = next(fs for fs in by_queue.values() if len(fs) >= 2)[:2]  # two folios, one queue
    inside = {id(f): 0 for f in shared}
    worst = 0
    rounds, threads = 200, 6

    def work(f: Folio) -> None:
        nonlocal worst
        for _ in range(rounds):
            f.lock()
            inside[id(f)] += 1
            worst = max(worst, inside[id(f)])
            inside[id(f)] -= 1
            f.unlock()

    for f in shared:
        f.lock()  # every worker's first lock() must sleep
    ts = [threading.Thread(target=work, args=(shared[i % 2],)) for i in range(threads)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 10
    while not all(f.test(PG_waiters) for f in shared) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert all(f.test(PG_waiters) for f in shared), "the waiters did not go to sleep"
    for f in shared:
        f.unlock()
    end = time.monotonic() + 20
    for t in ts:
        t.join(timeout=max(0.0, end - time.monotonic()))
    assert not any(t.is_alive() for t in ts), "a waiter was never woken"
    assert worst == 1
    assert not any(f.test(PG_locked) or f.test(PG_waiters) for f in shared)


# -- swap areas, slots, the swap cache ---------------------------------------------------------


def test_swapon_checks_header_and_sets_flags(m, tmp_path):
    raw = FileDisk(tmp_path / "raw", size=1 << 20)
    with pytest.raises(OSError) as e:
        swapon(m, raw.disk)
    assert e.value.errno == errno.EINVAL
    assert not m.active_areas() and raw.disk._openers == 0

    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(m, fd.disk)
    assert si.ops is swap_bdev_ops
    assert si.flags & SWP_BLKDEV and si.flags & SWP_SYNCHRONOUS_IO and si.flags & SWP_SOLIDSTATE
    assert si.flags & SWP_WRITEOK
    assert si.max == 256 and si.pages == 255 and si.swap_map[0] == SWAP_MAP_BAD
    assert fd.disk._openers == 1
    with pytest.raises(OSError) as e:
        swapon(m, fd.disk)
    assert e.value.errno == errno.EBUSY

    path = new_swapfile(tmp_path, size=1 << 20)
    sf = swapon(m, path)
    assert sf.ops is swap_fs_ops and not sf.flags & SWP_BLKDEV
    with pytest.raises(OSError) as e:
        swapon(m, path)
    assert e.value.errno == errno.EBUSY
    swapoff(sf)
    swapoff(si)
    assert fd.disk._openers == 0 and si.ops is None and not m.active_areas()
    fd.close()
    raw.close()


def test_swapfile_with_holes_is_refused(m, tmp_path):
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
        swapon(m, path)
    assert e.value.errno == errno.EINVAL
    assert not m.active_areas()


def check_nonfull_lists(si) -> None:
    """Each cluster is on its order's non-full list exactly while it has both used and
    free slots, and its ``cluster_nonfull`` flag says so (CLUSTER_FLAG_NONFULL)."""
    for c in range(len(si.cluster_nonfull)):
        lists = [o for o, lst in si.nonfull_clusters.items() if c in lst]
        used = si.cluster_count[c]
        assert lists == ([si.cluster_order[c]] if 0 < used < SWAPFILE_CLUSTER else []), c
        assert si.cluster_nonfull[c] == bool(lists), c


def test_slot_allocation_clusters_and_alignment(m, tmp_path):
    fd = new_filedisk(tmp_path, size=8 << 20)  # 2048 slots, 4 clusters
    si = swapon(m, fd.disk)
    check_nonfull_lists(si)
    small = folios_of(rand_pages(3), 0)
    e_small = alloc(m, small)
    assert [e.offset for e in e_small] == [1, 2, 3]  # slot 0 is the header
    check_nonfull_lists(si)
    big = [Folio(2), Folio(4), Folio(2)]
    e_big = alloc(m, big)
    check_nonfull_lists(si)
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
                folio_alloc_swap(m, f)
            finally:
                f.unlock()
            rest.append(f)
    assert exc.value.errno == errno.ENOMEM
    # order 0 steals from the order-2/order-4 clusters: every usable slot gets used
    assert si.inuse_pages == si.pages == 2047
    assert all(f.swap.offset != 0 for f in rest)
    check_nonfull_lists(si)
    for i, f in enumerate(small + big + rest):  # no PTE refs for `rest`: dropping the
        if f.swap is not None and si.swap_count(f.swap.offset):  # cache frees them
            swap_free(m, f.swap, f.nr_pages)
        f.lock()
        swap_cache_del_folio(m, f)
        f.unlock()
        if i % 97 == 0:
            check_nonfull_lists(si)
    check_nonfull_lists(si)
    assert si.inuse_pages == 0 and sorted(si.free_clusters) == [1, 2, 3]
    assert set(si.swap_map.tolist()) == {0, SWAP_MAP_BAD}
    swapoff(si)
    fd.close()


def test_priority_picks_area(m, tmp_path):
    a = swapon(m, new_filedisk(tmp_path, "a", 1 << 20).disk, prio=5)
    b = swapon(m, new_filedisk(tmp_path, "b", 1 << 20).disk, prio=10)
    (e1,) = alloc(m, [Folio(0)])
    assert e1.type == b.type
    b.prio = 1
    (e2,) = alloc(m, [Folio(0)])
    assert e2.type == a.type


def test_swap_counts_and_swap_cache(m, tmp_path):
    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(m, fd.disk)
    f = Folio(0, rand_pages(1).tobytes())
    (e,) = alloc(m, [f], refs=2)
    assert si.swap_map[e.offset] == SWAP_HAS_CACHE | 2 and si.swap_count(e.offset) == 2
    assert swap_cache_get_folio(m, e) is f
    with pytest.raises(OSError) as exc:
        swap_cache_alloc_folio(m, e)
    assert exc.value.errno == errno.EEXIST
    f.lock()
    assert not folio_free_swap(m, f)  # still referenced
    f.unlock()
    swap_free(m, e)
    swap_free(m, e)
    assert si.swap_map[e.offset] == SWAP_HAS_CACHE and si.inuse_pages == 1  # count-0, cached
    f.lock()
    f.clear(PG_dirty)
    assert folio_free_swap(m, f)
    f.unlock()
    assert f.test(PG_dirty) and not f.test(PG_swapcache) and f.swap is None
    assert si.swap_map[e.offset] == 0 and si.inuse_pages == 0
    with pytest.raises(OSError) as exc:
        swap_cache_alloc_folio(m, e)  # nobody references the slot
    assert exc.value.errno == errno.ENOENT
    with pytest.raises(OSError):
        swap_free(m, e)
    with pytest.raises(OSError):
        swap_duplicate(m, e)


def test_single_slots_are_taken_first_fit_and_freed_slots_first_again(m, tmp_path):
    """A single slot is the first free one of the order's cluster: freed slots
    below the last one taken are found again, lowest first."""
    swapon(m, new_filedisk(tmp_path, size=1 << 20).disk)
    folios = [Folio(0, rand_pages(1).tobytes()) for _ in range(10)]
    entries = alloc(m, folios, refs=1)
    offs = [e.offset for e in entries]
    assert offs == list(range(offs[0], offs[0] + 10))
    for i in (7, 3):  # the PTE reference and the cached folio go: the slot is free
        swap_free(m, entries[i])
        folios[i].lock()
        assert folio_free_swap(m, folios[i])
        folios[i].unlock()
    again = alloc(m, [Folio(0, rand_pages(1).tobytes()) for _ in range(3)], refs=1)
    assert [e.offset for e in again] == [offs[3], offs[7], offs[9] + 1]


def test_swap_writeout_of_unreferenced_folio_just_drops_it(m, tmp_path):
    si = swapon(m, new_filedisk(tmp_path, size=1 << 20).disk)
    spy = OpsSpy(si)
    f = Folio(0, rand_pages(1).tobytes())
    alloc(m, [f], refs=0)
    ctx = writeout(m, [f], submit=False)
    assert ctx.sio is None and not f.test(PG_swapcache) and not f.test(PG_locked)
    swap_write_submit(ctx)
    assert spy.nr(WRITE) == 0 and m.vm_events["pswpout"] == 0 and si.inuse_pages == 0


@pytest.mark.parametrize("zswap_on", [False, True])
def test_memcg_without_zswap_writeback_keeps_pages_from_the_device_only_with_zswap_on(
    m, tmp_path, zswap_on
):
    """``memory.zswap.writeback=0``: a page zswap rejects (random bytes do not
    compress) stays in memory, dirty (``AOP_WRITEPAGE_ACTIVATE``), while zswap is
    on; with zswap off the setting blocks nothing (``mem_cgroup_zswap_writeback_enabled``
    tests ``zswap_is_enabled()`` first) and the page goes to the device."""
    si = swapon(m, new_filedisk(tmp_path, size=1 << 20).disk)
    if zswap_on:
        m.zswap.param_write("compressor", "lzo")
        m.zswap.param_write("enabled", "Y\n")
    spy = OpsSpy(si)
    f = Folio(0, rand_pages(1).tobytes())
    f.memcg = SimpleNamespace(zswap_writeback=False)
    alloc(m, [f])
    ctx = SwapIoCtx(m)
    f.lock()
    f.set(PG_reclaim)
    ret = swap_writeout(ctx, f)
    swap_write_submit(ctx)
    assert not f.test(PG_locked)
    if zswap_on:
        assert ret == AOP_WRITEPAGE_ACTIVATE and f.test(PG_dirty)
        assert spy.nr(WRITE) == 0 and m.vm_events["pswpout"] == 0
        assert m.zswap.reject_compress_fail == 1
    else:
        assert ret == 0 and not f.test(PG_dirty)
        assert spy.nr(WRITE) == 1 and m.vm_events["pswpout"] == 1
    release(m, [f])


def test_swapoff_needs_references_dropped(m, tmp_path):
    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(m, fd.disk)
    folios = folios_of(rand_pages(5, seed=3))
    data = [bytes(f.data) for f in folios]
    entries = swap_out(m, folios)
    evict(m, folios)
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
    return si.machine.swap_info[si.type] is si


def test_swapoff_drops_cache_only_slots(m, tmp_path):
    """try_to_unuse also frees slots that only the swap cache holds (count 0), as the
    kernel's find_next_to_unuse/folio_free_swap loop does."""
    si = swapon(m, new_filedisk(tmp_path, size=1 << 20).disk)
    folios = folios_of(rand_pages(3))
    swap_out(m, folios)
    for f in folios:
        swap_free(m, f.swap)  # the PTEs are gone; the folios stay in the swap cache
    assert si.inuse_pages == 3
    swapoff(si)
    assert not swap_info_has(si)
    assert all(not f.test(PG_swapcache) and f.test(PG_dirty) for f in folios)


# -- batching ----------------------------------------------------------------------------------


def test_queued_state_ctx_reset_and_empty_submit(m, tmp_path):
    si = swapon(m, new_filedisk(tmp_path, size=1 << 20).disk)
    spy = OpsSpy(si)
    empty = SwapIoCtx(m)
    swap_write_submit(empty)
    swap_read_submit(empty)
    assert (
        m.vm_events["nrswpout"] == m.vm_events["nrswpin"] == 0
        and spy.nr(READ) == spy.nr(WRITE) == 0
    )

    folios = folios_of(rand_pages(4, seed=1))
    entries = alloc(m, folios)
    ctx = writeout(m, folios, submit=False)
    assert ctx.sis is si and ctx.sio is not None and ctx.sio.nr_bvecs == 4
    for f in folios:  # queued writes: under writeback, unlocked, counted already
        assert f.test(PG_writeback) and not f.test(PG_locked) and not f.test(PG_dirty)
    assert m.vm_events["pswpout"] == 4 and m.vm_events["nrswpout"] == 0
    swap_write_submit(ctx)
    assert ctx.sio is None and ctx.sis is None
    assert m.vm_events["nrswpout"] == 1 and spy.nr(WRITE) == 1
    assert all(not f.test(PG_writeback) for f in folios)
    evict(m, folios)

    ctx = SwapIoCtx(m)
    back = swap_in(m, entries, ctx=ctx, submit=False)
    for g in back:  # queued reads stay locked, not uptodate
        assert g.test(PG_locked) and not g.test(PG_uptodate)
    assert m.vm_events["pswpin"] == 0 and m.vm_events["nrswpin"] == 0
    swap_read_submit(ctx)
    assert ctx.sio is None and ctx.sis is None
    assert all(g.test(PG_uptodate) and not g.test(PG_locked) for g in back)
    assert m.vm_events["pswpin"] == 4 and m.vm_events["nrswpin"] == 1
    release(m, back)


def entries_of(si) -> list[SwpEntry]:
    """Referenced slots of an area, in order."""
    return [SwpEntry(si.type, o) for o in range(1, si.max) if si.swap_count(o)]


@pytest.mark.parametrize("kind", ["filedisk", "swapfile", "zram_bio"])
def test_batches_cap_at_32_and_merge_only_adjacent(m, kind, tmp_path):
    if kind == "filedisk":
        si = swapon(m, new_filedisk(tmp_path).disk)
    elif kind == "swapfile":
        si = swapon(m, new_swapfile(tmp_path))
    else:
        m.swap_ops_series = False  # a kernel without the series: the bio path
        zram_init(m)
        si = swapon(m, new_zram().disk)
    assert si.ops is (swap_fs_ops if kind == "swapfile" else swap_bdev_ops)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(70, seed=2))
    alloc(m, folios)
    writeout(m, folios)  # adjacent slots 1..70
    assert [len(b) for b in spy.batches[WRITE]] == [32, 32, 6]
    assert m.vm_events["nrswpout"] == 3 and m.vm_events["pswpout"] == 70
    # rewrite in a shuffled order: only adjacent runs merge
    order = list(range(70))
    random.Random(5).shuffle(order)
    writeout(m, [folios[i] for i in order])
    assert_runs_adjacent(spy.batches[WRITE])
    assert m.vm_events["nrswpout"] == len(spy.batches[WRITE]) > 3
    evict(m, folios)
    back = swap_in(m, [SwpEntry(si.type, 1 + i) for i in order])
    assert_runs_adjacent(spy.batches[READ])
    assert m.vm_events["nrswpin"] == len(spy.batches[READ])
    for i, g in zip(order, back, strict=True):
        assert bytes(g.data) == bytes(folios[i].data)
    release(m, back)
    assert si.inuse_pages == 0


@pytest.mark.parametrize("kind", ["filedisk", "swapfile"])
def test_large_folios_merge_when_the_next_starts_after_the_previous_last_page(m, kind, tmp_path):
    """``can_merge`` is given the previous folio's size: order-2 folios in adjacent
    slot runs form one batch, and one that does not follow the previous folio's
    last page starts a new one."""
    path = new_filedisk(tmp_path).disk if kind == "filedisk" else new_swapfile(tmp_path)
    si = swapon(m, path)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(16, seed=4), order=2)
    entries = alloc(m, folios)
    assert [e.offset for e in entries] == [entries[0].offset + 4 * i for i in range(4)]
    writeout(m, folios)
    assert [len(b) for b in spy.batches[WRITE]] == [4]
    writeout(m, [folios[0], folios[2], folios[3], folios[1]])
    assert [len(b) for b in spy.batches[WRITE][1:]] == [1, 2, 1]
    evict(m, folios)
    release(m, swap_in(m, entries, orders=[2] * 4))
    assert [len(b) for b in spy.batches[READ]] == [4]


def test_bdev_bio_per_batch_at_first_sector(m, tmp_path):
    fd = new_filedisk(tmp_path)
    swapon(m, fd.disk)
    folios = [Folio(0, rand_pages(1, 1).tobytes()), Folio(2, rand_pages(4, 2).tobytes())]
    folios += folios_of(rand_pages(3, seed=3))
    entries = alloc(m, folios)
    fd.bios.clear()
    writeout(m, folios)
    runs: list[list[Folio]] = []
    for f in folios:
        if runs and f.swap.offset == runs[-1][-1].swap.offset + runs[-1][-1].nr_pages:
            runs[-1].append(f)
        else:
            runs.append([f])
    expect = [("WRITE", r[0].swap.offset * 8, sum(f.size for f in r)) for r in runs]
    assert fd.bios == expect
    assert len(entries) == 5


def test_bdev_write_batches_split_by_blkcg_reads_do_not(m, tmp_path):
    si = swapon(m, new_filedisk(tmp_path).disk)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(6, seed=4))
    cg_a, cg_b = object(), object()
    for i, f in enumerate(folios):
        f.memcg = cg_a if i < 3 else cg_b
    entries = alloc(m, folios)
    writeout(m, folios)
    assert [len(b) for b in spy.batches[WRITE]] == [3, 3]
    evict(m, folios)
    back = swap_in(m, entries)
    assert [len(b) for b in spy.batches[READ]] == [6]
    release(m, back)


def test_batches_never_mix_areas(m, tmp_path):
    a = swapon(m, new_filedisk(tmp_path, "a", 1 << 20).disk, prio=10)
    spy_a = OpsSpy(a)
    fa = folios_of(rand_pages(4, seed=5))
    alloc(m, fa)
    b = swapon(m, new_filedisk(tmp_path, "b", 1 << 20).disk, prio=20)
    spy_b = OpsSpy(b)
    fb = folios_of(rand_pages(4, seed=6))
    alloc(m, fb)
    assert {f.swap.type for f in fa} == {a.type} and {f.swap.type for f in fb} == {b.type}
    mixed = [x for pair in zip(fa, fb, strict=True) for x in pair]
    writeout(m, mixed)
    assert spy_a.nr(WRITE) == spy_b.nr(WRITE) == 4  # every switch of area submits
    entries = [f.swap for f in mixed]
    evict(m, mixed)
    back = swap_in(m, entries)
    assert spy_a.nr(READ) == spy_b.nr(READ) == 4
    for f, g in zip(mixed, back, strict=True):
        assert bytes(f.data) == bytes(g.data)
    release(m, back)


def test_ended_twice_raises_and_delegating_provider_must_not_end(m, tmp_path):
    fd = new_filedisk(tmp_path, size=1 << 20)
    si = swapon(m, fd.disk)
    folios = folios_of(rand_pages(2, seed=7))
    alloc(m, folios)
    writeout(m, folios)
    evict(m, folios)

    def bad_read(ctx):
        sio = ctx.sio
        swap_bdev_submit_read(ctx)  # its completion ends the batch ...
        page_io.swap_read_end(sio, False)  # ... so this is a second end

    si.ops = HookedOps(swap_bdev_ops, submit_read=bad_read)
    with pytest.raises(RuntimeError, match="unlocked folio"):  # the second end's unlock
        swap_in(m, entries_of(si))
    si.ops = swap_bdev_ops
    # an empty batch ended twice: the pool itself refuses the second free
    sio = m.sio_pool.alloc()
    page_io.swap_write_end(sio, False)
    with pytest.raises(RuntimeError, match="ended twice"):
        page_io.swap_write_end(sio, False)
    assert m.sio_pool.outstanding == 0


# -- completion: failures ----------------------------------------------------------------------


def test_bdev_write_failure_redirties_whole_batch(m, tmp_path):
    fd = new_filedisk(tmp_path)
    si = swapon(m, fd.disk)
    spy = OpsSpy(si)
    folios = folios_of(rand_pages(40, seed=8))
    old = rand_pages(40, seed=9)
    entries = alloc(m, folios)
    for f, o in zip(folios, old, strict=True):  # old content on disk
        f.data[:] = o.tobytes()
    writeout(m, folios)
    new = rand_pages(40, seed=10)
    for f, n in zip(folios, new, strict=True):
        f.data[:] = n.tobytes()
    fd.fail_sectors = {entries[5].offset * 8}  # inside the first batch of 32
    writeout(m, folios)
    assert [len(b) for b in spy.batches[WRITE]] == [32, 8, 32, 8]
    for i, f in enumerate(folios):
        assert not f.test(PG_writeback)
        assert f.test(PG_swapcache) and f.swap == entries[i]
        if i < 32:  # the failed batch: every folio re-dirtied, reclaim cleared
            assert f.test(PG_dirty) and not f.test(PG_reclaim)
        else:
            assert not f.test(PG_dirty)
        assert bytes(f.data) == new[i].tobytes()  # nothing lost in memory
    assert m.vm_events["pswpout"] == 80  # counted at queue time, failure or not
    assert si.inuse_pages == 40
    for i, e in enumerate(entries):  # the failed bio wrote nothing: old bytes on disk
        on_disk = os.pread(fd.fd, P, e.offset * P)
        assert on_disk == (old[i] if i < 32 else new[i]).tobytes()
    # retry once the device is healthy: the data reaches the disk
    fd.fail_sectors = set()
    writeout(m, folios[:32])
    evict(m, folios)
    back = swap_in(m, entries)
    assert [bytes(g.data) for g in back] == [n.tobytes() for n in new]
    release(m, back)


def test_bdev_read_failure_leaves_batch_not_uptodate(m, tmp_path):
    fd = new_filedisk(tmp_path)
    si = swapon(m, fd.disk)
    folios = folios_of(rand_pages(6, seed=11))
    entries = swap_out(m, folios)
    evict(m, folios)
    fd.fail_sectors = {entries[3].offset * 8}
    back = swap_in(m, entries)
    assert all(not g.test(PG_uptodate) and not g.test(PG_locked) for g in back)
    assert m.vm_events["pswpin"] == 0 and m.vm_events["nrswpin"] == 1
    assert not any(name == "swpin" for _, name in m.vm_events.mthp)
    assert all(g.test(PG_swapcache) for g in back)
    fd.fail_sectors = set()
    for g in back:  # drop the failed folios; read again
        g.lock()
        swap_cache_del_folio(m, g)
        g.unlock()
    back = swap_in(m, entries)
    assert [bytes(g.data) for g in back] == [bytes(f.data) for f in folios]
    release(m, back)
    assert si.inuse_pages == 0


def test_swapfile_io_errors(m, tmp_path):
    path = new_swapfile(tmp_path, size=1 << 20)
    si = swapon(m, path)
    folios = folios_of(rand_pages(5, seed=12))
    entries = alloc(m, folios)
    good_fd = si.swap_file_fd
    si.swap_file_fd = os.open(path, os.O_RDONLY)  # pwritev fails: EBADF
    try:
        writeout(m, folios)
    finally:
        os.close(si.swap_file_fd)
        si.swap_file_fd = good_fd
    assert all(f.test(PG_dirty) and not f.test(PG_writeback) for f in folios)
    writeout(m, folios)
    assert all(not f.test(PG_dirty) for f in folios)
    evict(m, folios)
    si.swap_file_fd = os.open(path, os.O_WRONLY)  # preadv fails
    try:
        back = swap_in(m, entries)
    finally:
        os.close(si.swap_file_fd)
        si.swap_file_fd = good_fd
    assert all(not g.test(PG_uptodate) and not g.test(PG_locked) for g in back)
    assert m.vm_events["pswpin"] == 0


# -- counters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [0, 2, 9])
def test_is_folio_zero_filled_looks_at_every_page(order):
    """A folio is zero-filled only if every one of its pages is: one non-zero byte
    anywhere, the first page, a middle one or the last byte, makes it not."""
    size = PAGE_SIZE << order
    assert page_io.is_folio_zero_filled(Folio(order))
    for at in sorted({0, size // 2 + 17, size - 1}):
        data = bytearray(size)
        data[at] = 1
        assert not page_io.is_folio_zero_filled(Folio(order, data)), at


def test_counters_zero_pages_and_mthp(m, tmp_path):
    si = swapon(m, new_filedisk(tmp_path).disk)
    spy = OpsSpy(si)
    zero = [Folio(0), Folio(2)]
    data = [Folio(0, rand_pages(1, 1).tobytes()), Folio(2, rand_pages(4, 2).tobytes())]
    data += [Folio(4, rand_pages(16, 3).tobytes()), Folio(4, rand_pages(16, 4).tobytes())]
    folios = zero + data
    entries = alloc(m, folios)
    writeout(m, folios)
    assert m.vm_events["swpout_zero"] == 1 + 4
    assert m.vm_events["pswpout"] == 1 + 4 + 16 + 16
    assert m.vm_events.mthp[(2, "swpout")] == 1 and m.vm_events.mthp[(4, "swpout")] == 2
    assert (2, "swpin") not in m.vm_events.mthp
    assert m.vm_events["nrswpout"] == spy.nr(WRITE) >= 1
    assert all(si.count_zero(f.swap.offset, f.nr_pages) == f.nr_pages for f in zero)
    assert all(not z.test(PG_dirty) and not z.test(PG_writeback) for z in zero)
    evict(m, folios)
    back = swap_in(m, entries, [f.order for f in folios])
    for f, g in zip(folios, back, strict=True):
        assert g.test(PG_uptodate) and bytes(g.data) == bytes(f.data)
    assert m.vm_events["swpin_zero"] == 5
    assert m.vm_events["pswpin"] == 37
    assert m.vm_events.mthp[(2, "swpin")] == 1 and m.vm_events.mthp[(4, "swpin")] == 2
    assert m.vm_events["nrswpin"] == spy.nr(READ)
    assert (0, "swpout") not in m.vm_events.mthp, "count_mthp_stat ignores order 0"
    release(m, back)


def test_thp_swpout_counted_for_pmd_folio(m, tmp_path):
    si = swapon(m, new_filedisk(tmp_path).disk)
    f = Folio(9, rand_pages(512, 5).tobytes())
    (e,) = swap_out(m, [f])
    assert e.offset % 512 == 0
    assert m.vm_events["thp_swpout"] == 1 and m.vm_events.mthp[(9, "swpout")] == 1
    assert m.vm_events["pswpout"] == 512
    evict(m, [f])
    (g,) = swap_in(m, [e], [9])
    assert bytes(g.data) == bytes(f.data)
    release(m, [g])
    assert si.inuse_pages == 0


def test_mixed_zero_large_folio_read_is_an_error(m, tmp_path):
    si = swapon(m, new_filedisk(tmp_path).disk)
    f = Folio(2, rand_pages(4, 6).tobytes())
    (e,) = swap_out(m, [f])
    evict(m, [f])
    si.set_zero(e.offset, 1, True)  # one zero slot among data slots
    (g,) = swap_in(m, [e], [2])
    assert not g.test(PG_uptodate) and not g.test(PG_locked)
    assert m.vm_events["nrswpin"] == 0


# -- the registry ------------------------------------------------------------------------------


class FakeOps(SwapOps):
    """A block driver's ops: the bio path, each submit recorded in ``calls``."""

    def __init__(self, calls: list[str], name: str = "fake") -> None:
        SwapOps.__init__(self, name)
        self.calls = calls

    def submit_write(self, ctx):
        self.calls.append("w")
        swap_bdev_submit_write(ctx)

    def submit_read(self, ctx):
        self.calls.append("r")
        swap_bdev_submit_read(ctx)

    def can_merge(self, si, folio, prev, prev_size, rw):
        return page_io.swap_bdev_can_merge(si, folio, prev, prev_size, rw)


class NoReadOps(SwapOps):
    def submit_write(self, ctx):
        swap_bdev_submit_write(ctx)


class NoWriteOps(SwapOps):
    def submit_read(self, ctx):
        swap_bdev_submit_read(ctx)


class NoMergeOps(NoReadOps):
    def submit_read(self, ctx):
        swap_bdev_submit_read(ctx)


def test_swap_ops_hooks_a_class_leaves_undefined_are_the_kernels_null_ones(m):
    """The base class's ``can_merge`` says yes, its ``slot_free_notify`` does nothing, and
    ``swap_ops_defines`` tells them apart from an implementation's (the kernel's test of
    the pointer)."""
    ops = NoMergeOps("plain", flags=5)
    assert (ops.name, ops.flags) == ("plain", 5)
    assert ops.can_merge(None, Folio(0), Folio(0), P, READ) is True
    assert ops.slot_free_notify(None, 3) is None
    assert [swap_ops_defines(ops, h) for h in _HOOKS] == [True, True, False, False]
    assert [swap_ops_defines(swap_bdev_ops, h) for h in _HOOKS] == [True, True, True, False]
    assert [swap_ops_defines(zram_swap_ops, h) for h in _HOOKS] == [True] * 4
    with pytest.raises(NotImplementedError, match="plain has no submit_write"):
        SwapOps("plain").submit_write(SwapIoCtx(m))
    with pytest.raises(NotImplementedError, match="plain has no submit_read"):
        NoReadOps("plain").submit_read(SwapIoCtx(m))


def test_register_einval(m, tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    ops = FakeOps([])
    with pytest.warns(RuntimeWarning):
        with pytest.raises(OSError) as e:
            swap_register_block_ops(m, None, ops)
    assert e.value.errno == errno.EINVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bad in (None, NoReadOps("r"), NoWriteOps("w"), swap_bdev_submit_read):
            with pytest.raises(OSError) as e:
                swap_register_block_ops(m, fd.fops, bad)
            assert e.value.errno == errno.EINVAL
    assert registered_block_ops(m) == (None, None)
    # can_merge and slot_free_notify are optional
    swap_register_block_ops(m, fd.fops, NoMergeOps("no can_merge"))
    assert registered_block_ops(m)[0] is fd.fops


def test_register_ebusy_even_for_same_fops(m, tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    other = FileDisk(tmp_path / "o", size=1 << 20)
    ops = FakeOps([])
    swap_register_block_ops(m, fd.fops, ops)
    for fops, o in ((fd.fops, ops), (fd.fops, FakeOps([], "x")), (other.fops, ops)):
        with pytest.raises(OSError) as e:
            swap_register_block_ops(m, fops, o)
        assert e.value.errno == errno.EBUSY
    assert registered_block_ops(m) == (fd.fops, ops)


def test_unregister_mismatch_warns_and_keeps_empty_is_noop(m, tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    other = FileDisk(tmp_path / "o", size=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swap_unregister_block_ops(m, fd.fops)  # nothing registered: silent no-op
    assert registered_block_ops(m) == (None, None)
    ops = FakeOps([])
    swap_register_block_ops(m, fd.fops, ops)
    with pytest.warns(RuntimeWarning):
        swap_unregister_block_ops(m, other.fops)
    assert registered_block_ops(m) == (fd.fops, ops)
    swap_unregister_block_ops(m, fd.fops)
    assert registered_block_ops(m) == (None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swap_unregister_block_ops(m, fd.fops)


def test_registered_ops_captured_at_swapon_until_swapoff(m, tmp_path):
    calls: list[str] = []
    fd = new_filedisk(tmp_path, "d", 1 << 20)
    other = new_filedisk(tmp_path, "o", 1 << 20)
    ops = FakeOps(calls)
    swap_register_block_ops(m, fd.fops, ops)
    si = swapon(m, fd.disk)
    assert si.ops is ops and lookup_swap_block_ops(si) is ops
    so = swapon(m, other.disk)  # a non-matching block device
    assert so.ops is swap_bdev_ops and lookup_swap_block_ops(so) is None
    sf = swapon(m, new_swapfile(tmp_path, size=1 << 20))  # swap files never match
    assert sf.ops is swap_fs_ops and lookup_swap_block_ops(sf) is None
    swapoff(sf)
    swapoff(so)
    swap_unregister_block_ops(m, fd.fops)
    assert si.ops is ops  # kept until swapoff
    so = swapon(m, other.disk)
    so.prio = -1000
    folios = folios_of(rand_pages(3, seed=13))
    entries = swap_out(m, folios)
    assert {e.type for e in entries} == {si.type}
    evict(m, folios)
    back = swap_in(m, entries)
    assert calls == ["w", "r"]
    release(m, back)
    swapoff(si)
    assert si.ops is None
    si2 = swapon(m, fd.disk)  # swapped on after unregister
    assert si2.ops is swap_bdev_ops
    swapoff(si2)
    # a kernel without the series never looks the registry up
    with Machine(swap_ops_series=False) as plain:
        swap_register_block_ops(plain, fd.fops, ops)
        assert swapon(plain, fd.disk).ops is swap_bdev_ops


def test_slot_free_notify_under_area_lock_once_per_slot(m, tmp_path):
    fd = new_filedisk(tmp_path, size=4 << 20)
    freed: list[int] = []

    def notify(si, offset):
        assert si.spin_is_locked(), "slot_free_notify runs under the cluster lock"
        freed.append(offset)

    ops = HookedOps(FakeOps([]), slot_free_notify=notify)
    swap_register_block_ops(m, fd.fops, ops)
    si = swapon(m, fd.disk)
    folios = [Folio(0, rand_pages(1, 1).tobytes()), Folio(2, rand_pages(4, 2).tobytes())]
    entries = swap_out(m, folios, refs=2)
    evict(m, folios)
    assert freed == []
    for f, e in zip(folios, entries, strict=True):
        swap_free(m, e, f.nr_pages)
    assert freed == []
    for f, e in zip(folios, entries, strict=True):
        swap_free(m, e, f.nr_pages)
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


def make_area(m, kind: str, tmp_path):
    """A swapped-on area of each path; returns (si, zram or None)."""
    if kind in ("zram_ops", "zram_bio"):
        m.swap_ops_series = kind == "zram_ops"  # zram_bio: a kernel without the series
        zram_init(m)
        z = new_zram()
        si = swapon(m, z.disk)
        assert si.ops is (zram_swap_ops if kind == "zram_ops" else swap_bdev_ops)
        return si, z
    if kind == "filedisk":
        return swapon(m, new_filedisk(tmp_path, size=16 << 20).disk), None
    return swapon(m, new_swapfile(tmp_path, size=16 << 20)), None


@pytest.mark.parametrize("kind", ["zram_ops", "zram_bio", "filedisk", "swapfile"])
def test_real_pages_roundtrip(m, kind, real_pages, tmp_path):
    si, z = make_area(m, kind, tmp_path)
    spy = OpsSpy(si)
    folios = real_folios(real_pages)
    want = [bytes(f.data) for f in folios]
    zero = [f.data.count(0) == f.size for f in folios]
    swap_out(m, folios)
    entries = [f.swap for f in folios]
    orders = [f.order for f in folios]
    evict(m, folios)
    order = list(range(len(folios)))
    random.Random(11).shuffle(order)
    back = swap_in(m, [entries[i] for i in order], [orders[i] for i in order])
    for i, g in zip(order, back, strict=True):
        assert g.test(PG_uptodate) and not g.test(PG_locked), (kind, entries[i])
        assert bytes(g.data) == want[i], (kind, entries[i])

    n_zero = sum(f.nr_pages for f, zf in zip(folios, zero, strict=True) if zf)
    n_data = len(real_pages) - n_zero
    nr_write = sum(1 for zf in zero if not zf)
    assert n_zero > 0 and n_data > 0
    assert m.vm_events["pswpout"] == m.vm_events["pswpin"] == n_data
    assert m.vm_events["swpout_zero"] == m.vm_events["swpin_zero"] == n_zero
    assert (
        m.vm_events.mthp[(2, "swpout")]
        == m.vm_events.mthp[(2, "swpin")]
        == sum(1 for f, zf in zip(folios, zero, strict=True) if f.order == 2 and not zf)
    )
    assert m.vm_events["nrswpout"] == spy.nr(WRITE) and m.vm_events["nrswpin"] == spy.nr(READ)
    if kind == "zram_ops":  # any folios merge: full batches of 32
        assert spy.nr(WRITE) == spy.nr(READ) == -(-nr_write // SWAP_CLUSTER_MAX)
    else:  # only adjacent ones: the shuffled swap-in splits
        assert_runs_adjacent(spy.batches[READ])
        assert_runs_adjacent(spy.batches[WRITE])
        assert spy.nr(READ) > -(-nr_write // SWAP_CLUSTER_MAX)

    release(m, back)
    assert si.inuse_pages == 0
    assert set(si.swap_map.tolist()) == {0, SWAP_MAP_BAD}
    swapoff(si)
    if z is not None:
        assert zram_slots_used(z) == 1  # only the swap header (slot 0) remains
        assert atomic64_read(z.stats.notify_free) == len(
            real_pages
        )  # every slot freed was notified
        assert atomic64_read(z.stats.miss_free) == 0
        z.check()
        z.sysfs["reset"] = "1"


def test_vm_events_are_per_thread_and_sum_exactly():
    """``count_vm_events`` adds to the caller's own counters (per-CPU in the
    kernel) with no lock; reads sum every thread's, those of threads that
    have ended included, and nothing is lost to concurrent adds."""
    from pyzram.mm.swap import NRSWPOUT, PSWPIN, PSWPOUT, VmEvents

    ev = VmEvents()
    threads, per = 8, 20_000
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(per):
            ev.count(PSWPOUT)
            ev.count_mthp(4, "swpout", 2)
        ev.count(NRSWPOUT, i)

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
    # Threads that ended leave their counts; a new thread (which may reuse an
    # ended one's id, and then its counters) adds to the totals, loses none.
    for _ in range(threads):
        t = threading.Thread(target=ev.count, args=(PSWPIN, 3))
        t.start()
        t.join()
    assert ev["pswpout"] == threads * per and ev["pswpin"] == 3 * threads
    ev.restore(Counter({"pswpin": 7}), Counter())
    assert ev["pswpin"] == 7 and ev["pswpout"] == 0
    ev.count(PSWPIN)
    assert ev.counts == Counter({"pswpin": 8})
    ev.reset()
    assert not +ev.counts and not +ev.mthp
    with pytest.raises(KeyError):  # a name /proc/vmstat has, but the model does not count
        ev["pgpgin"]


def test_vm_event_items_are_named_as_in_proc_vmstat():
    """``enum vm_event_item``: each item's number indexes its /proc/vmstat name."""
    from pyzram.mm import swap

    assert len(set(swap.VM_EVENT_NAMES)) == swap.NR_VM_EVENT_ITEMS
    for item, name in enumerate(swap.VM_EVENT_NAMES):
        assert getattr(swap, name.upper()) == item, name
    ev = swap.VmEvents()
    for item in range(swap.NR_VM_EVENT_ITEMS):
        ev.count(item, item + 1)
    assert ev.counts == {name: i + 1 for i, name in enumerate(swap.VM_EVENT_NAMES)}

"""zram's swap_ops path (the seed series, patches 2/3 and 3/3) against its bio path.

Registration at "module init", the per-area ops, batches that merge any folios,
large folios stored page by page, write failures in the middle of a batch (mem_limit,
allocation failure, codec errors), read failures, slot_free_notify with trylock and
miss_free, no slot leaks after swapoff, mm_stat equal to the bio path, the
backing-device read fallback (as posted vs. adjacent batches) and the read-then-mark
ordering.  Uses the autouse fixture and helpers of test_swap_core.py.
"""

from __future__ import annotations

import errno
from collections import Counter

import numpy as np
import pytest

from conftest import corrupt
from pyzram.block.filedev import FileDisk
from pyzram.lib.atomic import atomic64_read
from pyzram.mm.folio import (
    PAGE_SIZE,
    Folio,
    PG_dirty,
    PG_locked,
    PG_reclaim,
    PG_swapcache,
    PG_uptodate,
    PG_writeback,
)
from pyzram.mm.machine import Machine
from pyzram.mm.page_io import swap_bdev_ops
from pyzram.mm.swap import (
    SWAP_CLUSTER_MAX,
    SWP_BLKDEV,
    SWP_STABLE_WRITES,
    SWP_SYNCHRONOUS_IO,
)
from pyzram.mm.swap_ops import (
    READ,
    WRITE,
    SwapOps,
    registered_block_ops,
    swap_ops_defines,
    swap_register_block_ops,
    swap_unregister_block_ops,
)
from pyzram.mm.swapfile import swap_cache_del_folio, swap_free, swapoff, swapon
from pyzram.workload.pages import synthetic_mix
from pyzram.zram import table as T
from pyzram.zram.swap import (
    zram_exit,
    zram_init,
    zram_swap_ops,
    zram_swap_ops_as_posted,
    zram_swap_registered,
)
from pyzram.zram.zcomp import ZcompBackend
from pyzram.zram.zram_drv import zram_devops
from test_swap_core import (  # noqa: F401 (swap_env is the autouse fixture)
    HookedOps,
    OpsSpy,
    alloc,
    evict,
    folios_of,
    new_zram,
    rand_pages,
    release,
    swap_env,
    swap_in,
    swap_out,
    writeout,
    zram_slots_used,
)

P = PAGE_SIZE


def zram_area(m, use_block_ops: bool = True, size: str = "16M"):
    """A zram area on ``m``; ``use_block_ops=False`` makes ``m`` a kernel without the
    series (the bio path)."""
    m.swap_ops_series = use_block_ops
    zram_init(m)
    z = new_zram(size)
    si = swapon(m, z.disk)
    assert si.ops is (zram_swap_ops if use_block_ops else swap_bdev_ops)
    return si, z


def compressible_pages(n: int, seed: int = 0) -> np.ndarray:
    """Pages lzo-rle compresses to about half (so they are stored compressed, not huge)."""
    return np.random.default_rng(seed).integers(0, 4, size=(n, P), dtype=np.uint8)


def same_pages(n: int, first: int = 1) -> np.ndarray:
    """Same-filled, non-zero pages (ZRAM_SAME in zram, no pool memory), distinct values."""
    return np.repeat(np.arange(first, first + n, dtype=np.uint8)[:, None], P, axis=1)


def zram_page(z, slot: int) -> bytes:
    page = bytearray(P)
    assert z.zram_read_page(page, slot) == 0
    return bytes(page)


# -- registration and areas --------------------------------------------------------------------


def test_zram_init_registers_once_and_exit_unregisters(m):
    zram_init(m)
    assert registered_block_ops(m) == (zram_devops, zram_swap_ops) and zram_swap_registered(m)
    zram_init(m)  # idempotent for zram
    assert registered_block_ops(m) == (zram_devops, zram_swap_ops)
    with pytest.raises(OSError) as e:  # a second, different registration is EBUSY
        swap_register_block_ops(m, zram_devops, zram_swap_ops_as_posted)
    assert e.value.errno == errno.EBUSY
    zram_exit(m)
    assert registered_block_ops(m) == (None, None) and not zram_swap_registered(m)
    zram_exit(m)  # nothing registered: no-op


def test_zram_init_fails_when_another_driver_holds_the_slot(m, tmp_path):
    fd = FileDisk(tmp_path / "d", size=1 << 20)
    other = HookedOps(SwapOps("other"), submit_write=lambda c: None, submit_read=lambda c: None)
    swap_register_block_ops(m, fd.fops, other)
    with pytest.raises(OSError) as e:
        zram_init(m)
    assert e.value.errno == errno.EBUSY
    assert not zram_swap_registered(m)
    zram_exit(m)  # "destroy_devices" only unregisters what zram registered
    assert registered_block_ops(m) == (fd.fops, other)
    z = new_zram("1M")
    si = swapon(m, z.disk)
    assert si.ops is swap_bdev_ops  # zram areas then use the block path
    swapoff(si)
    swap_unregister_block_ops(m, fd.fops)


def test_zram_area_flags_reset_ebusy(m):
    si, z = zram_area(m)
    assert si.flags & SWP_BLKDEV and si.flags & SWP_SYNCHRONOUS_IO and si.flags & SWP_STABLE_WRITES
    with pytest.raises(OSError) as e:
        z.sysfs["reset"] = "1"
    assert e.value.errno == errno.EBUSY
    swapoff(si)
    z.sysfs["reset"] = "1"
    assert not z.init_done()


def test_area_keeps_zram_ops_after_unregister_until_swapoff(m):
    si, z = zram_area(m)
    spy = OpsSpy(si)
    zram_exit(m)
    assert spy.inner is zram_swap_ops
    folios = folios_of(rand_pages(6, seed=1))
    entries = alloc(m, folios)
    order = [5, 0, 3, 1, 4, 2]  # not adjacent: only zram's ops merge these
    writeout(m, [folios[i] for i in order])
    assert [len(b) for b in spy.batches[WRITE]] == [6]
    evict(m, folios)
    back = swap_in(m, [entries[i] for i in order])
    assert [len(b) for b in spy.batches[READ]] == [6]
    assert [bytes(g.data) for g in back] == [bytes(folios[i].data) for i in order]
    z2 = new_zram("1M")
    si2 = swapon(m, z2.disk)  # swapped on after the unregister
    assert si2.ops is swap_bdev_ops
    release(m, back)
    swapoff(si)
    assert si.ops is None
    si3 = swapon(m, z.disk)
    assert si3.ops is swap_bdev_ops


# -- batches and the data path -----------------------------------------------------------------


def test_zram_batches_merge_any_folios_and_submit_no_bios(m):
    si, z = zram_area(m)
    spy = OpsSpy(si)
    folios = folios_of(synthetic_mix(70, seed=5))
    folios = [f for f in folios if f.data.count(0) != P]  # zero pages need no I/O
    n = len(folios)
    entries = alloc(m, folios)
    rng = np.random.default_rng(3)
    order = rng.permutation(n).tolist()
    bios_before = dict(z.disk.bio_stats)
    writeout(m, [folios[i] for i in order])
    sizes = [SWAP_CLUSTER_MAX] * (n // SWAP_CLUSTER_MAX) + ([n % 32] if n % 32 else [])
    assert [len(b) for b in spy.batches[WRITE]] == sizes
    assert [off for b in spy.batches[WRITE] for off, _ in b] == [entries[i].offset for i in order]
    for i, e in enumerate(entries):  # stored at the folio's own slot
        assert zram_page(z, e.offset) == bytes(folios[i].data)
    evict(m, folios)
    order = rng.permutation(n).tolist()
    back = swap_in(m, [entries[i] for i in order])
    assert [len(b) for b in spy.batches[READ]] == sizes
    assert [bytes(g.data) for g in back] == [bytes(folios[i].data) for i in order]
    assert dict(z.disk.bio_stats) == bios_before, "the swap_ops path submits no bios"
    assert m.vm_events["nrswpout"] == m.vm_events["nrswpin"] == len(sizes)
    release(m, back)


def test_two_threads_write_batches_at_once(m):
    """Two threads swap out their own folios to one device at once: each hands
    its batches' pages to the codec in one call on its own stream, then writes
    them one by one.  Every page is stored at its slot and reads back, and the
    device holds what one thread writing them all gives (its pool layout aside:
    the two threads' writes interleave)."""
    import threading

    pages = np.concatenate([synthetic_mix(300, seed=8), same_pages(20, 60)])
    pages = pages[[i for i in range(len(pages)) if pages[i].any()]]
    results = {}
    for threads in (1, 2):
        mach = m if threads == 2 else Machine()
        zram_init(mach)
        z = new_zram()
        si = swapon(mach, z.disk)
        spy = OpsSpy(si)
        folios = folios_of(pages)
        entries = alloc(mach, folios)
        halves = [folios[k::threads] for k in range(threads)]
        workers = [threading.Thread(target=writeout, args=(mach, h)) for h in halves]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sum(len(b) for b in spy.batches[WRITE]) == len(pages)
        for f, e in zip(folios, entries, strict=True):
            assert zram_page(z, e.offset) == bytes(f.data)
        z.check()
        results[threads] = z.mm_stat()
        if mach is not m:
            mach.close()
    one, two = results[1], results[2]
    assert (one.orig_data_size, one.compr_data_size) == (two.orig_data_size, two.compr_data_size)
    assert (one.same_pages, one.huge_pages) == (two.same_pages, two.huge_pages)


def _writer_waits_for(z, last_slot: int, io) -> None:
    """Run ``io`` in a thread, stop it at its first slot lock, and have another
    thread take ``z.init_lock`` for writing: the writer must get it only after
    the batch has unlocked its last slot."""
    import threading

    inside, go, order = threading.Event(), threading.Event(), []

    def hook(what, index):
        if what == "lock" and not inside.is_set():
            inside.set()  # the batch's first slot lock: the I/O is under way
            assert go.wait(10)
        if what == "unlock":
            order.append(index)

    def writer():
        z.init_lock.down_write()
        order.append("writer")
        z.init_lock.up_write()

    z.table.yield_point = hook
    t = threading.Thread(target=io)
    t.start()
    try:
        assert inside.wait(10)
        w = threading.Thread(target=writer)
        w.start()
        w.join(0.3)
        waited = w.is_alive() and "writer" not in order
    finally:
        go.set()
        t.join(10)
        z.table.yield_point = None
    w.join(10)
    assert waited, "the writer did not wait for the batch"
    assert order[-1] == "writer" and last_slot in order, order


@pytest.mark.parametrize("use_block_ops", [True, False], ids=["ops", "bio"])
def test_swap_io_holds_init_lock_for_reading(m, use_block_ops):
    """A batch's writes and reads hold ``init_lock`` for reading from the first
    page to the last (``zram_swap_submit_*``, ``zram_submit_bio``): a writer of
    the lock (reset, disksize) waits until the batch is done."""
    si, z = zram_area(m, use_block_ops)
    folios = folios_of(compressible_pages(4, seed=9))
    entries = alloc(m, folios)
    _writer_waits_for(z, entries[-1].offset, lambda: writeout(m, folios))
    evict(m, folios)
    back: list = []
    _writer_waits_for(z, entries[-1].offset, lambda: back.extend(swap_in(m, entries)))
    assert [bytes(g.data) for g in back] == [bytes(f.data) for f in folios]
    release(m, back)


def test_bio_path_counts_one_bio_per_batch(m):
    si, z = zram_area(m, use_block_ops=False)
    spy = OpsSpy(si)
    folios = folios_of(compressible_pages(10, seed=2))
    entries = alloc(m, folios)
    before = dict(z.disk.bio_stats)
    writeout(m, [folios[i] for i in (0, 1, 2, 5, 6, 3, 4, 7, 8, 9)])
    assert [len(b) for b in spy.batches[WRITE]] == [3, 2, 2, 3]
    assert z.disk.bio_stats["WRITE"] - before.get("WRITE", 0) == 4
    evict(m, folios)
    back = swap_in(m, entries)
    assert z.disk.bio_stats["READ"] - before.get("READ", 0) == 1 == spy.nr(READ)
    release(m, back)


@pytest.mark.parametrize("order", [2, 4])
def test_large_folios_aligned_and_stored_page_by_page(m, order):
    si, z = zram_area(m)
    nr = 1 << order
    folios = [Folio(0, rand_pages(1, 9).tobytes())]
    folios += [Folio(order, compressible_pages(nr, seed=s).tobytes()) for s in range(3)]
    entries = swap_out(m, folios)
    for f, e in zip(folios[1:], entries[1:], strict=True):
        assert e.offset % nr == 0
        for j in range(nr):
            assert zram_page(z, e.offset + j) == bytes(f.page(j))
    assert m.vm_events.mthp[(order, "swpout")] == 3 and m.vm_events["pswpout"] == 1 + 3 * nr
    evict(m, folios)
    back = swap_in(m, entries, [f.order for f in folios])
    assert [bytes(g.data) for g in back] == [bytes(f.data) for f in folios]
    assert m.vm_events.mthp[(order, "swpin")] == 3 and m.vm_events["pswpin"] == 1 + 3 * nr
    release(m, back[:1])
    # swapoff brings the large folios' slots back one page at a time
    got = {}

    def unuse(entry, folio):
        got[entry.offset] = bytes(folio.data)
        return si.swap_count(entry.offset)

    for g in back[1:]:  # drop the cached large folios (their references stay)
        g.lock()
        swap_cache_del_folio(m, g)
        g.unlock()
    swapoff(si, unuse=unuse)
    for f, e in zip(folios[1:], entries[1:], strict=True):
        for j in range(nr):
            assert got[e.offset + j] == bytes(f.page(j))
    assert zram_slots_used(z) == 1
    z.check()


# -- write failures in the middle of a batch ---------------------------------------------------

MARK = b"FAILPAGE"


class FaultyCodec(ZcompBackend):
    """Wraps the device's codec; pages starting with MARK fail to compress.

    ``mode``: "raise" (OSError), "empty" (size 0) or "negative" (a negative
    errno from the backend).
    """

    def __init__(self, real: ZcompBackend, mode: str) -> None:
        super().__init__(real.params)
        self.real, self.mode, self.name = real, mode, real.name

    @staticmethod
    def _bad(page) -> bool:
        return bytes(page[:8]) == MARK

    def compress(self, page):
        if self._bad(page):
            if self.mode == "raise":
                raise OSError(errno.EINVAL, "injected codec error")
            return b""
        return self.real.compress(page)

    def decompress(self, data):
        return self.real.decompress(data)

    def compress_into(self, page, dst):
        if not self._bad(page):
            return self.real.compress_into(page, dst)
        if self.mode == "negative":
            return -errno.EINVAL
        return ZcompBackend.compress_into(self, page, dst)  # raises -> -EINVAL; empty -> 0

    def decompress_into(self, src, offset, length, page):
        return self.real.decompress_into(src, offset, length, page)


def arena_free_pages(pool) -> int:
    """Pages the pool can still make zspages of: its arena's untouched tail plus
    the extents of freed zspages."""
    tail = (pool._arena_size - pool._arena_top) // P
    return tail + sum(n * len(ext) for n, ext in enumerate(pool._free_extents))


#: Objects that fill a pool's arena for the zs_malloc fault, by device.
FILLERS: dict[int, list[int]] = {}


def inject(fault: str, z, k: int, new: np.ndarray) -> None:
    """Make page ``k`` of the next write batch fail (pages before it succeed)."""
    if fault == "mem_limit":  # every new (random, huge) page costs one more pool page
        z.sysfs["mem_limit"] = str((z.mem_pool.pages_allocated + k) * P)
    elif fault == "zs_malloc":
        # The (k+1)-th zs_malloc of the batch fails with -ENOMEM (the kernel's
        # ERR_PTR value): the new pages are incompressible, each needs a zspage
        # of its own, and the pool's arena is filled until only k are left.
        pool, fillers = z.mem_pool, FILLERS.setdefault(id(z), [])
        while arena_free_pages(pool) > k:
            fillers.append(pool.zs_malloc(P))
        assert arena_free_pages(pool) == k and fillers[-1] > 0
    else:
        new[k, : len(MARK)] = np.frombuffer(MARK, dtype=np.uint8)
        z.comps[0].backend = FaultyCodec(z.comps[0].backend, fault.split("_")[1])


def clear_fault(fault: str, z) -> None:
    if fault == "mem_limit":
        z.sysfs["mem_limit"] = "0"
    elif fault == "zs_malloc":
        for h in FILLERS.pop(id(z)):
            z.mem_pool.zs_free(h)
    else:
        z.comps[0].backend = z.comps[0].backend.real


@pytest.mark.parametrize("path", ["ops", "bio"])
@pytest.mark.parametrize("n,k", [(4, 2), (12, 7)])
@pytest.mark.parametrize(
    "fault", ["mem_limit", "zs_malloc", "codec_raise", "codec_empty", "codec_negative"]
)
def test_write_failure_mid_batch(m, fault, n, k, path):
    si, z = zram_area(m, use_block_ops=path == "ops")
    spy = OpsSpy(si)
    folios = folios_of(np.ascontiguousarray(same_pages(n)))
    old = [bytes(f.data) for f in folios]
    entries = swap_out(m, folios)  # old content: same-filled, no pool memory; folios stay cached
    new = rand_pages(n, seed=4)
    inject(fault, z, k, new)
    for f, page in zip(folios, new, strict=True):
        f.data[:] = page.tobytes()
    before = atomic64_read(z.stats.failed_writes)
    writeout(m, folios)
    assert spy.nr(WRITE) == 2 and [len(b) for b in spy.batches[WRITE]] == [n, n]
    assert atomic64_read(z.stats.failed_writes) == before + 1, "once per failed batch"
    for i, f in enumerate(folios):  # every page of the batch: re-dirtied, nothing lost
        assert f.test(PG_dirty) and not f.test(PG_writeback) and not f.test(PG_reclaim)
        assert not f.test(PG_locked) and f.test(PG_swapcache) and f.swap == entries[i]
        assert bytes(f.data) == new[i].tobytes()
        assert si.swap_count(entries[i].offset) == 1
    clear_fault(fault, z)
    for i, e in enumerate(entries):  # earlier pages: new data; failing and later: old
        assert zram_page(z, e.offset) == (new[i].tobytes() if i < k else old[i]), i
    z.check()
    assert m.vm_events["pswpout"] == 2 * n  # counted at queue time
    # the retry succeeds and the data comes back
    writeout(m, folios)
    assert atomic64_read(z.stats.failed_writes) == before + 1
    evict(m, folios)
    back = swap_in(m, entries)
    assert [bytes(g.data) for g in back] == [p.tobytes() for p in new]
    release(m, back)
    swapoff(si)
    assert zram_slots_used(z) == 1
    z.check()


def test_codec_negative_size_on_first_page_fails_the_write(m):
    si, z = zram_area(m)
    folios = folios_of(np.ascontiguousarray(same_pages(8)))
    swap_out(m, folios)
    new = rand_pages(8, seed=5)
    inject("codec_negative", z, 0, new)
    for f, page in zip(folios, new, strict=True):
        f.data[:] = page.tobytes()
    writeout(m, folios)
    assert atomic64_read(z.stats.failed_writes) == 1
    assert all(f.test(PG_dirty) for f in folios)


# -- read failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["ops", "bio"])
@pytest.mark.parametrize("n,bad", [(4, 2), (10, 6)])
def test_read_failure_poisons_whole_batch(m, path, n, bad):
    si, z = zram_area(m, use_block_ops=path == "ops")
    folios = folios_of(compressible_pages(n, seed=6))
    entries = swap_out(m, folios)
    evict(m, folios)
    corrupt(z, entries[bad].offset)
    back = swap_in(m, entries)
    assert m.vm_events["nrswpin"] == 1
    for g in back:  # all of the batch, also the folios read before the bad one
        assert not g.test(PG_uptodate) and not g.test(PG_locked) and g.test(PG_swapcache)
    assert atomic64_read(z.stats.failed_reads) == 1
    assert m.vm_events["pswpin"] == 0 and not any(k[1] == "swpin" for k in m.vm_events.mthp)
    z.check()  # no slot lock left held
    assert m.sio_pool.outstanding == 0  # the failed batch was ended


@pytest.mark.parametrize(
    "path,ordering", [("ops", "one_section"), ("ops", "legacy"), ("bio", "one_section")]
)
def test_read_failure_keeps_later_slots_idle(m, path, ordering):
    """Every read path and ordering stops at the failing page: only the pages
    before it are marked accessed."""
    si, z = zram_area(m, use_block_ops=path == "ops")
    z.swap_read_ordering = ordering
    folios = folios_of(compressible_pages(6, seed=7))
    entries = swap_out(m, folios)
    evict(m, folios)
    z.sysfs["idle"] = "all"
    corrupt(z, entries[3].offset)
    swap_in(m, entries)
    idle = [bool(z.table.flags[e.offset] & T.IDLE) for e in entries]
    assert idle == [False, False, False, True, True, True]


# -- slot free notify, leaks -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["ops", "bio"])
def test_slot_free_notify_and_miss_free(m, path, monkeypatch):
    si, z = zram_area(m, use_block_ops=path == "ops")
    # patch 3/3 routes the notification through swap_ops; the bio-path area (a kernel
    # without the series) uses block_device_operations.swap_slot_free_notify
    routes = Counter()
    if path == "ops":
        hook = si.ops.slot_free_notify
        assert swap_ops_defines(si.ops, "slot_free_notify")

        def counted(si_, offset):
            routes["swap_ops"] += 1
            hook(si_, offset)

        si.ops = HookedOps(si.ops, slot_free_notify=counted)
    else:
        assert not swap_ops_defines(si.ops, "slot_free_notify")
        old = zram_devops.swap_slot_free_notify

        def counted_old(bdev, offset):
            routes["fops"] += 1
            old(bdev, offset)

        monkeypatch.setattr(zram_devops, "swap_slot_free_notify", counted_old)
    folios = folios_of(compressible_pages(8, seed=8))
    entries = swap_out(m, folios)
    evict(m, folios)
    assert zram_slots_used(z) == 9
    for e in entries[:3]:
        swap_free(m, e)
    assert (
        atomic64_read(z.stats.notify_free) == 3
        and atomic64_read(z.stats.miss_free) == 0
        and zram_slots_used(z) == 6
    )
    busy = entries[3].offset
    z.table.slot_lock(busy)  # someone holds the slot: the notify cannot block
    swap_free(m, entries[3])
    z.table.slot_unlock(busy)
    assert atomic64_read(z.stats.notify_free) == 4 and atomic64_read(z.stats.miss_free) == 1
    assert z.table.allocated(busy) and zram_slots_used(z) == 6  # stale data stays
    # invariant 13: zram slots <= swap slots in use (+ the header) + missed frees
    assert zram_slots_used(z) <= si.inuse_pages + 1 + atomic64_read(z.stats.miss_free)
    swapoff(si, unuse=lambda e, f: si.swap_count(e.offset))
    assert atomic64_read(z.stats.notify_free) == 8
    assert routes == {"swap_ops" if path == "ops" else "fops": 8}
    assert zram_slots_used(z) == 1 + atomic64_read(z.stats.miss_free)
    z.check()


def test_no_leaks_after_swapoff_mixed_states(m):
    si, z = zram_area(m)
    rng = np.random.default_rng(9)
    pages = np.concatenate([synthetic_mix(80, seed=9), compressible_pages(40, seed=10)])
    folios = folios_of(pages[:64], 2) + folios_of(pages[64:], 0)
    folios = [folios[i] for i in rng.permutation(len(folios))]
    entries = swap_out(m, folios, refs=2)
    evict(m, folios[: len(folios) // 2])  # half leave the swap cache, half stay
    for e, f in zip(entries[::3], folios[::3], strict=True):
        swap_free(m, e, f.nr_pages)  # some PTEs already gone
    back = swap_in(
        m,
        [e for e, f in zip(entries[:10], folios[:10], strict=True)],
        [f.order for f in folios[:10]],
    )
    assert all(g.test(PG_uptodate) for g in back)
    swapoff(si, unuse=lambda e, f: si.swap_count(e.offset))
    assert zram_slots_used(z) == 1 and atomic64_read(z.stats.miss_free) == 0
    assert atomic64_read(z.stats.notify_free) == len(pages)
    z.check()
    z.sysfs["reset"] = "1"


# -- the same result as the bio path -----------------------------------------------------------


def test_mm_stat_equals_bio_path(m):
    pages = np.concatenate(
        [synthetic_mix(150, seed=11), compressible_pages(30, seed=12), same_pages(10, 40)]
    )
    pages = pages[[i for i in range(len(pages)) if pages[i].any()]]  # zram sees no zero pages
    zram_init(m)
    plain = Machine(swap_ops_series=False)  # the same kernel without the series
    z_ops, z_bio = new_zram(), new_zram()
    si_ops = swapon(m, z_ops.disk)
    si_bio = swapon(plain, z_bio.disk)
    assert si_ops.ops is zram_swap_ops and si_bio.ops is swap_bdev_ops
    order = np.random.default_rng(13).permutation(len(pages)).tolist()
    runs = {}
    for mach, si in ((m, si_ops), (plain, si_bio)):
        folios = folios_of(pages)
        entries = alloc(mach, folios)
        assert [e.offset for e in entries] == list(range(1, len(pages) + 1))
        spy = OpsSpy(si)
        writeout(mach, [folios[i] for i in order])  # the same slots, in the same order
        runs[si] = (dict(mach.vm_events.counts), spy.nr(WRITE))
    plain.close()
    assert z_ops.mm_stat() == z_bio.mm_stat()
    assert np.array_equal(z_ops.table.flags_np, z_bio.table.flags_np)
    assert np.array_equal(z_ops.table.handle_np, z_bio.table.handle_np)
    (c_ops, nb_ops), (c_bio, nb_bio) = runs[si_ops], runs[si_bio]
    assert c_ops["pswpout"] == c_bio["pswpout"] == len(pages)
    assert nb_ops == c_ops["nrswpout"] == -(-len(pages) // SWAP_CLUSTER_MAX)
    assert nb_bio == c_bio["nrswpout"] > nb_ops  # shuffled slots: bios only for adjacent runs
    z_ops.check()
    z_bio.check()


# -- the backing-device read fallback ----------------------------------------------------------


def backing_setup(m, tmp_path, ops):
    zram_init(m, ops)
    z = new_zram("4M")
    si = swapon(m, z.disk)
    assert si.ops is ops
    z.backing_dev = FileDisk(tmp_path / "backing", size=1 << 20)
    folios = folios_of(compressible_pages(9, seed=14))
    entries = swap_out(m, folios)
    assert [e.offset for e in entries] == list(range(1, 10))
    data = {e.offset: bytes(f.data) for e, f in zip(entries, folios, strict=True)}
    evict(m, folios)
    return si, z, entries, data


def test_backing_fallback_as_posted_reads_neighbours(m, tmp_path):
    si, z, entries, data = backing_setup(m, tmp_path, zram_swap_ops_as_posted)
    z.backing_read_fallback = "as_posted"
    spy = OpsSpy(si)
    want = [entries[i] for i in (0, 2, 4, 6)]  # slots 1, 3, 5, 7
    before = z.disk.bio_stats["READ"]
    back = swap_in(m, want)
    assert [len(b) for b in spy.batches[READ]] == [4]  # no can_merge: one batch
    assert z.disk.bio_stats["READ"] - before == 1  # delegated to swap_bdev_submit_read, one bio
    assert all(g.test(PG_uptodate) for g in back)
    assert bytes(back[0].data) == data[1]
    for k in range(1, 4):  # every later folio got the slot next to the first, not its own
        assert bytes(back[k].data) == data[1 + k] != data[want[k].offset]
    release(m, back)


def test_backing_fallback_default_splits_batches(m, tmp_path):
    si, z, entries, data = backing_setup(m, tmp_path, zram_swap_ops)
    assert z.backing_read_fallback == "adjacent"
    spy = OpsSpy(si)
    want = [entries[i] for i in (0, 2, 4, 6, 7, 8)]  # slots 1, 3, 5, 7, 8, 9
    before = z.disk.bio_stats["READ"]
    back = swap_in(m, want)
    assert [len(b) for b in spy.batches[READ]] == [1, 1, 1, 3]
    assert z.disk.bio_stats["READ"] - before == 4
    assert [bytes(g.data) for g in back] == [data[e.offset] for e in want]
    assert m.vm_events["nrswpin"] == 4 and m.vm_events["pswpin"] == 6
    release(m, back)
    # without a backing device the same ops merge any folios again
    z.backing_dev.close()
    z.backing_dev = None
    rest = [entries[i] for i in (1, 5, 3)]
    back = swap_in(m, rest)
    assert [len(b) for b in spy.batches[READ]][-1] == 3
    assert [bytes(g.data) for g in back] == [data[e.offset] for e in rest]
    release(m, back)


# -- read-then-mark ordering -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,ordering,idle_at_unlock",
    [("ops", "one_section", False), ("ops", "legacy", True), ("bio", "one_section", True)],
)
def test_read_marks_accessed_in_the_read_section(m, path, ordering, idle_at_unlock):
    si, z = zram_area(m, use_block_ops=path == "ops")
    z.swap_read_ordering = ordering
    folios = folios_of(compressible_pages(5, seed=15))
    entries = swap_out(m, folios)
    evict(m, folios)
    z.sysfs["idle"] = "all"
    slots = [e.offset for e in entries]
    assert all(z.table.flags[s] & T.IDLE for s in slots)
    seen = []

    def hook(point, idx):
        if point != "read_unlocked":
            return
        seen.append(idx)
        idle = bool(z.table.flags[idx] & T.IDLE)
        # one_section: marked under the same slot lock as the read; legacy (and the
        # bio path, whatever the swap ordering): only after a second lock
        assert idle is idle_at_unlock, (ordering, idx)

    z.yield_point = hook
    back = swap_in(m, entries)
    z.yield_point = None
    assert sorted(seen) == slots
    assert all(g.test(PG_uptodate) for g in back)
    assert not any(z.table.flags[s] & (T.IDLE | T.PP_SLOT) for s in slots)
    release(m, back)

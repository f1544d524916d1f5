"""Swap I/O: batching folios into ``swap_iocb`` and handing them to ``swap_ops``.

Model of mm/page_io.c after the swap-batching base series ("better block swap
batching and a different take on swap_ops") and the seed series on top:

* ``swap_writeout`` / ``__swap_writepage`` queue a dirty swap-cache folio for
  writing; ``swap_read_folio`` queues a locked, not-uptodate one for reading;
* ``swap_add_folio`` appends the folio to the caller's ``SwapIoCtx`` batch
  (at most ``SWAP_CLUSTER_MAX`` = 32 folios, one area, one direction) and
  submits the batch first when ``swap_can_merge`` says the folio cannot join;
* ``swap_write_submit`` / ``swap_read_submit`` pass the batch to the area's
  ``ops.submit_write`` / ``ops.submit_read``, which own it from then on and
  must end it exactly once with ``swap_write_end`` / ``swap_read_end``;
* ``swap_bdev_ops`` (one bio per batch, sector-adjacent folios only) and
  ``swap_fs_ops`` (one kiocb-style ``preadv``/``pwritev`` on the swap file,
  position-adjacent folios only) are the built-in backends.

Counters follow the base series: PSWPOUT and the mTHP ``swpout`` stats are
counted when a folio is queued (whatever happens later); PSWPIN and mTHP
``swpin`` only when a read batch succeeds; NRSWPOUT/NRSWPIN once per
submitted batch.
"""

from __future__ import annotations

import os
import threading
from errno import EIO, ENOENT

import cython

from pyzram.block.bio import (
    BLK_STS_OK,
    REQ_OP_READ,
    REQ_OP_WRITE,
    REQ_SWAP,
    REQ_SYNC,
    SECTOR_SHIFT,
    Bio,
    submit_bio,
)
from pyzram.block.blkdev import BLK_FEAT_SYNCHRONOUS
from pyzram.lib.atomic import atomic_begin, atomic_end
from pyzram.mm.folio import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGE_SLICES,
    Folio,
    PG_dirty,
    PG_locked,
    PG_reclaim,
)
from pyzram.mm.machine import Machine
from pyzram.mm.swap import (
    NRSWPIN,
    NRSWPOUT,
    PSWPIN,
    PSWPOUT,
    SWAP_CLUSTER_MAX,
    SWPIN_ZERO,
    SWPOUT_ZERO,
    THP_SWPOUT,
    SwapIoCtx,
)
from pyzram.mm.swap_ops import READ, SWAP_OPS_F_NOFS, WRITE, SwapOps
from pyzram.mm.swapfile import SwapInfo, folio_free_swap, swp_swap_info
from pyzram.mm.zswap import (
    mem_cgroup_zswap_writeback_enabled,
    zswap_folio_swapin,
    zswap_load,
    zswap_store,
)

HPAGE_PMD_ORDER = 9
_HPAGE_PMD_ORDER = HPAGE_PMD_ORDER  # (a C constant when compiled: page_io.pxd)
#: ``AOP_WRITEPAGE_ACTIVATE``: "not written, put it back on the active list".
AOP_WRITEPAGE_ACTIVATE = 0x80000


class SwapIocb:
    """``struct swap_iocb``: up to 32 whole folios (one bvec each) and their length.

    ``machine`` is the machine whose ``sio_pool`` it came from (the kernel's
    ``mempool_free(sio, sio_pool)`` names the global pool).
    """

    __slots__ = ("machine", "bvecs", "len", "_ended", "__weakref__")

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.bvecs: list[Folio] = []
        self.len = 0
        self._ended = False

    @property
    def nr_bvecs(self) -> int:
        return len(self.bvecs)


class SioPool:
    """``sio_pool``: a mempool of ``SWAP_CLUSTER_MAX`` swap_iocbs.

    Counts what is outstanding so tests can assert that every batch was
    ended exactly once (the pool is full again at quiescence).  A
    ``GFP_NOIO`` mempool allocation waits for a free element rather than
    failing; so does this one.  The counts change atomically
    (:mod:`pyzram.lib.atomic`); a task that finds the pool empty counts
    itself in ``waiters`` in the same step and sleeps on ``pool->wait``,
    which a free wakes only when someone waits.
    """

    def __init__(self, machine: Machine, size: int = SWAP_CLUSTER_MAX) -> None:
        self.machine = machine
        self.size = size
        self.outstanding = 0
        self.allocated_total = 0
        self.waiters = 0
        self._cv = threading.Condition()  # pool->wait

    def alloc(self) -> SwapIocb:
        """``mempool_alloc(sio_pool, GFP_NOIO)``."""
        while True:
            atomic_begin()
            free = self.outstanding < self.size
            if free:
                self.outstanding += 1
                self.allocated_total += 1
            else:
                self.waiters += 1
            atomic_end()
            if free:
                return SwapIocb(self.machine)
            with self._cv:
                timed_out = self.outstanding >= self.size and not self._cv.wait(timeout=30)
            atomic_begin()
            self.waiters -= 1
            atomic_end()
            if timed_out:
                raise RuntimeError("sio_pool exhausted for 30 s: a swap_iocb leaked")

    def free(self, sio: SwapIocb) -> None:
        """``mempool_free``: the element back, and a waiter woken."""
        if sio._ended:
            raise RuntimeError("swap_iocb ended twice")
        sio._ended = True
        atomic_begin()
        self.outstanding -= 1
        waiters = self.waiters
        atomic_end()
        if waiters:
            with self._cv:
                self._cv.notify()


# -- accessors exported to providers (patch 2/3) -------------------------------------


def swap_iocb_nr_folios(sio: SwapIocb) -> int:
    """``swap_iocb_nr_folios``."""
    return len(sio.bvecs)


def swap_iocb_folio(sio: SwapIocb, idx: int) -> Folio:
    """``swap_iocb_folio``: folio of bvec ``idx``."""
    if not 0 <= idx < len(sio.bvecs):
        raise IndexError(f"swap_iocb has {len(sio.bvecs)} folios, not {idx + 1}")
    return sio.bvecs[idx]


# -- completion ----------------------------------------------------------------------


def swap_read_end(sio: SwapIocb, failed: bool) -> None:
    """``swap_read_end``: once per read batch; uptodate on success, unlock always."""
    m = sio.machine
    for folio in sio.bvecs:
        if not failed:
            m.vm_events.count_mthp(folio.order, "swpin")
            folio.mark_uptodate()
        folio.unlock()
    if not failed:
        m.vm_events.count(PSWPIN, sio.len >> PAGE_SHIFT)
    pool = m.sio_pool
    pool.free(sio)


def swap_write_end(sio: SwapIocb, failed: bool) -> None:
    """``swap_write_end``: once per write batch; a failure re-dirties every folio."""
    for folio in sio.bvecs:
        if failed:
            folio.mark_dirty()
            folio.clear(PG_reclaim)
        folio.end_writeback()
    m = sio.machine
    pool = m.sio_pool
    pool.free(sio)


# -- batching --------------------------------------------------------------------------


@cython.locals(folio=Folio, ctx=SwapIoCtx, si=SwapInfo, prev=Folio)
def swap_can_merge(ctx: SwapIoCtx, si, folio: Folio, rw: int) -> bool:
    """``swap_can_merge``: same area, then the area's ``can_merge`` (an
    undefined hook, the kernel's NULL one, says yes: :class:`SwapOps`).

    The hook is given the area first: the kernel's finds it from
    ``folio->swap`` through the global ``swap_info``; ours has no global.
    """
    if ctx.sis is not si:
        return False
    sio = ctx.sio
    prev = sio.bvecs[-1]
    return si.ops.can_merge(si, folio, prev, prev.size, rw)


def swap_add_folio(ctx: SwapIoCtx, folio: Folio, rw: int) -> None:
    """``swap_add_folio``: append to the batch, submitting first or after as needed."""
    m = ctx.machine
    si = swp_swap_info(m, folio.swap)
    if ctx.sio is not None and not swap_can_merge(ctx, si, folio, rw):
        _submit(ctx, rw)
    if ctx.sio is None:
        ctx.sis = si
        pool = m.sio_pool
        ctx.sio = pool.alloc()
    sio = ctx.sio
    sio.bvecs.append(folio)
    sio.len += folio.size
    if len(sio.bvecs) == SWAP_CLUSTER_MAX:
        _submit(ctx, rw)


def _submit(ctx: SwapIoCtx, rw: int) -> None:
    if rw == WRITE:
        swap_write_submit(ctx)
    else:
        swap_read_submit(ctx)


def swap_write_submit(ctx: SwapIoCtx) -> None:
    """``swap_write_submit``: hand the batch to ``ops.submit_write``; no-op when empty."""
    _hand_over(ctx, NRSWPOUT, WRITE)


def swap_read_submit(ctx: SwapIoCtx) -> None:
    """``swap_read_submit``: hand the batch to ``ops.submit_read``; no-op when empty."""
    _hand_over(ctx, NRSWPIN, READ)


def _hand_over(ctx: SwapIoCtx, counter: int, rw: int) -> None:
    """Count the batch, give it to the ops (which now own and end it), empty the ctx."""
    if ctx.sio is None:
        return
    m = ctx.machine
    m.vm_events.count(counter)
    si = ctx.sis
    ops = si.ops
    try:
        if rw == WRITE:
            ops.submit_write(ctx)
        else:
            ops.submit_read(ctx)
    finally:
        ctx.sio = None
        ctx.sis = None


# -- swap-out --------------------------------------------------------------------------


_ZERO_PAGE = bytes(PAGE_SIZE)
#: The same zeros as a bytearray: what ``folio_zero_range`` copies over each page
#: (a bytearray's slice takes another bytearray's bytes as they are; any other
#: buffer it would first copy).
_ZERO_PAGE_BUF = bytearray(PAGE_SIZE)


def is_folio_zero_filled(folio: Folio) -> bool:
    """``is_folio_zero_filled``: a memcmp against the zero page, page by page."""
    data = folio.data
    if folio.size == PAGE_SIZE:
        return data == _ZERO_PAGE
    for i in range(0, folio.size, PAGE_SIZE):
        if not data.startswith(_ZERO_PAGE, i):  # (page i compared in place)
            return False
    return True


def swap_writeout(ctx: SwapIoCtx, folio: Folio) -> int:
    """``swap_writeout``: write a locked, dirty swap-cache folio out (or not).

    Returns 0; the folio is unlocked.  A folio no longer referenced by any
    swap entry is just dropped from the swap cache (``folio_free_swap``);
    an all-zero folio sets the area's zero flags and needs no I/O
    (``swpout_zero``); then zswap is offered the folio (``zswap_store``:
    taken, it is clean and needs no I/O; ``zswpout``); anything else goes
    to ``__swap_writepage``, unless the memcg forbids zswap writeback
    (``AOP_WRITEPAGE_ACTIVATE``: dirty, unlocked, kept).
    """
    if not folio.test(PG_locked):
        raise RuntimeError("swap_writeout needs a locked folio")
    m = ctx.machine
    if folio_free_swap(m, folio):
        folio.unlock()
        return 0
    si = swp_swap_info(m, folio.swap)
    if is_folio_zero_filled(folio):
        si.set_zero(folio.swap.offset, folio.nr_pages, True)
        m.vm_events.count(SWPOUT_ZERO, folio.nr_pages)
        folio.clear(PG_dirty)  # the zero map now holds it
        folio.unlock()
        return 0
    si.set_zero(folio.swap.offset, folio.nr_pages, False)
    if zswap_store(m, folio):
        m.vm_events.count_mthp(folio.order, "zswpout")
        folio.clear(PG_dirty)  # zswap now holds it (pageout cleared it for I/O)
        folio.unlock()
        return 0
    if not mem_cgroup_zswap_writeback_enabled(m.zswap, folio.memcg):
        folio.mark_dirty()
        folio.unlock()
        return AOP_WRITEPAGE_ACTIVATE
    __swap_writepage(ctx, folio)
    return 0


def __swap_writepage(ctx: SwapIoCtx, folio: Folio) -> None:
    """``__swap_writepage``: count at submission, start writeback, unlock, queue."""
    m = ctx.machine
    vm_events = m.vm_events
    if folio.order == _HPAGE_PMD_ORDER:
        vm_events.count(THP_SWPOUT)
    vm_events.count_mthp(folio.order, "swpout")
    vm_events.count(PSWPOUT, folio.nr_pages)
    folio.start_writeback()
    folio.unlock()
    swap_add_folio(ctx, folio, WRITE)


# -- swap-in -----------------------------------------------------------------------------


def swap_read_folio(ctx: SwapIoCtx, folio: Folio) -> None:
    """``swap_read_folio``: a locked, not-uptodate swap-cache folio; queue or fill now.

    Zero-flagged slots are filled without I/O (``swpin_zero``); a large
    folio that mixes zero and non-zero slots is an I/O error (unlocked, not
    uptodate), as in the kernel.  Then zswap: ``zswap_load`` fills a folio
    it holds (``zswpin``, no I/O) or fails it; only a miss is read from
    the area (``zswap_folio_swapin`` first).
    """
    m = ctx.machine
    si = swp_swap_info(m, folio.swap)
    nz = si.count_zero(folio.swap.offset, folio.nr_pages)
    if nz == folio.nr_pages:
        data = folio.data  # folio_zero_range
        for j in range(folio.nr_pages):
            data[PAGE_SLICES[j]] = _ZERO_PAGE_BUF
        folio.mark_uptodate()
        folio.unlock()
        m.vm_events.count(SWPIN_ZERO, folio.nr_pages)
        return
    if nz:
        folio.unlock()  # mixed: leaves it !uptodate
        return
    if zswap_load(m, folio) != -ENOENT:
        return
    zswap_folio_swapin(m, folio)
    swap_add_folio(ctx, folio, READ)


# -- swap_bdev_ops: one bio per batch -------------------------------------------------------


def swap_folio_sector(si: SwapInfo, folio: Folio) -> int:
    """``swap_folio_sector``: the device sector of the folio's first slot in ``si``."""
    return si.map_swap_page(folio.swap.offset) << (PAGE_SHIFT - SECTOR_SHIFT)


def swap_bdev_can_merge(si: SwapInfo, folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
    """``swap_bdev_can_merge``: sector-adjacent, and (writes) the same blkcg."""
    if swap_folio_sector(si, folio) != swap_folio_sector(si, prev) + (prev_size >> SECTOR_SHIFT):
        return False
    return rw == READ or folio.memcg is prev.memcg


def _swap_bdev_bio(ctx: SwapIoCtx, op: int) -> Bio:
    sio = ctx.sio
    sector = swap_folio_sector(ctx.sis, sio.bvecs[0])
    bio = Bio(ctx.sis.bdev, op, sector, opf_flags=REQ_SWAP | REQ_SYNC)
    for folio in sio.bvecs:
        bio.add_page(memoryview(folio.data), folio.size)
    return bio


def _bdev_submit(ctx: SwapIoCtx, op: int, end) -> None:
    sio = ctx.sio
    bio = _swap_bdev_bio(ctx, op)
    bio.private = sio
    bio.end_io = lambda b: end(b.private, b.status != BLK_STS_OK)
    # SWP_SYNCHRONOUS_IO devices complete before submit_bio returns (submit_bio_wait);
    # our file-backed disks and zram are synchronous, so both cases end inline.
    submit_bio(bio)


def swap_bdev_submit_write(ctx: SwapIoCtx) -> None:
    """``swap_bdev_submit_write``: one WRITE|REQ_SWAP bio over the batch."""
    _bdev_submit(ctx, REQ_OP_WRITE, swap_write_end)


def swap_bdev_submit_read(ctx: SwapIoCtx) -> None:
    """``swap_bdev_submit_read`` (exported by patch 2/3): one READ bio over the batch.

    Its completion calls ``swap_read_end``; a provider that delegates here
    must not end the batch itself.  The bio starts at the *first* folio's
    sector and covers ``sio.len`` bytes: correct only for sector-adjacent
    folios, which ``swap_bdev_can_merge`` guarantees but a provider without
    ``can_merge`` does not.
    """
    _bdev_submit(ctx, REQ_OP_READ, swap_read_end)


@cython.cclass
class SwapBdevOps(SwapOps):
    """``swap_bdev_ops``: the bio path, every block device's default."""

    def submit_write(self, ctx: SwapIoCtx) -> None:
        swap_bdev_submit_write(ctx)

    def submit_read(self, ctx: SwapIoCtx) -> None:
        swap_bdev_submit_read(ctx)

    def can_merge(self, si: SwapInfo, folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
        return swap_bdev_can_merge(si, folio, prev, prev_size, rw)


swap_bdev_ops = SwapBdevOps("swap_bdev_ops")


# -- swap_fs_ops: one kiocb per batch on the swap file -----------------------------------------


def swap_dev_pos(si: SwapInfo, folio: Folio) -> int:
    """``swap_dev_pos``: byte position in the swap file (through its extent map)."""
    return si.map_swap_page(folio.swap.offset) << PAGE_SHIFT


def swap_fs_can_merge(si: SwapInfo, folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
    """``swap_fs_can_merge``: file-position adjacent."""
    return swap_dev_pos(si, folio) == swap_dev_pos(si, prev) + prev_size


def _swap_fs_rw(ctx: SwapIoCtx, write: bool) -> None:
    sio = ctx.sio
    fd = ctx.sis.swap_file_fd
    pos = swap_dev_pos(ctx.sis, sio.bvecs[0])
    views = [memoryview(f.data) for f in sio.bvecs]
    try:
        done = os.pwritev(fd, views, pos) if write else os.preadv(fd, views, pos)
    except OSError:
        done = -EIO
    failed = done != sio.len
    if write:
        swap_write_end(sio, failed)
    else:
        swap_read_end(sio, failed)


def swap_fs_submit_write(ctx: SwapIoCtx) -> None:
    """``swap_fs_submit_write``: a synchronous kiocb write (``a_ops->swap_rw``)."""
    _swap_fs_rw(ctx, True)


def swap_fs_submit_read(ctx: SwapIoCtx) -> None:
    """``swap_fs_submit_read``: a synchronous kiocb read; failure iff short."""
    _swap_fs_rw(ctx, False)


@cython.cclass
class SwapFsOps(SwapOps):
    """``swap_fs_ops``: the kiocb path of swap files (it enters the filesystem:
    ``SWAP_OPS_F_NOFS``, the kernel's ``SWP_FS_OPS``)."""

    def submit_write(self, ctx: SwapIoCtx) -> None:
        swap_fs_submit_write(ctx)

    def submit_read(self, ctx: SwapIoCtx) -> None:
        swap_fs_submit_read(ctx)

    def can_merge(self, si: SwapInfo, folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
        return swap_fs_can_merge(si, folio, prev, prev_size, rw)


swap_fs_ops = SwapFsOps("swap_fs_ops", SWAP_OPS_F_NOFS)


def swap_bdev_is_synchronous(si) -> bool:
    """``SWP_SYNCHRONOUS_IO`` source: the disk's ``BLK_FEAT_SYNCHRONOUS``."""
    return bool(si.bdev is not None and si.bdev.disk.features & BLK_FEAT_SYNCHRONOUS)


__all__ = [
    "SwapIocb",
    "swap_add_folio",
    "swap_bdev_ops",
    "swap_bdev_submit_read",
    "swap_fs_ops",
    "swap_iocb_folio",
    "swap_iocb_nr_folios",
    "swap_read_end",
    "swap_read_folio",
    "swap_read_submit",
    "swap_write_end",
    "swap_write_submit",
    "swap_writeout",
]

"""zram post-processing: writeback to the backing device, and recompression.

Models the CONFIG_ZRAM_WRITEBACK and CONFIG_ZRAM_MULTI_COMP parts of
drivers/block/zram/zram_drv.c as of Linux 6.18:

* ``backing_dev`` blocks are tracked in a bitmap; block 0 is never handed out
  (``alloc_block_bdev`` returns 0 for "none"), ``bd_count`` counts the blocks
  in use;
* both post-processors first *select* slots (``scan_slots_for_*``: under
  each slot lock, set ZRAM_PP_SLOT and file the slot in one of 65 buckets by
  object size / 64), then *process* them largest bucket first, most recently
  added first within a bucket (``select_pp_slot``).  Any access or free of a
  slot clears PP_SLOT in the meantime, and the processor then skips it;
* ``writeback``: per slot, reserve a block, read the page under the slot
  lock, unlock, write it synchronously, re-lock and — only if PP_SLOT
  survived — free the zspool copy and make the slot ZRAM_WB (handle = block);
* ``recompress``: per slot, under the slot lock, decompress and try the
  secondary algorithms in priority order; accept the first result that lands
  in a smaller zsmalloc class as ``zs_lookup_class_index`` sees it (the size
  without the handle) and is under ``threshold``; mark the slot
  INCOMPRESSIBLE when the highest active priority was tried and failed.

Only one post-processing run at a time (``pp_in_progress``: ``EAGAIN``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pyzram.block.bio import REQ_OP_READ, REQ_OP_WRITE, REQ_SYNC, Bio, submit_bio_wait
from pyzram.block.blkdev import BlockDevice
from pyzram.lib.atomic import atomic64_add, atomic64_dec, atomic64_inc
from pyzram.lib.cmdline import parse_args
from pyzram.lib.kstrtox import kstrtouint, kstrtoul, kstrtoull
from pyzram.mm.zsmalloc import IS_ERR_VALUE
from pyzram.zram import table as T

if TYPE_CHECKING:
    from pyzram.zram.zram_drv import Zram

PAGE_SIZE = 4096
PAGE_SHIFT = 12
PP_BUCKET_SIZE_RANGE = 64
NUM_PP_BUCKETS = PAGE_SIZE // PP_BUCKET_SIZE_RANGE + 1

HUGE_WRITEBACK = 1 << 0
IDLE_WRITEBACK = 1 << 1
INCOMPRESSIBLE_WRITEBACK = 1 << 2

RECOMPRESS_IDLE = 1 << 0
RECOMPRESS_HUGE = 1 << 1

ZRAM_PRIMARY_COMP = 0
ZRAM_SECONDARY_COMP = 1


# -- the backing device ------------------------------------------------------------------


@dataclass
class BackingDev:
    """``zram->bdev``, ``zram->bitmap``, ``zram->nr_pages`` and the bd_* counters."""

    disk: object  # a FileDisk
    path: str
    nr_pages: int
    bitmap: np.ndarray = field(init=False)
    bdev: BlockDevice = field(init=False)

    def __post_init__(self) -> None:
        self.bitmap = np.zeros(self.nr_pages, dtype=bool)
        self.bdev = BlockDevice(self.disk.disk)

    def close(self) -> None:
        self.disk.close()


def alloc_block_bdev(zram: Zram) -> int:
    """``alloc_block_bdev``: the lowest free block from 1 up; 0 when full."""
    bd = zram.backing_dev
    free = np.flatnonzero(~bd.bitmap[1:])
    if not free.size:
        return 0
    blk = int(free[0]) + 1
    bd.bitmap[blk] = True
    atomic64_inc(zram.stats.bd_count)
    return blk


def free_block_bdev(zram: Zram, blk_idx: int) -> None:
    """``free_block_bdev``."""
    bd = zram.backing_dev
    if not bd.bitmap[blk_idx]:
        raise AssertionError(f"backing block {blk_idx} freed twice")
    bd.bitmap[blk_idx] = False
    atomic64_dec(zram.stats.bd_count)


def _bdev_io(zram: Zram, op: int, blk_idx: int, buf: bytearray | memoryview) -> int:
    bio = Bio(zram.backing_dev.bdev, op, blk_idx * (PAGE_SIZE >> 9), opf_flags=REQ_SYNC)
    bio.add_page(memoryview(buf), PAGE_SIZE)
    return submit_bio_wait(bio)


def read_from_bdev(zram: Zram, blk_idx: int, out: memoryview) -> int:
    """``read_from_bdev`` (synchronous): ``bd_reads`` + 1; 0 or ``-EIO``."""
    atomic64_inc(zram.stats.bd_reads)
    return _bdev_io(zram, REQ_OP_READ, blk_idx, out)


# -- post-processing control: buckets of selected slots ------------------------------------


class PpCtl:
    """``struct zram_pp_ctl``: selected slots in 65 size buckets."""

    def __init__(self) -> None:
        self.buckets: list[list[int]] = [[] for _ in range(NUM_PP_BUCKETS)]

    def place(self, zram: Zram, index: int) -> None:
        """``place_pp_slot`` (slot lock held): file by size, set ZRAM_PP_SLOT."""
        tbl = zram.table
        self.buckets[tbl.get_obj_size(index) // PP_BUCKET_SIZE_RANGE].append(index)
        tbl.flags[index] |= T.PP_SLOT

    def select(self) -> int | None:
        """``select_pp_slot``: highest bucket, most recently placed first."""
        for b in reversed(self.buckets):
            if b:
                return b.pop()
        return None

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets)


def release_pp_slot(zram: Zram, index: int) -> None:
    """``release_pp_slot``: clear ZRAM_PP_SLOT under the slot lock."""
    tbl = zram.table
    tbl.slot_lock(index)
    tbl.flags[index] &= ~T.PP_SLOT & T._U64
    tbl.slot_unlock(index)


def release_pp_ctl(zram: Zram, ctl: PpCtl) -> None:
    while (index := ctl.select()) is not None:
        release_pp_slot(zram, index)


class _PostProcessing:
    """``pp_in_progress``: one writeback or recompress at a time, else EAGAIN."""

    def __init__(self, zram: Zram) -> None:
        self.zram = zram

    def __enter__(self) -> None:
        if not self.zram._pp_lock.acquire(blocking=False):
            raise OSError(errno.EAGAIN, "post-processing already in progress")

    def __exit__(self, *exc: object) -> None:
        self.zram._pp_lock.release()


def _hook(zram: Zram, name: str, index: int) -> None:
    if zram.yield_point is not None:
        zram.yield_point(name, index)


# -- writeback -------------------------------------------------------------------------------


def _parse_mode(val: str) -> int:
    mode = {
        "idle": IDLE_WRITEBACK,
        "huge": HUGE_WRITEBACK,
        "huge_idle": IDLE_WRITEBACK | HUGE_WRITEBACK,
        "incompressible": INCOMPRESSIBLE_WRITEBACK,
    }.get(val, 0)
    if not mode:
        raise OSError(errno.EINVAL, f"writeback: unknown mode {val!r}")
    return mode


def scan_slots_for_writeback(zram: Zram, mode: int, lo: int, hi: int, ctl: PpCtl) -> None:
    """``scan_slots_for_writeback``: select allocated, non-WB, non-SAME slots of the mode."""
    tbl = zram.table
    for index in range(lo, hi):
        tbl.slot_lock(index)
        f = tbl.flags[index]
        ok = (
            tbl.allocated(index)
            and not f & (T.WB | T.SAME)
            and not (mode & IDLE_WRITEBACK and not f & T.IDLE)
            and not (mode & HUGE_WRITEBACK and not f & T.HUGE)
            and not (mode & INCOMPRESSIBLE_WRITEBACK and not f & T.INCOMPRESSIBLE)
        )
        if ok:
            ctl.place(zram, index)
        tbl.slot_unlock(index)


def _parse_page_index(val: str, nr_pages: int) -> tuple[int, int]:
    lo = kstrtoul(val, 10)
    if lo >= nr_pages:
        raise OSError(errno.ERANGE, f"page_index {lo} beyond the device")
    return lo, lo + 1


def _parse_page_indexes(val: str, nr_pages: int) -> tuple[int, int]:
    if "-" not in val:
        raise OSError(errno.EINVAL, "page_indexes needs LO-HI")
    a, b = val.split("-", 1)
    lo = kstrtoul(a, 10)
    if lo >= nr_pages:
        raise OSError(errno.ERANGE, f"page index {lo} beyond the device")
    hi = kstrtoul(b, 10)
    if hi >= nr_pages or lo > hi:
        raise OSError(errno.ERANGE, f"bad page range {lo}-{hi}")
    return lo, hi + 1


def writeback_store(zram: Zram, buf: str) -> None:
    """``writeback_store``: parse the request (6.16+ syntax, old one too), select, write back.

    Tokens: ``type=idle|huge|huge_idle|incompressible`` or the bare mode word
    (scans the current range — the whole device by default — with that filter
    and ends parsing), ``page_index=N`` and ``page_indexes=LO-HI`` (each scans
    its range at once with the filter so far).  Errors: EINVAL (not
    initialised, bad mode), ENODEV (no backing device), ERANGE (index past
    the end), EAGAIN (post-processing running), and from the run: EIO
    (writeback_limit exhausted), ENOSPC (backing device full), a bio error.
    """
    with zram.init_lock.read():
        if not zram.init_done():
            raise OSError(errno.EINVAL, "writeback: device not initialised")
        with _PostProcessing(zram):
            if zram.backing_dev is None:
                raise OSError(errno.ENODEV, "writeback: no backing device")
            nr_pages = zram.nr_pages
            lo, hi, mode = 0, nr_pages, 0
            ctl = PpCtl()
            try:
                for param, val in parse_args(buf):
                    if not val:
                        mode = _parse_mode(param)
                        scan_slots_for_writeback(zram, mode, lo, hi, ctl)
                        break
                    if param == "type":
                        mode = _parse_mode(val)
                        scan_slots_for_writeback(zram, mode, lo, hi, ctl)
                        break
                    if param == "page_index":
                        lo, hi = _parse_page_index(val, nr_pages)
                        scan_slots_for_writeback(zram, mode, lo, hi, ctl)
                    elif param == "page_indexes":
                        lo, hi = _parse_page_indexes(val, nr_pages)
                        scan_slots_for_writeback(zram, mode, lo, hi, ctl)
                err = zram_writeback_slots(zram, ctl)
            finally:
                release_pp_ctl(zram, ctl)
            if err:
                raise OSError(-err, f"writeback: {errno.errorcode.get(-err, err)}")


def zram_writeback_slots(zram: Zram, ctl: PpCtl) -> int:
    """``zram_writeback_slots`` (6.18: one synchronous bio per page); 0 or -errno."""
    tbl, st = zram.table, zram.stats
    page = bytearray(PAGE_SIZE)
    blk_idx = 0
    ret = 0
    while (index := ctl.select()) is not None:
        with zram._wb_limit_lock:
            exhausted = zram.wb_limit_enable and not zram.bd_wb_limit
        if exhausted:  # the slot lock is taken only after wb_limit_lock is dropped
            ret = -errno.EIO
            release_pp_slot(zram, index)
            break
        if not blk_idx:
            blk_idx = alloc_block_bdev(zram)
            if not blk_idx:
                ret = -errno.ENOSPC
                release_pp_slot(zram, index)
                break
        tbl.slot_lock(index)
        if not tbl.flags[index] & T.PP_SLOT:  # accessed or freed since selection
            tbl.slot_unlock(index)
            release_pp_slot(zram, index)
            continue
        err = zram.zram_read_from_zspool(page, index)
        tbl.slot_unlock(index)
        if err:
            release_pp_slot(zram, index)
            continue
        _hook(zram, "writeback_read_done", index)
        err = _bdev_io(zram, REQ_OP_WRITE, blk_idx, page)
        if err:
            release_pp_slot(zram, index)
            ret = err
            continue
        atomic64_inc(st.bd_writes)
        tbl.slot_lock(index)
        if tbl.flags[index] & T.PP_SLOT:
            zram.zram_free_page(index)
            tbl.flags[index] |= T.WB
            tbl.handle[index] = blk_idx
            blk_idx = 0
            atomic64_inc(st.pages_stored)
            with zram._wb_limit_lock:
                if zram.wb_limit_enable and zram.bd_wb_limit > 0:
                    zram.bd_wb_limit -= 1 << (PAGE_SHIFT - 12)
        tbl.slot_unlock(index)
        release_pp_slot(zram, index)
    if blk_idx:
        free_block_bdev(zram, blk_idx)
    return ret


# -- recompression ------------------------------------------------------------------------------


def scan_slots_for_recompress(zram: Zram, mode: int, prio_max: int, ctl: PpCtl) -> None:
    """``scan_slots_for_recompress``."""
    tbl = zram.table
    for index in range(zram.nr_pages):
        tbl.slot_lock(index)
        f = tbl.flags[index]
        ok = (
            tbl.allocated(index)
            and not (mode & RECOMPRESS_IDLE and not f & T.IDLE)
            and not (mode & RECOMPRESS_HUGE and not f & T.HUGE)
            and not f & (T.WB | T.SAME | T.INCOMPRESSIBLE)
            and tbl.get_priority(index) + 1 < prio_max
        )
        if ok:
            ctl.place(zram, index)
        tbl.slot_unlock(index)


def recompress_slot(
    zram: Zram, index: int, budget: list[int], threshold: int, prio: int, prio_max: int
) -> int:
    """``recompress_slot`` (slot lock held): 0 or -errno."""
    tbl, pool = zram.table, zram.mem_pool
    handle_old = tbl.handle[index]
    if not handle_old:
        return -errno.EINVAL
    comp_len_old = tbl.get_obj_size(index)
    if comp_len_old < threshold:
        return 0
    page = bytearray(PAGE_SIZE)
    err = zram.zram_read_from_zspool(page, index)
    if err:
        return err
    data = bytes(page)
    # Touched: not idle any more, so no other post-processing picks it up.
    tbl.flags[index] &= ~T.IDLE & T._U64
    prio = max(prio, tbl.get_priority(index) + 1)
    if prio >= prio_max:
        return 0
    class_index_old = pool.zs_lookup_class_index(comp_len_old)
    accepted: tuple[int, bytes] | None = None
    for p in range(prio, prio_max):
        comp = zram.comps[p]
        if comp is None:
            continue
        try:
            out = comp.backend.compress(data)
        except OSError as e:
            return -(e.errno or errno.EINVAL)
        if pool.zs_lookup_class_index(len(out)) >= class_index_old or (
            threshold and len(out) >= threshold
        ):
            continue
        accepted = (p, out)
        break
    if budget[0]:
        budget[0] -= 1
    if accepted is None:
        # Only when the highest active priority was tried can we say no one can.
        if prio_max >= zram.num_active_comps:
            tbl.flags[index] |= T.INCOMPRESSIBLE
        return 0
    p, out = accepted
    handle_new = pool.zs_malloc(len(out))
    if IS_ERR_VALUE(handle_new):
        return handle_new
    pool.zs_obj_write(handle_new, out, len(out))
    zram.zram_free_page(index)
    f = tbl.flags[index] & ~T.PRIORITY_MASK & T._U64
    tbl.flags[index] = f | len(out) | (p << T.ZRAM_COMP_PRIORITY_BIT1)
    tbl.handle[index] = handle_new
    atomic64_add(len(out), zram.stats.compr_data_size)
    atomic64_inc(zram.stats.pages_stored)
    return 0


def recompress_store(zram: Zram, buf: str) -> None:
    """``recompress_store``: ``type= max_pages= threshold= algo= priority=``."""
    mode = 0
    budget = [(1 << 64) - 1]
    threshold = 0
    algo = None
    prio = ZRAM_SECONDARY_COMP
    prio_max = zram.num_active_comps
    for param, val in parse_args(buf):
        if not val:
            raise OSError(errno.EINVAL, f"recompress: {param!r} has no value")
        if param == "type":
            mode = {
                "idle": RECOMPRESS_IDLE,
                "huge": RECOMPRESS_HUGE,
                "huge_idle": RECOMPRESS_IDLE | RECOMPRESS_HUGE,
            }.get(val, 0)  # 6.18: an unknown type leaves the filter empty
        elif param == "max_pages":
            budget = [kstrtoull(val, 10)]
        elif param == "threshold":
            threshold = kstrtouint(val, 10)
        elif param == "algo":
            algo = val
        elif param == "priority":
            prio = kstrtouint(val, 10) or ZRAM_SECONDARY_COMP
            prio_max = prio + 1
    if threshold >= zram.huge_class_size:
        raise OSError(errno.EINVAL, "recompress: threshold must be below huge_class_size")
    with zram.init_lock.read():
        if not zram.init_done():
            raise OSError(errno.EINVAL, "recompress: device not initialised")
        with _PostProcessing(zram):
            if algo is not None:
                found = next(
                    (p for p in range(prio, zram.config.max_comps) if zram.comp_algs[p] == algo),
                    None,
                )
                if found is None:
                    raise OSError(errno.EINVAL, f"recompress: no algorithm {algo!r}")
                prio, prio_max = found, found + 1
            prio_max = min(prio_max, zram.num_active_comps)
            if prio >= prio_max:
                raise OSError(errno.EINVAL, "recompress: no secondary algorithm in range")
            ctl = PpCtl()
            scan_slots_for_recompress(zram, mode, prio_max, ctl)
            tbl = zram.table
            err = 0
            try:
                while (index := ctl.select()) is not None:
                    if not budget[0]:
                        release_pp_slot(zram, index)
                        break
                    tbl.slot_lock(index)
                    if tbl.flags[index] & T.PP_SLOT:
                        err = recompress_slot(zram, index, budget, threshold, prio, prio_max)
                    tbl.slot_unlock(index)
                    release_pp_slot(zram, index)
                    if err:
                        break
            finally:
                release_pp_ctl(zram, ctl)
            if err:
                raise OSError(-err, "recompress failed")

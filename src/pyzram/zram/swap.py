"""zram's ``swap_ops``: swap I/O straight into the zspool (the seed, patches 2/3 and 3/3).

``zram_init(m)`` registers ``zram_swap_ops`` for ``zram_devops`` with
``swap_register_block_ops`` on machine ``m`` ("module init" at its boot; a
failed registration fails the init), so every zram area that machine swaps
on afterwards does its I/O here instead of through bios:

* ``zram_swap_submit_write``: each page of each folio goes to slot
  ``swp_offset(folio.swap) + j`` through ``zram_write_page``, then is marked
  accessed in a section of its own.  The first failing page stops the
  batch (``failed_writes`` + 1, pages already stored stay), and
  ``swap_write_end(sio, failed)`` re-dirties every page.
* ``zram_swap_submit_read``: decompress (straight into the folios' pages)
  and mark accessed in **one** slot lock section per page, so idle
  post-processing cannot take a slot between the read and the mark; a
  failure stops the batch (``failed_reads`` + 1) and leaves every folio of
  it not uptodate.  With a backing device the read
  falls back to the block path.
* ``zram_swap_slot_free_notify``: ``notify_free`` + 1, then trylock the slot
  (``miss_free`` + 1 if it is busy) and free it.

Variants, per device (``Zram`` attributes), so tests can show the
difference:

``swap_read_ordering``
    ``"one_section"`` (the patch) or ``"legacy"`` (read, unlock, lock, mark:
    the pre-series bio path).
``backing_read_fallback``
    ``"as_posted"``: the patch as posted — no ``can_merge``, and with a
    backing device the whole batch goes to ``swap_bdev_submit_read``, which
    reads ``sio.len`` bytes from the *first* folio's sector, so every later
    folio of a non-adjacent batch gets its neighbour slots' data.
    ``"adjacent"`` (default): ``can_merge`` (``zram_swap_can_merge``) keeps batches
    slot-adjacent while a backing device is set, which makes the same
    fallback correct; without one, any folios merge.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import cython

from pyzram.lib.atomic import atomic64_inc
from pyzram.mm.folio import PAGE_SIZE, Folio
from pyzram.mm.page_io import (
    swap_bdev_submit_read,
    swap_read_end,
    swap_write_end,
)
from pyzram.mm.swap import SwapIoCtx
from pyzram.mm.swap_ops import (
    SwapOps,
    registered_block_ops,
    swap_register_block_ops,
    swap_unregister_block_ops,
)
from pyzram.mm.swapfile import SwapInfo
from pyzram.zram.table import WB
from pyzram.zram.zram_drv import Zram, zram_devops, zram_write_pages

if TYPE_CHECKING:
    from pyzram.mm.machine import Machine


_LONG = array("l").itemsize


def zram_swap_submit_write(ctx: SwapIoCtx) -> None:
    """``zram_swap_submit_write``: every page of every folio of the batch goes
    to its slot through ``zram_write_page``, then is marked accessed in its
    own slot-lock section (:func:`~pyzram.zram.zram_drv.zram_write_pages`,
    the loop ``zram_bio_write`` runs too); the first failing page stops the
    batch (``failed_writes``), and ``swap_write_end`` runs once for the batch."""
    si = ctx.sis
    zram = si.bdev.disk.private_data  # sis->bdev->bd_disk->private_data
    sio = ctx.sio
    zram.init_lock.down_read()
    try:
        pages = []
        slots = array("l", bytes(sio.len // PAGE_SIZE * _LONG))  # the pages' slots
        k = 0
        for folio in sio.bvecs:
            for j in range(folio.nr_pages):
                pages.append(folio.page(j))
                slots[k] = folio.swap.offset + j
                k += 1
        failed = not zram_write_pages(zram, pages, slots)
    finally:
        zram.init_lock.up_read()
    swap_write_end(sio, failed)


def zram_swap_read_page(zram: Zram, page, index: int) -> int:
    """One page of ``zram_swap_submit_read``, in the device's read ordering.

    ``"one_section"`` (the seed): lock the slot, read it from the pool and,
    if that worked, mark it accessed, then unlock — one critical section.
    ``"legacy"`` (the pre-series bio path): ``zram_read_page``, then lock,
    mark, unlock in a second section.  A written-back slot, which the seed
    never meets (with a backing device the batch takes the block path), is
    read from the backing device outside the slot lock in either ordering,
    as ``zram_read_page`` reads it, and then marked.
    """
    if zram.swap_read_ordering == "one_section":
        zram.table.slot_lock(index)
        if not zram.table.flags[index] & WB:
            ret = zram.zram_read_from_zspool(page, index)
            if ret == 0:
                zram.zram_accessed(index)
            zram.table.slot_unlock(index)
            if zram.yield_point is not None:
                zram.read_slot_unlocked(index)
            return ret
        zram.table.slot_unlock(index)
    ret = zram.zram_read_page(page, index)
    if zram.yield_point is not None:
        zram.read_slot_unlocked(index)
    if ret == 0:
        zram.table.slot_lock(index)
        zram.zram_accessed(index)
        zram.table.slot_unlock(index)
    return ret


def zram_swap_submit_read(ctx: SwapIoCtx) -> None:
    """``zram_swap_submit_read``: each page decompressed straight into the
    folio's page (:func:`zram_swap_read_page`); the first failure stops the
    batch (``failed_reads``); ``swap_read_end`` runs once.  With a backing
    device the whole batch goes to the block path instead."""
    si = ctx.sis
    zram = si.bdev.disk.private_data  # sis->bdev->bd_disk->private_data
    sio = ctx.sio
    if zram.backing_dev is not None:
        swap_bdev_submit_read(ctx)  # its completion ends the batch
        return
    failed = False
    zram.init_lock.down_read()
    try:
        for folio in sio.bvecs:
            base = folio.swap.offset
            for j in range(folio.nr_pages):
                if zram_swap_read_page(zram, folio.page(j), base + j) < 0:
                    atomic64_inc(zram.stats.failed_reads)
                    failed = True
                    break
            if failed:
                break
    finally:
        zram.init_lock.up_read()
    swap_read_end(sio, failed)


def zram_swap_slot_free_notify(si, offset: int) -> None:
    """``zram_swap_slot_free_notify``: must not sleep — trylock, else ``miss_free``."""
    zram: Zram = si.bdev.disk.private_data
    zram.zram_slot_free_notify(offset)


@cython.cclass
class ZramSwapOpsAsPosted(SwapOps):
    """zram's ``swap_ops`` exactly as the patch posts them: no ``can_merge``."""

    def submit_write(self, ctx: SwapIoCtx) -> None:
        zram_swap_submit_write(ctx)

    def submit_read(self, ctx: SwapIoCtx) -> None:
        zram_swap_submit_read(ctx)

    def slot_free_notify(self, si: SwapInfo, offset: int) -> None:
        zram_swap_slot_free_notify(si, offset)


@cython.cclass
class ZramSwapOps(ZramSwapOpsAsPosted):
    """``zram_swap_ops``: the posted ones and ``can_merge``."""

    def can_merge(self, si: SwapInfo, folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
        """``zram_swap_can_merge``, the correct variant's: slot-adjacent batches
        while a backing device is set (so the block-path fallback reads the
        right slots); without one, any folios merge."""
        sis = si  # (typed when compiled: the hook's signature takes any area)
        zram = sis.bdev.disk.private_data
        if zram.backing_dev is None or zram.backing_read_fallback == "as_posted":
            return True
        return folio.swap.offset == prev.swap.offset + prev_size // PAGE_SIZE


zram_swap_ops = ZramSwapOps("zram_swap_ops")
#: The patch exactly as posted: no ``can_merge`` at all.
zram_swap_ops_as_posted = ZramSwapOpsAsPosted("zram_swap_ops (as posted)")


def zram_init(m: Machine, ops: SwapOps = zram_swap_ops) -> None:
    """The registration part of ``zram_init`` on machine ``m``: claim its swap block-ops slot.

    Raises the registry's ``OSError`` (``EBUSY`` if another driver holds the
    slot): module init fails, no device is created.  Idempotent for zram
    with the same ops.
    """
    fops, current = registered_block_ops(m)
    if fops is zram_devops and current is ops:
        return
    swap_register_block_ops(m, zram_devops, ops)


def zram_exit(m: Machine) -> None:
    """``destroy_devices``: unregister first, when registration had succeeded."""
    fops, _ = registered_block_ops(m)
    if fops is zram_devops:
        swap_unregister_block_ops(m, zram_devops)


def zram_swap_registered(m: Machine) -> bool:
    """Whether zram holds machine ``m``'s swap block-ops slot."""
    return registered_block_ops(m)[0] is zram_devops


__all__ = [
    "zram_exit",
    "zram_init",
    "zram_swap_ops",
    "zram_swap_ops_as_posted",
    "zram_swap_submit_read",
    "zram_swap_submit_write",
]

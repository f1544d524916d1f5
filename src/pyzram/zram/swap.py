"""zram's ``swap_ops``: swap I/O straight into the zspool (the seed, patches 2/3 and 3/3).

``zram_init()`` registers ``zram_swap_ops`` for ``zram_devops`` with
``swap_register_block_ops`` ("module init"; a failed registration fails the
init), so every zram area swapped on afterwards does its I/O here instead of
through bios:

* ``zram_swap_submit_write``: each page of each folio goes to slot
  ``swp_offset(folio.swap) + j``; the whole batch is classified and
  compressed in one go (one codec call), then stored page by page.  The
  first failing page stops the batch (``failed_writes`` + 1, pages already
  stored stay), and ``swap_write_end(sio, failed)`` re-dirties every page.
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
    ``"adjacent"`` (default): ``zram_swap_can_merge`` keeps batches
    slot-adjacent while a backing device is set, which makes the same
    fallback correct; without one, any folios merge.
"""

from __future__ import annotations

import numpy as np

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
from pyzram.mm.swapfile import swp_swap_info
from pyzram.zram.zram_drv import Zram, zram_devops


def _zram_of(ctx_or_si) -> Zram:
    si = ctx_or_si.sis if isinstance(ctx_or_si, SwapIoCtx) else ctx_or_si
    return si.bdev.disk.private_data


def _batch_slots(folios: list[Folio]) -> list[int]:
    """The zram slot of every page of the batch: ``swp_offset(folio->swap) + j``."""
    if all(f.order == 0 for f in folios):
        return [f.swap.offset for f in folios]
    slots: list[int] = []
    for folio in folios:
        base = folio.swap.offset
        slots.extend(range(base, base + folio.nr_pages))
    return slots


def _batch_pages(folios: list[Folio]) -> list:
    """The page buffers of the batch, in slot order: a read decodes into them,
    as the kernel decompresses into the folio's pages."""
    if all(f.order == 0 for f in folios):
        return [f.data for f in folios]
    return [f.page(j) for f in folios for j in range(f.nr_pages)]


def zram_swap_submit_write(ctx: SwapIoCtx) -> None:
    """``zram_swap_submit_write``: store every page of the batch in its slot."""
    zram = _zram_of(ctx)
    sio = ctx.sio
    folios = sio.bvecs
    buf = folios[0].data if len(folios) == 1 else b"".join(f.data for f in folios)
    pages = np.frombuffer(buf, dtype=np.uint8).reshape(-1, PAGE_SIZE)
    with zram.init_lock.read():
        err = zram.write_pages(pages, _batch_slots(folios))
        if err is not None:
            with zram._stats_lock:
                zram.stats.failed_writes += 1
    swap_write_end(sio, err is not None)


def zram_swap_submit_read(ctx: SwapIoCtx) -> None:
    """``zram_swap_submit_read``: decompress + mark in one section; end the batch once."""
    zram = _zram_of(ctx)
    sio = ctx.sio
    if zram.backing_dev is not None:
        swap_bdev_submit_read(ctx)  # its completion ends the batch
        return
    folios = sio.bvecs
    with zram.init_lock.read():
        _, err = zram.read_pages(
            _batch_slots(folios), ordering=zram.swap_read_ordering, into=_batch_pages(folios)
        )
        if err is not None:
            with zram._stats_lock:
                zram.stats.failed_reads += 1
    swap_read_end(sio, err is not None)


def zram_swap_can_merge(folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
    """The correct variant's ``can_merge``: slot-adjacent batches while a backing
    device is set (so the block-path fallback reads the right slots)."""
    zram: Zram = swp_swap_info(folio.swap).bdev.disk.private_data
    if zram.backing_dev is None or zram.backing_read_fallback == "as_posted":
        return True
    return folio.swap.offset == prev.swap.offset + prev_size // PAGE_SIZE


def zram_swap_slot_free_notify(si, offset: int) -> None:
    """``zram_swap_slot_free_notify``: must not sleep — trylock, else ``miss_free``."""
    _zram_of(si).zram_slot_free_notify(offset)


zram_swap_ops = SwapOps(
    name="zram_swap_ops",
    submit_write=zram_swap_submit_write,
    submit_read=zram_swap_submit_read,
    can_merge=zram_swap_can_merge,
    slot_free_notify=zram_swap_slot_free_notify,
)

#: The patch exactly as posted: no ``can_merge`` at all.
zram_swap_ops_as_posted = SwapOps(
    name="zram_swap_ops (as posted)",
    submit_write=zram_swap_submit_write,
    submit_read=zram_swap_submit_read,
    can_merge=None,
    slot_free_notify=zram_swap_slot_free_notify,
)

_registered = False


def zram_init(ops: SwapOps = zram_swap_ops) -> None:
    """The registration part of ``zram_init``: claim the swap block-ops slot.

    Raises the registry's ``OSError`` (``EBUSY`` if another driver holds the
    slot): module init fails, no device is created.  Idempotent for zram.
    """
    global _registered
    fops, current = registered_block_ops()
    if _registered and fops is zram_devops and current is ops:
        return
    swap_register_block_ops(zram_devops, ops)
    _registered = True


def zram_exit() -> None:
    """``destroy_devices``: unregister first, when registration had succeeded."""
    global _registered
    if _registered:
        swap_unregister_block_ops(zram_devops)
        _registered = False


def zram_swap_registered() -> bool:
    return _registered


__all__ = [
    "zram_exit",
    "zram_init",
    "zram_swap_ops",
    "zram_swap_ops_as_posted",
    "zram_swap_submit_read",
    "zram_swap_submit_write",
]

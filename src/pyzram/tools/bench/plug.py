"""The bench's stand-in for the swap core's callers: a list of folios handed to
``swap_add_folio`` one by one, as reclaim (``swap_writeout``) and the fault and
swapoff paths (``swap_read_folio``) do in the kernel; and the do-nothing
``swap_ops`` that time the swap core alone.

Both are compiled beside the swap core (``plug.pxd``), as the kernel's
callers are C: a Python loop here would time the interpreter's call of each
folio, which no kernel path has, inside the swap_ops rows' windows.
"""

from __future__ import annotations

from pyzram.mm.folio import Folio
from pyzram.mm.page_io import swap_add_folio, swap_read_end, swap_write_end
from pyzram.mm.swap import SwapIoCtx
from pyzram.mm.swap_ops import SwapOps


def add_folios(ctx: SwapIoCtx, folios: list[Folio], lo: int, hi: int, rw: int) -> None:
    """``swap_add_folio(ctx, folios[i], rw)`` for ``i`` in ``lo..hi-1``, in order."""
    for i in range(lo, hi):
        swap_add_folio(ctx, folios[i], rw)


class NullSwapOps(SwapOps):
    """``swap_ops`` that do no I/O: each batch is ended at once, as written or
    read (its pages unchanged); a freed slot is told to ``inner``, the ops
    whose device holds it."""

    def __init__(self, inner: SwapOps) -> None:
        SwapOps.__init__(self, "null", inner.flags)
        self.inner = inner

    def submit_write(self, ctx: SwapIoCtx) -> None:
        swap_write_end(ctx.sio, False)

    def submit_read(self, ctx: SwapIoCtx) -> None:
        swap_read_end(ctx.sio, False)

    def slot_free_notify(self, si, offset: int) -> None:
        self.inner.slot_free_notify(si, offset)


__all__ = ["NullSwapOps", "add_folios"]

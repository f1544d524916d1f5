"""The bench's stand-in for the swap core's callers: a list of folios handed to
``swap_add_folio`` one by one, as reclaim (``swap_writeout``) and the fault and
swapoff paths (``swap_read_folio``) do in the kernel.

The loop is compiled beside the swap core (``plug.pxd``), as the kernel's
callers are C: a Python loop here would time the interpreter's call of each
folio, which no kernel path has, inside the swap_ops rows' windows.
"""

from __future__ import annotations

from pyzram.mm.folio import Folio
from pyzram.mm.page_io import swap_add_folio
from pyzram.mm.swap import SwapIoCtx


def add_folios(ctx: SwapIoCtx, folios: list[Folio], lo: int, hi: int, rw: int) -> None:
    """``swap_add_folio(ctx, folios[i], rw)`` for ``i`` in ``lo..hi-1``, in order."""
    for i in range(lo, hi):
        swap_add_folio(ctx, folios[i], rw)


__all__ = ["add_folios"]

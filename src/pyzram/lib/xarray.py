"""An xarray over one range of indices (model of lib/xarray.c: ``xa_load``,
``xa_store``, ``xa_erase``, ``xa_empty``).

The kernel's xarray is a radix tree of 64-slot nodes, sparse, with an RCU
lookup and its own spinlock for changes.  zswap keeps one per 64 MiB of
swap slots (``swap_zswap_tree``), indexed by the slot's offset, and looks up
each slot freed by the swap core in it.

Here the xarray is dense over the range it is made for: one entry a
possible index (``None`` where nothing is stored), in a list, so a lookup
is one list item, found without hashing the index and without a Python int
for it, whether or not something is stored there (a freed slot's lookup
mostly finds nothing).  The number of entries stored is kept, for
``xa_empty``.  What differs from the kernel: the memory is that of the
whole range (8 bytes an index) from the start, not of the nodes in use;
there are no marks and no multi-index entries; and changes are made under
the caller's lock (zswap's tree lock), as the kernel's ``xa_lock``.
"""

from __future__ import annotations

from typing import Any

import cython


@cython.cclass
class XArray:
    """``struct xarray`` over ``first`` .. ``first + size - 1``."""

    def __init__(self, first: int, size: int) -> None:
        self.first = first
        self.entries: list[Any] = [None] * size
        self.nr = 0

    def __repr__(self) -> str:
        return f"<XArray {self.first}+{len(self.entries)} entries={self.nr}>"

    def values(self) -> list[Any]:
        """``xa_for_each``: the entries stored, in index order."""
        return [e for e in self.entries if e is not None]


def xa_load(xa: XArray, index: int) -> Any:
    """``xa_load``: the entry at ``index``, or None."""
    return xa.entries[index - xa.first]


def xa_store(xa: XArray, index: int, entry: Any) -> Any:
    """``xa_store``: ``entry`` at ``index``; the entry it replaced, or None."""
    i = index - xa.first
    old = xa.entries[i]
    xa.entries[i] = entry
    xa.nr += (old is None) - (entry is None)
    return old


def xa_erase(xa: XArray, index: int) -> Any:
    """``xa_erase``: remove the entry at ``index``; it, or None."""
    i = index - xa.first
    old = xa.entries[i]
    if old is not None:
        xa.entries[i] = None
        xa.nr -= 1
    return old


def xa_empty(xa: XArray) -> bool:
    """``xa_empty``: nothing stored."""
    return xa.nr == 0

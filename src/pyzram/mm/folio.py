"""Folios: the unit the swap core moves (model of include/linux/page-flags.h, mm.h).

A folio is 2**order contiguous pages holding real bytes (``data``, a
bytearray of ``folio_size`` bytes) and the page flags the swap I/O path uses.
Folios are in-flight objects of a workload, so they are Python objects;
per-slot state of swap areas and zram lives in arrays instead.

The folio lock is a real sleeping lock (``folio_lock`` / ``folio_trylock`` /
``folio_unlock``): a read folio stays locked from ``swap_read_folio`` until
``swap_read_end``, and tests can wait for it from another thread.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

PAGE_SIZE = 4096
PAGE_SHIFT = 12

# enum pageflags, the ones the swap path uses (bit numbers are ours).
PG_locked = 1 << 0
PG_uptodate = 1 << 1
PG_dirty = 1 << 2
PG_writeback = 1 << 3
PG_reclaim = 1 << 4
PG_swapcache = 1 << 5
PG_swapbacked = 1 << 6
PG_readahead = 1 << 7

_NAMES = {
    PG_locked: "locked",
    PG_uptodate: "uptodate",
    PG_dirty: "dirty",
    PG_writeback: "writeback",
    PG_reclaim: "reclaim",
    PG_swapcache: "swapcache",
    PG_swapbacked: "swapbacked",
    PG_readahead: "readahead",
}


class SwpEntry(NamedTuple):
    """``swp_entry_t``: (swap type, offset); immutable, hashable, ordered.

    A named tuple, because entries are made for every folio swapped out and
    every swapped PTE faulted in (a frozen dataclass costs three times as
    much to build)."""

    type: int
    offset: int


class Folio:
    """``struct folio``: ``nr_pages`` pages of data and their flags.

    Compiled, an extension type (``folio.pxd``): the swap core's modules that
    cimport it read ``flags``/``order`` and call the flag methods in C.
    """

    __slots__ = ("order", "data", "flags", "swap", "memcg", "_lock", "__weakref__")

    def __init__(self, order: int = 0, data: bytes | bytearray | memoryview | None = None) -> None:
        if not 0 <= order <= 9:
            raise ValueError(f"folio order {order} out of range 0..9")
        self.order = order
        size = PAGE_SIZE << order
        if data is None:
            self.data = bytearray(size)
        else:
            if len(data) != size:
                raise ValueError(f"order-{order} folio needs {size} bytes, got {len(data)}")
            self.data = bytearray(data)
        self.flags = PG_swapbacked
        self.swap: SwpEntry | None = None
        self.memcg: object | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        names = ",".join(n for bit, n in _NAMES.items() if self.flags & bit)
        return f"<Folio order={self.order} swap={self.swap} [{names}]>"

    # -- size ------------------------------------------------------------------

    @property
    def nr_pages(self) -> int:
        """``folio_nr_pages``."""
        return 1 << self.order

    @property
    def size(self) -> int:
        """``folio_size``."""
        return PAGE_SIZE << self.order

    def page(self, j: int) -> memoryview:
        """The bytes of page ``j`` (``folio_page`` + ``kmap_local_page``)."""
        return memoryview(self.data)[j * PAGE_SIZE : (j + 1) * PAGE_SIZE]

    # -- flags -------------------------------------------------------------------

    def test(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def set(self, flag: int) -> None:
        self.flags |= flag

    def clear(self, flag: int) -> None:
        self.flags &= ~flag

    # -- the folio lock --------------------------------------------------------------

    def lock(self) -> None:
        """``folio_lock``: sleep until the lock is ours."""
        self._lock.acquire()
        self.flags |= PG_locked

    def trylock(self) -> bool:
        """``folio_trylock``."""
        if self._lock.acquire(blocking=False):
            self.flags |= PG_locked
            return True
        return False

    def unlock(self) -> None:
        """``folio_unlock``."""
        if not self.flags & PG_locked:
            raise RuntimeError(f"folio_unlock of an unlocked folio {self!r}")
        self.flags &= ~PG_locked
        self._lock.release()

    # -- state transitions the swap path uses -------------------------------------------

    def mark_uptodate(self) -> None:
        """``folio_mark_uptodate``."""
        self.flags |= PG_uptodate

    def mark_dirty(self) -> None:
        """``folio_mark_dirty`` (swap cache folios: a plain flag set)."""
        self.flags |= PG_dirty

    def start_writeback(self) -> None:
        """``folio_start_writeback``: dirty -> writeback."""
        if self.flags & PG_writeback:
            raise RuntimeError(f"folio already under writeback: {self!r}")
        self.flags = (self.flags & ~PG_dirty) | PG_writeback

    def end_writeback(self) -> None:
        """``folio_end_writeback``: clears PG_writeback (and PG_reclaim, as the
        LRU rotation it asks for happens here)."""
        if not self.flags & PG_writeback:
            raise RuntimeError(f"folio_end_writeback without writeback: {self!r}")
        self.flags &= ~(PG_writeback | PG_reclaim)

"""Folios: the unit the swap core moves (model of include/linux/page-flags.h, mm.h).

A folio is 2**order contiguous pages holding real bytes (``data``, a
bytearray of ``folio_size`` bytes) and the page flags the swap I/O path uses.
Folios are in-flight objects of a workload, so they are Python objects;
per-slot state of swap areas and zram lives in arrays instead.

The folio lock is the kernel's: the ``PG_locked`` bit, and sleepers on one of
the hashed wait queues of ``folio_wait_table`` (``folio_waitqueue``), which
``folio_unlock`` wakes when ``PG_waiters`` says someone sleeps.  It is a real
sleeping lock (``folio_lock`` / ``folio_trylock`` / ``folio_unlock``): a read
folio stays locked from ``swap_read_folio`` until ``swap_read_end``, and tests
can wait for it from another thread.  The kernel changes the bits with
atomic instructions (``test_and_set_bit_lock``, ``clear_bit_unlock_is_negative
_byte``); here one process-wide mutex held for the few instructions of each
bit operation stands in for them (compiled, a C mutex), so a folio needs no
lock object of its own.  The mutex and the wait table are shared by every
machine in the process, as they carry no model state (a wake-up of an
unrelated folio on the same queue is a spurious one, which the sleeper's
loop absorbs, as in the kernel).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pyzram.lib.atomic import atomic_begin, atomic_end
from pyzram.lib.list import INIT_LIST_HEAD, ListHead

if TYPE_CHECKING:
    from pyzram.mm.machine import Machine

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
#: ``PG_waiters``: someone sleeps on the folio's wait queue (bit 13: vmscan's
#: page-aging bits take 8..12).
PG_waiters = 1 << 13

_NAMES = {
    PG_locked: "locked",
    PG_uptodate: "uptodate",
    PG_dirty: "dirty",
    PG_writeback: "writeback",
    PG_reclaim: "reclaim",
    PG_swapcache: "swapcache",
    PG_swapbacked: "swapbacked",
    PG_readahead: "readahead",
    PG_waiters: "waiters",
}

#: ``PAGE_WAIT_TABLE_BITS``: folios hash to one of 256 wait queues.
PAGE_WAIT_TABLE_BITS = 8
_WAIT_TABLE_MASK = (1 << PAGE_WAIT_TABLE_BITS) - 1
#: ``folio_wait_table``: the hashed wait queues.
folio_wait_table = [threading.Condition() for _ in range(1 << PAGE_WAIT_TABLE_BITS)]
#: The bits the folio's own methods change, as C constants when compiled
#: (``folio.pxd``): the lock's and writeback's hot paths test and set them
#: without making Python ints.
_locked_bit = PG_locked
_waiters_bit = PG_waiters
_uptodate_bit = PG_uptodate
_dirty_bit = PG_dirty
_writeback_bit = PG_writeback
_reclaim_bit = PG_reclaim
_swapbacked_bit = PG_swapbacked
_page_size = PAGE_SIZE
#: The most pages a machine's free lists keep for reuse (256 MiB); beyond, a freed
#: folio's memory goes back to the host.
FREE_PAGES_HIGH = 1 << 16
#: The largest folio order (a PMD-size folio: ``HPAGE_PMD_ORDER``).
MAX_FOLIO_ORDER = 9
#: ``PAGE_POISON`` (include/linux/poison.h): the byte a free page's first word holds.
PAGE_POISON = 0xAA
_free_pages_high = FREE_PAGES_HIGH
#: Page ``j`` of a large folio's memory is ``folio.pages[PAGE_SLICES[j]]``: the
#: slices made once for the largest folio (order 9), not a slice and its two
#: bounds made for every use.
PAGE_SLICES = tuple(slice(j * PAGE_SIZE, (j + 1) * PAGE_SIZE) for j in range(1 << 9))


def folio_waitqueue(folio: object) -> int:
    """``folio_waitqueue``: the index of the folio's queue (``hash_ptr`` of it)."""
    return (id(folio) >> 6) & _WAIT_TABLE_MASK


class SwpEntry:
    """``swp_entry_t``: (swap type, offset); hashable, ordered, and never changed
    once made (compiled, its fields are read-only).

    Compiled, an extension type with two C fields (``folio.pxd``): entries
    are made for every folio swapped out and every swapped PTE faulted in,
    and the swap core reads their fields in C.  Equal and
    ordered as the tuple ``(type, offset)``, and unpacked as one.
    """

    __slots__ = ("type", "offset")

    def __init__(self, type: int, offset: int) -> None:  # noqa: A002  (the kernel's name)
        self.type = type
        self.offset = offset

    def __repr__(self) -> str:
        return f"SwpEntry(type={self.type}, offset={self.offset})"

    def __iter__(self):
        return iter((self.type, self.offset))

    def __hash__(self) -> int:
        return hash((self.type, self.offset))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SwpEntry):
            return NotImplemented
        return self.type == other.type and self.offset == other.offset

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, SwpEntry):
            return NotImplemented
        return self.type != other.type or self.offset != other.offset

    def __lt__(self, other: SwpEntry) -> bool:
        return (self.type, self.offset) < (other.type, other.offset)

    def __le__(self, other: SwpEntry) -> bool:
        return (self.type, self.offset) <= (other.type, other.offset)

    def __gt__(self, other: SwpEntry) -> bool:
        return (self.type, self.offset) > (other.type, other.offset)

    def __ge__(self, other: SwpEntry) -> bool:
        return (self.type, self.offset) >= (other.type, other.offset)

    def __reduce__(self):
        return (SwpEntry, (self.type, self.offset))


def swp_entry(type_: int, offset: int) -> SwpEntry:
    """``swp_entry``: the entry of slot ``offset`` in swap area ``type_``.

    The one way the model makes an entry: the object is allocated and its two
    fields set, without a call of ``__init__`` (compiled, a C allocation)."""
    entry = SwpEntry.__new__(SwpEntry)
    entry.type = type_
    entry.offset = offset
    return entry


class Folio(ListHead):
    """``struct folio``: ``nr_pages`` pages of data and their flags.

    Compiled, an extension type (``folio.pxd``): the swap core's modules that
    cimport it read ``flags``/``order`` and call the flag methods in C.
    """

    __slots__ = (
        "order",
        "nr_pages",
        "size",
        "data",
        "pages",
        "flags",
        "swap",
        "memcg",
        "mapping",
        "index",
        "__weakref__",
    )

    def __init__(self, order: int = 0, data: bytes | bytearray | memoryview | None = None) -> None:
        _folio_init(self, order, data)

    def __repr__(self) -> str:
        names = ",".join(n for bit, n in _NAMES.items() if self.flags & bit)
        return f"<Folio order={self.order} swap={self.swap} [{names}]>"

    # -- size ------------------------------------------------------------------

    def page(self, j: int) -> bytearray | memoryview:
        """The bytes of page ``j`` (``folio_page`` + ``kmap_local_page``): of an
        order-0 folio, its one page's own buffer; else a view of page ``j``."""
        if self.order == 0:  # the folio is its one page
            return self.data
        return self.pages[PAGE_SLICES[j]]

    # -- flags -------------------------------------------------------------------

    def test(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def set(self, flag: int) -> None:
        self.flags |= flag

    def clear(self, flag: int) -> None:
        self.flags &= ~flag

    # -- the folio lock --------------------------------------------------------------

    def lock(self) -> None:
        """``folio_lock``: the bit, or sleep on the folio's queue until an unlock
        wakes it, and try again (``__folio_lock``: ``PG_waiters`` set under the
        queue's lock, so the wake-up cannot come between the test and the sleep)."""
        while not self.trylock():
            q = folio_wait_table[folio_waitqueue(self)]
            with q:
                atomic_begin()  # set_bit(PG_waiters) if still locked
                locked = self.flags & _locked_bit
                if locked:
                    self.flags |= _waiters_bit
                atomic_end()
                if locked:
                    q.wait()

    def trylock(self) -> bool:
        """``folio_trylock``: ``test_and_set_bit_lock(PG_locked)``."""
        atomic_begin()
        flags = self.flags
        self.flags = flags | _locked_bit
        atomic_end()
        return not flags & _locked_bit

    def set_locked(self) -> None:
        """``__folio_set_locked``: the bit set without an atomic operation, for a new
        folio that no one else can see yet (as the swap-in path prepares one)."""
        self.flags |= _locked_bit

    def unlock(self) -> None:
        """``folio_unlock``: clear the bit; wake the queue if ``PG_waiters`` was set."""
        atomic_begin()  # clear_bit_unlock(PG_locked), and PG_waiters with it
        flags = self.flags
        if flags & _locked_bit:
            self.flags = flags & ~(_locked_bit | _waiters_bit)
        atomic_end()
        if not flags & _locked_bit:
            raise RuntimeError(f"folio_unlock of an unlocked folio {self!r}")
        if flags & _waiters_bit:
            q = folio_wait_table[folio_waitqueue(self)]
            with q:
                q.notify_all()

    # -- state transitions the swap path uses -------------------------------------------

    def mark_uptodate(self) -> None:
        """``folio_mark_uptodate``."""
        self.flags |= _uptodate_bit

    def mark_dirty(self) -> None:
        """``folio_mark_dirty`` (swap cache folios: a plain flag set)."""
        self.flags |= _dirty_bit

    def start_writeback(self) -> None:
        """``folio_start_writeback``: dirty -> writeback."""
        if self.flags & _writeback_bit:
            raise RuntimeError(f"folio already under writeback: {self!r}")
        self.flags = (self.flags & ~_dirty_bit) | _writeback_bit

    def end_writeback(self) -> None:
        """``folio_end_writeback``: clears PG_writeback (and PG_reclaim, as the
        LRU rotation it asks for happens here)."""
        if not self.flags & _writeback_bit:
            raise RuntimeError(f"folio_end_writeback without writeback: {self!r}")
        self.flags &= ~(_writeback_bit | _reclaim_bit)


def _folio_init(
    folio: Folio,
    order: int,
    data: bytes | bytearray | memoryview | None,
    reused: bool = False,
) -> None:
    """The fields of a new folio: ``order``, its size, its data, ``PG_swapbacked``,
    no swap entry, memcg or mapping.  Its memory is new and zeroed, or, for a
    folio taken from a free list (``reused``: :func:`folio_alloc_mpol`), the
    memory it had, holding what it held; ``data`` is copied in."""
    INIT_LIST_HEAD(folio)  # folio->lru
    if not 0 <= order <= MAX_FOLIO_ORDER:
        raise ValueError(f"folio order {order} out of range 0..{MAX_FOLIO_ORDER}")
    size = _page_size << order
    if data is not None and len(data) != size:
        raise ValueError(f"order-{order} folio needs {size} bytes, got {len(data)}")
    if reused:
        if data is not None:
            memoryview(folio.data)[:] = data
    else:
        folio.order = order
        #: ``folio_nr_pages`` (``folio->_nr_pages``): fixed for the folio's life.
        folio.nr_pages = 1 << order
        #: ``folio_size``.
        folio.size = size
        folio.data = bytearray(size) if data is None else bytearray(data)
        #: A large folio's data as a memoryview, made once: ``page(j)`` slices it
        #: (compiled, ``data`` and ``pages`` are read-only: they stay one buffer).
        folio.pages = memoryview(folio.data) if order else None
    folio.flags = _swapbacked_bit
    folio.swap = None
    folio.memcg = None
    #: ``folio->mapping`` and ``folio->index`` of an anon folio: the address
    #: space whose pages it holds (the model's anon_vma: one per process)
    #: and its first page there; reclaim's rmap walk starts from them.
    folio.mapping = None
    folio.index = 0


def folio_alloc(order: int = 0, data: bytes | bytearray | memoryview | None = None) -> Folio:
    """``folio_alloc``: a new folio of ``2**order`` pages, holding ``data`` if given.

    The model's allocations take this way: the object is allocated and its
    fields set without a call through the type (compiled, a C allocation and
    a C call, as :func:`swp_entry` makes an entry); ``Folio(order, data)``
    sets the same fields through the same function.
    """
    folio = Folio.__new__(Folio)
    _folio_init(folio, order, data)
    return folio


def folio_alloc_mpol(
    m: Machine, order: int = 0, data: bytes | bytearray | memoryview | None = None
) -> Folio:
    """``folio_alloc_mpol``: a folio from machine ``m``'s page allocator.

    It takes the folio of its order freed last (``m.free_pages[order]``, the
    per-CPU free list, last in first out: the memory most likely still in the
    CPU's cache), page memory and all.  Without ``data`` it holds what that
    memory held, as pages allocated without ``__GFP_ZERO`` do (a swap-in reads
    over all of it); ``data`` is copied in.  With no free folio of the order,
    the folio's memory is new and zeroed (:func:`folio_alloc`).
    """
    free = m.free_pages[order]
    if not free:
        return folio_alloc(order, data)
    folio = free.pop()
    m.nr_free_pages -= 1 << order
    _folio_init(folio, order, data, True)
    return folio


def free_unref_folios(m: Machine, folios: list[Folio]) -> None:
    """``free_unref_folios``: folios no one uses any more back to machine ``m``'s page
    allocator, each onto the free list of its order while the lists hold fewer
    than :data:`FREE_PAGES_HIGH` pages; beyond, its memory goes back to the host
    (its ``data`` is None: a use after free fails at once).

    As the kernel's ``free_pages_prepare``, freeing clears the folio's flags
    and what it belonged to (swap entry, memcg, mapping), after checking that
    the folio is in use (``PG_swapbacked``, which every folio of the model has
    from its allocation to its free: a folio freed twice is a
    ``RuntimeError``, the kernel's "Bad page state"); and the first word
    of each of its pages is overwritten with ``PAGE_POISON`` bytes, so that a
    read which never fills a page it was given cannot pass for one that did
    because the memory still held the same bytes (the kernel's pages keep all
    their stale bytes unless ``page_poison`` or ``init_on_free`` is on).
    """
    for folio in folios:
        if not folio.flags & _swapbacked_bit:  # free_page_is_bad: no folio is freed twice
            raise RuntimeError("free_unref_folios: bad page state (a folio freed twice)")
        folio.flags = 0
        folio.swap = None
        folio.memcg = None
        folio.mapping = None
        nr = folio.nr_pages
        if m.nr_free_pages + nr <= _free_pages_high:
            data = folio.data
            for j in range(nr):
                at = j * _page_size
                for k in range(at, at + 8):
                    data[k] = PAGE_POISON
            m.free_pages[folio.order].append(folio)
            m.nr_free_pages += nr
        else:
            folio.data = None
            folio.pages = None

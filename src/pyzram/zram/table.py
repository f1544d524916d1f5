"""The zram slot table: per-slot state in compact arrays (``struct zram_table_entry``).

One entry per 4 KiB page of ``disksize``, as in zram_drv.h of Linux 6.18:

* ``handle`` (u64): the zsmalloc handle; for ZRAM_SAME slots the 64-bit fill
  word; for ZRAM_WB slots the backing-device block index.
* ``flags`` (u64): bits 0..12 hold the stored object size (``ZRAM_FLAG_SHIFT``
  = PAGE_SHIFT + 1); above them the ``zram_pageflags`` in 6.15+ order.
* ``ac_time`` (s64 ns, only with CONFIG_ZRAM_TRACK_ENTRY_ACTIME).

The arrays are numpy (``np.zeros`` is calloc: a 100 GiB device costs no
memory until touched) with memoryview aliases for fast scalar access, so the
table costs 16 bytes per slot like the kernel's, and whole-table scans
(``idle``, consistency checks) are vectorised.

The per-slot lock is the kernel's ZRAM_ENTRY_LOCK bit in ``flags``: a
sleeping bit lock (``wait_on_bit_lock``), with ``trylock`` for
``slot_free_notify``.  A short internal mutex makes the test-and-set
atomic, and waiters sleep on a condition variable.
"""

from __future__ import annotations

import threading

import cython
import numpy as np

from pyzram.lib.atomic import atomic_begin, atomic_end

PAGE_SHIFT = 12
ZRAM_FLAG_SHIFT = PAGE_SHIFT + 1
ZRAM_SIZE_MASK = (1 << ZRAM_FLAG_SHIFT) - 1

# enum zram_pageflags, Linux 6.15..6.18 order.
ZRAM_SAME = ZRAM_FLAG_SHIFT  # 13: same-filled page, handle holds the fill word
ZRAM_ENTRY_LOCK = 14  # the slot lock bit
ZRAM_WB = 15  # written back to the backing device
ZRAM_PP_SLOT = 16  # selected for post-processing
ZRAM_HUGE = 17  # incompressible, stored raw
ZRAM_IDLE = 18  # not accessed since the last idle marking
ZRAM_INCOMPRESSIBLE = 19  # recompression gave up on it
ZRAM_COMP_PRIORITY_BIT1 = 20
ZRAM_COMP_PRIORITY_BIT2 = 21
ZRAM_COMP_PRIORITY_MASK = 0x3

SAME = 1 << ZRAM_SAME
LOCK = 1 << ZRAM_ENTRY_LOCK
WB = 1 << ZRAM_WB
PP_SLOT = 1 << ZRAM_PP_SLOT
HUGE = 1 << ZRAM_HUGE
IDLE = 1 << ZRAM_IDLE
INCOMPRESSIBLE = 1 << ZRAM_INCOMPRESSIBLE
PRIORITY_MASK = ZRAM_COMP_PRIORITY_MASK << ZRAM_COMP_PRIORITY_BIT1

FLAG_NAMES = {
    ZRAM_SAME: "ZRAM_SAME",
    ZRAM_ENTRY_LOCK: "ZRAM_ENTRY_LOCK",
    ZRAM_WB: "ZRAM_WB",
    ZRAM_PP_SLOT: "ZRAM_PP_SLOT",
    ZRAM_HUGE: "ZRAM_HUGE",
    ZRAM_IDLE: "ZRAM_IDLE",
    ZRAM_INCOMPRESSIBLE: "ZRAM_INCOMPRESSIBLE",
}

_U64 = (1 << 64) - 1
# C-typed copies for the compiled slot lock (table.pxd).
_LOCK_BIT = LOCK
_UNLOCK = _U64 ^ LOCK
_SIZE_MASK = ZRAM_SIZE_MASK
_ALLOCATED = ZRAM_SIZE_MASK | SAME | WB


@cython.cclass
class ZramTable:
    """``zram->table``: ``nr_pages`` entries of handle, flags (and ac_time).

    Compiled, this is an extension type whose arrays are typed memoryviews
    (``table.pxd``): the slot lock and every flag test are C operations.
    """

    def __init__(self, nr_pages: int, track_actime: bool) -> None:
        self.nr_pages = nr_pages
        self.handle_np = np.zeros(nr_pages, dtype=np.uint64)
        self.flags_np = np.zeros(nr_pages, dtype=np.uint64)
        self.ac_time_np = np.zeros(nr_pages, dtype=np.int64) if track_actime else None
        # memoryviews index to plain Python ints, ~3x faster than numpy scalars.
        self.handle = memoryview(self.handle_np)
        self.flags = memoryview(self.flags_np)
        self.ac_time = memoryview(self.ac_time_np) if track_actime else None
        self._cv = threading.Condition()
        self._waiters = 0
        #: Interleaving-explorer hook (pyzram.explore): ``("lock"|"trylock", index)``
        #: before a slot lock attempt, ``("unlock", index)`` after a release.
        self.yield_point = None

    @property
    def nbytes(self) -> int:
        """Memory held by the table (the kernel's vzalloc of the table)."""
        n = self.handle_np.nbytes + self.flags_np.nbytes
        return n + (self.ac_time_np.nbytes if self.ac_time_np is not None else 0)

    # -- slot locks (zram_slot_lock / zram_slot_trylock / zram_slot_unlock) --

    def slot_lock(self, index: int) -> None:
        """``zram_slot_lock``: take the slot's ZRAM_ENTRY_LOCK bit, sleeping while
        another task holds it (``wait_on_bit_lock``).

        The test-and-set is atomic (``test_and_set_bit_lock``,
        :func:`~pyzram.lib.atomic.atomic_begin`); a waiter counts itself in
        the same step and sleeps on a condition variable, which the unlocker
        signals after clearing the bit, so no wake-up is lost.
        """
        if self.yield_point is not None:
            self.yield_point("lock", index)
        while True:
            atomic_begin()
            flags = self.flags[index]
            if flags & _LOCK_BIT:
                self._waiters += 1
            else:  # uncontended: no condition variable
                self.flags[index] = flags | _LOCK_BIT
            atomic_end()
            if not flags & _LOCK_BIT:
                return
            with self._cv:
                while self.flags[index] & _LOCK_BIT:
                    self._cv.wait()
            atomic_begin()
            self._waiters -= 1
            atomic_end()

    def slot_trylock(self, index: int) -> bool:
        """``zram_slot_trylock``: take the bit if it is free; never sleeps."""
        if self.yield_point is not None:
            self.yield_point("trylock", index)
        atomic_begin()
        flags = self.flags[index]
        self.flags[index] = flags | _LOCK_BIT
        atomic_end()
        return not flags & _LOCK_BIT

    def slot_unlock(self, index: int) -> None:
        """``zram_slot_unlock``: clear the bit and wake whoever waits for a slot."""
        atomic_begin()  # clear_bit_unlock
        self.flags[index] &= _UNLOCK
        waiters = self._waiters
        atomic_end()
        if waiters:
            with self._cv:
                self._cv.notify_all()
        if self.yield_point is not None:
            self.yield_point("unlock", index)

    # -- accessors (zram_get_obj_size, zram_test_flag, ...) -------------------

    def get_obj_size(self, index: int) -> int:
        return self.flags[index] & _SIZE_MASK

    def get_priority(self, index: int) -> int:
        return (self.flags[index] >> ZRAM_COMP_PRIORITY_BIT1) & ZRAM_COMP_PRIORITY_MASK

    def allocated(self, index: int) -> bool:
        """``zram_allocated``: holds something (a size, or SAME, or WB)."""
        return (self.flags[index] & _ALLOCATED) != 0

    def allocated_mask(self) -> np.ndarray:
        """Vectorised ``zram_allocated`` over the whole table."""
        return (self.flags_np & np.uint64(ZRAM_SIZE_MASK | SAME | WB)) != 0

"""A reader-writer semaphore (model of ``struct rw_semaphore``, kernel/locking/rwsem.c).

zram's ``init_lock`` lets any number of I/O paths and stat readers run
together (``down_read``) while ``disksize``/``reset`` take it exclusively
(``down_write``).  Writers are preferred once waiting, as in the kernel's
handoff, so a stream of readers cannot starve ``reset``.
"""

from __future__ import annotations

import threading

import cython

from pyzram.lib.atomic import atomic_begin, atomic_end


@cython.cclass
class RWSemaphore:
    """``struct rw_semaphore``: shared ``down_read``, exclusive ``down_write``.

    The state (readers, a writer, writers waiting) changes atomically
    (:func:`~pyzram.lib.atomic.atomic_begin`), as the kernel changes
    ``sem->count`` with atomic operations; the uncontended paths do only
    that.  A task that must wait counts itself in ``_waiters`` and sleeps on
    a condition variable, which whoever releases the semaphore signals after
    changing the state, so no wake-up is lost (the same scheme as zram's
    slot lock).
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._waiters = 0
        self._read_guard = _ReadGuard(self)
        self._write_guard = _WriteGuard(self)

    def down_read(self) -> None:
        while True:
            atomic_begin()
            taken = not (self._writer or self._writers_waiting)
            if taken:
                self._readers += 1
            else:
                self._waiters += 1
            atomic_end()
            if taken:
                return
            with self._cv:
                while self._writer or self._writers_waiting:
                    self._cv.wait()
            atomic_begin()
            self._waiters -= 1
            atomic_end()

    def up_read(self) -> None:
        atomic_begin()
        self._readers -= 1
        wake = self._readers == 0 and self._waiters
        atomic_end()
        if wake:
            self._wake()

    def down_write(self) -> None:
        atomic_begin()
        self._writers_waiting += 1
        atomic_end()
        while True:
            atomic_begin()
            taken = not (self._writer or self._readers)
            if taken:
                self._writers_waiting -= 1
                self._writer = True
            else:
                self._waiters += 1
            atomic_end()
            if taken:
                return
            with self._cv:
                while self._writer or self._readers:
                    self._cv.wait()
            atomic_begin()
            self._waiters -= 1
            atomic_end()

    def up_write(self) -> None:
        atomic_begin()
        self._writer = False
        wake = self._waiters
        atomic_end()
        if wake:
            self._wake()

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def read(self) -> _ReadGuard:
        """``guard(rwsem_read)``: ``with sem.read(): ...`` (sysfs; the I/O paths
        call ``down_read``/``up_read``, which compiled are C calls)."""
        return self._read_guard

    def write(self) -> _WriteGuard:
        """``guard(rwsem_write)``: ``with sem.write(): ...``."""
        return self._write_guard


@cython.cclass
class _ReadGuard:
    """A reusable ``with`` for ``down_read``/``up_read`` (no generator per use)."""

    def __init__(self, sem: RWSemaphore) -> None:
        self._sem = sem

    def __enter__(self) -> None:
        self._sem.down_read()

    def __exit__(self, *exc: object) -> None:
        self._sem.up_read()


@cython.cclass
class _WriteGuard:
    """A reusable ``with`` for ``down_write``/``up_write``."""

    def __init__(self, sem: RWSemaphore) -> None:
        self._sem = sem

    def __enter__(self) -> None:
        self._sem.down_write()

    def __exit__(self, *exc: object) -> None:
        self._sem.up_write()

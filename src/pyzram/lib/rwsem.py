"""A reader-writer semaphore (model of ``struct rw_semaphore``, kernel/locking/rwsem.c).

zram's ``init_lock`` lets any number of I/O paths and stat readers run
together (``down_read``) while ``disksize``/``reset`` take it exclusively
(``down_write``).  Writers are preferred once waiting, as in the kernel's
handoff, so a stream of readers cannot starve ``reset``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWSemaphore:
    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def down_read(self) -> None:
        with self._cv:
            while self._writer or self._writers_waiting:
                self._cv.wait()
            self._readers += 1

    def up_read(self) -> None:
        with self._cv:
            self._readers -= 1
            if self._readers == 0:
                self._cv.notify_all()

    def down_write(self) -> None:
        with self._cv:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cv.wait()
            self._writers_waiting -= 1
            self._writer = True

    def up_write(self) -> None:
        with self._cv:
            self._writer = False
            self._cv.notify_all()

    @contextmanager
    def read(self) -> Iterator[None]:
        """``guard(rwsem_read)``."""
        self.down_read()
        try:
            yield
        finally:
            self.up_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        """``guard(rwsem_write)``."""
        self.down_write()
        try:
            yield
        finally:
            self.up_write()

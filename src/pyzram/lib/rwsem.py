"""A reader-writer semaphore (model of ``struct rw_semaphore``, kernel/locking/rwsem.c).

zram's ``init_lock`` lets any number of I/O paths and stat readers run
together (``down_read``) while ``disksize``/``reset`` take it exclusively
(``down_write``).  Writers are preferred once waiting, as in the kernel's
handoff, so a stream of readers cannot starve ``reset``.
"""

from __future__ import annotations

import threading


class RWSemaphore:
    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read_guard = _Guard(self.down_read, self.up_read)
        self._write_guard = _Guard(self.down_write, self.up_write)

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

    def read(self) -> _Guard:
        """``guard(rwsem_read)``: ``with sem.read(): ...``."""
        return self._read_guard

    def write(self) -> _Guard:
        """``guard(rwsem_write)``: ``with sem.write(): ...``."""
        return self._write_guard


class _Guard:
    """A reusable context manager calling one down/up pair (no generator per use)."""

    __slots__ = ("_down", "_up")

    def __init__(self, down, up) -> None:
        self._down, self._up = down, up

    def __enter__(self) -> None:
        self._down()

    def __exit__(self, *exc: object) -> None:
        self._up()

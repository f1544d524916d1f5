"""Atomic counters (model of include/linux/atomic: ``atomic64_t``).

The kernel keeps statistics such as ``struct zram_stats`` as ``atomic64_t``
counters that any CPU may change without a lock.  pyzram does the same: a
counter is an :class:`atomic64_t` object, and it is read and changed only
through the kernel's helpers, with the kernel's argument order:

    atomic64_inc(zram.stats.pages_stored)           # atomic64_inc(&zram->stats.pages_stored)
    atomic64_add(comp_len, zram.stats.compr_data_size)
    atomic64_read(zram.stats.pages_stored)

Each update is atomic against other threads: compiled, the counter is a C
``long long`` guarded by a C mutex inside the object (the update itself
never releases the GIL); interpreted, by the same mutex as a Python lock.
"""

from __future__ import annotations

import cython


@cython.cclass
class atomic64_t:  # noqa: N801  (the kernel's type name)
    """``atomic64_t``: one 64-bit counter and the lock that makes updates atomic."""

    def __init__(self, i: int = 0) -> None:
        self.counter = i
        if not cython.compiled:  # compiled, the mutex is a C lock in the object
            self.lock = cython.pymutex()

    def __repr__(self) -> str:
        return f"atomic64_t({self.counter})"


def atomic64_read(v: atomic64_t) -> int:
    """``atomic64_read(v)``."""
    return v.counter


def atomic64_set(v: atomic64_t, i: int) -> None:
    """``atomic64_set(v, i)``."""
    with v.lock:
        v.counter = i


def atomic64_add(i: int, v: atomic64_t) -> None:
    """``atomic64_add(i, v)``."""
    with v.lock:
        v.counter += i


def atomic64_sub(i: int, v: atomic64_t) -> None:
    """``atomic64_sub(i, v)``."""
    with v.lock:
        v.counter -= i


def atomic64_inc(v: atomic64_t) -> None:
    """``atomic64_inc(v)``."""
    with v.lock:
        v.counter += 1


def atomic64_dec(v: atomic64_t) -> None:
    """``atomic64_dec(v)``."""
    with v.lock:
        v.counter -= 1


def atomic64_try_cmpxchg(v: atomic64_t, old: int, new: int) -> tuple[bool, int]:
    """``atomic64_try_cmpxchg(v, &old, new)``: set ``new`` if ``v`` still holds
    ``old``; returns (whether it did, the value found, which the kernel writes
    back into ``old``)."""
    with v.lock:
        cur = v.counter
        if cur != old:
            return False, cur
        v.counter = new
        return True, cur

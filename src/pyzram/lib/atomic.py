"""Atomic counters (model of include/linux/atomic: ``atomic64_t`` and ``atomic_long_t``).

The kernel keeps statistics such as ``struct zram_stats`` as atomic
counters that any CPU may change without a lock.  pyzram keeps such a
struct as an object of plain ``int`` fields, readable as they are, and
changes them only through these helpers, which make each update atomic
against other threads with one short lock per struct:

    atomic64_inc(zram.stats, "pages_stored")     # atomic64_inc(&zram->stats.pages_stored)
    atomic64_add(zram.stats, "compr_data_size", comp_len)

A struct that uses them has a ``lock`` attribute (a :class:`threading.Lock`).
"""

from __future__ import annotations

from typing import Any


def atomic64_add(v: Any, field: str, i: int) -> None:
    """``atomic64_add(i, &v->field)``."""
    with v.lock:
        setattr(v, field, getattr(v, field) + i)


def atomic64_inc(v: Any, field: str) -> None:
    """``atomic64_inc(&v->field)``."""
    with v.lock:
        setattr(v, field, getattr(v, field) + 1)


def atomic64_sub(v: Any, field: str, i: int) -> None:
    """``atomic64_sub(i, &v->field)``."""
    with v.lock:
        setattr(v, field, getattr(v, field) - i)


def atomic64_dec(v: Any, field: str) -> None:
    """``atomic64_dec(&v->field)``."""
    with v.lock:
        setattr(v, field, getattr(v, field) - 1)


def atomic64_set(v: Any, field: str, i: int) -> None:
    """``atomic64_set(&v->field, i)``."""
    with v.lock:
        setattr(v, field, i)


def atomic64_try_cmpxchg(v: Any, field: str, old: int, new: int) -> tuple[bool, int]:
    """``atomic64_try_cmpxchg(&v->field, &old, new)``: set ``new`` if the field
    still holds ``old``; returns (whether it did, the value found)."""
    with v.lock:
        cur = getattr(v, field)
        if cur != old:
            return False, cur
        setattr(v, field, new)
        return True, cur

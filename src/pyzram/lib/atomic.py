"""Atomic operations (model of include/linux/atomic: ``atomic64_t``, and the
atomicity every lock word in the model is changed with).

The kernel keeps statistics such as ``struct zram_stats`` as ``atomic64_t``
counters that any CPU may change without a lock.  pyzram does the same: a
counter is an :class:`atomic64_t` object, and it is read and changed only
through the kernel's helpers, with the kernel's argument order:

    atomic64_inc(zram.stats.pages_stored)           # atomic64_inc(&zram->stats.pages_stored)
    atomic64_add(comp_len, zram.stats.compr_data_size)
    atomic64_read(zram.stats.pages_stored)

What makes an operation atomic depends on the build, as it depends on the
architecture in the kernel, and :func:`atomic_begin` / :func:`atomic_end`
bracket the plain read-modify-write to say where it is:

- **Compiled**, an operation is C code on a C field, run while the thread
  holds the GIL, with nothing in it that could release the GIL (no Python
  call, no allocation): no other thread can run in the middle of it, so it
  is indivisible, as the arch's ``lock``-prefixed instruction is.  The
  brackets compile to nothing.
- **Interpreted**, a thread switch may fall between any two bytecodes, so
  the brackets take one lock around the operation, as the kernel's generic
  atomics do on a CPU without atomic instructions (``lib/atomic64.c``: a
  spinlock around the plain operation).

The same brackets make the model's bit locks atomic (``test_and_set_bit_lock``
on ``PG_locked`` in :mod:`pyzram.mm.folio`, on ``ZRAM_ENTRY_LOCK`` in
:mod:`pyzram.zram.table`) and the state word of :mod:`pyzram.lib.rwsem`.
Only plain arithmetic on C fields goes between them: interpreted they do not
nest, and compiled nothing between them may give the GIL away.
"""

from __future__ import annotations

import threading

import cython

if not cython.compiled:  # compiled, the GIL makes the operations indivisible
    _generic_atomic_lock = threading.Lock()


@cython.ccall
@cython.returns(cython.void)
@cython.exceptval(check=False)
def atomic_begin() -> None:
    """Where an atomic read-modify-write begins: nothing compiled; interpreted,
    the generic atomics' lock."""
    if not cython.compiled:
        _generic_atomic_lock.acquire()


@cython.ccall
@cython.returns(cython.void)
@cython.exceptval(check=False)
def atomic_end() -> None:
    """Where it ends (see :func:`atomic_begin`)."""
    if not cython.compiled:
        _generic_atomic_lock.release()


@cython.cclass
class atomic64_t:  # noqa: N801  (the kernel's type name)
    """``atomic64_t``: one 64-bit counter, changed only by the operations below."""

    def __init__(self, i: int = 0) -> None:
        self.counter = i

    def __repr__(self) -> str:
        return f"atomic64_t({self.counter})"


def atomic64_read(v: atomic64_t) -> int:
    """``atomic64_read(v)``."""
    return v.counter


def atomic64_set(v: atomic64_t, i: int) -> None:
    """``atomic64_set(v, i)``."""
    atomic_begin()
    v.counter = i
    atomic_end()


def atomic64_add(i: int, v: atomic64_t) -> None:
    """``atomic64_add(i, v)``."""
    atomic_begin()
    v.counter += i
    atomic_end()


def atomic64_sub(i: int, v: atomic64_t) -> None:
    """``atomic64_sub(i, v)``."""
    atomic_begin()
    v.counter -= i
    atomic_end()


def atomic64_inc(v: atomic64_t) -> None:
    """``atomic64_inc(v)``."""
    atomic_begin()
    v.counter += 1
    atomic_end()


def atomic64_dec(v: atomic64_t) -> None:
    """``atomic64_dec(v)``."""
    atomic_begin()
    v.counter -= 1
    atomic_end()


def atomic64_try_cmpxchg(v: atomic64_t, old: int, new: int) -> tuple[bool, int]:
    """``atomic64_try_cmpxchg(v, &old, new)``: set ``new`` if ``v`` still holds
    ``old``; returns (whether it did, the value found, which the kernel writes
    back into ``old``).  Compiled, the pair is a C tuple: no object is made."""
    atomic_begin()
    cur = v.counter
    if cur == old:
        v.counter = new
    atomic_end()
    return cur == old, cur

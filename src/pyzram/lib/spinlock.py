"""Spinlocks (model of include/linux/spinlock.h: ``spinlock_t``, ``spin_lock``,
``spin_trylock``, ``spin_unlock``).

A kernel spinlock is one word that a CPU takes with an atomic instruction
and, while another CPU holds it, spins on.  pyzram's is one flag taken with
an atomic test-and-set (:mod:`pyzram.lib.atomic`: compiled, a C operation
under the GIL; interpreted, under the generic atomics' lock), which is all
an uncontended lock costs: no operating-system lock, no clock read.

Contended, a model thread does not spin: the holder may be waiting for the
GIL that a spinning thread would hold.  It counts itself in ``waiters`` in
the same atomic step that found the lock taken, and sleeps on one of the
hashed wait queues (as ``bit_waitqueue`` hashes a word to a queue) until
the holder's ``spin_unlock``, which clears the flag and reads ``waiters`` in
one atomic step and, if anyone waits, wakes the queue; so no wake-up is
lost, and an unlock with no waiter touches no queue.  The zram slot lock
(:mod:`pyzram.zram.table`) and the folio lock (:mod:`pyzram.mm.folio`) are
the same scheme on a bit of a flags word.

What differs from the kernel: the lock is not fair (no queued MCS handoff),
and a holder may sleep (the model's sections may call back into Python);
lockdep's ordering checks are not modelled.
"""

from __future__ import annotations

import threading

import cython

from pyzram.lib.atomic import atomic_begin, atomic_end

#: ``SPIN_WAIT_TABLE_BITS``: spinlocks hash to one of 64 wait queues.
SPIN_WAIT_TABLE_BITS = 6
_SPIN_WAIT_MASK = (1 << SPIN_WAIT_TABLE_BITS) - 1
#: The hashed wait queues of contended spinlocks.
spin_wait_table = [threading.Condition() for _ in range(1 << SPIN_WAIT_TABLE_BITS)]


@cython.cclass
class spinlock_t:  # noqa: N801  (the kernel's type name)
    """``spinlock_t``: ``locked`` and the number of tasks sleeping for it."""

    def __init__(self) -> None:
        self.locked = False
        self.waiters = 0

    def __repr__(self) -> str:
        return f"<spinlock_t {'locked' if self.locked else 'unlocked'} waiters={self.waiters}>"


def spin_trylock(lock: spinlock_t) -> bool:
    """``spin_trylock``: take the lock if it is free; never waits."""
    atomic_begin()
    locked = lock.locked
    lock.locked = True
    atomic_end()
    return not locked


def spin_lock(lock: spinlock_t) -> None:
    """``spin_lock``: take the lock, sleeping while another task holds it."""
    while True:
        atomic_begin()
        locked = lock.locked
        if locked:
            lock.waiters += 1
        else:
            lock.locked = True
        atomic_end()
        if not locked:
            return
        q = spin_wait_table[(id(lock) >> 6) & _SPIN_WAIT_MASK]
        with q:
            while lock.locked:
                q.wait()
        atomic_begin()
        lock.waiters -= 1
        atomic_end()


def spin_unlock(lock: spinlock_t) -> None:
    """``spin_unlock``: release the lock; wake its queue if anyone sleeps for it."""
    atomic_begin()
    locked = lock.locked
    lock.locked = False
    waiters = lock.waiters
    atomic_end()
    if not locked:
        raise RuntimeError("spin_unlock of an unlocked spinlock")
    if waiters:
        q = spin_wait_table[(id(lock) >> 6) & _SPIN_WAIT_MASK]
        with q:
            q.notify_all()

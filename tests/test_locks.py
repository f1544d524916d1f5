"""The model's atomic operations and locks (lib/atomic, lib/spinlock, lib/rwsem,
the folio and zram slot bit locks, the sio_pool mempool) under real threads.

Every critical section here gives the GIL away in its middle (``time.sleep(0)``)
and the switch interval is made tiny, so a lock that did not exclude, or an
atomic operation that was not one, loses updates; a lost wake-up shows as a
thread that never finishes.  The suite runs these compiled, and
``tests/test_build.py`` runs them interpreted.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

import pyzram
from pyzram.lib.atomic import (
    atomic64_add,
    atomic64_inc,
    atomic64_read,
    atomic64_t,
    atomic64_try_cmpxchg,
    atomic_begin,
    atomic_end,
)
from pyzram.lib.percpu import PerCpu, this_cpu_ptr
from pyzram.lib.rwsem import RWSemaphore
from pyzram.lib.spinlock import spin_lock, spin_trylock, spin_unlock, spinlock_t
from pyzram.mm.folio import Folio
from pyzram.mm.machine import Machine
from pyzram.zram.table import ZramTable

THREADS = 4
ROUNDS = 300


@pytest.fixture(autouse=True)
def _switch_often():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run(worker, n: int = THREADS) -> None:
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread never woke (lost wake-up?)"


def _start_sleeper(waiter, waiters) -> threading.Thread:
    """Start ``waiter`` in a thread; return once ``waiters()`` says it sleeps."""
    t = threading.Thread(target=waiter, args=(0,))
    t.start()
    deadline = time.monotonic() + 10
    while not waiters() and time.monotonic() < deadline:
        time.sleep(0.001)
    return t


def test_spinlock_excludes_while_its_holder_gives_the_gil_away():
    lock = spinlock_t()
    box = [0]

    def worker(_i: int) -> None:
        for _ in range(ROUNDS):
            spin_lock(lock)
            try:
                v = box[0]
                time.sleep(0)  # the holder lets others run mid-section
                box[0] = v + 1
            finally:
                spin_unlock(lock)

    _run(worker)
    assert box[0] == THREADS * ROUNDS
    assert not lock.locked and lock.waiters == 0


def test_spin_trylock_and_unlock_of_a_free_lock():
    lock = spinlock_t()
    assert spin_trylock(lock)
    assert not spin_trylock(lock)
    spin_unlock(lock)
    with pytest.raises(RuntimeError, match="unlocked spinlock"):
        spin_unlock(lock)


def test_a_sleeping_waiter_is_woken_by_the_unlock():
    lock = spinlock_t()
    spin_lock(lock)
    got = threading.Event()

    def waiter(_i: int) -> None:
        spin_lock(lock)
        got.set()
        spin_unlock(lock)

    t = _start_sleeper(waiter, lambda: lock.waiters)
    assert lock.waiters == 1 and not got.is_set()
    spin_unlock(lock)
    t.join(timeout=10)
    assert got.is_set() and lock.waiters == 0


@pytest.mark.skipif(
    pyzram.COMPILED,
    reason="compiled, the brackets are nothing by design: an operation is atomic "
    "because nothing between them gives the GIL away",
)
def test_interpreted_atomic_brackets_exclude_each_other():
    box = [0]

    def worker(_i: int) -> None:
        for _ in range(ROUNDS):
            atomic_begin()
            v = box[0]
            time.sleep(0)
            box[0] = v + 1
            atomic_end()

    _run(worker)
    assert box[0] == THREADS * ROUNDS


def test_atomic64_updates_from_threads_are_never_lost():
    v = atomic64_t()

    def worker(_i: int) -> None:
        for _ in range(ROUNDS * 10):
            atomic64_inc(v)
            atomic64_add(2, v)

    _run(worker)
    assert atomic64_read(v) == THREADS * ROUNDS * 10 * 3


def test_atomic64_try_cmpxchg_answers_and_raises_a_peak_from_threads():
    """It sets the value only over the one it was told, and always reports the
    value it found (the kernel writes it back into ``old``): ``update_used_max``'s
    loop, run by every thread with its own values, ends at the highest."""
    v = atomic64_t()
    assert atomic64_try_cmpxchg(v, 1, 5) == (False, 0)
    assert atomic64_read(v) == 0
    assert atomic64_try_cmpxchg(v, 0, 5) == (True, 0)
    assert atomic64_read(v) == 5

    def worker(i: int) -> None:
        for k in range(ROUNDS):
            new = k * THREADS + i
            cur = atomic64_read(v)
            while cur < new:
                done, cur = atomic64_try_cmpxchg(v, cur, new)
                if done:
                    break

    _run(worker)
    assert atomic64_read(v) == (ROUNDS - 1) * THREADS + THREADS - 1


def test_rwsem_writer_excludes_readers_and_readers_share():
    sem = RWSemaphore()
    state = {"readers": 0, "writer": False, "max_readers": 0, "bad": 0}

    def worker(i: int) -> None:
        for _ in range(ROUNDS // 3):
            if i == 0:
                sem.down_write()
                if state["readers"] or state["writer"]:
                    state["bad"] += 1
                state["writer"] = True
                time.sleep(0)
                state["writer"] = False
                sem.up_write()
            else:
                sem.down_read()
                if state["writer"]:
                    state["bad"] += 1
                state["readers"] += 1  # under the GIL as one step compiled or not:
                state["max_readers"] = max(state["max_readers"], state["readers"])
                time.sleep(0)
                state["readers"] -= 1
                sem.up_read()

    _run(worker)
    assert state["bad"] == 0
    assert state["readers"] == 0 and not state["writer"]


def test_folio_lock_excludes_and_wakes():
    folio = Folio(0)
    box = [0]

    def worker(_i: int) -> None:
        for _ in range(ROUNDS):
            folio.lock()
            v = box[0]
            time.sleep(0)
            box[0] = v + 1
            folio.unlock()

    _run(worker)
    assert box[0] == THREADS * ROUNDS
    assert folio.trylock()  # free again
    folio.unlock()


def test_zram_slot_lock_excludes_and_wakes():
    table = ZramTable(4, track_actime=False)
    box = [0]

    def worker(_i: int) -> None:
        for _ in range(ROUNDS):
            table.slot_lock(2)
            v = box[0]
            time.sleep(0)
            box[0] = v + 1
            table.slot_unlock(2)

    _run(worker)
    assert box[0] == THREADS * ROUNDS
    assert table.slot_trylock(2)
    table.slot_unlock(2)


def test_sio_pool_waits_for_a_free_element():
    m = Machine()
    try:
        pool = m.sio_pool
        held = [pool.alloc() for _ in range(pool.size)]
        got = threading.Event()

        def waiter(_i: int) -> None:
            sio = pool.alloc()  # the pool is empty: sleeps until a free
            got.set()
            pool.free(sio)

        t = _start_sleeper(waiter, lambda: pool.waiters)
        assert pool.waiters == 1 and not got.is_set()
        pool.free(held.pop())
        t.join(timeout=10)
        assert got.is_set()
        for sio in held:
            pool.free(sio)
        assert pool.outstanding == 0 and pool.waiters == 0
    finally:
        m.close()


def test_per_cpu_copies_one_per_thread_and_the_last_asked_is_kept():
    pcpu = PerCpu(list)
    mine = this_cpu_ptr(pcpu)
    assert this_cpu_ptr(pcpu) is mine  # the last thread's copy, again
    theirs = []

    def worker(_i: int) -> None:
        for _ in range(ROUNDS):
            c = this_cpu_ptr(pcpu)
            c.append(1)  # only this thread touches its copy
            time.sleep(0)
        theirs.append(this_cpu_ptr(pcpu))

    _run(worker)
    assert this_cpu_ptr(pcpu) is mine and mine == []
    assert len({id(c) for c in theirs}) == THREADS  # never another thread's copy
    assert all(len(c) == ROUNDS for c in theirs)
    assert len(pcpu.values()) >= THREADS + 1

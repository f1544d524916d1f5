"""Per-CPU variables (model of include/linux/percpu-defs.h: ``DEFINE_PER_CPU``,
``this_cpu_ptr``, ``for_each_possible_cpu``).

The kernel gives each CPU its own copy of a per-CPU variable, found from the
CPU's number with no lock, so that hot counters and scratch buffers are never
shared.  A model thread stands for a CPU: its copy is found by its thread id
(``PyThread_get_thread_ident``), made on first use by the variable's
allocator, and kept when the thread ends, so a later thread given the same
id goes on with it (nothing counted is ever lost or moved).

The copy of the thread that asked last is kept beside the table, its id and
the copy read and written together (:mod:`pyzram.lib.atomic`), so the common
case, one thread asking again and again, is two C loads and a compare: no
Python int for the id, no dictionary lookup.  Readers of every copy (a sum
over the CPUs) take :meth:`PerCpu.values`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import cython

from pyzram.lib.atomic import atomic_begin, atomic_end

if not cython.compiled:  # compiled, the C function itself (percpu.pxd)
    from _thread import get_ident as PyThread_get_thread_ident


@cython.cclass
class PerCpu:
    """``DEFINE_PER_CPU``: one value per thread id, made by ``alloc()`` on first use."""

    def __init__(self, alloc: Callable[[], Any]) -> None:
        self._alloc = alloc
        self._lock = threading.Lock()  # registration and readers of every copy
        #: Every thread id's copy.
        self._by_ident: dict[int, Any] = {}
        self._last_ident = 0
        self._last: Any = None

    def values(self) -> list[Any]:
        """``for_each_possible_cpu``: every copy made so far (a snapshot)."""
        self._lock.acquire()
        try:
            return list(self._by_ident.values())
        finally:
            self._lock.release()

    def __repr__(self) -> str:
        return f"<PerCpu of {len(self._by_ident)} threads>"


def this_cpu_ptr(pcpu: PerCpu) -> Any:
    """``this_cpu_ptr``: this thread's copy (made and registered on first use)."""
    ident = PyThread_get_thread_ident()
    atomic_begin()
    mine = pcpu._last if pcpu._last_ident == ident else None
    atomic_end()
    if mine is not None:
        return mine
    mine = pcpu._by_ident.get(ident)
    if mine is None:
        made = pcpu._alloc()
        with pcpu._lock:
            mine = pcpu._by_ident.setdefault(ident, made)
    atomic_begin()
    pcpu._last_ident = ident
    pcpu._last = mine
    atomic_end()
    return mine

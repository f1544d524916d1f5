"""Swap constants, the I/O context and vm event counters (include/linux/swap.h, mm/swap.h).

``SwapIoCtx`` is the caller-owned batching context of the swap-batching base
series (``struct swap_io_ctx``): zero-initialised by the caller, filled by
``swap_add_folio``, emptied by ``swap_write_submit``/``swap_read_submit``.

``VmEvents`` are the /proc/vmstat counters the swap path updates
(``pswpin``, ``pswpout``, ``nrswpin``, ``nrswpout``, ``swpout_zero`` ...)
and the per-order mTHP stats (``/sys/kernel/mm/transparent_hugepage/
hugepages-*/stats``).
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import TYPE_CHECKING

import cython

from pyzram.lib.percpu import PerCpu, this_cpu_ptr

if TYPE_CHECKING:
    from pyzram.mm.machine import Machine
    from pyzram.mm.page_io import SwapIocb
    from pyzram.mm.swapfile import SwapInfo

#: Folios per swap_iocb, and reclaim batch size.
SWAP_CLUSTER_MAX = 32
#: Slots per cluster without THP swap (256) and with it (HPAGE_PMD_NR = 512 on x86-64).
SWAPFILE_CLUSTER = 512
MAX_SWAPFILES = 32

# si->flags
SWP_USED = 1 << 0
SWP_WRITEOK = 1 << 1
SWP_DISCARDABLE = 1 << 2
SWP_DISCARDING = 1 << 3
SWP_SOLIDSTATE = 1 << 4
SWP_CONTINUED = 1 << 5
SWP_BLKDEV = 1 << 6
SWP_ACTIVATED = 1 << 7
SWP_AREA_DISCARD = 1 << 9
SWP_PAGE_DISCARD = 1 << 10
SWP_STABLE_WRITES = 1 << 11
SWP_SYNCHRONOUS_IO = 1 << 12

# swapon(2) flags
SWAP_FLAG_PREFER = 0x8000
SWAP_FLAG_PRIO_MASK = 0x7FFF
SWAP_FLAG_DISCARD = 0x10000
SWAP_FLAG_DISCARD_ONCE = 0x20000
SWAP_FLAG_DISCARD_PAGES = 0x40000

# classic swap_map byte (<= v6.18): count in the low bits, cache flag above
SWAP_HAS_CACHE = 0x40
SWAP_MAP_MAX = 0x3E
SWAP_MAP_BAD = 0x3F


class SwapIoCtx:
    """``struct swap_io_ctx``: the batch being built and the area it targets.

    The caller creates it empty on its machine, ``SwapIoCtx(m)``, as the
    kernel's caller zero-initialises one on its stack.  Compiled, an
    extension type (``swap.pxd``): one is made per fault and per reclaim pass.
    """

    __slots__ = ("machine", "sio", "sis")

    def __init__(
        self, machine: Machine, sio: SwapIocb | None = None, sis: SwapInfo | None = None
    ) -> None:
        self.machine = machine
        self.sio = sio
        self.sis = sis

    def __repr__(self) -> str:
        return f"SwapIoCtx(machine={self.machine!r}, sio={self.sio!r}, sis={self.sis!r})"


#: ``enum vm_event_item`` (include/linux/vm_event_item.h): the events the swap
#: path counts, by number; ``VM_EVENT_NAMES[item]`` is the /proc/vmstat name
#: (``vmstat_text``).  Simplified: the kernel keeps ``workingset_*`` as node
#: stats (``mod_lruvec_state``); here they are events like the others.
VM_EVENT_NAMES = (
    "pgfault",
    "pgmajfault",
    "pswpin",
    "pswpout",
    "pgactivate",
    "pgdeactivate",
    "pgscan_anon",
    "pgsteal_anon",
    "slabs_scanned",
    "workingset_refault_anon",
    "workingset_activate_anon",
    "workingset_restore_anon",
    "thp_fault_alloc",
    "thp_fault_fallback",
    "thp_fault_fallback_charge",
    "thp_split_page",
    "thp_split_pmd",
    "thp_swpout",
    "thp_swpout_fallback",
    "swap_ra",
    "swap_ra_hit",
    "swpin_zero",
    "swpout_zero",
    "zswpin",
    "zswpout",
    "zswpwb",
    "nrswpin",
    "nrswpout",
)
(
    PGFAULT,
    PGMAJFAULT,
    PSWPIN,
    PSWPOUT,
    PGACTIVATE,
    PGDEACTIVATE,
    PGSCAN_ANON,
    PGSTEAL_ANON,
    SLABS_SCANNED,
    WORKINGSET_REFAULT_ANON,
    WORKINGSET_ACTIVATE_ANON,
    WORKINGSET_RESTORE_ANON,
    THP_FAULT_ALLOC,
    THP_FAULT_FALLBACK,
    THP_FAULT_FALLBACK_CHARGE,
    THP_SPLIT_PAGE,
    THP_SPLIT_PMD,
    THP_SWPOUT,
    THP_SWPOUT_FALLBACK,
    SWAP_RA,
    SWAP_RA_HIT,
    SWPIN_ZERO,
    SWPOUT_ZERO,
    ZSWPIN,
    ZSWPOUT,
    ZSWPWB,
    NRSWPIN,
    NRSWPOUT,
) = range(len(VM_EVENT_NAMES))
NR_VM_EVENT_ITEMS = len(VM_EVENT_NAMES)
_VM_EVENT_ITEM = {name: item for item, name in enumerate(VM_EVENT_NAMES)}


class VmEventState:
    """``struct vm_event_state``: one CPU's counters (here one thread's): an
    array indexed by ``enum vm_event_item``, and the mTHP stats by (order, name)."""

    def __init__(self) -> None:
        self.event = array("q", bytes(8 * NR_VM_EVENT_ITEMS))
        self.mthp: dict[tuple[int, str], int] = {}


class VmEvents:
    """/proc/vmstat swap counters and per-order mTHP stats.

    Like the kernel's per-CPU ``vm_event_states``, each thread counts into
    its own :class:`VmEventState` with no lock (``count_vm_events`` is a
    plain per-CPU add of an ``enum vm_event_item``), and a read sums them
    all (``all_vm_events``).  A thread's state is found as a per-CPU
    variable's (:mod:`pyzram.lib.percpu`): a thread that ends leaves its
    counts in place, and a later thread given the same id goes on counting
    into them, so no count is ever lost or moved.  Reads take the
    /proc/vmstat names.
    """

    def __init__(self) -> None:
        #: ``vm_event_states``: one VmEventState a thread.
        self._pcpu = PerCpu(VmEventState)

    def _this_cpu(self) -> VmEventState:
        """This thread's counters (``this_cpu_ptr(&vm_event_states)``)."""
        return this_cpu_ptr(self._pcpu)

    def count(self, item: int, n: int = 1) -> None:
        """``count_vm_events(item, n)``."""
        mine = self._this_cpu()  # (compiled, a typed name: its array is not re-acquired)
        mine.event[item] += n

    def count_mthp(self, order: int, name: str, n: int = 1) -> None:
        """``count_mthp_stat``: only orders 1..PMD_ORDER have mTHP stats."""
        if not 0 < order <= 9:
            return
        m = self._this_cpu().mthp
        key = (order, name)
        m[key] = m.get(key, 0) + n

    @property
    def counts(self) -> Counter:
        """Every vm event that moved, by name, summed over the threads (a snapshot)."""
        total = [0] * NR_VM_EVENT_ITEMS
        for mine in self._pcpu.values():
            for item, v in enumerate(mine.event):
                total[item] += v
        return Counter({VM_EVENT_NAMES[i]: v for i, v in enumerate(total) if v})

    @property
    def mthp(self) -> Counter:
        """Every mTHP counter, ``(order, name) -> n``, summed over the threads."""
        total: Counter = Counter()
        for mine in self._pcpu.values():
            total.update(dict(mine.mthp))  # dict(): one atomic copy
        return total

    @cython.locals(item=cython.Py_ssize_t, total=cython.longlong, mine=VmEventState)
    def __getitem__(self, name: str) -> int:
        """The /proc/vmstat counter ``name`` (``KeyError`` for a name not modelled);
        compiled, a C loop over the threads' arrays (a run's timeline reads two at
        every sample)."""
        item = _VM_EVENT_ITEM[name]
        total = 0
        for mine in self._pcpu.values():
            total += mine.event[item]
        return total

    def reset(self) -> None:
        """Zero every counter (callers reset while no swap I/O runs)."""
        self.restore(Counter(), Counter())

    def restore(self, counts: Counter, mthp: Counter) -> None:
        """Set the totals to ``counts`` (by name) and ``mthp`` (quiescent callers only)."""
        for mine in self._pcpu.values():
            for item in range(NR_VM_EVENT_ITEMS):
                mine.event[item] = 0
            mine.mthp.clear()
        mine = self._this_cpu()
        for name, v in counts.items():
            mine.event[_VM_EVENT_ITEM[name]] = v
        mine.mthp.update(mthp)

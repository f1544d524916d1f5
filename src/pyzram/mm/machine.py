"""One booted kernel's global state, as one object.

The kernel keeps the state of swap in globals: the ``swap_info[]`` array and
``swap_lock``, the priority list of areas (``swap_avail_heads``) and
``least_priority``, the ``sio_pool`` mempool, the per-CPU vm event counters
behind ``/proc/vmstat``, the one-slot registry of block-driver ``swap_ops``
(``swap_block_ops_lock``), the swap readahead state of mm/swap_state.c, the
page allocator's free pages and, once enabled, zswap's pool and parameters.
pyzram holds all of it in one :class:`Machine`, so a model is created and
torn down as a unit, two models share a process without seeing each other,
and nothing ever resets a module global by hand.

How kernel functions reach it (the one rule)
--------------------------------------------

A kernel function reaches the machine through its arguments:

* a kernel *object* that belongs to a machine carries it as ``.machine``:
  a swap area (``SwapInfo``), a swap I/O context (``SwapIoCtx``, created by
  its caller as ``SwapIoCtx(m)``, as the kernel's caller zero-initialises
  its ``swap_io_ctx`` on the stack), a ``swap_iocb``, a memory cgroup
  (``MemCgroup(m, limit)``) and an address space (through its memcg);
* a function that is given only *values* (a swap entry, a folio, a path)
  takes the machine as its first argument, named ``m``:
  ``swapon(m, disk)``, ``folio_alloc_swap(m, folio)``,
  ``swap_free(m, entry)``.

Kernel names are unchanged; only that first argument is added.  Objects
outside the swap core (a zram device, a block device, a zsmalloc pool) do
not belong to a machine: a device can be swapped on by one machine at a
time, as a disk belongs to one booted kernel.

Simplified: ``vm_events`` has no per-CPU arrays (per-thread counters instead,
see :class:`~pyzram.mm.swap.VmEvents`); the machine has no notion of CPUs or
NUMA nodes, beyond the size of a CPU's data TLB (``tlb_entries``, and
``tlb_2m_entries`` where 2 MiB translations have entries of their own: each
process gets its own, see :mod:`pyzram.mm.tlb`).  zsmalloc's spare arenas
are the host's memory (mmaps kept for reuse by any pool), not kernel state,
and stay process-wide.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pyzram.lib.atomic import atomic64_t
from pyzram.mm.swap import MAX_SWAPFILES, VmEvents
from pyzram.mm.tlb import TLB_ENTRIES

if TYPE_CHECKING:
    from pyzram.mm.folio import Folio
    from pyzram.mm.page_io import SioPool
    from pyzram.mm.swap_ops import SwapBlockOps
    from pyzram.mm.swapfile import SwapInfo
    from pyzram.mm.vmscan import AddressSpace, SwapReadahead
    from pyzram.mm.zswap import Zswap


class Machine:
    """The globals of one kernel: swap areas, registries, vm events, pools.

    Create one per model (``m = Machine()``); ``close()`` swaps off every
    area still on and leaves the registry empty, so the devices it used can
    be reset or reused by another machine.  It is also a context manager.
    """

    def __init__(
        self,
        *,
        swap_ops_series: bool = True,
        page_cluster: int = 3,
        totalram_pages: int = 1 << 20,
        tlb_entries: int = TLB_ENTRIES,
        tlb_2m_entries: int | None = None,
    ) -> None:
        from pyzram.mm.page_io import SioPool
        from pyzram.mm.swap_ops import SwapBlockOps
        from pyzram.mm.vmscan import SwapReadahead
        from pyzram.mm.zswap import Zswap

        #: Built with the series "mm/zram: route block swap I/O through swap_ops"
        #: (a false value is mainline 6.18: block areas always use the bio path,
        #: and a slot's free is told through ``fops->swap_slot_free_notify``).
        self.swap_ops_series = swap_ops_series
        #: ``swap_info[]``: active areas by type.
        self.swap_info: list[SwapInfo | None] = [None] * MAX_SWAPFILES
        #: ``swap_lock``: guards ``swap_info``, ``least_priority`` and the avail list.
        self.swap_lock = threading.Lock()
        #: ``least_priority``: the priority of the last area swapped on without one.
        self.least_priority = 0
        #: ``nr_swap_pages``: free slots over the areas open for allocation
        #: (``get_nr_swap_pages``), kept as the kernel keeps it: added at swapon,
        #: taken at swapoff's start, and moved by each allocation and free.
        self.nr_swap_pages = atomic64_t()
        #: ``swap_avail_heads``: active areas, highest priority first.
        self.swap_avail: list[SwapInfo] = []
        #: ``sio_pool``: the mempool of swap_iocbs.
        self.sio_pool: SioPool = SioPool(self)
        #: ``vm_event_states``: the /proc/vmstat swap counters and mTHP stats.
        self.vm_events = VmEvents()
        #: The one-slot registry of block-driver swap_ops (``swap_block_ops``).
        self.swap_block_ops: SwapBlockOps = SwapBlockOps()
        #: ``init_mm.mmlist``: the address spaces that have swapped (swapoff walks
        #: them; they stay listed, as the kernel's stay until ``mmput``).
        self.mmlist: list[AddressSpace] = []
        #: mm/swap_state.c's readahead state (``page_cluster``, hits, window).
        self.swap_readahead: SwapReadahead = SwapReadahead(page_cluster)
        #: ``totalram_pages()``: the machine's RAM, the base of zswap's
        #: ``max_pool_percent`` (4 GiB unless told).
        self.totalram_pages = totalram_pages
        #: mm/zswap.c's globals: parameters, pools, trees, LRU, debugfs counters.
        #: Off (``enabled`` N, as ``CONFIG_ZSWAP_DEFAULT_ON=n`` builds boot) until
        #: ``m.zswap.param_write("enabled", "Y")``: the swap path is unchanged till then.
        self.zswap: Zswap = Zswap(totalram_pages=totalram_pages)
        #: The CPU's data TLB size for each process's 4 KiB pages (``pyzram.mm.tlb``):
        #: what page aging sees of the accessed bits; 0 sets the bit on every access.
        if tlb_entries < 0:
            raise ValueError(f"the TLB size must not be negative, got {tlb_entries}")
        self.tlb_entries = tlb_entries
        #: Its entries for 2 MiB (PMD) mappings, if they are apart from the 4 KiB
        #: ones (None: a PMD mapping takes one of the ``tlb_entries``; 0: no
        #: 2 MiB translation is cached, each access sets the PMD's accessed bit).
        if tlb_2m_entries is not None and tlb_2m_entries < 0:
            raise ValueError(f"the TLB size must not be negative, got {tlb_2m_entries}")
        self.tlb_2m_entries = tlb_2m_entries
        #: The page allocator's free folios, a list per order (the per-CPU free
        #: lists): freed folios, page memory and all, which new folios of their
        #: order take, the last freed first (``free_unref_folios``,
        #: ``folio_alloc_mpol`` in ``pyzram.mm.folio``); ``nr_free_pages`` pages in all.
        from pyzram.mm.folio import MAX_FOLIO_ORDER

        self.free_pages: list[list[Folio]] = [[] for _ in range(MAX_FOLIO_ORDER + 1)]
        self.nr_free_pages = 0

    def active_areas(self) -> list[SwapInfo]:
        """The areas swapped on, by type."""
        return [si for si in self.swap_info if si is not None]

    def close(self) -> None:
        """Power off: release every area's device or file, empty the registry and
        give the free pages' memory back to the host.

        No page is brought back (that is ``swapoff``); the devices are left
        as they are, free to be reset, or swapped on by another machine.
        """
        from pyzram.mm.swapfile import release_swap_area

        for si in self.active_areas():
            release_swap_area(si)
        reg = self.swap_block_ops
        with reg.lock:
            reg.fops = reg.ops = None
        for free in self.free_pages:
            free.clear()
        self.nr_free_pages = 0

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        areas = ", ".join(f"{si.type}" for si in self.active_areas())
        return f"<Machine areas=[{areas}]>"


__all__ = ["Machine"]

"""Anonymous memory under a memcg limit: faults, LRU and reclaim through the swap core.

A model of mm/memory.c (``do_anonymous_page`` / ``alloc_anon_folio``,
``do_swap_page`` / ``alloc_swap_folio``), mm/memcontrol.c (the charge
against ``memory.max``), mm/vmscan.c (``shrink_folio_list``, active/inactive
aging), mm/huge_memory.c (``split_folio_to_list``) and mm/swap_state.c
(``swap_cluster_readahead``) — enough to drive real pages through swap on
zram the way the kernel (6.12 .. 6.18) does:

* a fault on a page never touched allocates a folio with the workload's
  bytes and charges it; over the limit, reclaim runs first.  With
  ``folio_order=K`` the fault allocates an order-K folio (2**K pages,
  naturally aligned) when the whole aligned range is untouched and inside
  the process, as ``alloc_anon_folio`` does for an enabled mTHP size (and
  the PMD fault path for K = 9); otherwise, or when the charge cannot
  succeed, an order-0 folio (``anon_fault_fallback``);
* reclaim isolates folios from the inactive tail until ``SWAP_CLUSTER_MAX``
  pages are taken (``isolate_lru_folios`` counts pages, so one 2 MiB folio
  is a batch on its own): referenced ones are activated (second chance),
  the others get swap slots (``folio_alloc_swap``), are unmapped (each PTE
  now holds its entry, ``swap_duplicate``), written out through **one**
  ``SwapIoCtx`` with ``swap_writeout`` and submitted once
  (``swap_write_submit``), then leave memory (``swap_cache_del_folio``) —
  or, if the write failed and re-dirtied them, stay in the swap cache and
  go back on the LRU.  A large folio for which ``folio_alloc_swap`` finds
  no free aligned run of 2**K slots in a cluster is split
  (``split_folio_to_list``: its order-0 pieces join the list being
  reclaimed, ``thp_swpout_fallback`` / mTHP ``swpout_fallback``) and the
  first piece is retried, as shrink_folio_list does since 6.10;
* a fault on a swapped page finds the folio in the swap cache (a large one
  is mapped whole, as do_swap_page does when every PTE of its range still
  holds its entries) or reads it: for ``SWP_SYNCHRONOUS_IO`` (zram) through
  a ctx submitted at once, with no readahead, as an order-K folio when K is
  an mTHP order (1..8), ``mthp_swapin`` is on and the aligned range is all
  swap entries of consecutive, equally zero-mapped, uncached slots
  (``alloc_swap_folio`` / ``can_swapin_thp``), else order 0 — PMD-size
  folios (K = 9) are always swapped in as order 0 pages, as in 6.18; for
  other devices through ``swap_cluster_readahead`` (order 0, page_cluster
  windows).  The PTEs drop their references and the slots are freed when
  no one else holds them (zram then frees its copies through
  ``slot_free_notify``).

Reclaim is a memcg limit reclaim as 6.18 does it without MGLRU:
``try_charge`` → ``try_to_free_mem_cgroup_pages`` (at least
``SWAP_CLUSTER_MAX`` pages) → ``do_try_to_free_pages``, priority 12 down
to 0 until enough is freed, each priority one ``shrink_node`` →
``prepare_scan_control`` + ``shrink_lruvec``: ``get_scan_count`` scans
``size >> priority`` pages times the anon share of
``calculate_pressure_balance`` (1/2, then 1/3 once reclaim has a cost:
there is no file LRU) in ``SWAP_CLUSTER_MAX`` bites.
``folio_check_references`` keeps a young folio once (``PG_referenced``,
back to the inactive head) and activates it on its second young scan.
The memcg's ``lruvec_page_state`` is the *flushed* rstat copy
(:meth:`MemCgroup.mem_cgroup_flush_stats`), and the model has no clock, so
nothing flushes it on its own: a memcg reads zeros — ``inactive_is_low``
is never true, ``may_deactivate`` stays clear, no refault is "recent" and
``lru_note_cost`` halves the cost at every note — as a fresh memcg on the
host does until the periodic flusher runs (every 2 s; the ``pyzram bench
run`` workloads take 0.03–0.5 s on the kernel).  So an activated folio
stays active (``pgdeactivate`` 0, unless a caller flushes), and
``workingset_refault`` counts every swap-in with a shadow
(``workingset_refault_anon``) without activating it.  A reclaim that frees
nothing with an active list skipped retries with ``force_deactivate``.

Simplified: one memcg, one mapping per folio (no fork, no shared memory), a
large folio is always mapped and unmapped as a whole (so no deferred split
of partially mapped folios), the accessed and dirty bits set by
:meth:`AddressSpace.touch` on a page walk of the model's TLB
(:mod:`pyzram.mm.tlb`: x86, where ``ptep_clear_flush_young`` does not flush,
so a hot page still cached in the TLB looks cold) and kept per folio
(``PTE_YOUNG``, ``PTE_DIRTY``: ``folio_referenced`` counts 0 or 1, also for
an mTHP folio whose several PTEs are young), no MGLRU, no VMA readahead, no
per-CPU charge stock or LRU batches, no periodic stats flush, no THP
shrinker/khugepaged.  Page tables are charged to the memcg as cgroup v1
counts them (a PTE table per 2 MiB and a PMD table per 1 GiB of the
mapping, on first use; the mapping starts 1 GiB-aligned), not freed before
the process.  A charge larger than the whole limit fails at once (the
kernel reclaims first, then fails the same way).  Per-page state is
numpy arrays (``pte_state``, ``pte_entry``); present folios are objects.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import cython
import numpy as np

from pyzram.lib.list import List, list_add_tail, list_del
from pyzram.mm.folio import (
    PAGE_SIZE,
    PAGE_SLICES,
    Folio,
    PG_dirty,
    PG_locked,
    PG_readahead,
    PG_swapcache,
    PG_uptodate,
    SwpEntry,
    folio_alloc,
    folio_alloc_mpol,
    free_unref_folios,
    swp_entry,
)
from pyzram.mm.mm_types import MmStruct
from pyzram.mm.page_io import swap_read_folio, swap_read_submit, swap_write_submit, swap_writeout
from pyzram.mm.swap import (
    PGACTIVATE,
    PGDEACTIVATE,
    PGFAULT,
    PGMAJFAULT,
    PGSCAN_ANON,
    PGSTEAL_ANON,
    SLABS_SCANNED,
    SWAP_CLUSTER_MAX,
    SWAP_RA,
    SWAP_RA_HIT,
    SWP_SYNCHRONOUS_IO,
    THP_FAULT_ALLOC,
    THP_FAULT_FALLBACK,
    THP_FAULT_FALLBACK_CHARGE,
    THP_SPLIT_PAGE,
    THP_SPLIT_PMD,
    THP_SWPOUT_FALLBACK,
    WORKINGSET_ACTIVATE_ANON,
    WORKINGSET_REFAULT_ANON,
    WORKINGSET_RESTORE_ANON,
    SwapIoCtx,
)
from pyzram.mm.swap_ops import SWAP_OPS_F_NOFS
from pyzram.mm.swapfile import (
    NO_SHADOW,
    SwapInfo,
    folio_alloc_swap,
    folio_free_swap,
    get_nr_swap_pages,
    swap_cache_alloc_folio,
    swap_cache_del_folio,
    swap_cache_get_folio,
    swap_duplicate,
    swap_free,
    swp_swap_info,
)
from pyzram.mm.tlb import Tlb
from pyzram.mm.zswap import zswap_shrinker_count, zswap_shrinker_scan

if TYPE_CHECKING:
    from pyzram.mm.machine import Machine

PTE_NONE = 0
PTE_PRESENT = 1
PTE_SWAP = 2

#: ``PG_referenced``: set by ``folio_check_references`` on a folio whose PTEs were
#: young, so that a second young scan activates it.
PG_referenced = 1 << 8
#: ``PG_active``: the folio belongs on the active list (``move_folios_to_lru``).
PG_active = 1 << 9
#: ``PG_workingset``: the folio was deactivated (or restored) while part of the
#: workingset; its shadow remembers it (``workingset_eviction``).
PG_workingset = 1 << 10
#: Our stand-in for the hardware accessed bit of the folio's PTEs (one per folio),
#: set by each page walk (a TLB miss, :mod:`pyzram.mm.tlb`) and tested and cleared
#: by ``folio_referenced``.
PTE_YOUNG = 1 << 11
#: The dirty bit of the folio's PTEs (one per folio): set by a write fault and by
#: a write's page walk; a TLB entry loaded while it was clear makes a write walk.
PTE_DIRTY = 1 << 12

# C-typed copies for the compiled access and reclaim paths (vmscan.pxd): each use
# a C load, not a module-global lookup and a boxed int.
_PTE_NONE = PTE_NONE
_PTE_PRESENT = PTE_PRESENT
_PTE_YOUNG = PTE_YOUNG
_PTE_DIRTY = PTE_DIRTY
_PTE_SWAP = PTE_SWAP
_PG_referenced = PG_referenced
_PG_active = PG_active
_PG_workingset = PG_workingset

# gfp_t bits that reclaim looks at (include/linux/gfp_types.h).
__GFP_IO = 1 << 6
__GFP_FS = 1 << 7
__GFP_DIRECT_RECLAIM = 1 << 10
__GFP_KSWAPD_RECLAIM = 1 << 11
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
_GFP_IO = __GFP_IO
_GFP_FS = __GFP_FS
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_NOIO = __GFP_RECLAIM

#: ``HPAGE_PMD_ORDER`` on x86-64 (2 MiB folios); orders 1..8 are mTHP sizes.
HPAGE_PMD_ORDER = 9
_HPAGE_PMD_ORDER = HPAGE_PMD_ORDER
#: ``PTRS_PER_PTE``: the pages one PTE table maps (x86-64, 4 KiB pages).
PTRS_PER_PTE = 512
#: The pages one PMD table maps (``PUD_SIZE`` / ``PAGE_SIZE``: 1 GiB).
PUD_NR_PAGES = 512 * 512
_PTRS_PER_PTE = PTRS_PER_PTE
_PUD_NR_PAGES = PUD_NR_PAGES

_ENTRY_SHIFT = 48
_OFFSET_MASK = (1 << _ENTRY_SHIFT) - 1


def mthp_size_name(order: int) -> str:
    """The sysfs directory of an order's stats: ``hugepages-64kB`` for order 4."""
    return f"hugepages-{(PAGE_SIZE << order) // 1024}kB"


class SwapReadahead:
    """The global readahead state of mm/swap_state.c: ``page_cluster`` (vm.page-cluster,
    default 3: windows of up to 8 pages), ``swapin_readahead_hits`` (starts at 4), the
    previous offset and window."""

    def __init__(self, page_cluster: int = 3) -> None:
        self.page_cluster = page_cluster
        self.hits = 4
        self.prev_offset = 0
        self.last_pages = 0

    def swapin_nr_pages(self, offset: int) -> int:
        """``swapin_nr_pages`` / ``__swapin_nr_pages``: the next window size."""
        max_pages = 1 << self.page_cluster
        if max_pages <= 1:
            return 1
        hits, self.hits = self.hits, 0
        pages = hits + 2
        if pages == 2:
            if offset not in (self.prev_offset + 1, self.prev_offset - 1):
                pages = 1
        else:
            roundup = 4
            while roundup < pages:
                roundup <<= 1
            pages = roundup
        pages = min(pages, max_pages)
        pages = max(pages, self.last_pages // 2)  # don't shrink readahead too fast
        if not hits:
            self.prev_offset = offset
        self.last_pages = pages
        return pages


class LruList(List):
    """One LRU list of a lruvec, linked through its folios as the kernel's is through
    ``folio->lru`` (:mod:`pyzram.lib.list`): ``oldest`` .. ``newest`` (the list head,
    the one added last), ``nr`` folios, and ``nr_pages``, the page count
    (``lruvec_page_state``) that the inactive/active balance compares.

    A folio on a list knows it (``folio.lru_list``); reclaim finds the PTEs
    that map it from the folio itself (``folio.mapping``, ``folio.index``).
    """

    def __init__(self) -> None:
        List.__init__(self)
        self.nr_pages = 0

    @cython.locals(folio=Folio)
    def add(self, folio: Folio) -> None:
        """``lruvec_add_folio``: at the head (a folio already on this list keeps its
        place)."""
        if folio.lru_list is self:
            return
        if folio.lru_list is not None:
            raise RuntimeError(f"{folio!r} is on another LRU list")
        list_add_tail(self, folio)
        self.nr_pages += folio.nr_pages

    @cython.locals(folio=Folio)
    def remove(self, folio: Folio) -> bool:
        """``lruvec_del_folio`` if the folio is on this list; whether it was."""
        if folio.lru_list is not self:
            return False
        self._del(folio)
        return True

    @cython.locals(folio=Folio)
    def pop_tail(self) -> Folio:
        """The oldest folio, taken off the list (``lru_to_folio`` + delete)."""
        folio = cython.cast(Folio, self.oldest)
        if folio is None:
            raise IndexError("pop_tail of an empty LRU list")
        self._del(folio)
        return folio

    def _del(self, folio: Folio) -> None:
        """``lruvec_del_folio``: ``list_del`` and the page count."""
        list_del(self, folio)
        self.nr_pages -= folio.nr_pages

    def __contains__(self, folio: object) -> bool:
        return isinstance(folio, Folio) and folio.lru_list is self


class MemCgroup:
    """One memory cgroup of a machine: ``memory.max`` in pages, its usage and anon LRU.

    The lists' exact page counts (``lruvec_lru_size``, what the scan targets
    use) are ``inactive.nr_pages`` / ``active.nr_pages``; ``stats`` is the
    memcg's *flushed* ``lruvec_stats`` (what ``lruvec_page_state`` reads:
    ``inactive_is_low``, ``prepare_scan_control``'s refault check,
    ``workingset_test_recent`` and ``lru_note_cost``'s decay), which only
    :meth:`mem_cgroup_flush_stats` brings up to date — a new memcg reads
    zeros until then (see the module docstring).  ``swappiness`` is
    ``memory.swappiness`` (100, as ``pyzram bench run`` sets on the host).

    ``nr_reclaim_batches`` counts the ``shrink_folio_list`` calls (reclaim
    batches), which callers use to pace periodic work.
    """

    def __init__(self, machine: Machine, limit_pages: int, swappiness: int = 100) -> None:
        if limit_pages < SWAP_CLUSTER_MAX:
            raise ValueError(f"memcg limit below {SWAP_CLUSTER_MAX} pages cannot make progress")
        self.machine = machine
        self.limit_pages = limit_pages
        self.swappiness = swappiness
        self.usage = 0
        self.inactive = LruList()
        self.active = LruList()
        self.nr_reclaim_batches = 0
        #: ``lruvec->anon_cost`` (``lru_note_cost``); there is no file LRU, so no file cost.
        self.anon_cost = 0
        #: ``lruvec->nonresident_age``: evictions and activations (``workingset_age_nonresident``).
        self.nonresident_age = 0
        #: The exact ``WORKINGSET_ACTIVATE_ANON`` of this memcg (pending until a flush).
        self.workingset_activate_anon = 0
        #: ``lruvec_stats->state`` as of the last flush (``lruvec_page_state``).
        self.stats = {"nr_inactive_anon": 0, "nr_active_anon": 0, "workingset_activate_anon": 0}
        #: ``target_lruvec->refaults[WORKINGSET_ANON]`` (``snapshot_refaults``).
        self.refaults_anon = 0

    # -- charging ----------------------------------------------------------------

    def try_charge(self, nr: int = 1, gfp_mask: int = GFP_KERNEL) -> None:
        """``try_charge_memcg``: reclaim until ``nr`` more pages fit, else ``ENOMEM``.

        Each round is one ``try_to_free_mem_cgroup_pages(nr)`` (at least
        ``SWAP_CLUSTER_MAX`` pages, the priority loop of
        ``do_try_to_free_pages``).  Gives up after 5 rounds in a row that
        free nothing (the kernel's retries, then OOM), and at once when
        ``nr`` exceeds the whole limit.
        """
        if nr > self.limit_pages:
            raise OSError(errno.ENOMEM, f"memcg charge of {nr} pages exceeds the limit")
        retries = 5
        while self.usage + nr > self.limit_pages:
            if not try_to_free_mem_cgroup_pages(self, nr, gfp_mask):
                retries -= 1
                if retries < 0:
                    raise OSError(errno.ENOMEM, "memcg OOM: nothing left to reclaim")
        self.usage += nr

    def uncharge(self, nr: int = 1) -> None:
        self.usage -= nr

    # -- statistics ----------------------------------------------------------------

    def mem_cgroup_flush_stats(self) -> None:
        """``css_rstat_flush``: bring ``stats`` (``lruvec_stats``) up to date.

        The kernel flushes from its periodic worker (``flush_memcg_stats_dwork``,
        every ``FLUSH_TIME`` = 2 s), when a reader asks (``memory.stat``) and,
        ratelimited, in reclaim when that worker is 4 s late; the model has no
        clock, so only callers flush (see the module docstring).
        """
        self.stats["nr_inactive_anon"] = self.inactive.nr_pages
        self.stats["nr_active_anon"] = self.active.nr_pages
        self.stats["workingset_activate_anon"] = self.workingset_activate_anon

    # -- LRU -------------------------------------------------------------------------

    @cython.locals(folio=Folio)
    def lru_add(self, folio: Folio) -> None:
        """``folio_add_lru`` / ``lruvec_add_folio``: on the list ``PG_active`` names
        (new anon folios are not active: they start on the inactive list)."""
        folio.memcg = self  # commit_charge: the folio's memcg (zswap's LRU follows it)
        if folio.flags & _PG_active:
            self.active.add(folio)
        else:
            self.inactive.add(folio)

    @cython.locals(folio=Folio)
    def lru_del(self, folio: Folio) -> None:
        """Take a folio off whichever list holds it (``folio_isolate_lru``)."""
        if not self.inactive.remove(folio):
            self.active.remove(folio)

    def inactive_is_low(self) -> bool:
        """``inactive_is_low`` of the anon lists: ``inactive * inactive_ratio < active``
        (``inactive_ratio`` is ``int_sqrt(10 * GiB)``, 1 below 1 GiB), from the
        flushed ``lruvec_page_state`` — all zero, so never low, until a flush."""
        inactive = self.stats["nr_inactive_anon"]
        active = self.stats["nr_active_anon"]
        gb = (inactive + active) >> 18
        ratio = math.isqrt(10 * gb) if gb else 1
        return inactive * ratio < active

    def lru_note_cost(self, nr_io: int, nr_rotated: int) -> None:
        """``lru_note_cost_unlock_irq`` (anon): add ``nr_io * SWAP_CLUSTER_MAX +
        nr_rotated`` to ``anon_cost``; halve the costs once they pass a quarter of
        the LRU's size (flushed ``lruvec_page_state``: with stale zeros, every time)."""
        cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated
        if not cost:
            return
        self.anon_cost += cost
        lrusize = self.stats["nr_inactive_anon"] + self.stats["nr_active_anon"]
        if self.anon_cost > lrusize // 4:
            self.anon_cost //= 2


#: ``DEF_PRIORITY``: the first (lightest) pass of ``do_try_to_free_pages``.
DEF_PRIORITY = 12
#: ``MAX_SWAPPINESS``.
MAX_SWAPPINESS = 200
#: ``sc->may_deactivate`` bits.
DEACTIVATE_ANON = 1
DEACTIVATE_FILE = 2


class ScanControl:
    """``struct scan_control`` of one memcg limit reclaim (the fields the model uses)."""

    __slots__ = (
        "anon_cost",
        "force_deactivate",
        "gfp_mask",
        "may_deactivate",
        "nr_reclaimed",
        "nr_to_reclaim",
        "priority",
        "skipped_deactivate",
    )

    def __init__(self, nr_to_reclaim: int, gfp_mask: int) -> None:
        self.nr_to_reclaim = nr_to_reclaim
        self.gfp_mask = gfp_mask
        self.priority = DEF_PRIORITY
        self.nr_reclaimed = 0
        self.may_deactivate = 0
        self.force_deactivate = False
        self.skipped_deactivate = False
        self.anon_cost = 0


def try_to_free_mem_cgroup_pages(
    memcg: MemCgroup, nr_pages: int, gfp_mask: int = GFP_KERNEL
) -> int:
    """``try_to_free_mem_cgroup_pages``: reclaim at least ``max(nr_pages,
    SWAP_CLUSTER_MAX)`` pages from the memcg at falling priorities; pages freed."""
    sc = ScanControl(max(nr_pages, SWAP_CLUSTER_MAX), gfp_mask)
    return do_try_to_free_pages(memcg, sc)


def do_try_to_free_pages(memcg: MemCgroup, sc: ScanControl) -> int:
    """``do_try_to_free_pages``: ``shrink_node`` at priority 12, 11 .. 0 until
    ``nr_to_reclaim`` pages are freed; then ``snapshot_refaults``.  If nothing was
    freed and an active list was skipped (``may_deactivate`` unset), once more
    from priority 12 with ``force_deactivate``."""
    while True:
        while True:
            shrink_node(memcg, sc)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
            sc.priority -= 1
            if sc.priority < 0:
                break
        memcg.refaults_anon = memcg.stats["workingset_activate_anon"]  # snapshot_refaults
        if sc.nr_reclaimed:
            return sc.nr_reclaimed
        if not sc.skipped_deactivate:
            return 0
        sc.priority = DEF_PRIORITY
        sc.force_deactivate = True
        sc.skipped_deactivate = False


def prepare_scan_control(memcg: MemCgroup, sc: ScanControl) -> None:
    """``prepare_scan_control``: the anon cost, and whether the active anon list may
    be aged: when refaults were seen since the last reclaim (``WORKINGSET_ACTIVATE_ANON``
    against ``refaults[]``) or the inactive list is low — both from flushed stats."""
    sc.anon_cost = memcg.anon_cost
    if sc.force_deactivate:
        sc.may_deactivate = DEACTIVATE_ANON | DEACTIVATE_FILE
        return
    refaults = memcg.stats["workingset_activate_anon"]
    if refaults != memcg.refaults_anon or memcg.inactive_is_low():
        sc.may_deactivate |= DEACTIVATE_ANON
    else:
        sc.may_deactivate &= ~DEACTIVATE_ANON
    sc.may_deactivate &= ~DEACTIVATE_FILE  # no file LRU: never low, no refaults


def shrink_node(memcg: MemCgroup, sc: ScanControl) -> None:
    """``shrink_node`` → ``shrink_node_memcgs`` for a memcg limit reclaim: one memcg
    (the target, a leaf), one node — ``prepare_scan_control``, ``shrink_lruvec``,
    then the memcg's shrinkers at this priority (``shrink_slab``)."""
    prepare_scan_control(memcg, sc)
    shrink_lruvec(memcg, sc)
    shrink_slab(memcg, sc.priority)


def get_scan_count(memcg: MemCgroup, sc: ScanControl) -> tuple[int, int]:
    """``get_scan_count``: pages to scan on the inactive and the active anon list.

    No anon scan without free swap (``can_reclaim_anon_pages``) or with
    swappiness 0; at priority 0 every page (``SCAN_EQUAL``); otherwise
    ``SCAN_FRACT``: ``size >> priority`` times the anon share of
    ``calculate_pressure_balance`` (the file cost is 0 here, so the share is
    1/2 with no anon cost and falls to 1/3 as it grows).  No file LRU, so the
    file targets are 0 (and ``cache_trim_mode`` / ``file_is_tiny`` never apply).
    """
    swappiness = memcg.swappiness
    if not swappiness or get_nr_swap_pages(memcg.machine) <= 0:
        return 0, 0
    inactive = memcg.inactive.nr_pages >> sc.priority
    active = memcg.active.nr_pages >> sc.priority
    if not sc.priority:
        return inactive, active
    total = sc.anon_cost  # + file_cost (0)
    anon_cost = total + sc.anon_cost
    file_cost = total
    total = anon_cost + file_cost
    ap = swappiness * (total + 1) // (anon_cost + 1)
    fp = (MAX_SWAPPINESS - swappiness) * (total + 1) // (file_cost + 1)
    return inactive * ap // (ap + fp), active * ap // (ap + fp)


def shrink_lruvec(memcg: MemCgroup, sc: ScanControl) -> None:
    """``shrink_lruvec`` (no MGLRU): scan the targets of ``get_scan_count`` in
    ``SWAP_CLUSTER_MAX`` bites while the inactive target lasts, the active list
    only where ``may_deactivate`` allows (else ``skipped_deactivate``); stop once
    this call freed ``nr_to_reclaim`` (with no file LRU the proportional
    adjustment ends the loop); then age the anon lists if ``inactive_is_low``."""
    nr_inactive, nr_active = get_scan_count(memcg, sc)
    nr_reclaimed = 0
    while nr_inactive:
        nr = min(nr_inactive, SWAP_CLUSTER_MAX)
        nr_inactive -= nr
        nr_reclaimed += shrink_inactive_list(memcg, nr, sc.gfp_mask)
        if nr_active:
            nr = min(nr_active, SWAP_CLUSTER_MAX)
            nr_active -= nr
            if sc.may_deactivate & DEACTIVATE_ANON:
                shrink_active_list(memcg, nr)
            else:
                sc.skipped_deactivate = True
        if nr_reclaimed >= sc.nr_to_reclaim:
            break  # !nr_file: "It's just vindictive to attack the larger ..."
    sc.nr_reclaimed += nr_reclaimed
    if get_nr_swap_pages(memcg.machine) > 0 and memcg.inactive_is_low():  # can_age_anon_pages
        shrink_active_list(memcg, SWAP_CLUSTER_MAX)


#: ``DEFAULT_SEEKS`` (zswap's shrinker) and ``SHRINK_BATCH``.
DEFAULT_SEEKS = 2
SHRINK_BATCH = 128
#: ``SHRINK_STOP``: the scan callback's "no more now".
SHRINK_STOP = -1


def shrink_slab(memcg: MemCgroup, priority: int = DEF_PRIORITY) -> int:
    """``shrink_slab`` for a memcg: its memcg-aware shrinkers; objects freed.

    The machine has one, zswap's (``zswap_shrinker_count`` /
    ``zswap_shrinker_scan``: it writes entries of the memcg's zswap LRU back
    to the swap area; it counts nothing unless ``shrinker_enabled``).
    ``do_shrink_slab``: ``(freeable >> priority) * 4 / seeks`` objects plus
    the deferred work are scanned in batches of ``SHRINK_BATCH``; what is
    not scanned is deferred to the next call.
    """
    m = memcg.machine
    zs = m.zswap
    freeable = zswap_shrinker_count(m, memcg)
    if not freeable:
        return 0
    nr = zs.shrinker_nr_deferred.pop(memcg, 0)  # xchg_nr_deferred
    delta = (freeable >> priority) * 4 // DEFAULT_SEEKS
    total_scan = min((nr >> priority) + delta, 2 * freeable)
    freed = scanned = 0
    while total_scan >= SHRINK_BATCH or total_scan >= freeable:
        nr_to_scan = min(SHRINK_BATCH, total_scan)
        ret = zswap_shrinker_scan(m, memcg, nr_to_scan)
        if ret == SHRINK_STOP:
            break
        freed += ret
        m.vm_events.count(SLABS_SCANNED, nr_to_scan)
        total_scan -= nr_to_scan
        scanned += nr_to_scan
    next_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
    if next_deferred:
        zs.shrinker_nr_deferred[memcg] = next_deferred
    return freed


def shrink_active_list(memcg: MemCgroup, nr: int) -> None:
    """``shrink_active_list``: isolate folios of ``nr`` pages from the active tail and
    deactivate them all (``folio_referenced`` clears their young bits; referenced
    anon folios are not kept active, only executable file ones are): ``PG_active``
    cleared, ``PG_workingset`` set, ``pgdeactivate``.  ``pgrefill`` is not counted
    for a memcg's reclaim (``cgroup_reclaim``)."""
    moved = 0
    taken = 0
    while taken < nr and len(memcg.active):
        folio = memcg.active.pop_tail()
        taken += folio.nr_pages
        folio.clear(PTE_YOUNG | PG_active)  # folio_referenced; folio_clear_active
        folio.set(PG_workingset)
        memcg.inactive.add(folio)
        moved += folio.nr_pages
    if moved:
        memcg.machine.vm_events.count(PGDEACTIVATE, moved)


def isolate_lru_folios(memcg: MemCgroup, nr: int) -> list[Folio]:
    """``isolate_lru_folios``: folios of about ``nr`` pages off the inactive tail
    (``pgscan_anon``); pages are counted, so one 2 MiB folio is a batch alone."""
    folio_list: list[Folio] = []
    taken = 0
    while taken < nr and len(memcg.inactive):
        folio = memcg.inactive.pop_tail()
        folio_list.append(folio)
        taken += folio.nr_pages
    memcg.machine.vm_events.count(PGSCAN_ANON, taken)
    return folio_list


def move_folios_to_lru(memcg: MemCgroup, folio_list: list[Folio]) -> None:
    """``move_folios_to_lru``: put back what reclaim kept, each on its list; an active
    one ages the non-resident clock (``workingset_age_nonresident``)."""
    for folio in folio_list:
        memcg.lru_add(folio)
        if folio.flags & PG_active:
            memcg.nonresident_age += folio.nr_pages
    folio_list.clear()


class ReclaimStat:
    """``struct reclaim_stat``: what one ``shrink_folio_list`` pass did, in pages."""

    __slots__ = ("nr_activate", "nr_pageout", "nr_ref_keep")

    def __init__(self) -> None:
        self.nr_activate = 0
        self.nr_pageout = 0
        self.nr_ref_keep = 0


def shrink_inactive_list(memcg: MemCgroup, nr: int, gfp_mask: int = GFP_KERNEL) -> int:
    """``shrink_inactive_list``: isolate, ``shrink_folio_list``, put back; pages freed.

    Counts ``pgscan_anon`` / ``pgsteal_anon`` (not ``pgscan_direct`` /
    ``pgsteal_direct``: a memcg's reclaim is not counted there) and notes the
    cost (``lru_note_cost``: pages written and pages scanned but not freed).
    """
    memcg.nr_reclaim_batches += 1
    folio_list = isolate_lru_folios(memcg, nr)
    nr_scanned = 0
    for folio in folio_list:
        nr_scanned += folio.nr_pages
    stat = ReclaimStat()
    freed = shrink_folio_list(memcg.machine, folio_list, gfp_mask, stat)
    move_folios_to_lru(memcg, folio_list)
    memcg.lru_note_cost(stat.nr_pageout, nr_scanned - freed)
    memcg.machine.vm_events.count(PGSTEAL_ANON, freed)
    return freed


@cython.locals(folio=Folio, piece=Folio)
def split_folio_to_list(folio: Folio) -> list[Folio]:
    """``split_folio_to_list`` of a locked, mapped, not-yet-swapped large folio.

    Returns its order-0 pieces, the first one (the head) still locked, the
    others unlocked; each PTE now maps its piece (``mapping`` and ``index``
    each piece's own).  Counts
    ``thp_split_page`` for a PMD-size folio, and ``thp_split_pmd`` for its PMD
    mapping, which ``unmap_folio`` splits first (``TTU_SPLIT_HUGE_PMD``), and
    the mTHP ``split`` stat.
    """
    if not folio.test(PG_locked) or folio.swap is not None:
        raise RuntimeError("split_folio_to_list needs a locked folio outside the swap cache")
    mm, base = folio.mapping, folio.index
    flags = folio.flags & ~PG_locked
    pieces: list[Folio] = []
    for j in range(folio.nr_pages):
        piece = folio_alloc(0, folio.page(j))
        piece.flags = flags
        piece.memcg = folio.memcg
        piece.mapping = mm
        piece.index = base + j
        mm.present[base + j] = piece
        pieces.append(piece)
    pieces[0].lock()
    vm_events = mm.machine.vm_events
    if folio.order == _HPAGE_PMD_ORDER:
        vm_events.count(THP_SPLIT_PMD)
        vm_events.count(THP_SPLIT_PAGE)
    vm_events.count_mthp(folio.order, "split")
    folio.unlock()
    return pieces


def _alloc_swap_or_split(m: Machine, folio: Folio, batch: list[Folio]) -> Folio:
    """The ``folio_alloc_swap`` step of shrink_folio_list for a locked folio.

    A large folio that gets no slots is split (its tail pieces are appended
    to ``batch``, to be reclaimed in this same pass) and its head retried.
    Returns the folio now in hand (the head after a split, still locked),
    which has slots (``folio.swap``) or none.
    """
    try:
        folio_alloc_swap(m, folio)
        return folio
    except OSError:
        if folio.order == 0:
            return folio
    order = folio.order
    pieces = split_folio_to_list(folio)
    if order == _HPAGE_PMD_ORDER:
        m.vm_events.count(THP_SWPOUT_FALLBACK)
    m.vm_events.count_mthp(order, "swpout_fallback")
    batch.extend(pieces[1:])
    head = pieces[0]
    try:
        folio_alloc_swap(m, head)
    except OSError:
        pass
    return head


def may_enter_fs(m: Machine, folio: Folio, gfp_mask: int) -> bool:
    """``may_enter_fs``: may reclaim write this folio with ``gfp_mask``?

    Always with ``__GFP_FS``; never without ``__GFP_IO`` or outside the swap
    cache; otherwise only if the area's ops do not enter the filesystem
    (``SWAP_OPS_F_NOFS``, where mainline tests ``SWP_FS_OPS``).
    """
    if gfp_mask & _GFP_FS:
        return True
    if not folio.flags & PG_swapcache or not gfp_mask & _GFP_IO:
        return False
    ops = swp_swap_info(m, folio.swap).ops
    return not (ops is not None and ops.flags & SWAP_OPS_F_NOFS)


#: ``enum folio_references``.
FOLIOREF_RECLAIM = 0
FOLIOREF_KEEP = 1
FOLIOREF_ACTIVATE = 2


def folio_check_references(folio: Folio) -> int:
    """``folio_check_references`` for a mapped anon folio (no MGLRU).

    ``folio_referenced`` tests and clears the young bit of its PTEs (one
    stand-in bit per folio here), and ``PG_referenced`` is tested and
    cleared.  Young: ``PG_referenced`` is set again and the folio is
    activated only if it had been set already (a second young scan, or
    ``referenced_ptes > 1``), else kept on the inactive list for another
    trip (``FOLIOREF_KEEP``) — a new folio's first scan always finds the
    young bit of its own fault.  Not young: reclaimed (an anon folio is
    never ``FOLIOREF_RECLAIM_CLEAN``).
    """
    referenced_ptes = folio.flags & _PTE_YOUNG
    referenced_folio = folio.flags & _PG_referenced
    folio.clear(_PTE_YOUNG | _PG_referenced)
    if referenced_ptes:
        folio.set(_PG_referenced)
        if referenced_folio:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    return FOLIOREF_RECLAIM


def pack_shadow(eviction: int, workingset: bool) -> int:
    """``pack_shadow``: the eviction clock and ``PG_workingset`` in one value, as the
    kernel stores a shadow in the swap cache's xarray (``xa_mk_value``).

    Simplified: no memcg id and node id fields (one memcg, one node) and no
    ``EVICTION_MASK`` / ``bucket_order`` truncation (the model's clock never
    wraps), so ``unpack_shadow`` gives back exactly what was packed.
    """
    return eviction << 1 | workingset


def unpack_shadow(shadow: int) -> tuple[int, bool]:
    """``unpack_shadow``: ``(eviction, workingset)`` of a packed shadow."""
    return shadow >> 1, bool(shadow & 1)


def workingset_eviction(memcg: MemCgroup, folio: Folio) -> int:
    """``workingset_eviction`` of a reclaimed swap-cache folio (``__remove_mapping``):
    the shadow, the memcg's ``nonresident_age`` and ``PG_workingset`` packed, that
    ``swap_cache_del_folio`` leaves in each of its slots; the clock then ages by its
    pages."""
    shadow = pack_shadow(memcg.nonresident_age, folio.flags & _PG_workingset != 0)
    memcg.nonresident_age += folio.nr_pages
    return shadow


def shrink_folio_list(
    m: Machine,
    folio_list: list[Folio],
    gfp_mask: int = GFP_KERNEL,
    stat: ReclaimStat | None = None,
) -> int:
    """``shrink_folio_list``: reclaim the isolated folios of ``folio_list``; pages freed.

    Each folio's PTEs are found from ``folio.mapping`` and ``folio.index``
    (the rmap walk of ``try_to_unmap``).  Each locked
    folio's references decide (``folio_check_references``): activated
    (``PG_active``, ``pgactivate``), kept for another trip, or reclaimed:
    it gets swap slots (split first if a large folio gets none), is
    unmapped (each PTE takes its entry), written out through one
    ``SwapIoCtx`` and, once the batch is submitted, leaves the swap cache
    (its shadow stays, ``workingset_eviction``) and memory, uncharged.
    What is not freed is left in ``folio_list`` for ``move_folios_to_lru``,
    as in the kernel.  Dirty folios that ``may_enter_fs`` refuses stay
    (``keep_locked``): the swap cache holds them until a later pass.
    ``stat`` (``struct reclaim_stat``) receives the pages activated, kept
    by their references and written.
    """
    if stat is None:
        stat = ReclaimStat()
    batch = list(folio_list)
    folio_list.clear()
    ctx = SwapIoCtx(m)
    written: list[Folio] = []
    nr_activate = 0
    i = 0
    while i < len(batch):  # split_folio_to_list appends to the batch as we go
        folio = batch[i]
        i += 1
        if not folio.trylock():  # under I/O (a readahead not yet read): keep it
            folio_list.append(folio)
            continue
        references = folio_check_references(folio)
        if references == FOLIOREF_ACTIVATE:  # activate_locked
            folio.unlock()
            folio.set(_PG_active)
            folio_list.append(folio)
            nr_activate += folio.nr_pages
            continue
        if references == FOLIOREF_KEEP:  # keep_locked
            folio.unlock()
            folio_list.append(folio)
            stat.nr_ref_keep += folio.nr_pages
            continue
        if folio.swap is None:
            folio = _alloc_swap_or_split(m, folio, batch)
            if folio.swap is None:  # no swap space: keep it (activate_locked)
                folio.unlock()
                folio.set(_PG_active)
                folio_list.append(folio)
                nr_activate += folio.nr_pages
                continue
        mm, vpn = folio.mapping, folio.index
        if mm.pte[vpn] == _PTE_PRESENT:  # try_to_unmap: the PTEs take the entries
            swap_duplicate(m, folio.swap, folio.nr_pages)
            mm.unmap(vpn, folio)
            folio.mark_dirty()  # the page may differ from any copy in swap
        elif not folio.test(PG_dirty):  # clean swap cache (readahead): swap holds it
            folio.unlock()
            written.append(folio)
            continue
        if not may_enter_fs(m, folio, gfp_mask):  # keep_locked
            folio.unlock()
            folio_list.append(folio)
            continue
        stat.nr_pageout += folio.nr_pages
        swap_writeout(ctx, folio)  # unlocks
        written.append(folio)
    swap_write_submit(ctx)
    if nr_activate:
        stat.nr_activate += nr_activate
        m.vm_events.count(PGACTIVATE, nr_activate)
    freed = 0
    free_folios: list[Folio] = []
    for folio in written:
        folio.lock()
        if folio.test(PG_dirty) and folio.swap is not None:  # the write failed: retry later
            folio.unlock()
            folio_list.append(folio)
            continue
        memcg = folio.memcg
        if folio.swap is not None:  # __remove_mapping
            swap_cache_del_folio(m, folio, workingset_eviction(memcg, folio))
        folio.unlock()
        memcg.uncharge(folio.nr_pages)
        freed += folio.nr_pages
        free_folios.append(folio)
    free_unref_folios(m, free_folios)
    return freed


def workingset_refault(memcg: MemCgroup, folio: Folio) -> None:
    """``swap_cache_get_shadow`` + ``workingset_refault`` for a folio just added to the
    swap cache for its swap-in (``folio.swap``): if its first slot held a shadow, count
    ``workingset_refault_anon`` and activate the folio when ``workingset_test_recent``
    finds the refault distance (``nonresident_age`` now minus at eviction) within the
    workingset (the active anon pages, while swap is free — flushed stats, so 0 until
    a flush); a folio that was in the workingset is restored (``PG_workingset``).
    The shadows are consumed (the folio takes their slots in the swap cache)."""
    nr = folio.nr_pages
    si = swp_swap_info(memcg.machine, folio.swap)
    off = folio.swap.offset
    shadow = si.shadows[off]
    for j in range(nr):
        si.shadows[off + j] = NO_SHADOW
    if shadow == NO_SHADOW:
        return
    vm_events = memcg.machine.vm_events
    vm_events.count(WORKINGSET_REFAULT_ANON, nr)
    eviction, workingset = unpack_shadow(shadow)
    workingset_size = 0
    if get_nr_swap_pages(memcg.machine) > 0:  # mem_cgroup_get_nr_swap_pages
        workingset_size = memcg.stats["nr_active_anon"]
    if memcg.nonresident_age - eviction > workingset_size:
        return
    folio.set(_PG_active)
    memcg.nonresident_age += nr  # workingset_age_nonresident
    memcg.workingset_activate_anon += nr
    vm_events.count(WORKINGSET_ACTIVATE_ANON, nr)
    if workingset:
        folio.set(_PG_workingset)
        memcg.lru_note_cost(nr, 0)  # lru_note_cost_refault
        vm_events.count(WORKINGSET_RESTORE_ANON, nr)


class AddressSpace(MmStruct):
    """``struct mm_struct`` of one process: ``nr_pages`` anonymous pages.

    ``source(vpn)`` gives the bytes a page holds when first touched (the
    workload's memory contents: 4096 bytes, any bytes-like object).
    ``folio_order`` is the folio size anonymous faults try (the one enabled
    mTHP/THP size); ``mthp_swapin`` lets synchronous swap-in bring an mTHP
    order back whole (the 6.12+ ``alloc_swap_folio`` path; it uses the same
    per-size ``enabled`` setting as faults, so it is on by default).
    """

    def __init__(
        self,
        nr_pages: int,
        memcg: MemCgroup,
        source: Callable[[int], bytes | bytearray | memoryview | np.ndarray],
        *,
        folio_order: int = 0,
        mthp_swapin: bool = True,
    ) -> None:
        if not 0 <= folio_order <= _HPAGE_PMD_ORDER:
            raise ValueError(f"folio order {folio_order} out of range 0..{_HPAGE_PMD_ORDER}")
        self.nr_pages = nr_pages
        self.memcg = memcg
        #: The machine this process runs on (its memcg's).
        self.machine: Machine = memcg.machine
        self.on_mmlist = False
        self.source = source
        self.folio_order = folio_order
        self.mthp_swapin = mthp_swapin
        self.pte_state = np.zeros(nr_pages, dtype=np.uint8)
        self.pte_entry = np.zeros(nr_pages, dtype=np.int64)  # type << 48 | offset
        # memoryviews of the same arrays: one page at a time, Python ints, ~3x faster
        self.pte = memoryview(self.pte_state)
        self.pte_raw = memoryview(self.pte_entry)
        #: The folio each present PTE maps (``pte_page``), None elsewhere.
        self.present: list[Folio | None] = [None] * nr_pages
        #: The translations the CPU has cached for this process (``pyzram.mm.tlb``),
        #: and those of its 2 MiB (PMD) mappings: the same TLB unless the machine's
        #: CPU keeps them apart (``Machine.tlb_2m_entries``).
        self.tlb = Tlb(self.machine.tlb_entries, nr_pages)
        tlb_2m = self.machine.tlb_2m_entries
        self.tlb_2m = self.tlb if tlb_2m is None else Tlb(tlb_2m, nr_pages)
        #: Which PTE tables (one per PMD_SIZE of pages) and PMD tables (one per
        #: PUD_SIZE) exist; ``pgtables`` counts them (``mm->pgtables_bytes`` / 4096).
        self.pte_tables = bytearray((nr_pages + PTRS_PER_PTE - 1) // PTRS_PER_PTE)
        self.pmd_tables = bytearray((nr_pages + PUD_NR_PAGES - 1) // PUD_NR_PAGES)
        self.pgtables = 0

    @cython.locals(folio=Folio)
    def _flush_folio(self, base: int, folio: Folio) -> None:
        """``flush_tlb_one_user`` of each page of ``folio`` mapped at ``base`` (one
        entry for a PMD mapping): its PTEs are being cleared."""
        if folio.order == _HPAGE_PMD_ORDER:
            self.tlb_2m.flush_tlb_one_user(base)
            return
        for j in range(folio.nr_pages):
            self.tlb.flush_tlb_one_user(base + j)

    @cython.locals(folio=Folio)
    def unmap(self, base: int, folio: Folio) -> None:
        """``try_to_unmap`` of a folio mapped at ``base``: each PTE takes its slot's entry
        (and the area's reverse map, ``SwapInfo.rmap_mm``, the PTE)."""
        entry = folio.swap
        nr = folio.nr_pages
        off = entry.offset
        raw = entry.type << _ENTRY_SHIFT | off
        si = swp_swap_info(self.machine, entry)
        if not self.on_mmlist:  # try_to_unmap_one: list_add(&mm->mmlist, &init_mm.mmlist)
            self.on_mmlist = True
            self.machine.mmlist.append(self)
        if folio.order == _HPAGE_PMD_ORDER:
            # reclaim's TTU_SPLIT_HUGE_PMD: the PMD mapping becomes a PTE table
            # (split_huge_pmd_locked), whose PTEs then take the entries
            self.machine.vm_events.count(THP_SPLIT_PMD)
        self._flush_folio(base, folio)  # ptep_clear_flush
        folio.clear(_PTE_DIRTY)  # the PTE's dirty bit went to the folio with it
        if nr == 1:
            self.pte[base] = _PTE_SWAP
            self.pte_raw[base] = raw
            self.present[base] = None
            si.rmap_mm[off] = self
            si.rmap_vpn[off] = base
            return
        self.pte_state[base : base + nr] = PTE_SWAP
        self.pte_entry[base : base + nr] = np.arange(raw, raw + nr, dtype=np.int64)
        for j in range(nr):
            self.present[base + j] = None
            si.rmap_mm[off + j] = self
            si.rmap_vpn[off + j] = base + j

    @cython.locals(folio=Folio, state=cython.int, key=cython.long, tlb=Tlb)
    def touch(
        self, vpn: int, write: bool = False, data: bytes | memoryview | np.ndarray | None = None
    ) -> Folio:
        """An access to page ``vpn``: a hit, or a minor/major fault; returns the folio.

        ``data`` (4096 bytes) is stored into the page (a write).
        """
        state = self.pte[vpn]
        if state == _PTE_PRESENT:
            folio = self.present[vpn]
        elif state == _PTE_NONE:
            folio = self.do_anonymous_page(vpn)
            folio.set(_PTE_DIRTY)  # a write fault: the new PTE is dirty
        else:
            folio = self.do_swap_page(vpn)
        write = data is not None
        if folio.order == _HPAGE_PMD_ORDER:  # one translation for the PMD mapping
            tlb = self.tlb_2m
            key = vpn & ~((1 << _HPAGE_PMD_ORDER) - 1)
        else:
            tlb = self.tlb
            key = vpn
        if not tlb.hit(key, write):  # the page walk sets the accessed bit
            folio.set(_PTE_YOUNG | _PTE_DIRTY if write else _PTE_YOUNG)
            tlb.fill(key, folio.test(_PTE_DIRTY))
        if data is not None:
            if folio.order:
                folio.page(vpn & (folio.nr_pages - 1))[:] = data
            else:
                memoryview(folio.data)[:] = data
        return folio

    def read(self, vpn: int) -> bytes:
        """The bytes of page ``vpn`` (faulting it in if needed)."""
        folio = self.touch(vpn)
        if folio.order:
            return bytes(folio.page(vpn & (folio.nr_pages - 1)))
        return bytes(folio.data)

    # -- anonymous faults --------------------------------------------------------------

    def _anon_order(self, vpn: int) -> int:
        """``alloc_anon_folio``'s choice: the enabled order if its aligned range is all
        ``pte_none`` and inside the process, else 0."""
        order = self.folio_order
        if not order:
            return 0
        nr = 1 << order
        base = vpn & ~(nr - 1)
        if base + nr > self.nr_pages or self.pte_state[base : base + nr].any():
            return 0
        return order

    def pmd_alloc(self, vpn: int) -> None:
        """``pmd_alloc`` (``__pmd_alloc``): the PMD table over ``vpn``'s PUD_SIZE of
        address space, allocated on first use and charged to the memcg."""
        self._pgtable_alloc(self.pmd_tables, vpn // _PUD_NR_PAGES)

    def pte_alloc(self, vpn: int) -> None:
        """``pte_alloc`` (``__pte_alloc``): the PTE table over ``vpn``'s PMD_SIZE of
        address space, allocated on first use and charged to the memcg."""
        self._pgtable_alloc(self.pte_tables, vpn // _PTRS_PER_PTE)

    def _pgtable_alloc(self, tables: bytearray, i: int) -> None:
        """Table ``i`` of ``tables``, unless it exists: ``pagetable_alloc(GFP_PGTABLE_USER)``,
        a page charged to the memcg (``__GFP_ACCOUNT``: cgroup v1 counts kernel memory in
        its usage), which may reclaim; page tables are freed only with the process."""
        if not tables[i]:
            self.memcg.try_charge()
            self.pgtables += 1
            tables[i] = 1

    @cython.locals(folio=Folio, order=cython.int, nr=cython.long, base=cython.long, j=cython.long)
    def do_anonymous_page(self, vpn: int) -> Folio:
        """``do_anonymous_page``: charge, then a new folio with the page's bytes.

        A large folio is allocated zeroed, as ``clear_huge_page`` leaves it,
        and the process then writes each of its pages (``source``); an
        order-0 folio takes a free page and the page's bytes at once.
        A large folio whose charge fails falls back to order 0
        (``anon_fault_fallback_charge``; ``thp_fault_fallback_charge`` at PMD size).
        """
        vm_events = self.machine.vm_events
        vm_events.count(PGFAULT)
        self.pmd_alloc(vpn)
        order = self._anon_order(vpn)
        if order != _HPAGE_PMD_ORDER:
            self.pte_alloc(vpn)
        if order:
            nr = 1 << order
            base = vpn & ~(nr - 1)
            try:
                self.memcg.try_charge(nr)
            except OSError:
                thp = order == _HPAGE_PMD_ORDER
                if thp:
                    vm_events.count(THP_FAULT_FALLBACK)
                    vm_events.count(THP_FAULT_FALLBACK_CHARGE)
                vm_events.count_mthp(order, "anon_fault_fallback")
                vm_events.count_mthp(order, "anon_fault_fallback_charge")
                if thp:
                    self.pte_alloc(vpn)  # mapped with PTEs after all
            else:
                if order == _HPAGE_PMD_ORDER:  # the PTE table deposited for a later split
                    self.pte_alloc(vpn)
                # Not zeroed first (folio_zero_user): the process writes all of it.
                folio = folio_alloc_mpol(self.machine, order)
                pages = folio.pages
                for j in range(nr):  # the process writes its pages
                    pages[PAGE_SLICES[j]] = self.source(base + j)
                folio.mark_uptodate()
                if order == _HPAGE_PMD_ORDER:
                    vm_events.count(THP_FAULT_ALLOC)
                vm_events.count_mthp(order, "anon_fault_alloc")
                self._map(base, folio)
                return folio
        self.memcg.try_charge()
        folio = folio_alloc_mpol(self.machine, 0, self.source(vpn))
        folio.mark_uptodate()
        self._map(vpn, folio)
        return folio

    # -- swap faults --------------------------------------------------------------------

    def pte_to_swp_entry(self, vpn: int) -> SwpEntry:
        """``pte_to_swp_entry``: the swap entry a swap PTE of page ``vpn`` holds."""
        raw = self.pte_raw[vpn]
        return swp_entry(raw >> _ENTRY_SHIFT, raw & _OFFSET_MASK)

    def _swapin_order(self, vpn: int, entry: SwpEntry) -> int:
        """``alloc_swap_folio``: the mTHP order if the aligned range around ``vpn`` can
        be swapped in whole (``thp_swap_suitable_orders`` + ``can_swapin_thp``), else 0."""
        order = self.folio_order
        if not self.mthp_swapin or not 0 < order < _HPAGE_PMD_ORDER:
            return 0
        if self.machine.zswap.ever_enabled:  # !zswap_never_enabled(): zswap loads order 0
            return 0
        nr = 1 << order
        base = vpn & ~(nr - 1)
        first = entry.offset - (vpn - base)
        if base + nr > self.nr_pages or first & (nr - 1):
            return 0
        raw = entry.type << _ENTRY_SHIFT | first
        if not (self.pte_state[base : base + nr] == PTE_SWAP).all():
            return 0
        if not (self.pte_entry[base : base + nr] == np.arange(raw, raw + nr)).all():
            return 0
        m = self.machine
        si = swp_swap_info(m, entry)
        if si.count_zero(first, nr) not in (0, nr):  # swap_zeromap_batch
            return 0
        for j in range(nr):
            if swap_cache_get_folio(m, swp_entry(entry.type, first + j)) is not None:
                return 0
        return order

    @cython.locals(
        folio=Folio,
        entry=SwpEntry,
        si=SwapInfo,
        nr=cython.long,
        base=cython.long,
        first=cython.long,
        j=cython.long,
    )
    def do_swap_page(self, vpn: int) -> Folio:
        """``do_swap_page``: a swap cache hit, or a read of the slot(s); maps the folio."""
        m = self.machine
        vm_events = m.vm_events
        vm_events.count(PGFAULT)
        entry = self.pte_to_swp_entry(vpn)
        folio = swap_cache_get_folio(m, entry)
        if folio is None:
            vm_events.count(PGMAJFAULT)
            if swp_swap_info(m, entry).flags & SWP_SYNCHRONOUS_IO:
                order = self._swapin_order(vpn, entry)
                if order:
                    try:
                        self.memcg.try_charge(1 << order)
                    except OSError:  # mem_cgroup_swapin_charge_folio failed: order 0
                        vm_events.count_mthp(order, "swpin_fallback")
                        vm_events.count_mthp(order, "swpin_fallback_charge")
                        order = 0
                    else:
                        entry = swp_entry(entry.type, entry.offset - (vpn & ((1 << order) - 1)))
                if not order:
                    self.memcg.try_charge()
                folio = swap_cache_alloc_folio(m, entry, order)
                folio.memcg = self.memcg  # mem_cgroup_swapin_charge_folio
                workingset_refault(self.memcg, folio)
                ctx = SwapIoCtx(m)
                swap_read_folio(ctx, folio)
                swap_read_submit(ctx)  # never wait on a folio of our own ctx
            else:
                folio = self.swap_cluster_readahead(entry)
        else:  # still in memory (readahead, or its write failed): charged, on the LRU
            if folio.test(PG_readahead):
                folio.clear(PG_readahead)
                vm_events.count(SWAP_RA_HIT)
                m.swap_readahead.hits += 1
            self.memcg.lru_del(folio)
        folio.lock()
        nr = folio.nr_pages
        base = vpn & ~(nr - 1)
        if not folio.test(PG_uptodate):
            folio.unlock()
            self.memcg.uncharge(nr)
            raise OSError(errno.EIO, f"SIGBUS: swap-in of page {vpn} failed")
        first = folio.swap.type << _ENTRY_SHIFT | folio.swap.offset
        if nr > 1 and not (self.pte_entry[base : base + nr] == np.arange(first, first + nr)).all():
            folio.unlock()
            raise RuntimeError(f"large folio at page {base} is only partly mapped by its PTEs")
        si = swp_swap_info(m, folio.swap)
        for j in range(nr):
            si.rmap_mm[folio.swap.offset + j] = None
        swap_free(m, folio.swap, nr)  # the PTEs drop their references
        folio_free_swap(m, folio)  # no one else needs the slots: free them (and zram's copies)
        folio.unlock()
        self._map(base, folio)
        return folio

    @cython.locals(folio=Folio, si=SwapInfo, off=cython.long, vpn=cython.long, mine=cython.bint)
    def swap_cluster_readahead(self, entry: SwpEntry) -> Folio:
        """``swap_cluster_readahead``: the aligned window of ``swapin_nr_pages`` slots
        around the target, read through one ctx; the others get ``PG_readahead``."""
        m = self.machine
        si = swp_swap_info(m, entry)
        win = m.swap_readahead.swapin_nr_pages(entry.offset)
        mask = win - 1
        start, end = entry.offset & ~mask, (entry.offset | mask) + 1
        ctx = SwapIoCtx(m)
        target = None
        for off in range(max(start, 1), min(end, si.max)):
            mine = si.rmap_mm[off] is self
            if off != entry.offset and (not mine or si.swap_count(off) == 0):
                continue  # free slot, or another process's page
            vpn = si.rmap_vpn[off]
            e = swp_entry(entry.type, off)
            if swap_cache_get_folio(m, e) is not None:
                continue
            self.memcg.try_charge()
            folio = swap_cache_alloc_folio(m, e)
            folio.memcg = self.memcg  # mem_cgroup_swapin_charge_folio
            workingset_refault(self.memcg, folio)
            if off == entry.offset:
                target = folio
            else:
                folio.set(PG_readahead)
                m.vm_events.count(SWAP_RA)
                folio.mapping, folio.index = self, vpn
                self.memcg.lru_add(folio)
            swap_read_folio(ctx, folio)
        swap_read_submit(ctx)
        return target

    @cython.locals(folio=Folio)
    def madvise_willneed(self, start: int, end: int) -> None:
        """``madvise(MADV_WILLNEED)`` of pages ``start..end-1`` (``swapin_walk_pmd_entry``).

        Each swap PTE of the range gets its folio read into the swap cache
        (``read_swap_cache_async``: charged, on the LRU, not mapped; none if
        one is cached already), all through one plug (``SwapIoCtx``) that is
        submitted after the walk (``swap_read_unplug``), so the area's
        ``submit_read`` sees batches of up to 32 folios.  The PTEs keep
        their entries: a later access is a minor fault.
        """
        m = self.machine
        ctx = SwapIoCtx(m)
        for vpn in range(start, end):
            if self.pte[vpn] != PTE_SWAP:
                continue
            entry = self.pte_to_swp_entry(vpn)
            if swap_cache_get_folio(m, entry) is not None:
                continue
            self.memcg.try_charge()
            folio = swap_cache_alloc_folio(m, entry)
            workingset_refault(self.memcg, folio)
            folio.mapping, folio.index = self, vpn
            self.memcg.lru_add(folio)
            swap_read_folio(ctx, folio)
        swap_read_submit(ctx)

    @cython.locals(
        memcg=MemCgroup,
        freed=cython.long,
        pmd=cython.long,
        lo=cython.long,
        hi=cython.long,
        vpn=cython.long,
        folio=Folio,
        nr=cython.long,
        base=cython.long,
    )
    def madvise_pageout(self, start: int, end: int) -> int:
        """``madvise(MADV_PAGEOUT)`` of pages ``start..end-1``; pages freed.

        ``madvise_cold_or_pageout_pte_range``, one page table (512 pages) at
        a time: each present folio wholly inside the range has its young
        and referenced bits cleared and is isolated from the LRU; then
        ``reclaim_pages`` (``folio_clear_active``, ``shrink_folio_list``
        with references ignored) reclaims the page table's folios in one
        pass, and what it kept goes back on the LRU.  Writeout is the swap
        path's: the zero map, zswap, the area's swap_ops.  A large folio
        that crosses the range's ends is left alone (the kernel would try
        to split it).
        """
        memcg = self.memcg
        freed = 0
        pmd = start & ~((1 << _HPAGE_PMD_ORDER) - 1)
        while pmd < end:
            lo = max(start, pmd)
            hi = min(end, pmd + (1 << _HPAGE_PMD_ORDER))
            folio_list: list[Folio] = []
            vpn = lo
            while vpn < hi:
                if self.pte[vpn] != _PTE_PRESENT:
                    vpn += 1
                    continue
                folio = self.present[vpn]
                nr = folio.nr_pages
                base = vpn & ~(nr - 1)
                vpn = base + nr
                if base < start or base + nr > end:
                    continue
                folio.clear(_PTE_YOUNG | _PG_referenced | _PG_active)  # young, referenced, active
                if folio in memcg.inactive or folio in memcg.active:  # folio_isolate_lru
                    memcg.lru_del(folio)
                    folio_list.append(folio)
            if folio_list:
                freed += shrink_folio_list(self.machine, folio_list)
                move_folios_to_lru(memcg, folio_list)
            pmd += 1 << _HPAGE_PMD_ORDER
        return freed

    @cython.locals(folio=Folio)
    def zap_pte_range(self, start: int, end: int) -> None:
        """``zap_pte_range`` (``munmap`` / ``MADV_DONTNEED``) of pages ``start..end-1``.

        Present folios leave the LRU and are uncharged (a large folio only
        once its whole range is zapped, so ranges should cover whole
        folios); swap entries drop their reference (``free_swap_and_cache``),
        freeing slots no one else holds; the PTEs become ``pte_none``.
        """
        m = self.machine
        vpn = start
        while vpn < end:
            state = self.pte[vpn]
            if state == PTE_PRESENT:
                folio = self.present[vpn]
                nr = folio.nr_pages
                base = vpn & ~(nr - 1)
                for j in range(nr):
                    self.present[base + j] = None
                self._flush_folio(base, folio)
                self.pte_state[base : base + nr] = PTE_NONE
                self.memcg.lru_del(folio)
                self.memcg.uncharge(nr)
                vpn = base + nr
                continue
            if state == PTE_SWAP:
                entry = self.pte_to_swp_entry(vpn)
                swp_swap_info(m, entry).rmap_mm[entry.offset] = None
                self.pte[vpn] = PTE_NONE
                swap_free(m, entry)
                folio = swap_cache_get_folio(m, entry)
                if folio is not None and folio.trylock():  # free_swap_and_cache
                    if folio_free_swap(m, folio):  # a cached copy no PTE maps: drop it
                        self.memcg.lru_del(folio)
                        self.memcg.uncharge(folio.nr_pages)
                    folio.unlock()
            vpn += 1

    @cython.locals(folio=Folio)
    def unuse_pte(self, entry: SwpEntry, folio: Folio) -> int:
        """``unuse_pte``: for ``swapoff``, map the read folio where a PTE holds ``entry``.

        Charges the page, maps it and returns the references dropped (1),
        which ``swapoff`` gives back with ``swap_free``; 0 if no PTE of this
        process holds the entry.
        """
        si = swp_swap_info(self.machine, entry)
        if si.rmap_mm[entry.offset] is not self:
            return 0
        vpn = si.rmap_vpn[entry.offset]
        self.memcg.try_charge()  # ENOMEM: the PTE still holds the entry
        si.rmap_mm[entry.offset] = None
        self._map(vpn, folio)
        return 1

    @cython.locals(folio=Folio)
    def _map(self, base: int, folio: Folio) -> None:
        """Map every page of ``folio`` from page ``base`` and put it on the LRU."""
        nr = folio.nr_pages
        if nr == 1:
            self.present[base] = folio
            self.pte[base] = _PTE_PRESENT
        else:
            for j in range(nr):
                self.present[base + j] = folio
            self.pte_state[base : base + nr] = PTE_PRESENT
        folio.mapping = self  # folio_add_anon_rmap: folio->mapping, folio->index
        folio.index = base
        self.memcg.lru_add(folio)


__all__ = [
    "GFP_KERNEL",
    "GFP_NOFS",
    "GFP_NOIO",
    "HPAGE_PMD_ORDER",
    "PG_active",
    "AddressSpace",
    "LruList",
    "MemCgroup",
    "PAGE_SIZE",
    "isolate_lru_folios",
    "may_enter_fs",
    "move_folios_to_lru",
    "mthp_size_name",
    "shrink_folio_list",
    "shrink_inactive_list",
    "shrink_lruvec",
    "split_folio_to_list",
    "try_to_free_mem_cgroup_pages",
]

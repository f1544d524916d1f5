"""Anonymous memory under a memcg limit: faults, LRU and reclaim through the swap core.

A first model of mm/memory.c (``do_anonymous_page``, ``do_swap_page``),
mm/memcontrol.c (the charge against ``memory.max``) and mm/vmscan.c
(``shrink_folio_list``, active/inactive aging) — enough to drive real pages
through swap on zram the way the kernel does:

* a fault on a page never touched allocates a folio with the workload's
  bytes and charges it; over the limit, reclaim runs first;
* reclaim takes up to ``SWAP_CLUSTER_MAX`` folios from the inactive tail:
  referenced ones are activated (second chance), the others get swap slots
  (``folio_alloc_swap``), are unmapped (the PTE now holds the entry,
  ``swap_duplicate``), written out through **one** ``SwapIoCtx`` with
  ``swap_writeout`` and submitted once (``swap_write_submit``), then leave
  memory (``swap_cache_del_folio``) — or, if the write failed and re-dirtied
  them, stay in the swap cache and go back on the LRU;
* a fault on a swapped page finds the folio in the swap cache or reads it
  through a ctx submitted at once (``SWP_SYNCHRONOUS_IO``: no readahead),
  maps it, drops the PTE's reference and frees the slot when no one else
  holds it (zram then frees its copy through ``slot_free_notify``).

Simplified: one memcg, order-0 folios, one mapping per folio (no fork, no
shared memory), referenced bits set by :meth:`AddressSpace.touch` instead of
the hardware, no MGLRU, no readahead for non-synchronous devices, no
workingset refault detection.  Per-page state is numpy arrays
(``pte_state``, ``pte_entry``); present folios are objects.
"""

from __future__ import annotations

import errno
from collections import OrderedDict

import numpy as np

from pyzram.mm.folio import PAGE_SIZE, Folio, PG_dirty, PG_readahead, PG_uptodate, SwpEntry
from pyzram.mm.page_io import swap_read_folio, swap_read_submit, swap_write_submit, swap_writeout
from pyzram.mm.swap import SWAP_CLUSTER_MAX, SWP_SYNCHRONOUS_IO, SwapIoCtx, vm_events
from pyzram.mm.swapfile import (
    folio_alloc_swap,
    folio_free_swap,
    swap_cache_alloc_folio,
    swap_cache_del_folio,
    swap_cache_get_folio,
    swap_duplicate,
    swap_free,
    swp_swap_info,
)

PTE_NONE = 0
PTE_PRESENT = 1
PTE_SWAP = 2

#: Our stand-in for the hardware accessed bit, tested by folio_check_references.
PG_referenced = 1 << 8


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


#: The global swap readahead state.
readahead = SwapReadahead()


class MemCgroup:
    """One memory cgroup: ``memory.max`` in pages, its usage and its anon LRU lists.

    Each list is an ordered dict of folio -> (address space, page number);
    the *last* entry is the list head (most recently added).
    """

    def __init__(self, limit_pages: int) -> None:
        if limit_pages < SWAP_CLUSTER_MAX:
            raise ValueError(f"memcg limit below {SWAP_CLUSTER_MAX} pages cannot make progress")
        self.limit_pages = limit_pages
        self.usage = 0
        self.inactive: OrderedDict[Folio, tuple[AddressSpace, int]] = OrderedDict()
        self.active: OrderedDict[Folio, tuple[AddressSpace, int]] = OrderedDict()

    # -- charging ----------------------------------------------------------------

    def try_charge(self, nr: int = 1) -> None:
        """``try_charge``: reclaim until ``nr`` more pages fit, else ``ENOMEM`` (OOM)."""
        retries = 5
        while self.usage + nr > self.limit_pages:
            if not shrink_lruvec(self, self.usage + nr - self.limit_pages) and not retries:
                raise OSError(errno.ENOMEM, "memcg OOM: nothing left to reclaim")
            retries -= 1
        self.usage += nr

    def uncharge(self, nr: int = 1) -> None:
        self.usage -= nr

    # -- LRU -------------------------------------------------------------------------

    def lru_add(self, folio: Folio, owner: tuple[AddressSpace, int]) -> None:
        """``folio_add_lru``: new anon folios start on the inactive list."""
        self.inactive[folio] = owner

    def inactive_is_low(self) -> bool:
        """``inactive_is_low``: keep the inactive list at least as long as the active."""
        return len(self.inactive) < len(self.active)


def shrink_active_list(memcg: MemCgroup, nr: int) -> None:
    """``shrink_active_list``: move ``nr`` folios from the active tail to inactive,
    clearing their referenced bit."""
    for _ in range(min(nr, len(memcg.active))):
        folio, owner = memcg.active.popitem(last=False)
        folio.clear(PG_referenced)
        memcg.inactive[folio] = owner
        vm_events.count("pgdeactivate")


def shrink_lruvec(memcg: MemCgroup, nr_to_reclaim: int) -> int:
    """Reclaim at least ``nr_to_reclaim`` pages in ``SWAP_CLUSTER_MAX`` batches; pages freed."""
    freed = 0
    passes = 0
    while freed < nr_to_reclaim and passes < 8:
        if memcg.inactive_is_low():
            shrink_active_list(memcg, SWAP_CLUSTER_MAX)
        if not memcg.inactive:
            break
        got = shrink_folio_list(memcg, SWAP_CLUSTER_MAX)
        freed += got
        passes = 0 if got else passes + 1
    return freed


def shrink_folio_list(memcg: MemCgroup, nr: int) -> int:
    """``shrink_folio_list`` on ``nr`` folios from the inactive tail; pages freed."""
    batch = []
    for _ in range(min(nr, len(memcg.inactive))):
        batch.append(memcg.inactive.popitem(last=False))
    vm_events.count("pgscan_anon", len(batch))
    ctx = SwapIoCtx()
    written: list[tuple[Folio, tuple[AddressSpace, int]]] = []
    for folio, owner in batch:
        if folio.test(PG_referenced):  # folio_check_references: FOLIOREF_ACTIVATE
            folio.clear(PG_referenced)
            memcg.active[folio] = owner
            vm_events.count("pgactivate")
            continue
        if not folio.trylock():  # under I/O (a readahead not yet read): keep it
            memcg.inactive[folio] = owner
            continue
        if folio.swap is None:
            try:
                folio_alloc_swap(folio)
            except OSError:  # no swap space: keep it (activate_locked)
                folio.unlock()
                memcg.active[folio] = owner
                continue
        mm, vpn = owner
        if mm.pte_state[vpn] == PTE_PRESENT:  # try_to_unmap: the PTE takes the entry
            swap_duplicate(folio.swap)
            mm.unmap(vpn, folio.swap)
            folio.mark_dirty()  # the page may differ from any copy in swap
        elif not folio.test(PG_dirty):  # clean swap cache (readahead): swap holds it
            folio.unlock()
            written.append((folio, owner))
            continue
        swap_writeout(ctx, folio)  # unlocks
        written.append((folio, owner))
    swap_write_submit(ctx)
    freed = 0
    for folio, owner in written:
        folio.lock()
        if folio.test(PG_dirty) and folio.swap is not None:  # the write failed: retry later
            folio.unlock()
            memcg.inactive[folio] = owner
            continue
        if folio.swap is not None:
            swap_cache_del_folio(folio)  # __remove_mapping
        folio.unlock()
        memcg.uncharge()
        freed += 1
    vm_events.count("pgsteal_anon", freed)
    return freed


class AddressSpace:
    """``struct mm_struct`` of one process: ``nr_pages`` anonymous pages.

    ``source(vpn)`` gives the bytes a page holds when first touched (the
    workload's memory contents).
    """

    def __init__(self, nr_pages: int, memcg: MemCgroup, source) -> None:
        self.nr_pages = nr_pages
        self.memcg = memcg
        self.source = source
        self.pte_state = np.zeros(nr_pages, dtype=np.uint8)
        self.pte_entry = np.zeros(nr_pages, dtype=np.int64)  # type << 48 | offset
        self.present: dict[int, Folio] = {}
        self.swapped: dict[int, int] = {}  # raw entry -> vpn (the rmap of swap entries)

    def unmap(self, vpn: int, entry: SwpEntry) -> None:
        self.present.pop(vpn, None)
        raw = entry.type << 48 | entry.offset
        self.pte_state[vpn] = PTE_SWAP
        self.pte_entry[vpn] = raw
        self.swapped[raw] = vpn

    def touch(self, vpn: int, write: bool = False, data: bytes | None = None) -> Folio:
        """An access to page ``vpn``: a hit, or a minor/major fault; returns the folio."""
        state = self.pte_state[vpn]
        if state == PTE_PRESENT:
            folio = self.present[vpn]
        elif state == PTE_NONE:
            folio = self.do_anonymous_page(vpn)
        else:
            folio = self.do_swap_page(vpn)
        folio.set(PG_referenced)
        if data is not None:
            folio.data[:] = data
        return folio

    def read(self, vpn: int) -> bytes:
        return bytes(self.touch(vpn).data)

    def do_anonymous_page(self, vpn: int) -> Folio:
        """``do_anonymous_page``: charge, then a new folio with the page's bytes."""
        vm_events.count("pgfault")
        self.memcg.try_charge()
        folio = Folio(0, self.source(vpn))
        folio.mark_uptodate()
        self._map(vpn, folio)
        return folio

    def do_swap_page(self, vpn: int) -> Folio:
        """``do_swap_page``: swap cache hit, or a synchronous read of the slot."""
        vm_events.count("pgfault")
        raw = int(self.pte_entry[vpn])
        entry = SwpEntry(raw >> 48, raw & ((1 << 48) - 1))
        folio = swap_cache_get_folio(entry)
        if folio is None:
            vm_events.count("pgmajfault")
            if swp_swap_info(entry).flags & SWP_SYNCHRONOUS_IO:
                self.memcg.try_charge()
                folio = swap_cache_alloc_folio(entry)
                ctx = SwapIoCtx()
                swap_read_folio(ctx, folio)
                swap_read_submit(ctx)  # never wait on a folio of our own ctx
            else:
                folio = self.swap_cluster_readahead(entry)
        else:  # still in memory (readahead, or its write failed): charged, on the LRU
            if folio.test(PG_readahead):
                folio.clear(PG_readahead)
                vm_events.count("swap_ra_hit")
                readahead.hits += 1
            self.memcg.inactive.pop(folio, None)
            self.memcg.active.pop(folio, None)
        folio.lock()
        if not folio.test(PG_uptodate):
            folio.unlock()
            self.memcg.uncharge()
            raise OSError(errno.EIO, f"SIGBUS: swap-in of page {vpn} failed")
        self.swapped.pop(raw, None)
        swap_free(entry)  # the PTE drops its reference
        folio_free_swap(folio)  # no one else needs the slot: free it (and zram's copy)
        folio.unlock()
        self._map(vpn, folio)
        return folio

    def swap_cluster_readahead(self, entry: SwpEntry) -> Folio:
        """``swap_cluster_readahead``: the aligned window of ``swapin_nr_pages`` slots
        around the target, read through one ctx; the others get ``PG_readahead``."""
        si = swp_swap_info(entry)
        win = readahead.swapin_nr_pages(entry.offset)
        mask = win - 1
        start, end = entry.offset & ~mask, (entry.offset | mask) + 1
        ctx = SwapIoCtx()
        target = None
        for off in range(max(start, 1), min(end, si.max)):
            vpn = self.swapped.get(entry.type << 48 | off)
            if off != entry.offset and (vpn is None or si.swap_count(off) == 0):
                continue  # free slot, or another process's page
            e = SwpEntry(entry.type, off)
            if swap_cache_get_folio(e) is not None:
                continue
            self.memcg.try_charge()
            folio = swap_cache_alloc_folio(e)
            if off == entry.offset:
                target = folio
            else:
                folio.set(PG_readahead)
                vm_events.count("swap_ra")
                self.memcg.lru_add(folio, (self, vpn))
            swap_read_folio(ctx, folio)
        swap_read_submit(ctx)
        return target

    def _map(self, vpn: int, folio: Folio) -> None:
        self.present[vpn] = folio
        self.pte_state[vpn] = PTE_PRESENT
        self.memcg.lru_add(folio, (self, vpn))


__all__ = ["AddressSpace", "MemCgroup", "PAGE_SIZE", "shrink_folio_list", "shrink_lruvec"]

"""Anonymous memory under a memcg limit: reclaim through the swap core, faults back."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from pyzram import Zram
from pyzram.mm.machine import Machine
from pyzram.mm.swap import SWAP_CLUSTER_MAX, SWP_WRITEOK
from pyzram.mm.swap_ops import READ, WRITE
from pyzram.mm.swapfile import (
    NO_SHADOW,
    get_nr_swap_pages,
    mkswap,
    swapoff,
    swapon,
    swp_swap_info,
)
from pyzram.mm.tlb import TLB_ENTRIES
from pyzram.mm.vmscan import (
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_YOUNG,
    AddressSpace,
    MemCgroup,
    PG_active,
    PG_referenced,
    pack_shadow,
    shrink_inactive_list,
    try_to_free_mem_cgroup_pages,
    unpack_shadow,
)
from pyzram.workload.pages import synthetic_mix
from pyzram.zram.swap import zram_init
from test_swap_core import HookedOps, OpsSpy, swap_env  # noqa: F401  (autouse: fresh swap state, sio checks)

P = 4096


@pytest.fixture
def zram_swap(m):
    zram_init(m)
    z = Zram()
    z.sysfs["comp_algorithm"] = "lzo-rle"
    z.sysfs["disksize"] = "8M"
    mkswap(z.disk)
    si = swapon(m, z.disk)
    yield z, si
    m.close()  # the processes die with the machine
    z.sysfs["reset"] = "1"


def test_workload_larger_than_limit_swaps_out_and_back_intact(m, zram_swap):
    z, si = zram_swap
    pages = synthetic_mix(600, seed=9)
    memcg = MemCgroup(m, limit_pages=200)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
        assert memcg.usage <= 200
    swapped = int((mm.pte_state == PTE_SWAP).sum())
    assert swapped >= 400 and int((mm.pte_state == PTE_PRESENT).sum()) == memcg.usage - mm.pgtables
    assert m.vm_events["pswpout"] + m.vm_events["swpout_zero"] >= swapped
    st = z.mm_stat()
    assert st.orig_data_size > 0 and st.compr_data_size < st.orig_data_size
    rng = np.random.default_rng(1)
    for vpn in rng.permutation(len(pages)).tolist():  # every byte comes back
        assert mm.read(vpn) == pages[vpn].tobytes()
    assert m.vm_events["pgmajfault"] > 0 and m.vm_events["pswpin"] > 0
    assert si.inuse_pages == int((mm.pte_state == PTE_SWAP).sum())
    z.check()


def test_swapped_in_pages_free_their_slots_and_zram_copies(m, zram_swap):
    z, si = zram_swap
    pages = synthetic_mix(300, seed=3)
    memcg = MemCgroup(m, limit_pages=64)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
    in_swap = int((mm.pte_state == PTE_SWAP).sum())
    assert si.inuse_pages == in_swap
    notify = z.io_stat().notify_free
    vpn = int(np.flatnonzero(mm.pte_state == PTE_SWAP)[0])
    assert mm.read(vpn) == pages[vpn].tobytes()
    assert mm.pte_state[vpn] == PTE_PRESENT
    assert z.io_stat().notify_free > notify  # the slot went back: zram was told


def test_reclaim_frees_folios_that_faults_take_back_last_freed_first(m, zram_swap):
    """Reclaim puts each freed folio, page memory and all, on the machine's free
    list of its order (``free_unref_folios``): flags and owners cleared, each
    page poisoned in its first word; a swap-in takes the folio freed last and
    reads over all of it, and an anonymous fault copies its bytes into the next one."""
    from pyzram.mm.folio import PG_swapbacked, folio_alloc_mpol

    pages = np.random.default_rng(3).integers(1, 256, size=(4, P), dtype=np.uint8)
    memcg = MemCgroup(m, limit_pages=64)
    mm = AddressSpace(4, memcg, lambda vpn: pages[vpn].tobytes())
    folios = [mm.do_anonymous_page(vpn) for vpn in range(3)]
    bufs = [f.data for f in folios]
    assert shrink_inactive_list(memcg, 3) == 3
    free = m.free_pages[0]
    assert len(free) == 3 == m.nr_free_pages and {id(f) for f in free} == {id(f) for f in folios}
    assert [f.data for f in folios] == bufs and all(f.data[:8] == b"\xaa" * 8 for f in free)
    assert all(f.flags == 0 and f.swap is None and f.memcg is None for f in free)
    last = free[-1]
    g = mm.do_swap_page(0)  # the swap-in's folio: the one freed last, read over
    assert g is last and bytes(g.data) == pages[0].tobytes() and g.test(PG_swapbacked)
    assert m.nr_free_pages == 2
    nxt = free[-1]
    h = mm.do_anonymous_page(3)  # a fault's folio: the next free one, its bytes copied in
    assert h is nxt and bytes(h.data) == pages[3].tobytes()
    nxt = free[-1]
    f = folio_alloc_mpol(m, 0)  # without data: what the page held (not zeroed)
    assert f is nxt and f.data[:8] == b"\xaa" * 8 and any(f.data[8:])
    assert not free and m.nr_free_pages == 0
    assert folio_alloc_mpol(m, 0).data == bytes(P)  # none free: a new page, zeroed


def test_the_free_lists_keep_folios_of_each_order_up_to_their_high_mark(m):
    from pyzram.mm.folio import FREE_PAGES_HIGH, folio_alloc, folio_alloc_mpol, free_unref_folios

    big, small = folio_alloc(2, bytes(range(256)) * 64), folio_alloc(0)
    free_unref_folios(m, [big, small])
    assert m.free_pages[2] == [big] and m.free_pages[0] == [small] and m.nr_free_pages == 5
    assert all(big.data[j * P : j * P + 8] == b"\xaa" * 8 for j in range(4))  # each page
    again = folio_alloc_mpol(m, 2)  # a large folio of that order: the same memory
    assert again is big and again.nr_pages == 4
    assert bytes(again.page(1)[8:16]) == bytes(range(8, 16))  # what it held, past the poison
    assert folio_alloc_mpol(m, 3).data == bytes(8 * P)  # none of that order: new, zeroed
    m.nr_free_pages = FREE_PAGES_HIGH - 1  # one page below the mark
    large, one = folio_alloc(1), folio_alloc(0)
    free_unref_folios(m, [large, one])  # the 2-page folio does not fit, the page does
    assert large.data is None and large.pages is None and m.free_pages[1] == []
    assert m.free_pages[0][-1] is one and m.nr_free_pages == FREE_PAGES_HIGH
    with pytest.raises(RuntimeError, match="bad page state"):
        free_unref_folios(m, [large])  # freed twice: its memory is the host's already
    with pytest.raises(RuntimeError, match="bad page state"):
        free_unref_folios(m, [one])  # freed twice: it would come out of the list twice
    m.close()  # powered off: the free pages' memory goes back to the host
    assert not any(m.free_pages) and m.nr_free_pages == 0


def test_nr_swap_pages_follows_allocations_frees_and_swapoff(m, zram_swap):
    """``nr_swap_pages`` is the kernel's running count: every area's pages at
    swapon, less each allocation, plus each free; swapoff takes the area out at
    its start, and the slots it frees come back to nothing."""
    z, si = zram_swap
    assert get_nr_swap_pages(m) == si.pages
    pages = synthetic_mix(600, seed=9)
    mm = AddressSpace(len(pages), MemCgroup(m, limit_pages=200), lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
    assert si.inuse_pages > 0 and get_nr_swap_pages(m) == si.pages - si.inuse_pages
    mm.zap_pte_range(0, 300)  # frees half the slots
    assert get_nr_swap_pages(m) == si.pages - si.inuse_pages
    mm.memcg.limit_pages = 1000
    swapoff(si)
    assert get_nr_swap_pages(m) == 0 and si.inuse_pages == 0


def test_swapoff_out_of_memory_fails_and_can_be_tried_again(m, zram_swap):
    """A swapoff whose memcg cannot take the pages back fails with ENOMEM and leaves
    the area on (``reinsert_swap_info``), every PTE not mapped still holding its
    entry; with room, a second swapoff brings every page back intact."""
    z, si = zram_swap
    pages = synthetic_mix(300, seed=4)
    mm = AddressSpace(len(pages), MemCgroup(m, limit_pages=100), lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
    assert si.inuse_pages > 0
    with pytest.raises(OSError) as exc:
        swapoff(si)
    assert exc.value.errno == errno.ENOMEM and si.flags & SWP_WRITEOK
    assert (mm.pte_state == PTE_SWAP).any()
    mm.memcg.limit_pages = 1000
    swapoff(si)
    assert si.inuse_pages == 0 and (mm.pte_state == PTE_PRESENT).all()
    assert all(mm.read(vpn) == pages[vpn].tobytes() for vpn in range(len(pages)))


def test_swapoff_frees_each_window_of_slots_before_it_reads_the_next(m, zram_swap):
    """``try_to_unuse`` reads a window of ``SWAP_CLUSTER_MAX`` slots, maps and frees
    each of them, then reads the next window: zram is told of each freed slot
    while what was read from it is warm, and the slots read but not yet freed
    never number more than one window."""
    z, si = zram_swap
    pages = synthetic_mix(200, seed=5)
    mm = AddressSpace(len(pages), MemCgroup(m, limit_pages=50), lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
    ops, events = si.ops, []

    def read(ctx):
        events.append(("read", [f.swap.offset for f in ctx.sio.bvecs]))
        ops.submit_read(ctx)

    def notify(si_, offset):
        events.append(("free", offset))
        ops.slot_free_notify(si_, offset)

    si.ops = HookedOps(ops, submit_read=read, slot_free_notify=notify)
    mm.memcg.limit_pages = 1000
    swapoff(si)
    pending: set[int] = set()
    most = 0
    for kind, what in events:
        if kind == "read":
            pending.update(what)
            most = max(most, len(pending))
        else:
            pending.discard(what)
    assert sum(kind == "read" for kind, _ in events) >= 4
    assert 0 < most <= SWAP_CLUSTER_MAX and not pending
    assert all(mm.read(vpn) == pages[vpn].tobytes() for vpn in range(len(pages)))


@pytest.mark.parametrize("tlb_entries", [0, TLB_ENTRIES])
def test_a_hot_set_between_cold_faults(m, zram_swap, tlb_entries):
    """A hot set touched between cold faults; cold pages cycle through swap.

    With no TLB (``tlb_entries`` 0: every touch sets the accessed bit) hot
    folios are kept once (young: ``FOLIOREF_KEEP``), then activated, and stay
    resident; the active list is never aged while the memcg's stats are
    unflushed.  On an x86 CPU (the default TLB), once reclaim has cleared the
    accessed bits the hot pages' cached translations are used without a page
    walk, so they look cold, are never activated and get swapped out and
    faulted back."""
    m.tlb_entries = tlb_entries
    pages = synthetic_mix(300, seed=4)
    memcg = MemCgroup(m, limit_pages=64)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    hot = range(16)
    for vpn in range(len(pages)):
        mm.touch(vpn)
    rng = np.random.default_rng(2)
    swapped_hot = 0
    for _ in range(30):
        for h in hot:
            swapped_hot += int(mm.pte_state[h] == PTE_SWAP)
            mm.touch(h)
        for vpn in rng.integers(16, len(pages), 4).tolist():
            mm.touch(vpn)
    assert m.vm_events["pgdeactivate"] == 0
    if tlb_entries:
        assert m.vm_events["pgactivate"] == 0 and swapped_hot > 0
        assert len(mm.tlb) <= TLB_ENTRIES
        assert all(mm.tlb.cached(vpn) is not None for vpn in hot)  # touched last: cached
    else:
        assert m.vm_events["pgactivate"] > 0
        assert len(mm.tlb) == 0
    assert all(mm.pte_state[h] == PTE_PRESENT for h in hot)
    for vpn in range(len(pages)):
        assert mm.read(vpn) == pages[vpn].tobytes()


def test_a_write_through_a_clean_tlb_entry_walks(m, zram_swap):
    """x86 sets a PTE's dirty bit with a page walk, which also sets its accessed
    bit: a cached translation loaded by a read does not hide a later write."""
    pages = synthetic_mix(4, seed=4)
    memcg = MemCgroup(m, limit_pages=64)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    folio = mm.touch(0)  # the first touch is a write fault: a dirty PTE
    assert folio.test(PTE_YOUNG | PTE_DIRTY) and mm.tlb.cached(0) is True
    folio.clear(PTE_YOUNG)  # folio_referenced: no flush
    mm.touch(0, data=pages[1])
    assert not folio.test(PTE_YOUNG)  # a dirty entry: no walk
    folio.clear(PTE_DIRTY)
    mm.tlb.fill(0, False)  # a translation loaded from a clean PTE
    mm.touch(0)
    assert not folio.test(PTE_YOUNG)  # a read hit
    mm.touch(0, data=pages[2])
    assert folio.test(PTE_YOUNG | PTE_DIRTY) and mm.tlb.cached(0) is True
    mm.zap_pte_range(0, 1)
    assert mm.tlb.cached(0) is None  # zap_pte_range flushes


@pytest.mark.parametrize("tlb_2m_entries", [None, 0])
def test_a_pmd_mapping_in_the_tlb(zram_swap, tlb_2m_entries):
    """A 2 MiB mapping is one translation: by default one entry of the TLB, so an
    access through it after reclaim cleared its accessed bit sets nothing; with
    no entries for 2 MiB mappings (``tlb_2m_entries`` 0) every access walks and
    sets the bit, while 4 KiB translations stay cached as before."""
    m = Machine(tlb_entries=128, tlb_2m_entries=tlb_2m_entries)
    pages = synthetic_mix(1024, seed=5)
    memcg = MemCgroup(m, limit_pages=2048)
    thp = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=9)
    small = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn])
    for mm, again in ((thp, 7), (small, 3)):  # page 7 is in page 3's 2 MiB folio
        folio = mm.touch(3)
        folio.clear(PTE_YOUNG)  # folio_referenced: no flush
        assert mm.touch(again) is folio
    assert thp.present[3].order == 9 and small.present[3].order == 0
    assert not small.present[3].test(PTE_YOUNG)  # a 4 KiB translation: cached
    assert thp.present[3].test(PTE_YOUNG) == (tlb_2m_entries == 0)
    assert (thp.tlb_2m is thp.tlb) == (tlb_2m_entries is None)
    m.close()


def test_page_tables_are_charged_to_the_memcg(m, zram_swap):
    """cgroup v1 counts page tables (``GFP_PGTABLE_USER``) in the memcg's usage: a
    PMD table for the mapping's first GiB and a PTE table per 2 MiB, each on its
    first fault, so they take room from the anonymous pages under the limit."""
    pages = synthetic_mix(1100, seed=3)
    memcg = MemCgroup(m, limit_pages=4096)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    mm.touch(0)
    assert mm.pgtables == 2 and memcg.usage == 1 + 2
    for vpn in range(1, 512):
        mm.touch(vpn)
    assert mm.pgtables == 2
    mm.touch(1099)  # the third PTE table; the second is still unused
    assert mm.pgtables == 3 and memcg.usage == 513 + 3
    mm.zap_pte_range(0, 512)  # MADV_DONTNEED keeps the tables
    assert mm.pgtables == 3 and memcg.usage == 1 + 3


def test_reclaim_gets_through_a_fully_referenced_lru(m, zram_swap):
    """Every page referenced once (the fill) and a large limit: reclaim must keep going
    until the second chances are used up, not declare OOM after a few batches."""
    pages = synthetic_mix(2300, seed=5)
    memcg = MemCgroup(m, limit_pages=2048)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn])
    for vpn in range(len(pages)):
        mm.touch(vpn)
    assert memcg.usage <= 2048 and m.vm_events["pgsteal_anon"] >= 2300 - 2048


def test_a_young_folio_is_kept_once_then_activated(m, zram_swap):
    """folio_check_references: young once -> FOLIOREF_KEEP (PG_referenced set, back
    on the inactive list, no pgactivate); young again -> activated; not young ->
    reclaimed.  With no TLB (``tlb_entries`` 0): every touch sets the accessed bit."""
    m.tlb_entries = 0
    pages = synthetic_mix(40, seed=3)
    memcg = MemCgroup(m, limit_pages=64)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    for vpn in range(3):
        mm.touch(vpn)  # the fault leaves the PTE young
    f0, f1, f2 = (mm.present[v] for v in range(3))
    assert not f0.test(PG_referenced | PG_active)
    assert shrink_inactive_list(memcg, 3) == 0  # all young: kept
    assert m.vm_events["pgactivate"] == 0 and all(f.test(PG_referenced) for f in (f0, f1, f2))
    assert len(memcg.inactive) == 3 and not len(memcg.active)
    mm.touch(1)  # young again: the second young scan activates it
    freed = shrink_inactive_list(memcg, 3)
    assert freed == 2 and m.vm_events["pgactivate"] == 1  # 0 and 2 were not young: reclaimed
    assert f1.test(PG_active) and f1 in memcg.active
    assert mm.pte_state[0] == PTE_SWAP and mm.pte_state[2] == PTE_SWAP


def _hot_and_active(m, zram_swap):
    """A memcg whose active list outgrew its inactive one (a hot set activated; no
    TLB, so that every touch sets the accessed bit)."""
    m.tlb_entries = 0
    pages = synthetic_mix(200, seed=6)
    memcg = MemCgroup(m, limit_pages=128)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    for vpn in range(96):
        mm.touch(vpn)
    for _ in range(2):  # each scan finds them young: kept, then activated
        for vpn in range(96):
            mm.touch(vpn)
        for _ in range(96 // SWAP_CLUSTER_MAX):  # one scan of each
            assert shrink_inactive_list(memcg, SWAP_CLUSTER_MAX) == 0
    assert memcg.active.nr_pages == 96 and not memcg.inactive.nr_pages
    for vpn in range(96, 120):
        mm.touch(vpn)
    return mm, memcg


def test_the_active_list_ages_only_from_flushed_stats(m, zram_swap):
    """inactive_is_low reads lruvec_page_state, the flushed stats: a memcg that was
    never flushed reads zeros and is never low (no pgdeactivate, as on the host
    kernel within the 2 s flush period); after mem_cgroup_flush_stats it is."""
    mm, memcg = _hot_and_active(m, zram_swap)
    assert not memcg.inactive_is_low()  # stale zeros
    try_to_free_mem_cgroup_pages(memcg, 1)
    assert m.vm_events["pgdeactivate"] == 0
    memcg.mem_cgroup_flush_stats()
    assert memcg.inactive_is_low()
    try_to_free_mem_cgroup_pages(memcg, 1)
    assert m.vm_events["pgdeactivate"] >= SWAP_CLUSTER_MAX


def test_a_shadow_lives_in_its_slot_until_a_read_takes_it_or_a_free(m, zram_swap):
    """workingset_eviction's shadow takes the folio's place in the swap table's slot
    (swap_cache_del_folio); a read into the swap cache takes it (workingset_refault),
    and freeing the slot clears it (swap_range_free: clear_shadow_from_swap_cache)."""
    mm, memcg = _hot_and_active(m, zram_swap)
    for vpn in range(120, 200):
        mm.touch(vpn)  # evicts the first cold pages
    swapped = np.flatnonzero(mm.pte_state == PTE_SWAP).tolist()
    assert len(swapped) >= 2
    entries = [mm.pte_to_swp_entry(v) for v in swapped[:2]]
    si = swp_swap_info(m, entries[0])
    ages = [unpack_shadow(si.shadows[e.offset])[0] for e in entries]
    assert NO_SHADOW not in [si.shadows[e.offset] for e in entries]
    assert 0 <= ages[0] < memcg.nonresident_age and ages[0] != ages[1]
    refaults = m.vm_events["workingset_refault_anon"]
    mm.madvise_willneed(swapped[0], swapped[0] + 1)  # read into the swap cache, not mapped
    assert m.vm_events["workingset_refault_anon"] == refaults + 1
    assert si.swap_count(entries[0].offset) == 1  # the PTE still holds the slot
    assert si.shadows[entries[0].offset] == NO_SHADOW  # the folio took the shadow's place
    mm.zap_pte_range(swapped[1], swapped[1] + 1)  # the slot freed, its shadow with it
    assert si.swap_count(entries[1].offset) == 0
    assert si.shadows[entries[1].offset] == NO_SHADOW


def test_refaults_counted_activated_only_within_the_flushed_workingset(m, zram_swap):
    """workingset_refault: every swap-in with a shadow counts workingset_refault_anon;
    it activates only when the refault distance is within the flushed active list."""
    mm, memcg = _hot_and_active(m, zram_swap)
    for vpn in range(120, 200):
        mm.touch(vpn)  # evicts the first cold pages
    cold = int(np.flatnonzero(mm.pte_state == PTE_SWAP)[0])
    maj = m.vm_events["pgmajfault"]
    assert not mm.touch(cold).test(PG_active)
    assert m.vm_events["pgmajfault"] == maj + 1 and m.vm_events["workingset_refault_anon"] == 1
    assert m.vm_events["workingset_activate_anon"] == 0
    memcg.mem_cgroup_flush_stats()  # the workingset is now the 96 active pages
    swapped = np.flatnonzero(mm.pte_state == PTE_SWAP)

    def eviction(v: int) -> int:
        entry = mm.pte_to_swp_entry(v)
        return unpack_shadow(swp_swap_info(m, entry).shadows[entry.offset])[0]

    recent = max(swapped.tolist(), key=eviction)
    assert mm.touch(recent).test(PG_active)
    assert m.vm_events["workingset_activate_anon"] == 1


def test_memcg_limit_too_small(m):
    with pytest.raises(ValueError):
        MemCgroup(m, limit_pages=8)


def test_readahead_on_a_swap_file(m, tmp_path):
    """Not SWP_SYNCHRONOUS_IO: faults read page_cluster windows, later faults hit them."""
    path = tmp_path / "swapfile"
    path.write_bytes(bytes(4 << 20))  # no holes
    mkswap(str(path))
    swapon(m, str(path))
    assert m.swap_readahead.hits == 4 and m.swap_readahead.page_cluster == 3  # as at boot
    try:
        pages = synthetic_mix(400, seed=6)
        memcg = MemCgroup(m, limit_pages=64)
        mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
        for vpn in range(len(pages)):
            mm.touch(vpn)
        m.vm_events.reset()
        for vpn in range(len(pages)):  # sequential again: readahead pays off
            assert mm.read(vpn) == pages[vpn].tobytes()
        assert m.vm_events["swap_ra"] > 0 and m.vm_events["swap_ra_hit"] > 0
        assert m.vm_events["nrswpin"] < m.vm_events["pswpin"]  # reads come in batches
    finally:
        m.close()


def test_swapin_nr_pages_window():
    from pyzram.mm.vmscan import SwapReadahead

    ra = SwapReadahead(page_cluster=3)
    assert ra.swapin_nr_pages(100) == 8  # initial hits 4 -> 6 -> rounded up to 8
    assert ra.swapin_nr_pages(500) == 4  # no hits: 2, not adjacent -> 1, but >= 8 // 2
    assert ra.swapin_nr_pages(900) == 2
    assert ra.swapin_nr_pages(901) == 2  # adjacent to the previous offset
    assert SwapReadahead(page_cluster=0).swapin_nr_pages(5) == 1


# -- large folios ------------------------------------------------------------------------------


def _zram_area(m, disksize: str):
    zram_init(m)
    z = Zram()
    z.sysfs["comp_algorithm"] = "lzo-rle"
    z.sysfs["disksize"] = disksize
    mkswap(z.disk)
    return z, swapon(m, z.disk)


def _fill(mm, n):
    for vpn in range(n):
        mm.touch(vpn)


def test_mthp_folios_swap_out_whole_and_back_in_whole(m, zram_swap):
    """Order-4 (64 KiB) folios: faulted whole, swapped out whole to aligned slots, and
    (zram is SWP_SYNCHRONOUS_IO) swapped back in whole by alloc_swap_folio."""
    z, si = zram_swap
    spy = OpsSpy(si)
    pages = synthetic_mix(512, seed=11)
    memcg = MemCgroup(m, limit_pages=128)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=4)
    _fill(mm, len(pages))
    assert m.vm_events.mthp[(4, "anon_fault_alloc")] == 512 // 16
    written = [b for batch in spy.batches[WRITE] for b in batch]
    assert written and all(order == 4 and off % 16 == 0 for off, order in written)
    assert m.vm_events.mthp[(4, "swpout")] == len(written)  # zero folios: swpout_zero only
    swapped = np.flatnonzero(mm.pte_state == PTE_SWAP)
    assert len(swapped) % 16 == 0 and len(swapped) >= 512 - 128
    for base in swapped[::16].tolist():  # 16 PTEs, 16 consecutive slots
        assert base % 16 == 0
        assert np.array_equal(np.diff(mm.pte_entry[base : base + 16]), np.ones(15))
    vpn = int(swapped[5])
    assert mm.read(vpn) == pages[vpn].tobytes()
    folio = mm.present[vpn]
    assert folio.order == 4 and all(mm.present[vpn - 5 + j] is folio for j in range(16))
    assert m.vm_events["pgmajfault"] == 1
    assert m.vm_events.mthp[(4, "swpin")] + m.vm_events["swpin_zero"] // 16 == 1
    for v in range(len(pages)):
        assert mm.read(v) == pages[v].tobytes()
    assert memcg.usage - mm.pgtables == int((mm.pte_state == PTE_PRESENT).sum())
    z.check()


def test_no_mthp_swapin_reads_order0(m):
    z, si = _zram_area(m, "8M")
    try:
        pages = synthetic_mix(256, seed=12)
        memcg = MemCgroup(m, limit_pages=64)
        mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=4)
        mm.mthp_swapin = False
        _fill(mm, len(pages))
        m.vm_events.reset()
        for v in range(len(pages)):
            assert mm.read(v) == pages[v].tobytes()
        assert m.vm_events["pswpin"] > 0 and not m.vm_events.mthp[(4, "swpin")]
        assert m.vm_events["pswpin"] + m.vm_events["swpin_zero"] == m.vm_events["pgmajfault"]
    finally:
        m.close()
        z.sysfs["reset"] = "1"


def test_pmd_thp_swaps_out_whole_and_in_as_order0_pages(m):
    """Order 9: thp_fault_alloc, thp_swpout at reclaim, each with its PMD mapping split
    into a PTE table first (thp_split_pmd: try_to_unmap's TTU_SPLIT_HUGE_PMD; the
    folio stays whole, no thp_split_page); swap-in is order 0 (6.18 never swaps a
    PMD-size folio in whole)."""
    z, si = _zram_area(m, "16M")
    try:
        pages = synthetic_mix(2048, seed=13)
        memcg = MemCgroup(m, limit_pages=1100)
        mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=9)
        _fill(mm, len(pages))
        assert m.vm_events["thp_fault_alloc"] == 4
        assert m.vm_events["thp_swpout"] >= 2 and m.vm_events.mthp[(9, "swpout")] >= 2
        assert m.vm_events["thp_split_pmd"] == m.vm_events["thp_swpout"]
        assert m.vm_events["thp_split_page"] == 0
        assert memcg.usage <= 1100
        swapped = np.flatnonzero(mm.pte_state == PTE_SWAP)
        vpn, other = int(swapped[7]), int(swapped[8])
        assert mm.read(vpn) == pages[vpn].tobytes()
        assert mm.present[vpn].order == 0 and mm.pte_state[other] == PTE_SWAP
        assert m.vm_events["pgmajfault"] == 1
        assert m.vm_events.mthp[(9, "swpin")] == 0
        for v in range(len(pages)):
            assert mm.read(v) == pages[v].tobytes()
        z.check()
    finally:
        m.close()
        z.sysfs["reset"] = "1"


def test_large_folio_split_when_no_aligned_slots(m):
    """A one-cluster area (slot 0 makes it an order-0 cluster) has no slots for an
    order-4 folio: shrink_folio_list splits it and swaps the pages out one by one."""
    z, si = _zram_area(m, "2M")
    try:
        pages = synthetic_mix(256, seed=14)
        memcg = MemCgroup(m, limit_pages=64)
        mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=4)
        _fill(mm, len(pages))
        splits = m.vm_events.mthp[(4, "split")]
        assert splits > 0 and m.vm_events.mthp[(4, "swpout_fallback")] == splits
        assert m.vm_events.mthp[(4, "swpout")] == 0 and m.vm_events["thp_swpout_fallback"] == 0
        assert m.vm_events["pswpout"] + m.vm_events["swpout_zero"] >= 256 - 64
        for v in range(len(pages)):
            assert mm.read(v) == pages[v].tobytes()
        z.check()
    finally:
        m.close()
        z.sysfs["reset"] = "1"


def test_thp_charge_larger_than_the_limit_falls_back_to_order0(m, zram_swap):
    pages = synthetic_mix(600, seed=15)
    memcg = MemCgroup(m, limit_pages=200)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=9)
    _fill(mm, len(pages))
    assert m.vm_events["thp_fault_fallback_charge"] == 1 and not m.vm_events["thp_fault_alloc"]
    assert all(f.order == 0 for f in mm.present if f is not None)
    assert memcg.usage <= 200


# -- the counters agree ----------------------------------------------------------------------


@pytest.mark.parametrize("order", [0, 4])
def test_vmstat_equals_the_swap_core_and_zram(m, zram_swap, order):
    """/proc/vmstat's swap counters against what the swap core handed to zram's ops,
    what the swap area holds and what zram stores and was told to free."""
    z, si = zram_swap
    spy = OpsSpy(si)
    pages = synthetic_mix(640, seed=16)
    memcg = MemCgroup(m, limit_pages=160)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn], folio_order=order)
    _fill(mm, len(pages))
    rng = np.random.default_rng(3)
    for vpn in rng.integers(0, len(pages), 800).tolist():
        mm.touch(vpn, data=pages[(vpn * 7) % len(pages)] if vpn % 5 == 0 else None)
    nr = 1 << order
    written = [b for batch in spy.batches[WRITE] for b in batch]
    read = [b for batch in spy.batches[READ] for b in batch]
    assert m.vm_events["nrswpout"] == spy.nr(WRITE) and m.vm_events["nrswpin"] == spy.nr(READ)
    assert m.vm_events["pswpout"] == sum(1 << o for _, o in written)
    assert m.vm_events["pswpin"] == sum(1 << o for _, o in read)
    large = sum(o == order for _, o in written) if order else 0  # order 0 has no mTHP stats
    assert m.vm_events.mthp[(order, "swpout")] == large
    # every slot ever taken was written or zero-mapped; those no longer in use were freed,
    # and zram was told about each; zram stores exactly the in-use, non-zero-mapped slots
    # and slot 0, the swap header mkswap wrote
    allocated = m.vm_events["pswpout"] + m.vm_events["swpout_zero"]
    assert si.inuse_pages == int((mm.pte_state == PTE_SWAP).sum())
    assert allocated - si.inuse_pages == z.io_stat().notify_free
    assert z.mm_stat().orig_data_size // P == si.inuse_pages - si.count_zero(0, si.max) + 1
    faults = m.vm_events["pgmajfault"]
    assert faults == m.vm_events["nrswpin"] + m.vm_events["swpin_zero"] // nr
    assert m.vm_events["pgsteal_anon"] == allocated
    assert memcg.usage - mm.pgtables == int((mm.pte_state == PTE_PRESENT).sum())
    z.check()


def test_a_shadow_packs_the_eviction_clock_and_the_workingset_bit():
    """pack_shadow / unpack_shadow: one value per slot, given back exactly."""
    for eviction in (0, 1, 2, 12_345, 2**40 + 3):
        for workingset in (False, True):
            shadow = pack_shadow(eviction, workingset)
            assert isinstance(shadow, int)
            assert unpack_shadow(shadow) == (eviction, workingset)
    assert pack_shadow(5, True) != pack_shadow(5, False) != pack_shadow(4, True)

# Types of pyzram/mm/vmscan.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.list cimport List, list_add_tail, list_del
from pyzram.mm.folio cimport (
    Folio,
    SwpEntry,
    folio_alloc,
    folio_alloc_mpol,
    free_unref_folios,
    swp_entry,
)
from pyzram.mm.mm_types cimport MmStruct
from pyzram.mm.tlb cimport Tlb
from pyzram.mm.machine cimport Machine
from pyzram.mm.page_io cimport swap_read_folio, swap_read_submit, swap_write_submit, swap_writeout
from pyzram.mm.swapfile cimport (
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

# Constants imported by the .py, C longs here: each use is a C load, not a
# module-global lookup and a boxed int (not re-exported: import them from
# the module that defines them).
cdef long PG_dirty, PG_locked, PG_readahead, PG_swapcache, PG_uptodate
cdef long SWAP_CLUSTER_MAX, SWP_SYNCHRONOUS_IO, SWAP_OPS_F_NOFS
cdef int PGACTIVATE, PGDEACTIVATE, PGFAULT, PGMAJFAULT, PGSCAN_ANON, PGSTEAL_ANON
cdef int SLABS_SCANNED, SWAP_RA, SWAP_RA_HIT, THP_FAULT_ALLOC, THP_FAULT_FALLBACK
cdef int THP_FAULT_FALLBACK_CHARGE, THP_SPLIT_PAGE, THP_SPLIT_PMD, THP_SWPOUT_FALLBACK
cdef int WORKINGSET_ACTIVATE_ANON, WORKINGSET_REFAULT_ANON, WORKINGSET_RESTORE_ANON


cdef long _ENTRY_SHIFT, _OFFSET_MASK
cdef long _PTE_NONE, _PTE_PRESENT, _PTE_SWAP, _PTE_YOUNG, _PTE_DIRTY, _HPAGE_PMD_ORDER
cdef long _PG_referenced, _PG_active, _PG_workingset
cdef long NO_SHADOW
cdef long _GFP_IO, _GFP_FS, _PTRS_PER_PTE, _PUD_NR_PAGES
# (its own, not exported)
cdef int FOLIOREF_RECLAIM, FOLIOREF_KEEP, FOLIOREF_ACTIVATE


@cython.final
cdef class LruList(List):
    cdef public long nr_pages

    cpdef void add(self, Folio folio) except *
    cpdef bint remove(self, Folio folio) except? False
    @cython.locals(folio=Folio)
    cpdef Folio pop_tail(self)
    cdef void _del(self, Folio folio)


@cython.final
cdef class MemCgroup:
    cdef public Machine machine
    cdef public long limit_pages
    cdef public long swappiness
    cdef public long usage
    cdef public LruList inactive
    cdef public LruList active
    cdef public long nr_reclaim_batches
    cdef public long anon_cost
    cdef public long nonresident_age
    cdef public long workingset_activate_anon
    cdef public dict stats
    cdef public long refaults_anon
    cdef object __weakref__

    cpdef void try_charge(self, long nr=*, long gfp_mask=*) except *
    cpdef void uncharge(self, long nr=*) except *
    cpdef void lru_add(self, Folio folio) except *
    cpdef void lru_del(self, Folio folio) except *
    @cython.locals(inactive=long, active=long, gb=long, ratio=long)
    cpdef bint inactive_is_low(self) except? False
    @cython.locals(cost=long, lrusize=long)
    cpdef void lru_note_cost(self, long nr_io, long nr_rotated) except *


@cython.final
cdef class ReclaimStat:
    cdef public long nr_activate
    cdef public long nr_pageout
    cdef public long nr_ref_keep


@cython.final
cdef class ScanControl:
    cdef public long anon_cost
    cdef public bint force_deactivate
    cdef public long gfp_mask
    cdef public long may_deactivate
    cdef public long nr_reclaimed
    cdef public long nr_to_reclaim
    cdef public long priority
    cdef public bint skipped_deactivate


cpdef long try_to_free_mem_cgroup_pages(MemCgroup memcg, long nr_pages, long gfp_mask=*) except -1
cpdef long do_try_to_free_pages(MemCgroup memcg, ScanControl sc) except -1
@cython.locals(refaults=long)
cpdef void prepare_scan_control(MemCgroup memcg, ScanControl sc) except *
cpdef void shrink_node(MemCgroup memcg, ScanControl sc) except *
@cython.locals(swappiness=long, inactive=long, active=long, total=long, anon_cost=long, file_cost=long, ap=long, fp=long)
cpdef tuple get_scan_count(MemCgroup memcg, ScanControl sc)
@cython.locals(nr_inactive=long, nr_active=long, nr_reclaimed=long, nr=long)
cpdef void shrink_lruvec(MemCgroup memcg, ScanControl sc) except *
@cython.locals(m=Machine, freeable=long, nr=long, delta=long, total_scan=long, freed=long, scanned=long, nr_to_scan=long, ret=long, next_deferred=long)
cpdef long shrink_slab(MemCgroup memcg, long priority=*) except? -1
@cython.locals(folio=Folio, moved=long, taken=long)
cpdef void shrink_active_list(MemCgroup memcg, long nr) except *
@cython.locals(folio=Folio, taken=long)
cpdef list isolate_lru_folios(MemCgroup memcg, long nr)
@cython.locals(folio=Folio)
cpdef void move_folios_to_lru(MemCgroup memcg, list folio_list) except *
@cython.locals(folio=Folio, folio_list=list, nr_scanned=long, stat=ReclaimStat, freed=long)
cpdef long shrink_inactive_list(MemCgroup memcg, long nr, long gfp_mask=*) except -1


# Not final: Cython refuses a final class's override of a base's method
# (MmStruct.unuse_pte).
cdef class AddressSpace(MmStruct):
    cdef public long nr_pages
    cdef public MemCgroup memcg
    cdef public Machine machine
    cdef public bint on_mmlist
    cdef public object source
    cdef public int folio_order
    cdef public bint mthp_swapin
    cdef public object pte_state
    cdef public object pte_entry
    cdef public unsigned char[::1] pte
    cdef public long[::1] pte_raw
    cdef public list present
    cdef public Tlb tlb
    cdef public Tlb tlb_2m
    cdef public bytearray pte_tables
    cdef public bytearray pmd_tables
    cdef public long pgtables
    cdef object __weakref__

    @cython.locals(j=long)
    cpdef void _flush_folio(self, long base, Folio folio) except *
    @cython.locals(order=int, nr=long, base=long)
    cpdef int _anon_order(self, long vpn) except -1
    @cython.locals(order=int, nr=long, base=long, first=long, raw=long, j=long, m=Machine, si=SwapInfo)
    cpdef int _swapin_order(self, long vpn, SwpEntry entry) except -1
    @cython.locals(entry=SwpEntry, si=SwapInfo, nr=long, off=long, raw=long, j=long)
    cpdef void unmap(self, long base, Folio folio) except *
    cpdef Folio touch(self, long vpn, bint write=*, object data=*)
    cpdef void pmd_alloc(self, long vpn) except *
    cpdef void pte_alloc(self, long vpn) except *
    cpdef void _pgtable_alloc(self, bytearray tables, long i) except *
    cpdef Folio do_anonymous_page(self, long vpn)
    cpdef Folio do_swap_page(self, long vpn)
    @cython.locals(raw=long)
    cpdef SwpEntry pte_to_swp_entry(self, long vpn)
    @cython.locals(si=SwapInfo, vpn=long)
    cpdef long unuse_pte(self, SwpEntry entry, Folio folio) except -1
    cpdef void _map(self, long base, Folio folio) except *


cpdef Folio _alloc_swap_or_split(Machine m, Folio folio, list batch)
cpdef bint may_enter_fs(Machine m, Folio folio, long gfp_mask) except? False
cpdef int folio_check_references(Folio folio) except -1
cpdef long pack_shadow(long eviction, bint workingset)
cpdef tuple unpack_shadow(long shadow)
@cython.locals(shadow=long)
cpdef long workingset_eviction(MemCgroup memcg, Folio folio) except? -1
@cython.locals(folio=Folio, mm=AddressSpace, vpn=long, i=long, nr_activate=long, freed=long, references=int, memcg=MemCgroup)
cpdef long shrink_folio_list(Machine m, list folio_list, long gfp_mask=*, ReclaimStat stat=*) except -1
@cython.locals(nr=long, j=long, workingset_size=long, eviction=long, workingset=bint, si=SwapInfo, off=long, shadow=long)
cpdef void workingset_refault(MemCgroup memcg, Folio folio) except *

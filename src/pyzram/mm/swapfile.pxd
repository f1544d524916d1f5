# Types of pyzram/mm/swapfile.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport atomic64_add, atomic64_read, atomic64_sub
from pyzram.lib.spinlock cimport spin_lock, spin_unlock, spinlock_t
from pyzram.block.blkdev cimport BlockDevice, Gendisk
from pyzram.mm.swap_ops cimport SwapOps
from pyzram.mm.folio cimport Folio, SwpEntry, folio_alloc_mpol, swp_entry
from pyzram.mm.machine cimport Machine
from pyzram.mm.mm_types cimport MmStruct
from pyzram.mm.zswap cimport Zswap, zswap_invalidate

# Constants imported by the .py, C longs here: each use is a C load, not a
# module-global lookup and a boxed int (not re-exported: import them from
# the module that defines them).
cdef long PAGE_SHIFT, PAGE_SIZE, PG_locked, PG_swapcache, PG_uptodate, PG_writeback
cdef long MAX_SWAPFILES, SWAP_CLUSTER_MAX, SWAP_FLAG_PRIO_MASK, SWAP_HAS_CACHE, SWAP_MAP_BAD, SWAP_MAP_MAX
cdef long SWAPFILE_CLUSTER, SWP_BLKDEV, SWP_SOLIDSTATE, SWP_STABLE_WRITES, SWP_SYNCHRONOUS_IO
cdef long SWP_USED, SWP_WRITEOK


cdef long _COUNT_MASK, _NO_SHADOW


@cython.final
cdef class SwapInfo:
    cdef public Machine machine
    cdef public int type
    cdef public long flags
    cdef public long _prio
    cdef public long max
    cdef public long pages
    cdef public long inuse_pages
    cdef public BlockDevice bdev
    cdef public object swap_file
    cdef public int swap_file_fd
    cdef public SwapOps ops
    cdef public bytearray _sm
    cdef public bytearray _zm
    cdef public object swap_map
    cdef public object zeromap
    cdef public int[::1] cluster_count
    cdef public signed char[::1] cluster_order
    cdef public int[::1] cluster_free_hint
    cdef public object free_clusters
    cdef public dict nonfull_clusters
    cdef public bytearray cluster_nonfull
    cdef public long[::1] cluster_next
    cdef public list swap_cache
    cdef public long[::1] shadows
    cdef public list rmap_mm
    cdef public long[::1] rmap_vpn
    cdef public spinlock_t lock
    cdef object __weakref__

    cpdef int swap_count(self, long offset) except -1
    @cython.locals(bit=int, off=long)
    cpdef void set_zero(self, long offset, long nr, bint value)
    @cython.locals(n=long, off=long)
    cpdef long count_zero(self, long offset, long nr)


cpdef SwapInfo swp_swap_info(Machine m, SwpEntry entry)
cpdef long get_nr_swap_pages(Machine m)
@cython.locals(nr=long, base=long, end=long, off=long, sm=bytearray)
cpdef long _alloc_in_cluster(SwapInfo si, long c, int order) except -2
@cython.locals(cur=long, c=long, off=long)
cpdef long _take_slots(SwapInfo si, int order) except -2
@cython.locals(nr=long, i=long, corder=int, full=bint, lst=dict)
cpdef long _claim(SwapInfo si, long c, int order, long off, object cluster_order=*) except -1
@cython.locals(si=SwapInfo, nr=long, i=long, off=long, entry=SwpEntry)
cpdef SwpEntry folio_alloc_swap(Machine m, Folio folio)
@cython.locals(si=SwapInfo, off=long, count=int)
cpdef void swap_duplicate(Machine m, SwpEntry entry, long nr=*) except *
@cython.locals(si=SwapInfo, off=long)
cpdef void swap_free(Machine m, SwpEntry entry, long nr=*) except *
@cython.locals(m=Machine, zs=Zswap, off=long, c=long, order=int, zswap_used=bint, ops=SwapOps)
cpdef void swap_range_free(SwapInfo si, long offset, long nr) except *
@cython.locals(si=SwapInfo)
cpdef Folio swap_cache_get_folio(Machine m, SwpEntry entry)
@cython.locals(si=SwapInfo, nr=long, off=long, folio=Folio)
cpdef Folio swap_cache_alloc_folio(Machine m, SwpEntry entry, int order=*)
@cython.locals(si=SwapInfo, off=long, entry=SwpEntry)
cpdef void swap_cache_del_folio(Machine m, Folio folio, long shadow=*) except *
@cython.locals(si=SwapInfo, off=long, o=long, swapped=bint)
cpdef bint folio_free_swap(Machine m, Folio folio) except? False
cpdef void reinsert_swap_info(SwapInfo si) except *
@cython.locals(
    m=Machine, folio=Folio, entry=SwpEntry, dropped=long, i=Py_ssize_t, _j=long, offs="const long[::1]",
    nr=Py_ssize_t, lo=Py_ssize_t, k=Py_ssize_t, mm=MmStruct, mms=list,
)
cpdef void swapoff(SwapInfo si, object unuse=*) except *

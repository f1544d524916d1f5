# Types of pyzram/mm/swapfile.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.mm.folio cimport Folio
from pyzram.mm.zswap cimport zswap_invalidate


cdef class SwapInfo:
    cdef public object machine
    cdef public int type
    cdef public long flags
    cdef public long _prio
    cdef public long max
    cdef public long pages
    cdef public long inuse_pages
    cdef public object bdev
    cdef public object swap_file
    cdef public int swap_file_fd
    cdef public object ops
    cdef public bytearray _sm
    cdef public bytearray _zm
    cdef public object swap_map
    cdef public object zeromap
    cdef public object cluster_count
    cdef public object cluster_order
    cdef public object free_clusters
    cdef public dict nonfull_clusters
    cdef public dict cluster_next
    cdef public dict swap_cache
    cdef public object lock
    cdef object __weakref__


cpdef SwapInfo swp_swap_info(object m, object entry)
cpdef long get_nr_swap_pages(object m)
cpdef object _alloc_in_cluster(SwapInfo si, long c, int order)
cpdef object _take_slots(SwapInfo si, int order)
cpdef long _claim(SwapInfo si, long c, int order, long off, object cluster_order=*) except -1
@cython.locals(si=SwapInfo, nr=long, i=long, off=object)
cpdef object folio_alloc_swap(object m, Folio folio)
@cython.locals(si=SwapInfo, off=long, count=int)
cpdef void swap_duplicate(object m, object entry, long nr=*) except *
@cython.locals(si=SwapInfo, off=long)
cpdef void swap_free(object m, object entry, long nr=*) except *
@cython.locals(off=long, c=long, order=int, zswap_used=bint)
cpdef void swap_range_free(SwapInfo si, long offset, long nr) except *
@cython.locals(si=SwapInfo)
cpdef Folio swap_cache_get_folio(object m, object entry)
@cython.locals(si=SwapInfo, nr=long, off=long, folio=Folio)
cpdef Folio swap_cache_alloc_folio(object m, object entry, int order=*)
@cython.locals(si=SwapInfo, off=long)
cpdef void swap_cache_del_folio(object m, Folio folio) except *
@cython.locals(si=SwapInfo, off=long, o=long)
cpdef bint folio_free_swap(object m, Folio folio) except? False

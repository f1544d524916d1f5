# Types of pyzram/mm/swapfile.py when it is compiled (Cython pure-Python mode).
from pyzram.mm.folio cimport Folio


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

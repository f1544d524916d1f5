# Types of pyzram/mm/machine.py when it is compiled (Cython pure-Python mode).
from pyzram.lib.atomic cimport atomic64_t
from pyzram.mm.swap cimport VmEvents


cdef class Machine:
    cdef public bint swap_ops_series
    cdef public list swap_info
    cdef public object swap_lock
    cdef public long least_priority
    cdef public atomic64_t nr_swap_pages
    cdef public list swap_avail
    cdef public object sio_pool
    cdef public VmEvents vm_events
    cdef public object swap_block_ops
    cdef public list mmlist
    cdef public object swap_readahead
    cdef public long totalram_pages
    cdef public object zswap
    cdef public long tlb_entries
    cdef public object tlb_2m_entries
    cdef public list free_pages
    cdef public long nr_free_pages
    cdef object __weakref__

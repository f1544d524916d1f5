# Types of pyzram/mm/swap_ops.py when it is compiled (Cython pure-Python mode).
cimport cython

@cython.final
cdef class SwapOps:
    cdef readonly str name
    cdef readonly object submit_write
    cdef readonly object submit_read
    cdef readonly object can_merge
    cdef readonly object slot_free_notify
    cdef readonly long flags
    cdef object __weakref__

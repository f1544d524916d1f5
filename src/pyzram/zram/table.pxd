# Types of pyzram/zram/table.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport atomic_begin, atomic_end

@cython.final
cdef class ZramTable:
    cdef public Py_ssize_t nr_pages
    cdef public object handle_np, flags_np, ac_time_np
    cdef public unsigned long[::1] handle
    cdef public unsigned long[::1] flags
    cdef public long[::1] ac_time
    cdef object _cv
    cdef Py_ssize_t _waiters
    cdef public object yield_point

    @cython.locals(flags='unsigned long')
    cpdef void slot_lock(self, Py_ssize_t index)
    @cython.locals(flags='unsigned long')
    cpdef bint slot_trylock(self, Py_ssize_t index)
    @cython.locals(waiters=Py_ssize_t)
    cpdef void slot_unlock(self, Py_ssize_t index)
    cpdef unsigned long get_obj_size(self, Py_ssize_t index)
    cpdef unsigned long get_priority(self, Py_ssize_t index)
    cpdef bint allocated(self, Py_ssize_t index)

cdef unsigned long _LOCK_BIT, _UNLOCK, _SIZE_MASK, _ALLOCATED

# Types of pyzram/mm/swap.py when it is compiled (Cython pure-Python mode).
cimport cython
from cpython.pythread cimport PyThread_get_thread_ident
from pyzram.lib.atomic cimport atomic_begin, atomic_end

@cython.freelist(64)
cdef class SwapIoCtx:
    cdef public object machine
    cdef public object sio
    cdef public object sis


cdef class VmEventState:
    cdef public long long[::1] event
    cdef public dict mthp


cdef class VmEvents:
    cdef object _lock
    cdef dict _by_ident
    cdef unsigned long _last_ident
    cdef VmEventState _last_state
    cdef object __weakref__

    @cython.locals(ident="unsigned long", mine=VmEventState)
    cpdef VmEventState _this_cpu(self)
    cpdef void count(self, int item, long n=*) except *
    @cython.locals(m=dict)
    cpdef void count_mthp(self, int order, str name, long n=*) except *

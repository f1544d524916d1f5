# Types of pyzram/mm/swap.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.percpu cimport PerCpu, this_cpu_ptr

@cython.final
cdef class SwapIoCtx:
    cdef public object machine
    cdef public object sio
    cdef public object sis


@cython.final
cdef class VmEventState:
    cdef public long long[::1] event
    cdef public dict mthp


@cython.final
cdef class VmEvents:
    cdef PerCpu _pcpu
    cdef object __weakref__

    cpdef VmEventState _this_cpu(self)
    @cython.locals(mine=VmEventState)
    cpdef void count(self, int item, long n=*) except *
    @cython.locals(m=dict)
    cpdef void count_mthp(self, int order, str name, long n=*) except *

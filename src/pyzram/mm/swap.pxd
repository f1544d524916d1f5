# Types of pyzram/mm/swap.py when it is compiled (Cython pure-Python mode).
cimport cython

@cython.freelist(64)
cdef class SwapIoCtx:
    cdef public object machine
    cdef public object sio
    cdef public object sis


cdef class VmEvents:
    cdef object _lock
    cdef dict _by_ident
    cdef tuple _last
    cdef object __weakref__

    @cython.locals(last=tuple, mine=tuple)
    cpdef tuple _this_cpu(self)
    @cython.locals(mine=tuple, c=dict)
    cpdef void count(self, str name, long n=*) except *
    @cython.locals(mine=tuple, m=dict)
    cpdef void count_mthp(self, int order, str name, long n=*) except *

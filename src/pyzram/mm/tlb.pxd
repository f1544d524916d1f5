# Types of pyzram/mm/tlb.py when it is compiled (Cython pure-Python mode).
cimport cython

cdef unsigned char _NONE, _CLEAN, _DIRTY

@cython.final
cdef class Tlb:
    cdef public long nr_entries, nr, oldest, newest
    cdef public unsigned char[::1] state
    cdef public long[::1] prev, next

    @cython.locals(st="unsigned char")
    cpdef bint hit(self, long vpn, bint write) except -1
    cpdef void fill(self, long vpn, bint dirty) except *
    cpdef void flush_tlb_one_user(self, long vpn) except *
    cpdef void flush_tlb_all(self) except *
    @cython.locals(p=long, n=long)
    cdef void _unlink(self, long vpn)
    @cython.locals(last=long)
    cdef void _link_newest(self, long vpn)

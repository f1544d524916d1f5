# Types of pyzram/mm/folio.py when it is compiled (Cython pure-Python mode).

cdef class Folio:
    cdef public int order
    cdef public object data
    cdef public long flags
    cdef public object swap
    cdef public object memcg
    cdef object _lock
    cdef object __weakref__

    cpdef bint test(self, long flag)
    cpdef void set(self, long flag)
    cpdef void clear(self, long flag)
    cpdef void lock(self) except *
    cpdef bint trylock(self) except? False
    cpdef void unlock(self) except *
    cpdef void mark_uptodate(self)
    cpdef void mark_dirty(self)
    cpdef void start_writeback(self) except *
    cpdef void end_writeback(self) except *

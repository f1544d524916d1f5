# Types of pyzram/mm/tlb.py when it is compiled (Cython pure-Python mode).

cdef class Tlb:
    cdef public object entries
    cdef public long nr_entries

    cpdef bint hit(self, long vpn, bint write) except -1
    cpdef void fill(self, long vpn, bint dirty) except *
    cpdef void flush_tlb_one_user(self, long vpn) except *
    cpdef void flush_tlb_all(self) except *

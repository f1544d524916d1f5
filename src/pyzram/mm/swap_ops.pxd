# Types of pyzram/mm/swap_ops.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.mm.folio cimport Folio

# The hooks are C methods: a call through ``si.ops`` is an indirect C call
# through the type's method table (not final: implementations subclass it).
cdef class SwapOps:
    cdef readonly str name
    cdef readonly long flags
    cdef object __weakref__

    cpdef void submit_write(self, object ctx) except *
    cpdef void submit_read(self, object ctx) except *
    cpdef bint can_merge(self, object si, Folio folio, Folio prev, long prev_size, int rw) except? False
    cpdef void slot_free_notify(self, object si, long offset) except *

# Types of pyzram/tools/bench/plug.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.mm.folio cimport Folio
from pyzram.mm.page_io cimport swap_add_folio, swap_read_end, swap_write_end
from pyzram.mm.swap cimport SwapIoCtx
from pyzram.mm.swap_ops cimport SwapOps

@cython.locals(i=Py_ssize_t)
cpdef void add_folios(SwapIoCtx ctx, list folios, Py_ssize_t lo, Py_ssize_t hi, int rw) except *


cdef class NullSwapOps(SwapOps):
    cdef public SwapOps inner

    cpdef void submit_write(self, object ctx) except *
    cpdef void submit_read(self, object ctx) except *
    cpdef void slot_free_notify(self, object si, long offset) except *

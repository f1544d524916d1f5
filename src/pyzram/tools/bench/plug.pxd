# Types of pyzram/tools/bench/plug.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.mm.folio cimport Folio
from pyzram.mm.page_io cimport swap_add_folio
from pyzram.mm.swap cimport SwapIoCtx

@cython.locals(i=Py_ssize_t)
cpdef void add_folios(SwapIoCtx ctx, list folios, Py_ssize_t lo, Py_ssize_t hi, int rw) except *

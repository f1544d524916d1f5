# Types of pyzram/tools/kcost.py when it is compiled (Cython pure-Python mode): the
# page sampler and the batch timer run inside the measured window of every run, at
# each batch.
cimport cython
from pyzram.mm.folio cimport Folio
from pyzram.mm.swap_ops cimport SwapOps

# Constants the sampler reads, C integers here (PAGE_SIZE imported by the .py).
cdef Py_ssize_t PAGE_SIZE, _SAMPLE, _SCHEDULE

cdef class PageSampler:
    cdef public long[::1] names, vpn_of_slot, _keys
    cdef public object page_of
    cdef public object _rng
    cdef public Py_ssize_t kept, seen, _i, _next
    cdef public bint active
    cdef public double _log_w
    cdef public list _at, _slot

    @cython.locals(n=Py_ssize_t, first=Py_ssize_t, k=Py_ssize_t, m=Py_ssize_t, j=Py_ssize_t)
    cpdef void add(self, object folio) except *
    cdef void _replace(self, object folio, Py_ssize_t j) except *
    cpdef long name(self, object folio, Py_ssize_t j) except? -1
    cpdef void add_batch(self, object sio) except *

cdef class TimedOps(SwapOps):
    cdef public SwapOps inner
    cdef public list wlat, wpages, rlat, rpages
    cdef public PageSampler write_sampler, read_sampler

    @cython.locals(n=Py_ssize_t, t=double)
    cpdef void submit_write(self, object ctx) except *
    @cython.locals(n=Py_ssize_t, t=double)
    cpdef void submit_read(self, object ctx) except *
    cpdef bint can_merge(self, object si, Folio folio, Folio prev, long prev_size, int rw) except? False
    cpdef void slot_free_notify(self, object si, long offset) except *

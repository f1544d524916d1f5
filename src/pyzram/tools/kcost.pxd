# Types of pyzram/tools/kcost.py when it is compiled (Cython pure-Python mode): the
# page sampler and the batch timer run inside the measured window of every run, at
# each batch.
cimport cython

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

cdef class TimedSubmit:
    cdef public object fn
    cdef public list lat, pages
    cdef public PageSampler before, after

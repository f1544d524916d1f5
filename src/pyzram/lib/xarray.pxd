# Types of pyzram/lib/xarray.py when it is compiled (Cython pure-Python mode).
cimport cython

@cython.final
cdef class XArray:
    cdef public Py_ssize_t first
    cdef public list entries
    cdef public Py_ssize_t nr

cpdef object xa_load(XArray xa, Py_ssize_t index)
@cython.locals(i=Py_ssize_t)
cpdef object xa_store(XArray xa, Py_ssize_t index, object entry)
@cython.locals(i=Py_ssize_t)
cpdef object xa_erase(XArray xa, Py_ssize_t index)
cpdef bint xa_empty(XArray xa)

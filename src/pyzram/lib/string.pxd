# Types of pyzram/lib/string.py when it is compiled (Cython pure-Python mode).
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer

cdef extern from "string.h":
    void *libc_memcpy "memcpy" (void *dst, const void *src, size_t n)
    int libc_memcmp "memcmp" (const void *a, const void *b, size_t n)

cpdef void memcpy(unsigned char[::1] dst, Py_ssize_t dst_off, object src, Py_ssize_t src_off, Py_ssize_t n) except *
cpdef void memcpy_to_page(object page, Py_ssize_t offset, const unsigned char[::1] src, Py_ssize_t src_off, Py_ssize_t n) except *
@cython.locals(mem="unsigned char *", done=Py_ssize_t, step=Py_ssize_t)
cpdef void memset_l(object page, unsigned long long fill, Py_ssize_t n) except *
@cython.locals(r=int)
cpdef int memcmp(object a, Py_ssize_t a_off, object b, Py_ssize_t b_off, Py_ssize_t n) except? -2
cdef void _check_spans(str what, Py_ssize_t n, Py_ssize_t dst_off, Py_ssize_t dst_len, Py_ssize_t src_off, Py_ssize_t src_len) except *

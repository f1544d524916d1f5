# Types of pyzram/lib/string.py when it is compiled (Cython pure-Python mode).
cimport cython

cdef extern from "string.h":
    void *libc_memcpy "memcpy" (void *dst, const void *src, size_t n)

cpdef void memcpy(unsigned char[::1] dst, Py_ssize_t dst_off, const unsigned char[::1] src, Py_ssize_t src_off, Py_ssize_t n) except *

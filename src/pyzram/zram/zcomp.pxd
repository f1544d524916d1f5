# Types of pyzram/zram/zcomp.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.percpu cimport PerCpu, this_cpu_ptr

# pyzram._kcodec's compress_into and decompress_into, called in C (kcodec_capi.h)
cdef extern from "kcodec_capi.h":
    Py_ssize_t kc_compress_into "kc_capi_compress_into"(
        int algo, object page, object dst, object acceleration, object dict
    ) except -1
    int kc_decompress_into "kc_capi_decompress_into"(
        int algo, object src, Py_ssize_t offset, Py_ssize_t length, object page, object dict
    ) except -1


@cython.final
cdef class ZcompStrm:
    cdef public bytearray buffer
    cdef public object own, mem
    cdef public list ahead
    cdef public Py_ssize_t ahead_next
    cdef public object ahead_mem
    cdef public list ahead_out
    cdef public object ahead_sizes
    cdef public int[::1] ahead_len

cdef class ZcompBackend:
    cdef public object params
    cdef dict __dict__

    cpdef Py_ssize_t compress_into(self, object page, object dst) except? -1
    cpdef void compress_batch(self, list pages, object dst, object sizes) except *
    cpdef int decompress_into(
        self, object src, Py_ssize_t offset, Py_ssize_t length, object page
    ) except? -1

cdef class KernelCodecBackend(ZcompBackend):
    cdef public object _k, _dict
    cdef public int _algo, _dict_err
    cdef public object _arg

@cython.final
cdef class Zcomp:
    cdef public str name
    cdef public object params
    cdef public PerCpu _streams
    cdef public ZcompBackend backend

    cpdef ZcompStrm zcomp_stream_get(self)
    cpdef void zcomp_stream_put(self, ZcompStrm zstrm)
    cpdef void zcomp_compress_ahead(self, ZcompStrm zstrm, list pages) except *
    @cython.locals(ahead=list, k=Py_ssize_t)
    cpdef Py_ssize_t zcomp_compress(self, ZcompStrm zstrm, object src) except? -1
    cpdef int zcomp_decompress(
        self, ZcompStrm zstrm, object src, Py_ssize_t offset, Py_ssize_t length, object dst
    ) except? -1

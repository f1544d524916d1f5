# Types of pyzram/lib/rwsem.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport atomic_begin, atomic_end
cdef class _ReadGuard
cdef class _WriteGuard

@cython.final
cdef class RWSemaphore:
    cdef object _cv
    cdef Py_ssize_t _readers, _writers_waiting, _waiters
    cdef bint _writer
    cdef _ReadGuard _read_guard
    cdef _WriteGuard _write_guard

    @cython.locals(taken=bint)
    cpdef void down_read(self)
    @cython.locals(wake=bint)
    cpdef void up_read(self)
    @cython.locals(taken=bint)
    cpdef void down_write(self)
    @cython.locals(wake=bint)
    cpdef void up_write(self)
    cdef void _wake(self)
    cpdef _ReadGuard read(self)
    cpdef _WriteGuard write(self)

@cython.final
cdef class _ReadGuard:
    cdef RWSemaphore _sem

@cython.final
cdef class _WriteGuard:
    cdef RWSemaphore _sem

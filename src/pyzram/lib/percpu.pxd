# Types of pyzram/lib/percpu.py when it is compiled (Cython pure-Python mode).
cimport cython
from cpython.pythread cimport PyThread_get_thread_ident
from pyzram.lib.atomic cimport atomic_begin, atomic_end

@cython.final
cdef class PerCpu:
    cdef object _alloc
    cdef object _lock
    cdef dict _by_ident
    cdef unsigned long _last_ident
    cdef object _last

    cpdef list values(self)

@cython.locals(ident="unsigned long")
cpdef object this_cpu_ptr(PerCpu pcpu)

# Types of pyzram/lib/atomic.py when it is compiled (Cython pure-Python mode).
cimport cython

cpdef void atomic_begin() noexcept
cpdef void atomic_end() noexcept

@cython.final
cdef class atomic64_t:
    cdef public long long counter

cpdef long long atomic64_read(atomic64_t v)
cpdef void atomic64_set(atomic64_t v, long long i)
cpdef void atomic64_add(long long i, atomic64_t v)
cpdef void atomic64_sub(long long i, atomic64_t v)
cpdef void atomic64_inc(atomic64_t v)
cpdef void atomic64_dec(atomic64_t v)
@cython.locals(cur="long long")
cpdef (bint, long long) atomic64_try_cmpxchg(atomic64_t v, long long old, long long new)

# Types of pyzram/lib/spinlock.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport atomic_begin, atomic_end

cdef list spin_wait_table
cdef long _SPIN_WAIT_MASK

@cython.final
cdef class spinlock_t:
    cdef public bint locked
    cdef public Py_ssize_t waiters

@cython.locals(locked=bint)
cpdef bint spin_trylock(spinlock_t lock)
@cython.locals(locked=bint)
cpdef void spin_lock(spinlock_t lock) except *
@cython.locals(locked=bint, waiters=Py_ssize_t)
cpdef void spin_unlock(spinlock_t lock) except *

# Types of pyzram/mm/folio.py when it is compiled (Cython pure-Python mode).

cimport cython
from pyzram.lib.list cimport INIT_LIST_HEAD, ListHead
from pyzram.lib.atomic cimport atomic_begin, atomic_end
from pyzram.mm.machine cimport Machine

cdef list folio_wait_table
cdef long _WAIT_TABLE_MASK
cdef long _locked_bit, _waiters_bit, _uptodate_bit, _dirty_bit, _writeback_bit, _reclaim_bit
cdef long _swapbacked_bit, _page_size, _free_pages_high
cdef int PAGE_POISON
cpdef long folio_waitqueue(object folio)


@cython.final
cdef class SwpEntry:
    cdef readonly long type
    cdef readonly long offset


@cython.locals(entry=SwpEntry)
cpdef SwpEntry swp_entry(long type_, long offset)


@cython.final
cdef class Folio(ListHead):
    cdef readonly int order
    cdef readonly long nr_pages
    cdef readonly long size
    cdef readonly bytearray data
    cdef readonly object pages
    cdef public long flags
    cdef public SwpEntry swap
    cdef public object memcg
    cdef public object mapping
    cdef public long index
    cdef object __weakref__

    cpdef object page(self, long j)
    cpdef bint test(self, long flag)
    cpdef void set(self, long flag)
    cpdef void clear(self, long flag)
    @cython.locals(locked=long)
    cpdef void lock(self) except *
    @cython.locals(flags=long)
    cpdef bint trylock(self) except? False
    @cython.locals(flags=long)
    cpdef void unlock(self) except *
    cpdef void set_locked(self)
    cpdef void mark_uptodate(self)
    cpdef void mark_dirty(self)
    cpdef void start_writeback(self) except *
    cpdef void end_writeback(self) except *


@cython.locals(size=long)
cpdef void _folio_init(Folio folio, int order, object data, bint reused=*) except *
cpdef Folio folio_alloc(int order=*, object data=*)
@cython.locals(free=list, folio=Folio)
cpdef Folio folio_alloc_mpol(Machine m, int order=*, object data=*)
@cython.locals(folio=Folio, nr=long, j=long, at=long, k=long, data=bytearray)
cpdef void free_unref_folios(Machine m, list folios) except *

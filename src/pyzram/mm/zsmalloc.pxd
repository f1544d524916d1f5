# Types of pyzram/mm/zsmalloc.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport atomic_begin, atomic_end
from pyzram.lib.rwsem cimport RWSemaphore
from pyzram.lib.spinlock cimport spin_lock, spin_unlock, spinlock_t
from pyzram.lib.string cimport memcpy

cdef Py_ssize_t _HDR, _PG_SHIFT, _PG_SIZE, _MAX_ALLOC
cdef int _EMPTY
cdef unsigned long long _TAG, _TAG_BITS, _LAST_LINK, _FREEOBJ_MASK
cdef unsigned int _NONFULL_GROUPS
cdef tuple _FULLEST

@cython.final
cdef class SizeClass:
    cdef public int index, size, pages_per_zspage, objs_per_zspage
    cdef public bint huge
    cdef public list fullness_list
    cdef public tuple fg_of
    cdef public unsigned int nonempty
    cdef public Py_ssize_t objs_allocated, objs_inuse
    cdef public spinlock_t lock

    cpdef list zspages(self, int fg)

@cython.final
cdef class Zspage:
    cdef public Py_ssize_t id
    cdef public SizeClass cls
    cdef public int inuse, fullness
    cdef public unsigned int freeobj
    cdef public long huge_handle
    cdef public Py_ssize_t base
    cdef public Zspage prev, next

cpdef void _zspage_init(Zspage zspage, Py_ssize_t zid, SizeClass cls, Py_ssize_t base)
cpdef bint IS_ERR_VALUE(long handle)
@cython.locals(head=Zspage)
cpdef void insert_zspage(SizeClass cls, Zspage zspage, int fg)
@cython.locals(fg=int, prev=Zspage, nxt=Zspage)
cpdef void remove_zspage(SizeClass cls, Zspage zspage)
cpdef int fix_fullness_group(SizeClass cls, Zspage zspage)

cdef class ZsPool:
    cdef public str name
    cdef public int chain_size
    cdef public Py_ssize_t pages_allocated, pages_compacted
    cdef public spinlock_t _stat_lock
    cdef public object _compaction_in_progress
    cdef public RWSemaphore _migrate_lock
    cdef public list size_class
    cdef public Py_ssize_t huge_class_size
    cdef public list class_of_len
    cdef public Py_ssize_t _arena_size, _arena_top, _dirty_top, _populated
    cdef public object _arena, arena
    cdef public unsigned long long[::1] _words
    cdef public unsigned char[::1] mem
    cdef public list _free_extents
    cdef public list _page_zspage
    cdef public object _obj_addr
    cdef public long[::1] _addr
    cdef public Py_ssize_t _next_handle, _next_zspage_id, _nr_zspages
    cdef public long _free_handle

    @cython.locals(handle=long, n=Py_ssize_t, i=Py_ssize_t, addr="long[::1]")
    cpdef long cache_alloc_handle(self)
    cpdef void cache_free_handle(self, long handle)
    @cython.locals(obj=Py_ssize_t)
    cpdef Py_ssize_t _handle_to_obj(self, long handle) except? -1
    cpdef Zspage _obj_to_zspage(self, Py_ssize_t obj)
    @cython.locals(cls=SizeClass)
    cpdef Py_ssize_t _obj_idx(self, Zspage zspage, Py_ssize_t obj)
    cpdef tuple _obj_to_location(self, Py_ssize_t obj)
    @cython.locals(pages=int, base=Py_ssize_t, first=Py_ssize_t, i=Py_ssize_t, zspage=Zspage, zid=Py_ssize_t, extents=list)
    cpdef Zspage alloc_zspage(self, SizeClass cls)
    @cython.locals(start=Py_ssize_t, end=Py_ssize_t)
    cpdef void _populate(self) except *
    @cython.locals(step=Py_ssize_t, w=Py_ssize_t, i=Py_ssize_t)
    cpdef void init_zspage(self, SizeClass cls, Zspage zspage)
    @cython.locals(first=Py_ssize_t, i=Py_ssize_t)
    cpdef void _free_zspage(self, SizeClass cls, Zspage zspage)
    @cython.locals(cls=SizeClass, obj_idx=Py_ssize_t, addr=Py_ssize_t)
    cpdef void obj_malloc(self, Zspage zspage, long handle)
    cpdef long zs_malloc(self, Py_ssize_t size)
    cpdef long _obj_handle(self, Zspage zspage, int obj_idx)
    @cython.locals(cls=SizeClass, link="unsigned long long", obj_idx=Py_ssize_t)
    cpdef void _obj_free(self, Zspage zspage, Py_ssize_t obj)
    cpdef void zs_free(self, long handle)
    cpdef Py_ssize_t zs_obj_read_begin(self, long handle)
    cpdef void zs_obj_read_end(self, long handle)
    cpdef Py_ssize_t obj_addr(self, long handle)
    @cython.locals(obj=Py_ssize_t, cls=SizeClass)
    cpdef Py_ssize_t _obj_span(self, long handle, Py_ssize_t length)
    @cython.locals(off=Py_ssize_t)
    cpdef void zs_obj_write(self, long handle, object handle_mem, Py_ssize_t mem_len)
    cpdef Py_ssize_t zs_get_total_pages(self)

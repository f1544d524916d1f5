# Types of pyzram/mm/zsmalloc.py when it is compiled (Cython pure-Python mode).
cimport cython

cdef Py_ssize_t _HDR, _PG_SHIFT
cdef unsigned long long _TAG, _TAG_BITS
cdef unsigned int _NONFULL_GROUPS
cdef tuple _FULLEST

cdef class SizeClass:
    cdef public int index, size, pages_per_zspage, objs_per_zspage
    cdef public bint huge
    cdef public list fullness_list
    cdef public tuple fg_of
    cdef public unsigned int nonempty
    cdef public object freeobj_init
    cdef public Py_ssize_t objs_allocated, objs_inuse
    cdef cython.pymutex lock

cdef class Zspage:
    cdef public Py_ssize_t id
    cdef public SizeClass cls
    cdef public int inuse, fullness
    cdef public object freeobj
    cdef public long huge_handle
    cdef public Py_ssize_t base

cpdef void insert_zspage(SizeClass cls, Zspage zspage, int fg)
cpdef void remove_zspage(SizeClass cls, Zspage zspage)
cpdef int fix_fullness_group(SizeClass cls, Zspage zspage)

cdef class ZsPool:
    cdef public str name
    cdef public int chain_size
    cdef public Py_ssize_t pages_allocated, pages_compacted
    cdef cython.pymutex _stat_lock
    cdef public object _compaction_in_progress, _migrate_lock
    cdef public list size_class
    cdef public Py_ssize_t huge_class_size
    cdef public list class_of_len
    cdef public Py_ssize_t _arena_size, _arena_top, _dirty_top
    cdef public object _arena, arena
    cdef public unsigned long long[::1] _words
    cdef public list _free_extents
    cdef public object _page_owner, _obj_addr
    cdef public long[::1] _addr
    cdef public Py_ssize_t _next_handle, _next_zspage_id
    cdef public list _free_handles
    cdef public dict _zspages

    cpdef long cache_alloc_handle(self)
    cpdef void cache_free_handle(self, long handle)
    cpdef tuple _handle_to_obj(self, long handle)
    cpdef Zspage alloc_zspage(self, SizeClass cls)
    cpdef void _free_zspage(self, SizeClass cls, Zspage zspage)
    cpdef void obj_malloc(self, Zspage zspage, long handle)
    cpdef long zs_malloc(self, Py_ssize_t size)
    cpdef long _obj_handle(self, Zspage zspage, int obj_idx)
    cpdef void _obj_free(self, Zspage zspage, int obj_idx)
    cpdef void zs_free(self, long handle)
    cpdef Py_ssize_t zs_obj_read_begin(self, long handle)
    cpdef void zs_obj_read_end(self, long handle)
    cpdef Py_ssize_t obj_addr(self, long handle)
    cpdef Py_ssize_t _obj_span(self, long handle, Py_ssize_t length)
    cpdef void zs_obj_write(self, long handle, object data)
    cpdef Py_ssize_t zs_get_total_pages(self)

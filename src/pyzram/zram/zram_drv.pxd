# Types of pyzram/zram/zram_drv.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport (
    atomic64_t, atomic64_add, atomic64_dec, atomic64_inc, atomic64_read, atomic64_set,
    atomic64_sub, atomic64_try_cmpxchg,
)
from pyzram.lib.rwsem cimport RWSemaphore
from pyzram.lib.string cimport memcmp, memcpy_to_page, memset_l
from pyzram.mm.zsmalloc cimport IS_ERR_VALUE, ZsPool
from pyzram.zram.table cimport ZramTable
from pyzram.zram.zcomp cimport Zcomp, ZcompStrm

cdef unsigned long _SAME, _WB, _HUGE, _SIZE_MASK, _PRIO_MASK, _CLEAR_ON_ACCESS, _CLEAR_ON_FREE
cdef int _PRIO_SHIFT
cdef Py_ssize_t _PG_SIZE, _PRIMARY, _BATCH
cdef Py_ssize_t _LAST_WORD

@cython.final
cdef class ZramStats:
    cdef public atomic64_t compr_data_size, failed_reads, failed_writes, notify_free
    cdef public atomic64_t same_pages, huge_pages, huge_pages_since, pages_stored
    cdef public atomic64_t max_used_pages, miss_free, bd_count, bd_reads, bd_writes

@cython.locals(mem=bytearray, fill="unsigned long long", b="unsigned long long", k=Py_ssize_t)
cpdef object page_same_filled(object page)

cdef class Zram:
    cdef public object config, clock, comps, comp_algs, params
    cdef public RWSemaphore init_lock
    cdef public ZramStats stats
    cdef public object disk, sysfs, backing_dev, yield_point
    cdef public object _open_lock, _wb_limit_lock, _pp_lock
    cdef public int dev_id
    cdef public str disk_name, swap_read_ordering, backing_read_fallback
    cdef public Py_ssize_t disksize, limit_pages, num_active_comps, huge_class_size
    cdef public object bd_wb_limit
    cdef public bint _claim, wb_limit_enable
    cdef public ZramTable table
    cdef public ZsPool mem_pool

    cpdef bint init_done(self)
    cpdef void zram_accessed(self, Py_ssize_t index)
    cpdef void zram_free_page(self, Py_ssize_t index)
    @cython.locals(cur_max="long long", done=bint)
    cpdef void update_used_max(self, Py_ssize_t pages)
    @cython.locals(alloced_pages=Py_ssize_t)
    cpdef bint zram_can_store_page(self)
    cpdef int write_same_filled_page(self, unsigned long fill, Py_ssize_t index)
    cpdef int write_incompressible_page(self, object page, Py_ssize_t index)
    cpdef int zram_write_page(self, object page, Py_ssize_t index)
    cpdef int read_same_filled_page(self, object page, Py_ssize_t index)
    cpdef int read_incompressible_page(self, object page, Py_ssize_t index)
    cpdef int read_compressed_page(self, object page, Py_ssize_t index)
    cpdef int zram_read_from_zspool(self, object page, Py_ssize_t index)
    cpdef int zram_read_page(self, object page, Py_ssize_t index)
    cpdef void read_slot_unlocked(self, Py_ssize_t index)
    cpdef void zram_slot_free_notify(self, Py_ssize_t index)

@cython.locals(
    tbl=ZramTable, comp=Zcomp, zstrm=ZcompStrm, n=Py_ssize_t, lo=Py_ssize_t, hi=Py_ssize_t,
    j=Py_ssize_t, index=Py_ssize_t,
)
cpdef bint zram_write_pages(Zram zram, list pages, const long[::1] slots) except? False

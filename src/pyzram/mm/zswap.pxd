# Types of pyzram/mm/zswap.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.list cimport INIT_LIST_HEAD, List, ListHead, list_add_tail, list_del, list_move_tail
from pyzram.lib.percpu cimport PerCpu, this_cpu_ptr
from pyzram.lib.atomic cimport atomic_begin, atomic_end
from pyzram.lib.spinlock cimport spin_lock, spin_unlock, spinlock_t
from pyzram.lib.string cimport memcpy_to_page
from pyzram.lib.xarray cimport XArray, xa_empty, xa_erase, xa_load, xa_store
from pyzram.mm.folio cimport Folio, SwpEntry, swp_entry
from pyzram.mm.machine cimport Machine
from pyzram.mm.zsmalloc cimport IS_ERR_VALUE, ZsPool

# Constants imported by the .py, C longs here: each use is a C load, not a
# module-global lookup and a boxed int (not re-exported: import them from
# the module that defines them).
cdef long PAGE_SHIFT, PAGE_SIZE, PG_reclaim
cdef int ZSWPIN, ZSWPOUT, ZSWPWB
cdef long ZSWAP_ADDRESS_SPACE_SHIFT  # (its own; not exported)
cdef int EAGAIN, EEXIST, EINVAL, EIO, ENODEV, ENOENT, ENOMEM, ENOSPC


@cython.final
cdef class ZswapPool:
    cdef public ZsPool zs_pool
    cdef public str tfm_name
    cdef public long ref
    cdef public bint killed
    cdef PerCpu _ctx

    @cython.locals(buffer="unsigned char[::1]")
    cpdef tuple _acomp_ctx_alloc(self)
    cpdef tuple acomp_ctx(self)


@cython.final
cdef class ZswapEntry(ListHead):
    cdef public SwpEntry swpentry
    cdef public long length
    cdef public bint referenced
    cdef public ZswapPool pool
    cdef public long handle
    cdef public object objcg


@cython.final
cdef class ListLruOne(List):
    pass


@cython.final
cdef class Zswap:
    cdef public long totalram_pages
    cdef public tuple compressors
    cdef public str default_compressor
    cdef public int chain_size
    cdef public bint enabled
    cdef public str compressor
    cdef public long max_pool_percent
    cdef public long accept_thr_percent
    cdef public bint shrinker_enabled
    cdef public int init_state
    cdef cython.pymutex init_lock
    cdef public bint has_pool
    cdef public bint ever_enabled
    cdef public list pools
    cdef public spinlock_t pools_lock
    cdef public long pools_count
    cdef public bint pool_reached_full
    cdef public dict trees
    cdef public spinlock_t tree_lock
    cdef public dict list_lru
    cdef public spinlock_t lru_lock
    cdef public long next_shrink
    cdef public dict shrinker_nr_deferred
    cdef public dict nr_disk_swapins
    cdef public long stored_pages
    cdef public long stored_incompressible_pages
    cdef public long pool_limit_hit
    cdef public long written_back_pages
    cdef public long reject_reclaim_fail
    cdef public long reject_compress_fail
    cdef public long reject_compress_poor
    cdef public long decompress_fail
    cdef public long reject_alloc_fail
    cdef public long reject_kmemcache_fail
    cdef public bint shrink_work_queued
    cdef object __weakref__

    cpdef ZswapPool zswap_pool_current(self)
    @cython.locals(dead=bint)
    cpdef ZswapPool zswap_pool_current_get(self)
    @cython.locals(last=bint)
    cpdef void zswap_pool_put(self, ZswapPool pool) except *
    @cython.locals(pool=ZswapPool, total=long)
    cpdef long zswap_total_pages(self) except -1
    cpdef long zswap_max_pages(self)
    cpdef long zswap_accept_thr_pages(self)
    @cython.locals(cur_pages=long, max_pages=long)
    cpdef bint zswap_check_limits(self) except? True
    cpdef XArray swap_zswap_tree(self, SwpEntry swp)
    cpdef void zswap_lru_add(self, ZswapEntry entry) except *
    @cython.locals(lru=List)
    cpdef void zswap_lru_del(self, ZswapEntry entry) except *
    @cython.locals(pool=ZswapPool)
    cpdef void zswap_entry_free(self, ZswapEntry entry) except *


cpdef object _memcg_of(object objcg)
cpdef bint mem_cgroup_zswap_writeback_enabled(Zswap zs, object memcg) except? False
@cython.locals(dlen=long, comp_ret=long, alloc_ret=long, handle=long)
cpdef bint zswap_compress(Zswap zs, object page, ZswapEntry entry, ZswapPool pool, object memcg) except? False
@cython.locals(pool=ZswapPool, zsp=ZsPool, off=Py_ssize_t, ret=int)
cpdef bint zswap_decompress(Zswap zs, ZswapEntry entry, Folio folio) except? False
@cython.locals(entry=ZswapEntry, tree=XArray, old=ZswapEntry)
cpdef bint zswap_store_page(Zswap zs, object page, SwpEntry swp, object objcg, ZswapPool pool, object memcg) except? False
@cython.locals(swp=SwpEntry, zs=Zswap, pool=ZswapPool, nr_pages=long, index=long, off=long, entry=ZswapEntry, tree=XArray, ret=bint)
cpdef bint zswap_store(Machine m, Folio folio) except? False
@cython.locals(swp=SwpEntry, zs=Zswap, entry=ZswapEntry, tree=XArray)
cpdef int zswap_load(Machine m, Folio folio) except? -1000
@cython.locals(zs=Zswap)
cpdef void zswap_folio_swapin(Machine m, Folio folio) except *
@cython.locals(zs=Zswap, entry=ZswapEntry, tree=XArray, trees=list)
cpdef void zswap_invalidate(Machine m, SwpEntry swp) except *

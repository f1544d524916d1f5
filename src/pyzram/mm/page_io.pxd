# Types of pyzram/mm/page_io.py when it is compiled (Cython pure-Python mode).
cimport cython
from pyzram.lib.atomic cimport atomic_begin, atomic_end
from pyzram.mm.folio cimport Folio
from pyzram.mm.machine cimport Machine
from pyzram.mm.swap cimport SwapIoCtx, VmEvents
from pyzram.mm.swapfile cimport SwapInfo, folio_free_swap, swp_swap_info
from pyzram.mm.swap_ops cimport SwapOps
from pyzram.mm.zswap cimport (
    mem_cgroup_zswap_writeback_enabled,
    zswap_folio_swapin,
    zswap_load,
    zswap_store,
)

# Constants imported by the .py, C longs here: each use is a C load, not a
# module-global lookup and a boxed int (not re-exported: import them from
# the module that defines them).
cdef long PAGE_SHIFT, PAGE_SIZE, PG_dirty, PG_locked, PG_reclaim, SWAP_CLUSTER_MAX
cdef int READ, WRITE
cdef long SWAP_OPS_F_NOFS
cdef int NRSWPIN, NRSWPOUT, PSWPIN, PSWPOUT, SWPIN_ZERO, SWPOUT_ZERO, THP_SWPOUT
cdef int EIO, ENOENT

cdef long _HPAGE_PMD_ORDER
cdef bytearray _ZERO_PAGE_BUF


@cython.final
cdef class SwapIocb:
    cdef public object machine
    cdef public list bvecs
    cdef public long len
    cdef public bint _ended
    cdef object __weakref__


@cython.final
cdef class SioPool:
    cdef public object machine
    cdef public long size
    cdef public long outstanding
    cdef public long allocated_total
    cdef public long waiters
    cdef object _cv

    @cython.locals(free=bint, timed_out=bint)
    cpdef SwapIocb alloc(self)
    @cython.locals(waiters=long)
    cpdef void free(self, SwapIocb sio) except *


@cython.locals(folio=Folio, m=Machine, pool=SioPool)
cpdef void swap_read_end(SwapIocb sio, bint failed) except *
@cython.locals(folio=Folio, m=Machine, pool=SioPool)
cpdef void swap_write_end(SwapIocb sio, bint failed) except *
@cython.locals(sio=SwapIocb, prev=Folio)
cpdef bint swap_can_merge(SwapIoCtx ctx, SwapInfo si, Folio folio, int rw) except? False
@cython.locals(m=Machine, si=SwapInfo, sio=SwapIocb, pool=SioPool)
cpdef void swap_add_folio(SwapIoCtx ctx, Folio folio, int rw) except *
cpdef void _submit(SwapIoCtx ctx, int rw) except *
cpdef void swap_write_submit(SwapIoCtx ctx) except *
cpdef void swap_read_submit(SwapIoCtx ctx) except *
@cython.locals(m=Machine, si=SwapInfo, ops=SwapOps)
cpdef void _hand_over(SwapIoCtx ctx, int counter, int rw) except *
@cython.locals(i=long)
cpdef bint is_folio_zero_filled(Folio folio) except? False
@cython.locals(m=Machine, vm_events=VmEvents)
cpdef void __swap_writepage(SwapIoCtx ctx, Folio folio) except *
@cython.locals(m=Machine, si=SwapInfo)
cpdef int swap_writeout(SwapIoCtx ctx, Folio folio) except? -1
@cython.locals(m=Machine, si=SwapInfo, nz=long, data=bytearray, j=long)
cpdef void swap_read_folio(SwapIoCtx ctx, Folio folio) except *


cpdef long swap_folio_sector(SwapInfo si, Folio folio) except? -1
cpdef bint swap_bdev_can_merge(SwapInfo si, Folio folio, Folio prev, long prev_size, int rw) except? False
cpdef long swap_dev_pos(SwapInfo si, Folio folio) except? -1
cpdef bint swap_fs_can_merge(SwapInfo si, Folio folio, Folio prev, long prev_size, int rw) except? False


cdef class SwapBdevOps(SwapOps):
    cpdef void submit_write(self, object ctx) except *
    cpdef void submit_read(self, object ctx) except *
    cpdef bint can_merge(self, object si, Folio folio, Folio prev, long prev_size, int rw) except? False


cdef class SwapFsOps(SwapOps):
    cpdef void submit_write(self, object ctx) except *
    cpdef void submit_read(self, object ctx) except *
    cpdef bint can_merge(self, object si, Folio folio, Folio prev, long prev_size, int rw) except? False

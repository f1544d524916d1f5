# Types of pyzram/zram/swap.py when it is compiled (Cython pure-Python mode).
from pyzram.zram.zram_drv cimport Zram, zram_write_pages
from pyzram.mm.folio cimport Folio
from pyzram.lib.atomic cimport atomic64_inc
from pyzram.mm.swap cimport SwapIoCtx
from pyzram.mm.swapfile cimport SwapInfo
from pyzram.mm.swap_ops cimport SwapOps
cimport cython
from pyzram.mm.page_io cimport PAGE_SIZE, SwapIocb, swap_read_end, swap_write_end

# A constant imported by the .py, a C unsigned long here.
cdef unsigned long WB

@cython.locals(
    si=SwapInfo, zram=Zram, sio=SwapIocb, folio=Folio, j=Py_ssize_t, k=Py_ssize_t, pages=list,
    slots="long[::1]", failed=bint,
)
cpdef void zram_swap_submit_write(SwapIoCtx ctx) except *
@cython.locals(
    si=SwapInfo, zram=Zram, sio=SwapIocb, folio=Folio, base=Py_ssize_t, j=Py_ssize_t, failed=bint,
)
cpdef void zram_swap_submit_read(SwapIoCtx ctx) except *
cpdef int zram_swap_read_page(Zram zram, object page, Py_ssize_t index) except? -1000
cdef Py_ssize_t _LONG

@cython.locals(zram=Zram)
cpdef void zram_swap_slot_free_notify(SwapInfo si, long offset) except *


cdef class ZramSwapOpsAsPosted(SwapOps):
    cpdef void submit_write(self, object ctx) except *
    cpdef void submit_read(self, object ctx) except *
    cpdef void slot_free_notify(self, object si, long offset) except *


cdef class ZramSwapOps(ZramSwapOpsAsPosted):
    @cython.locals(sis=SwapInfo, zram=Zram)
    cpdef bint can_merge(self, object si, Folio folio, Folio prev, long prev_size, int rw) except? False

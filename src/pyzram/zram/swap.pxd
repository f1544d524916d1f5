# Types of pyzram/zram/swap.py when it is compiled (Cython pure-Python mode).
from pyzram.zram.zram_drv cimport Zram, zram_write_pages
from pyzram.mm.folio cimport Folio
from pyzram.lib.atomic cimport atomic64_inc
from pyzram.mm.swap cimport SwapIoCtx
from pyzram.mm.swapfile cimport SwapInfo
cimport cython
from pyzram.mm.page_io cimport swap_read_end, swap_write_end

# A constant imported by the .py, a C unsigned long here.
cdef unsigned long WB

cpdef Zram _zram_of(SwapInfo si)
cpdef int zram_swap_read_page(Zram zram, object page, Py_ssize_t index) except? -1000
cdef Py_ssize_t _LONG

# Types of pyzram/zram/zram_drv.py when it is compiled (Cython pure-Python mode).
from pyzram.zram.table cimport ZramTable

cdef unsigned long _SAME, _WB, _HUGE, _SIZE_MASK, _PRIO_MASK, _CLEAR_ON_ACCESS, _CLEAR_ON_FREE
cdef int _PRIO_SHIFT

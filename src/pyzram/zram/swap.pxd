# Types of pyzram/zram/swap.py when it is compiled (Cython pure-Python mode).
from pyzram.zram.zram_drv cimport Zram
from pyzram.mm.folio cimport Folio
from pyzram.lib.atomic cimport atomic64_inc

# Types of pyzram/mm/page_io.py when it is compiled (Cython pure-Python mode).
from pyzram.mm.folio cimport Folio
from pyzram.mm.swapfile cimport SwapInfo, folio_free_swap, swp_swap_info
from pyzram.mm.zswap cimport zswap_load, zswap_store

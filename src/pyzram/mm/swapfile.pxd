# Types of pyzram/mm/swapfile.py when it is compiled (Cython pure-Python mode).
from pyzram.mm.folio cimport Folio

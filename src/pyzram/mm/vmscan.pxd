# Types of pyzram/mm/vmscan.py when it is compiled (Cython pure-Python mode).
from pyzram.mm.folio cimport Folio

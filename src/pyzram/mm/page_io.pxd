# Types of pyzram/mm/page_io.py when it is compiled (Cython pure-Python mode).
from pyzram.mm.folio cimport Folio

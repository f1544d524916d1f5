# Types of pyzram/mm/mm_types.py when it is compiled (Cython pure-Python mode).
from pyzram.mm.folio cimport Folio, SwpEntry

# Not final: an address space (vmscan.AddressSpace) subclasses it; its
# unuse_pte is then reached through the type's method table.
cdef class MmStruct:
    cpdef long unuse_pte(self, SwpEntry entry, Folio folio) except -1

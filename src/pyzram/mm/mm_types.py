"""The memory descriptor (model of include/linux/mm_types.h's ``struct mm_struct``).

An address space of the model (:class:`pyzram.mm.vmscan.AddressSpace`) is an
:class:`MmStruct`.  What lives here is the part that code below the memory
model reaches: ``swapoff`` walks ``init_mm.mmlist`` (the machine's
``mmlist``) and asks each address space to map a folio it read where a PTE
still holds the entry (``unuse_mm`` → ``unuse_pte``).  ``swapfile`` cannot
import ``vmscan`` (``vmscan`` builds on it), so the call goes through this
base: compiled, a C method call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cython

if TYPE_CHECKING:
    from pyzram.mm.folio import Folio, SwpEntry


@cython.cclass
class MmStruct:
    """``struct mm_struct``: what ``swapoff`` needs of an address space."""

    def unuse_pte(self, entry: SwpEntry, folio: Folio) -> int:
        """``unuse_pte``: map ``folio`` where a PTE of this address space holds
        ``entry``; the references dropped (0 if none).  Defined by the address
        space (:meth:`pyzram.mm.vmscan.AddressSpace.unuse_pte`)."""
        raise NotImplementedError(f"{type(self).__name__} does not define unuse_pte")


__all__ = ["MmStruct"]

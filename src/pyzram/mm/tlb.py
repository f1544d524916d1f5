"""The data TLB of the CPU a process runs on, as x86 page aging sees it.

Reclaim ages anonymous pages by the accessed bit of their PTEs
(``folio_referenced`` → ``ptep_clear_flush_young``), and the hardware sets
that bit only when it *walks* the page table: on a TLB miss, or on a write
through a TLB entry loaded from a clean PTE (the walk that sets the dirty
bit uses, and so marks accessed, the same entries).  A translation still
cached in the TLB is used without touching the PTE.  On x86
``ptep_clear_flush_young`` does not flush (arch/x86/mm/pgtable.c: "clearing
the accessed bit without a TLB flush doesn't cause data corruption"), so a
hot page whose translation stays cached looks cold to the next scan and can
be reclaimed: the kernel then swaps it out and faults it back in.  On a
host, this is what makes the kernel's swap traffic a few percent higher
than a model in which every access sets the bit (measured on the
``pyzram bench run`` workloads: pswpin 6-9 % higher), and its
``pgactivate`` lower.

Modelled (one CPU, the process's own PCID, nothing else using the TLB):

* ``nr_entries`` translations of 4 KiB user pages, least recently used
  out first (a 2 MiB PMD mapping takes one entry, keyed by its first page);
* a hit uses the entry; a miss walks (accessed bit set; dirty on a write)
  and fills; a write through a clean entry walks again;
* ``flush_tlb_one_user`` (``invlpg``) when a PTE is cleared: try_to_unmap's
  ``ptep_clear_flush`` (not deferred: ``arch_tlbbatch_should_defer`` is
  false while the mm ran on one CPU only) and ``zap_pte_range``.

Simplified: a real L2 TLB is set-associative with a pseudo-LRU, shared with
instruction, kernel and 2 MiB translations, and is flushed by events outside
the kernel's view (a hypervisor moving the vCPU, for one), so its effective
size for the workload's pages is smaller than its nominal one.  The
default, :data:`TLB_ENTRIES`, is the 4 KiB L2 DTLB of common x86 server
cores (2,048 entries: AMD Zen 2/3, Intel Ice Lake and later); it also
predicts best, of 2,048 and 4,096, the swap traffic of the 6.18 host these
tools were measured on (AMD Zen 5, whose 4,096-entry L2 TLB also holds the
kernel's 2 MiB translations).  That host's later build (6.18.44-fc-v1300,
a PVM guest whose hypervisor keeps its own shadow page tables) sets the
accessed bits on far more accesses: 128 entries predict it, and its 2 MiB
mappings behave as if no entry cached them (docs/architecture.md).
``nr_entries`` 0 is a CPU whose ``ptep_clear_flush_young`` flushes
(arm64): every access sets the bit.
"""

from __future__ import annotations

from collections import OrderedDict

#: Default number of 4 KiB user translations the TLB holds (see the module docstring).
TLB_ENTRIES = 2048


class Tlb:
    """The translations one process has cached: page number -> loaded from a dirty PTE."""

    __slots__ = ("entries", "nr_entries")

    def __init__(self, nr_entries: int = TLB_ENTRIES) -> None:
        if nr_entries < 0:
            raise ValueError(f"the TLB size must not be negative, got {nr_entries}")
        self.nr_entries = nr_entries
        self.entries: OrderedDict[int, bool] = OrderedDict()

    def hit(self, vpn: int, write: bool) -> bool:
        """An access to ``vpn`` that the TLB translates without a page walk."""
        dirty = self.entries.get(vpn)
        if dirty is None or (write and not dirty):
            return False
        self.entries.move_to_end(vpn)
        return True

    def fill(self, vpn: int, dirty: bool) -> None:
        """The page walk's translation of ``vpn`` enters the TLB (the oldest leaves)."""
        if not self.nr_entries:
            return
        entries = self.entries
        if vpn in entries:  # a write through a clean entry walked again: now the newest
            entries.move_to_end(vpn)
        entries[vpn] = dirty  # (a new key goes in last)
        if len(entries) > self.nr_entries:
            entries.popitem(False)  # the least recently used

    def flush_tlb_one_user(self, vpn: int) -> None:
        """``flush_tlb_one_user`` (``invlpg``): the translation of ``vpn`` is gone."""
        self.entries.pop(vpn, None)

    def flush_tlb_all(self) -> None:
        """A full flush of the process's translations."""
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)

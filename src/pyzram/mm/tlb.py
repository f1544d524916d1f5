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
  out first (a 2 MiB PMD mapping takes one entry, keyed by its first page,
  unless the machine gives 2 MiB translations a TLB of their own:
  ``Machine.tlb_2m_entries``, the address space's ``tlb_2m``);
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
mappings behave as if no entry cached them (``tlb_2m_entries`` 0;
docs/architecture.md).
``nr_entries`` 0 is a CPU whose ``ptep_clear_flush_young`` flushes
(arm64): every access sets the bit.
"""

from __future__ import annotations

from array import array

#: Default number of 4 KiB user translations the TLB holds (see the module docstring).
TLB_ENTRIES = 2048

#: An entry's state, by page number: not cached, loaded from a clean PTE, from a dirty one.
_NONE = 0
_CLEAN = 1
_DIRTY = 2


class Tlb:
    """The translations one process has cached, least recently used first.

    Kept as the model's arrays over the process's pages (``nr_pages``): by page
    number, whether its translation is cached and from a dirty PTE (``state``),
    and its neighbours in use order (``prev`` / ``next``, -1 at the ends), so a
    hit, a fill and a flush move a few numbers, with no lookup.
    """

    __slots__ = ("nr_entries", "nr", "oldest", "newest", "state", "prev", "next")

    def __init__(self, nr_entries: int = TLB_ENTRIES, nr_pages: int = 0) -> None:
        if nr_entries < 0:
            raise ValueError(f"the TLB size must not be negative, got {nr_entries}")
        self.nr_entries = nr_entries
        self.nr = 0
        self.oldest = -1
        self.newest = -1
        size = nr_pages if nr_entries else 0  # no TLB: nothing is ever cached
        self.state = bytearray(size)
        self.prev = array("l", bytes(8 * size))
        self.next = array("l", bytes(8 * size))

    def cached(self, vpn: int) -> bool | None:
        """Whether ``vpn``'s translation is cached: None (no), False (from a clean
        PTE), True (from a dirty one)."""
        if vpn >= len(self.state) or self.state[vpn] == _NONE:
            return None
        return self.state[vpn] == _DIRTY

    def hit(self, vpn: int, write: bool) -> bool:
        """An access to ``vpn`` that the TLB translates without a page walk."""
        if vpn >= len(self.state):
            return False
        st = self.state[vpn]
        if st == _NONE or (write and st == _CLEAN):
            return False
        self._unlink(vpn)
        self._link_newest(vpn)
        return True

    def fill(self, vpn: int, dirty: bool) -> None:
        """The page walk's translation of ``vpn`` enters the TLB (the oldest leaves)."""
        if not self.nr_entries:
            return
        if self.state[vpn] != _NONE:  # a write through a clean entry walked again: now the newest
            self._unlink(vpn)
        self.state[vpn] = _DIRTY if dirty else _CLEAN
        self._link_newest(vpn)
        if self.nr > self.nr_entries:
            self.flush_tlb_one_user(self.oldest)  # the least recently used

    def flush_tlb_one_user(self, vpn: int) -> None:
        """``flush_tlb_one_user`` (``invlpg``): the translation of ``vpn`` is gone."""
        if vpn >= len(self.state) or self.state[vpn] == _NONE:
            return
        self._unlink(vpn)
        self.state[vpn] = _NONE

    def flush_tlb_all(self) -> None:
        """A full flush of the process's translations."""
        while self.oldest >= 0:
            self.flush_tlb_one_user(self.oldest)

    def _unlink(self, vpn: int) -> None:
        p, n = self.prev[vpn], self.next[vpn]
        if p < 0:
            self.oldest = n
        else:
            self.next[p] = n
        if n < 0:
            self.newest = p
        else:
            self.prev[n] = p
        self.nr -= 1

    def _link_newest(self, vpn: int) -> None:
        last = self.newest
        self.prev[vpn] = last
        self.next[vpn] = -1
        if last < 0:
            self.oldest = vpn
        else:
            self.next[last] = vpn
        self.newest = vpn
        self.nr += 1

    def __len__(self) -> int:
        return self.nr

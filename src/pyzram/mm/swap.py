"""Swap constants, the I/O context and vm event counters (include/linux/swap.h, mm/swap.h).

``SwapIoCtx`` is the caller-owned batching context of the swap-batching base
series (``struct swap_io_ctx``): zero-initialised by the caller, filled by
``swap_add_folio``, emptied by ``swap_write_submit``/``swap_read_submit``.

``vm_events`` are the /proc/vmstat counters the swap path updates
(``pswpin``, ``pswpout``, ``nrswpin``, ``nrswpout``, ``swpout_zero`` ...)
and the per-order mTHP stats (``/sys/kernel/mm/transparent_hugepage/
hugepages-*/stats``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyzram.mm.page_io import SwapIocb
    from pyzram.mm.swapfile import SwapInfo

#: Folios per swap_iocb, and reclaim batch size.
SWAP_CLUSTER_MAX = 32
#: Slots per cluster without THP swap (256) and with it (HPAGE_PMD_NR = 512 on x86-64).
SWAPFILE_CLUSTER = 512
MAX_SWAPFILES = 32

# si->flags
SWP_USED = 1 << 0
SWP_WRITEOK = 1 << 1
SWP_DISCARDABLE = 1 << 2
SWP_DISCARDING = 1 << 3
SWP_SOLIDSTATE = 1 << 4
SWP_CONTINUED = 1 << 5
SWP_BLKDEV = 1 << 6
SWP_ACTIVATED = 1 << 7
SWP_AREA_DISCARD = 1 << 9
SWP_PAGE_DISCARD = 1 << 10
SWP_STABLE_WRITES = 1 << 11
SWP_SYNCHRONOUS_IO = 1 << 12

# swapon(2) flags
SWAP_FLAG_PREFER = 0x8000
SWAP_FLAG_PRIO_MASK = 0x7FFF
SWAP_FLAG_DISCARD = 0x10000
SWAP_FLAG_DISCARD_ONCE = 0x20000
SWAP_FLAG_DISCARD_PAGES = 0x40000

# classic swap_map byte (<= v6.18): count in the low bits, cache flag above
SWAP_HAS_CACHE = 0x40
SWAP_MAP_MAX = 0x3E
SWAP_MAP_BAD = 0x3F


@dataclass
class SwapIoCtx:
    """``struct swap_io_ctx``: the batch being built and the area it targets."""

    sio: SwapIocb | None = None
    sis: SwapInfo | None = None


@dataclass
class VmEvents:
    """/proc/vmstat swap counters and per-order mTHP stats (thread-safe adds)."""

    counts: Counter = field(default_factory=Counter)
    mthp: Counter = field(default_factory=Counter)  # (order, name) -> n
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, n: int = 1) -> None:
        """``count_vm_events``."""
        with self._lock:
            self.counts[name] += n

    def count_mthp(self, order: int, name: str, n: int = 1) -> None:
        """``count_mthp_stat``: only orders 1..PMD_ORDER have mTHP stats."""
        if not 0 < order <= 9:
            return
        with self._lock:
            self.mthp[(order, name)] += n

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.mthp.clear()


#: The global vm event counters (per boot, like /proc/vmstat).
vm_events = VmEvents()

"""Swap areas: swapon/swapoff, slots in clusters, swap counts, the swap cache.

Model of mm/swapfile.c and mm/swap_state.c in the classic ``swap_map`` form
of Linux <= 6.18 (one byte per slot: a reference count in the low bits and
``SWAP_HAS_CACHE`` while a folio for it sits in the swap cache), which the
swap-batching series applies to.  Per-slot state is numpy arrays
(``swap_map``, ``zeromap``); per-cluster state is arrays too.

Slot lifetime::

    folio_alloc_swap   -> HAS_CACHE, count 0   (folio in swap cache, dirty)
    swap_duplicate     -> count + 1            (a PTE now holds the entry)
    swap_cache_del_folio / folio_free_swap -> HAS_CACHE cleared
    swap_free          -> count - 1
    byte reaches 0     -> swap_range_free: zswap_invalidate, ops.slot_free_notify

Slots are taken from clusters of ``SWAPFILE_CLUSTER`` (512) slots: each
order fills its current cluster, then a non-full cluster of that order, then
a free one; order 0 finally steals a slot from a non-full cluster of any
other order (as the kernel does); an order-k folio needs 2**k aligned free
slots in one cluster.
Slot 0 holds the swap header and is never allocated.

Simplified (documented in docs/architecture.md): one lock per area stands in
for the cluster locks and ``si->lock`` (so ``slot_free_notify`` still runs
with "the cluster lock" held); there is no per-CPU cluster cache, no
discard, no swap-table encoding, no cgroup charging.
"""

from __future__ import annotations

import errno
import os
import struct
from array import array
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cython
import numpy as np

from pyzram.block.bio import REQ_OP_READ, REQ_OP_WRITE, Bio, submit_bio_wait
from pyzram.block.blkdev import (
    BLK_FEAT_ROTATIONAL,
    BLK_FEAT_STABLE_WRITES,
    BLK_FEAT_SYNCHRONOUS,
    BlockDevice,
    Gendisk,
    blkdev_get,
    blkdev_put,
)
from pyzram.lib.atomic import atomic64_add, atomic64_read, atomic64_sub
from pyzram.lib.spinlock import spin_lock, spin_unlock, spinlock_t
from pyzram.mm.folio import (
    PAGE_SHIFT,
    PAGE_SIZE,
    Folio,
    PG_locked,
    PG_swapcache,
    PG_uptodate,
    PG_writeback,
    SwpEntry,
    folio_alloc_mpol,
    swp_entry,
)
from pyzram.mm.swap import (
    MAX_SWAPFILES,
    SWAP_CLUSTER_MAX,
    SWAP_FLAG_PRIO_MASK,
    SWAP_HAS_CACHE,
    SWAP_MAP_BAD,
    SWAP_MAP_MAX,
    SWAPFILE_CLUSTER,
    SWP_BLKDEV,
    SWP_SOLIDSTATE,
    SWP_STABLE_WRITES,
    SWP_SYNCHRONOUS_IO,
    SWP_USED,
    SWP_WRITEOK,
    SwapIoCtx,
)
from pyzram.mm.swap_ops import SwapOps, lookup_swap_block_ops
from pyzram.mm.zswap import zswap_invalidate, zswap_swapoff, zswap_swapon

if TYPE_CHECKING:
    from pyzram.mm.machine import Machine
    from pyzram.mm.vmscan import AddressSpace

SWAP_MAGIC = b"SWAPSPACE2"
SWAP_VERSION = 1
_HDR = struct.Struct("<III")  # version, last_page, nr_badpages at offset 1024
_UUID_OFF = 1024 + 12
_BADPAGES_OFF = 1024 + 12 + 16 + 16 + 117 * 4
#: A slot of the swap table with no shadow entry (the kernel's NULL).
NO_SHADOW = -1
_NO_SHADOW = NO_SHADOW  # (compiled: a C long, swapfile.pxd)


def mkswap(
    target: Gendisk | str | os.PathLike[str], pages: int | None = None, uuid: bytes | None = None
) -> int:
    """Write a swap header (``mkswap``): version 1, ``last_page``, no bad pages.

    ``uuid`` (16 bytes, ``mkswap -U``) defaults to a random one, as mkswap's
    does; the header page is stored like any other, so a run that must be
    repeatable to the byte gives one.  Block devices are written through
    the bio path, files with ``pwrite``.  Returns the number of pages of the
    area (header included).
    """
    size = _target_size(target)
    npages = size >> PAGE_SHIFT if pages is None else pages
    if npages < 2:
        raise OSError(errno.EINVAL, "mkswap: area too small (needs 2 pages)")
    hdr = bytearray(PAGE_SIZE)
    _HDR.pack_into(hdr, 1024, SWAP_VERSION, npages - 1, 0)
    if uuid is not None and len(uuid) != 16:
        raise ValueError(f"mkswap: a UUID is 16 bytes, not {len(uuid)}")
    hdr[_UUID_OFF : _UUID_OFF + 16] = os.urandom(16) if uuid is None else uuid
    hdr[PAGE_SIZE - 10 :] = SWAP_MAGIC
    _target_io(target, REQ_OP_WRITE, hdr, 0)
    return npages


def _target_size(target) -> int:
    if isinstance(target, Gendisk):
        return target.capacity << 9
    return os.stat(target).st_size


def _target_io(target, op: int, buf: bytearray, pos: int) -> None:
    if isinstance(target, Gendisk):
        bdev = blkdev_get(target)
        try:
            bio = Bio(bdev, op, pos >> 9)
            bio.add_page(memoryview(buf), len(buf))
            if submit_bio_wait(bio):
                raise OSError(errno.EIO, f"I/O error on {target.disk_name}")
        finally:
            blkdev_put(bdev)
    else:
        fd = os.open(target, os.O_RDWR)
        try:
            if op == REQ_OP_WRITE:
                os.pwrite(fd, buf, pos)
            else:
                buf[:] = os.pread(fd, len(buf), pos).ljust(len(buf), b"\0")
        finally:
            os.close(fd)


class SwapInfo:
    """``struct swap_info_struct``: one active swap area."""

    def __init__(self, machine: Machine, type_: int) -> None:
        #: The machine whose ``swap_info[]`` holds this area.
        self.machine = machine
        self.type = type_
        self.flags = 0
        self._prio = 0
        self.max = 0  # slots including the header
        self.pages = 0  # usable slots
        self.inuse_pages = 0
        self.bdev: BlockDevice | None = None
        self.swap_file: Path | None = None
        self.swap_file_fd = -1
        self.ops: SwapOps | None = None
        #: swap_map and zeromap: one byte a slot in a bytearray (fast scalar access,
        #: C-speed searches), with numpy views for vectorised scans.
        self._sm = bytearray()
        self._zm = bytearray()
        self.swap_map = np.zeros(0, dtype=np.uint8)
        self.zeromap = np.zeros(0, dtype=bool)
        #: Per cluster: slots in use (or unusable), and the order it serves
        #: (``array``: one slot at a time, Python ints, no numpy scalar cost).
        self.cluster_count = array("i")
        self.cluster_order = array("b")
        #: Per cluster, the first slot that may be free (every slot below it is
        #: in use): where the first-fit search of a single slot starts.
        self.cluster_free_hint = array("i")
        self.free_clusters: deque[int] = deque()
        #: Per order, the non-full clusters in list order (a dict: O(1) membership).
        self.nonfull_clusters: dict[int, dict[int, None]] = {}
        #: Per cluster, whether it is on its order's non-full list (the kernel's
        #: ``CLUSTER_FLAG_NONFULL``): a slot taken or freed moves it only if not.
        self.cluster_nonfull = bytearray()
        #: Per order, its current cluster (``-1``: none), as the kernel's
        #: ``percpu_cluster->next[order]`` keeps one.
        self.cluster_next = array("l", [-1] * SWAPFILE_CLUSTER.bit_length())  # orders 0..9
        #: The swap cache, one entry a slot (the kernel's swap table: the folio
        #: that caches the slot, or None), indexed by offset: no hashing, no key.
        self.swap_cache: list[Folio | None] = []
        #: The shadow entries of the swap table, one a slot beside ``swap_cache``:
        #: what ``workingset_eviction`` left when reclaim took the slot's folio
        #: out of the cache (``NO_SHADOW``: none), until a swap-in takes the
        #: slot's place in the cache again or the slot is freed.
        self.shadows = array("l")
        #: The model's reverse map of swap entries, one a slot: the address space
        #: whose PTE holds the slot (None: none) and that PTE's page.  The kernel
        #: has none: ``unuse_mm`` and readahead find a slot's PTE by walking
        #: page tables; the model looks it up.
        self.rmap_mm: list[AddressSpace | None] = []
        self.rmap_vpn = array("l")
        self.lock = spinlock_t()  # si->lock + cluster locks (see module doc)

    def __repr__(self) -> str:
        what = self.bdev.disk.disk_name if self.bdev else str(self.swap_file)
        return (
            f"<SwapInfo type={self.type} {what} prio={self.prio} {self.inuse_pages}/{self.pages}>"
        )

    @property
    def prio(self) -> int:
        """Priority: higher areas are used first (``swap_avail_heads`` order)."""
        return self._prio

    @prio.setter
    def prio(self, value: int) -> None:
        self._prio = value
        _update_avail(self.machine)

    def spin_is_locked(self) -> bool:
        """``spin_is_locked(&si->lock)``: whether anyone holds the area's lock."""
        return self.lock.locked

    # -- zero map (si->zeromap) -----------------------------------------------------

    def set_zero(self, offset: int, nr: int, value: bool) -> None:
        """Set or clear the zero flags of ``nr`` slots from ``offset``."""
        bit = 1 if value else 0
        for off in range(offset, offset + nr):
            self._zm[off] = bit

    def count_zero(self, offset: int, nr: int) -> int:
        """How many of ``nr`` slots from ``offset`` are zero-flagged."""
        n = 0
        for off in range(offset, offset + nr):
            n += self._zm[off]
        return n

    # -- extents -------------------------------------------------------------------

    def map_swap_page(self, offset: int) -> int:
        """``map_swap_entry``: the page of the device/file holding slot ``offset``.

        Block devices and our swap files use one extent, page N -> block N
        (``setup_swap_extents``); a file with holes is refused at swapon.
        """
        return offset

    # -- counts --------------------------------------------------------------------

    def swap_count(self, offset: int) -> int:
        """``swap_count``: references, without the cache bit."""
        return self._sm[offset] & ~SWAP_HAS_CACHE


def swp_swap_info(m: Machine, entry: SwpEntry) -> SwapInfo:
    """``swp_swap_info`` / ``__swap_entry_to_info``: ``m.swap_info[type]``."""
    si = m.swap_info[entry.type] if 0 <= entry.type < MAX_SWAPFILES else None
    if si is None:
        raise OSError(errno.EINVAL, f"no swap area of type {entry.type}")
    return si


def get_nr_swap_pages(m: Machine) -> int:
    """``get_nr_swap_pages``: free slots over the areas open for allocation."""
    return atomic64_read(m.nr_swap_pages)


def _update_avail(m: Machine) -> None:
    """Rebuild ``swap_avail_heads``: active areas, highest priority first."""
    m.swap_avail = sorted(m.active_areas(), key=lambda s: -s.prio)


# -- swapon / swapoff -------------------------------------------------------------------


def swapon(
    m: Machine,
    target: Gendisk | str | os.PathLike[str],
    prio: int | None = None,
) -> SwapInfo:
    """``sys_swapon``: enable swapping to a block device or a swap file.

    Reads and checks the header (``EINVAL`` without the SWAPSPACE2 signature),
    claims the device (a swapped-on zram refuses ``reset`` with ``EBUSY``),
    sets ``SWP_BLKDEV``, ``SWP_SYNCHRONOUS_IO``, ``SWP_STABLE_WRITES``,
    ``SWP_SOLIDSTATE`` from the disk's features, and picks the area's ops in
    ``setup_swap_extents``: ``swap_bdev_ops``, replaced by the registered
    block driver ops when the disk's fops match (on a machine built with
    the series, ``m.swap_ops_series``); swap files get ``swap_fs_ops``.
    """
    from pyzram.mm.page_io import swap_bdev_ops, swap_fs_ops

    with m.swap_lock:
        type_ = next((i for i, s in enumerate(m.swap_info) if s is None), None)
        if type_ is None:
            raise OSError(errno.EPERM, "too many swap areas (MAX_SWAPFILES)")
        si = SwapInfo(m, type_)
        m.swap_info[type_] = si  # reserve; SWP_USED
    try:
        if isinstance(target, Gendisk):
            if target.bd_holder is not None:  # an area of this machine or another
                raise OSError(errno.EBUSY, f"{target.disk_name} is already swapped on")
            si.bdev = blkdev_get(target, holder=si)
            size = target.capacity << 9
            si.flags |= SWP_BLKDEV
            if target.features & BLK_FEAT_SYNCHRONOUS:
                si.flags |= SWP_SYNCHRONOUS_IO
            if target.features & BLK_FEAT_STABLE_WRITES:
                si.flags |= SWP_STABLE_WRITES
            if not target.features & BLK_FEAT_ROTATIONAL:
                si.flags |= SWP_SOLIDSTATE
        else:
            path = Path(target)
            if any(s is not si and s.swap_file == path.resolve() for s in m.active_areas()):
                raise OSError(errno.EBUSY, f"{path} is already swapped on")
            si.swap_file = path.resolve()
            si.swap_file_fd = os.open(path, os.O_RDWR)
            size = os.fstat(si.swap_file_fd).st_size
            _check_no_holes(si.swap_file_fd, size)
        hdr = bytearray(PAGE_SIZE)
        _target_io(target if si.bdev else si.swap_file, REQ_OP_READ, hdr, 0)
        maxpages = _read_swap_header(hdr, size)
        si.max = maxpages
        nbad = _HDR.unpack_from(hdr, 1024)[2]
        bad = struct.unpack_from(f"<{nbad}I", hdr, _BADPAGES_OFF) if nbad else ()
        _setup_clusters(si, bad)
        # setup_swap_extents
        if si.bdev is not None:
            si.ops = swap_bdev_ops
            if m.swap_ops_series:
                si.ops = lookup_swap_block_ops(si) or swap_bdev_ops
        else:
            si.ops = swap_fs_ops
        zswap_swapon(m, type_, maxpages)
        with m.swap_lock:
            if prio is None:
                m.least_priority -= 1
                si.prio = m.least_priority
            else:
                si.prio = prio & SWAP_FLAG_PRIO_MASK
            si.flags |= SWP_USED | SWP_WRITEOK
            atomic64_add(si.pages, m.nr_swap_pages)  # _enable_swap_info
            _update_avail(m)
        return si
    except BaseException:
        release_swap_area(si)
        raise


def _check_no_holes(fd: int, size: int) -> None:
    """``generic_swapfile_activate``: a swap file must have every block allocated."""
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return
    if hole < size:
        raise OSError(errno.EINVAL, "swapfile has holes")


def _read_swap_header(hdr: bytearray, size: int) -> int:
    """``read_swap_header``: signature, version, last_page -> usable maxpages."""
    if bytes(hdr[PAGE_SIZE - 10 :]) != SWAP_MAGIC:
        raise OSError(errno.EINVAL, "Unable to find swap-space signature")
    version, last_page, nr_badpages = _HDR.unpack_from(hdr, 1024)
    if version != SWAP_VERSION:
        raise OSError(errno.EINVAL, f"Unable to handle swap header version {version}")
    maxpages = min(last_page + 1, size >> PAGE_SHIFT)
    if maxpages <= 1:
        raise OSError(errno.EINVAL, "Empty swap-file")
    if nr_badpages > (PAGE_SIZE - _BADPAGES_OFF) // 4:
        raise OSError(errno.EINVAL, "too many bad pages in the swap header")
    return maxpages


def _setup_clusters(si: SwapInfo, bad: tuple[int, ...]) -> None:
    n = si.max
    si._sm = bytearray(n)
    si._zm = bytearray(n)
    si.swap_cache = [None] * n
    si.shadows = array("l", [NO_SHADOW]) * n
    si.rmap_mm = [None] * n
    si.rmap_vpn = array("l", bytes(8 * n))
    si.swap_map = np.frombuffer(si._sm, dtype=np.uint8)  # numpy views of the same bytes
    si.zeromap = np.frombuffer(si._zm, dtype=bool)
    nclusters = -(-n // SWAPFILE_CLUSTER)
    si.cluster_count = array("i", bytes(4 * nclusters))
    si.cluster_order = array("b", bytes(nclusters))
    si.cluster_free_hint = array("i", bytes(4 * nclusters))
    unusable = {0, *(b for b in bad if 0 < b < n)}
    for off in unusable:
        si.swap_map[off] = SWAP_MAP_BAD
        si.cluster_count[off // SWAPFILE_CLUSTER] += 1
    # the tail of the last cluster does not exist
    tail = nclusters * SWAPFILE_CLUSTER - n
    si.cluster_count[-1] += tail
    si.pages = n - len(unusable)
    si.free_clusters = deque(c for c in range(nclusters) if si.cluster_count[c] == 0)
    si.nonfull_clusters = {0: dict.fromkeys(c for c in range(nclusters) if si.cluster_count[c])}
    si.cluster_nonfull = bytearray(bool(si.cluster_count[c]) for c in range(nclusters))


@cython.locals(si=SwapInfo)
def release_swap_area(si: SwapInfo) -> None:
    """The end of ``sys_swapoff`` (``destroy_swap_extents``, ``bdev_fput``), alone.

    Used by ``swapoff`` once every slot is back, by a failed ``swapon``, and
    by ``Machine.close`` (a machine powered off keeps nothing in swap).
    """
    m = si.machine
    if si.flags & SWP_WRITEOK:  # never swapped off (power-off): its free slots go
        atomic64_sub(si.pages - si.inuse_pages, m.nr_swap_pages)
    si.flags &= ~SWP_WRITEOK
    spin_lock(si.lock)
    try:
        si.swap_cache.clear()
        si.rmap_mm.clear()
    finally:
        spin_unlock(si.lock)
    if si.bdev is not None:
        blkdev_put(si.bdev)
        si.bdev = None
    if si.swap_file_fd >= 0:
        os.close(si.swap_file_fd)
        si.swap_file_fd = -1
    zswap_swapoff(m, si.type)  # none left after swapoff; freed on failure or power-off
    with m.swap_lock:
        if m.swap_info[si.type] is si:
            m.swap_info[si.type] = None
        _update_avail(m)


UnuseFn = Callable[[SwpEntry, Folio], int]


def reinsert_swap_info(si: SwapInfo) -> None:
    """``reinsert_swap_info``: a failed ``swapoff`` puts the area back in use."""
    spin_lock(si.lock)
    try:
        si.flags |= SWP_WRITEOK
        atomic64_add(si.pages, si.machine.nr_swap_pages)
    finally:
        spin_unlock(si.lock)


@cython.locals(folio=Folio, si=SwapInfo)
def swapoff(si: SwapInfo, unuse: UnuseFn | None = None) -> None:
    """``sys_swapoff``: bring every in-use slot back into memory, then release the area.

    ``try_to_unuse`` takes the referenced slots in windows of
    ``SWAP_CLUSTER_MAX``, as ``unuse_pte_range`` takes each PTE's
    ``swapin_readahead`` window: it reads the window's slots into swap-cache
    folios (batched through a read ctx, so ``submit_read`` sees real
    batches), then for each slot locks its folio (which waits for the read)
    and, holding the lock, walks the machine's ``mmlist`` (the address
    spaces that have swapped), whose ``unuse_pte`` maps the folio in place
    of the entry and returns the references it dropped, and frees the
    folio's swap (``folio_free_swap``), as ``unuse_pte_range`` does, so a
    slot is freed while what was just read from it is still warm.
    ``unuse(entry, folio)``, if given, does the same for references held
    outside any address space (a PTE made by hand).  Simplified: the
    windows are the area's slots in order, not each address space's PTEs
    in turn.  Slots nobody drops keep the area busy: ``EBUSY`` (the kernel
    would loop; here it is an owner bug).  Afterwards
    no slot and no swap-cache folio of the area remains, and the area's
    ``ops`` are no longer used.
    """
    from pyzram.mm.page_io import swap_read_folio, swap_read_submit

    m = si.machine
    spin_lock(si.lock)
    try:
        if not si.flags & SWP_WRITEOK:
            raise OSError(errno.EINVAL, "swap area is not active")
        si.flags &= ~SWP_WRITEOK
        atomic64_sub(si.pages, m.nr_swap_pages)  # del_from_avail_list
    finally:
        spin_unlock(si.lock)
    offsets = np.flatnonzero(
        (si.swap_map & ~np.uint8(SWAP_HAS_CACHE) != 0) & (si.swap_map != SWAP_MAP_BAD)
    )
    mms = list(m.mmlist)  # the address spaces that have swapped (each one's unuse_mm)
    offs = memoryview(offsets)  # (compiled, a typed view: no Python int per slot)
    nr = len(offs)
    entries: list[SwpEntry] = []  # each slot's entry and the folio that holds it
    folios: list[Folio] = []
    ctx = SwapIoCtx(m)
    for lo in range(0, nr, SWAP_CLUSTER_MAX):
        entries.clear()
        folios.clear()
        for k in range(lo, min(lo + SWAP_CLUSTER_MAX, nr)):
            entry = swp_entry(si.type, offs[k])
            folio = swap_cache_get_folio(m, entry)
            if folio is None:
                folio = swap_cache_alloc_folio(m, entry)
                swap_read_folio(ctx, folio)
            entries.append(entry)
            folios.append(folio)
        swap_read_submit(ctx)
        for i in range(len(folios)):
            entry = entries[i]
            folio = folios[i]
            folio.lock()  # unuse_pte_range: waits for the read, held until done
            try:
                if not folio.test(PG_uptodate):
                    raise OSError(errno.EIO, f"swapoff: cannot read slot {entry.offset}")
                try:
                    dropped = 0
                    for mm in mms:
                        dropped += mm.unuse_pte(entry, folio)
                    if unuse is not None:
                        dropped += unuse(entry, folio)
                except OSError:  # ENOMEM from a memcg charge: the area back on, fail
                    reinsert_swap_info(si)
                    raise
                for _j in range(dropped):
                    swap_free(m, entry)
                folio_free_swap(m, folio)
            finally:
                folio.unlock()
    # try_to_unuse visits cache-only slots too (swap_map == SWAP_HAS_CACHE, say a
    # mapped folio whose PTE no longer holds the entry): folio_free_swap drops them.
    spin_lock(si.lock)
    try:
        cached = list({id(f): f for f in si.swap_cache if f is not None}.values())
    finally:
        spin_unlock(si.lock)
    for folio in cached:
        folio.lock()
        if folio.swap is not None and folio.swap.type == si.type:
            folio_free_swap(m, folio)
        folio.unlock()
    spin_lock(si.lock)
    try:
        busy = np.flatnonzero((si.swap_map != 0) & (si.swap_map != SWAP_MAP_BAD))
    finally:
        spin_unlock(si.lock)
    if busy.size:
        reinsert_swap_info(si)
        raise OSError(errno.EBUSY, f"swapoff: {len(busy)} slots still referenced")
    release_swap_area(si)
    si.ops = None


# -- slot allocation ------------------------------------------------------------------------


def _alloc_in_cluster(si: SwapInfo, c: int, order: int) -> int:
    """First 2**order aligned run of free slots in cluster ``c`` (a run: a C-speed
    search of the swap map); -1 if there is none."""
    nr = 1 << order
    base = c * SWAPFILE_CLUSTER
    end = min(base + SWAPFILE_CLUSTER, si.max)
    sm = si._sm
    if nr == 1:
        # The first free slot: every slot below the cluster's hint is in use
        # (swap_range_free lowers it), so the search starts there.
        off = base + si.cluster_free_hint[c]
        while off < end and sm[off]:
            off += 1
        si.cluster_free_hint[c] = off - base
        return off if off < end else -1
    run = bytes(nr)
    off = sm.find(run, base, end)
    while off >= 0:
        aligned = (off + nr - 1) & ~(nr - 1)
        if aligned == off:
            return off
        off = sm.find(run, aligned, end)
    return -1


def _take_slots(si: SwapInfo, order: int) -> int:
    """``cluster_alloc_swap_entry``: the order's current cluster, a non-full one, a
    free one; the first slot taken, or -1."""
    cur = si.cluster_next[order]
    if cur >= 0:
        off = _alloc_in_cluster(si, cur, order)
        if off >= 0:
            return _claim(si, cur, order, off)
    for c in si.nonfull_clusters.get(order, ()):
        if c == cur:
            continue
        off = _alloc_in_cluster(si, c, order)
        if off >= 0:
            return _claim(si, c, order, off)
    while si.free_clusters:
        c = si.free_clusters.popleft()
        si.cluster_order[c] = order
        off = _alloc_in_cluster(si, c, order)
        if off >= 0:
            return _claim(si, c, order, off)
    if order == 0:
        # "Order 0 stealing from higher order": a single slot may come from any
        # non-full cluster, which keeps its own order and list.
        for o, lst in si.nonfull_clusters.items():
            for c in lst if o else ():
                off = _alloc_in_cluster(si, c, 0)
                if off >= 0:
                    return _claim(si, c, 0, off, cluster_order=o)
    return -1


_COUNT_MASK = 0xFF & ~SWAP_HAS_CACHE


def _claim(si: SwapInfo, c: int, order: int, off: int, cluster_order: int | None = None) -> int:
    """Take 2**order slots at ``off`` of cluster ``c``, a cluster of ``cluster_order``
    (``order`` unless order 0 steals from another order's cluster)."""
    nr = 1 << order
    corder = order if cluster_order is None else cluster_order
    for i in range(off, off + nr):
        si._sm[i] = SWAP_HAS_CACHE
    si.cluster_count[c] += nr
    si.cluster_order[c] = corder
    full = si.cluster_count[c] >= SWAPFILE_CLUSTER
    if full == si.cluster_nonfull[c]:  # it leaves the non-full list, or joins it
        lst = si.nonfull_clusters.setdefault(corder, {})
        if full:
            del lst[c]
        else:
            lst[c] = None
        si.cluster_nonfull[c] = not full
    si.cluster_next[corder] = c
    si.inuse_pages += nr  # swap_range_alloc
    atomic64_sub(nr, si.machine.nr_swap_pages)
    return off


def folio_alloc_swap(m: Machine, folio: Folio) -> SwpEntry:
    """``folio_alloc_swap``: slots for a locked folio, which enters the swap cache.

    The highest-priority writable area with room wins.  ``EINVAL`` for a
    folio larger than a cluster; ``ENOMEM`` when no area has 2**order
    aligned free slots.
    """
    if not folio.test(PG_locked):
        raise RuntimeError("folio_alloc_swap needs a locked folio")
    if folio.test(PG_swapcache):
        raise RuntimeError("folio already in the swap cache")
    nr = folio.nr_pages
    if nr > SWAPFILE_CLUSTER:
        raise OSError(errno.EINVAL, "folio larger than a swap cluster")
    for si in m.swap_avail:
        if not si.flags & SWP_WRITEOK:
            continue
        spin_lock(si.lock)
        try:
            if si.pages - si.inuse_pages < nr:
                continue
            off = _take_slots(si, folio.order)
            if off < 0:
                continue
            entry = swp_entry(si.type, off)
            for i in range(nr):
                si.swap_cache[off + i] = folio
            folio.swap = entry
            folio.set(PG_swapcache)
            return entry
        finally:
            spin_unlock(si.lock)
    raise OSError(errno.ENOMEM, "no free swap slots")


def swap_duplicate(m: Machine, entry: SwpEntry, nr: int = 1) -> None:
    """``swap_duplicate``: one more reference (a PTE) to ``nr`` slots from ``entry``."""
    si = swp_swap_info(m, entry)
    spin_lock(si.lock)
    try:
        sm = si._sm
        for off in range(entry.offset, entry.offset + nr):
            count = sm[off] & ~SWAP_HAS_CACHE
            if sm[off] == 0 or sm[off] == SWAP_MAP_BAD:
                raise OSError(errno.ENOENT, f"swap_duplicate of a free slot {off}")
            if count >= SWAP_MAP_MAX:
                raise OSError(errno.ENOMEM, "swap count overflow (continuation not modelled)")
            sm[off] += 1
    finally:
        spin_unlock(si.lock)


def swap_free(m: Machine, entry: SwpEntry, nr: int = 1) -> None:
    """``swap_free_nr``: drop one reference to ``nr`` slots; free those that reach 0."""
    si = swp_swap_info(m, entry)
    spin_lock(si.lock)
    try:
        sm = si._sm
        for off in range(entry.offset, entry.offset + nr):
            if sm[off] & ~SWAP_HAS_CACHE == 0:
                raise OSError(errno.EINVAL, f"swap_free: slot {off} has no reference")
            sm[off] -= 1
            if sm[off] == 0:
                swap_range_free(si, off, 1)
    finally:
        spin_unlock(si.lock)


def swap_range_free(si: SwapInfo, offset: int, nr: int) -> None:
    """``swap_range_free``: slots became free; tell zswap and the device, return them.

    Each slot's zero bit and shadow entry are cleared (``clear_shadow_from_swap_cache``)
    and its zswap entry, if any, is freed (``zswap_invalidate``).

    On a machine built with the series, calls
    ``si.ops.slot_free_notify(si, offset)`` for each slot (patch 3/3), with
    the area lock held, as the kernel holds the cluster lock; patch 3/3 also
    removes ``block_device_operations.swap_slot_free_notify``, so an area
    whose ops do not define the hook is told nothing.  On a machine without the series
    (``m.swap_ops_series`` false) a block device's pre-series
    ``swap_slot_free_notify`` is called instead, as mainline 6.18 does.
    """
    for off in range(offset, offset + nr):
        si._zm[off] = 0
        si.shadows[off] = _NO_SHADOW  # clear_shadow_from_swap_cache
    ops = None
    old_notify = None
    if si.machine.swap_ops_series:
        ops = si.ops  # (an undefined hook is told and does nothing: the kernel's NULL test)
    elif si.flags & SWP_BLKDEV and si.bdev is not None:
        old_notify = si.bdev.disk.fops.swap_slot_free_notify
    m = si.machine
    zs = m.zswap
    zswap_used = zs.ever_enabled  # else every tree is empty (xa_empty)
    for off in range(offset, offset + nr):
        if zswap_used:
            zswap_invalidate(m, swp_entry(si.type, off))
        if ops is not None:
            ops.slot_free_notify(si, off)
        elif old_notify is not None:
            old_notify(si.bdev, off)
        c = off // SWAPFILE_CLUSTER
        if off - c * SWAPFILE_CLUSTER < si.cluster_free_hint[c]:
            si.cluster_free_hint[c] = off - c * SWAPFILE_CLUSTER
        si.cluster_count[c] -= 1
        order = si.cluster_order[c]
        if si.cluster_count[c] == 0:
            if si.cluster_nonfull[c]:
                del si.nonfull_clusters[order][c]
                si.cluster_nonfull[c] = 0
            if si.cluster_next[order] == c:
                si.cluster_next[order] = -1
            si.free_clusters.append(c)
        elif not si.cluster_nonfull[c]:
            si.nonfull_clusters.setdefault(order, {})[c] = None
            si.cluster_nonfull[c] = 1
    atomic64_add(nr, m.nr_swap_pages)
    si.inuse_pages -= nr


# -- swap cache -------------------------------------------------------------------------------


def swap_cache_get_folio(m: Machine, entry: SwpEntry) -> Folio | None:
    """``swap_cache_get_folio``: lockless, as the kernel's one atomic read of the
    slot's swap-table entry (here one list item, which no other thread can
    interleave with)."""
    si = swp_swap_info(m, entry)
    return si.swap_cache[entry.offset]


def swap_cache_alloc_folio(m: Machine, entry: SwpEntry, order: int = 0) -> Folio:
    """``swap_cache_alloc_folio``: a new locked, !uptodate folio in the swap cache.

    ``EEXIST`` if a folio is cached there already, ``ENOENT`` if the slot
    has no reference.
    """
    si = swp_swap_info(m, entry)
    nr = 1 << order
    folio = folio_alloc_mpol(m, order)
    folio.set_locked()  # __folio_set_locked: no one else can see it yet
    spin_lock(si.lock)
    try:
        for off in range(entry.offset, entry.offset + nr):
            if si.swap_cache[off] is not None:
                folio.unlock()
                raise OSError(errno.EEXIST, f"slot {off} is already cached")
            if si.swap_count(off) == 0:
                folio.unlock()
                raise OSError(errno.ENOENT, f"slot {off} is not in use")
        for off in range(entry.offset, entry.offset + nr):
            si._sm[off] |= SWAP_HAS_CACHE
            si.swap_cache[off] = folio
    finally:
        spin_unlock(si.lock)
    folio.swap = entry
    folio.set(PG_swapcache)
    return folio


def swap_cache_del_folio(m: Machine, folio: Folio, shadow: int = NO_SHADOW) -> None:
    """``__swap_cache_del_folio``: leave the cache; slots with no references are freed
    (their shadows with them).

    Reclaim gives the ``shadow`` of ``workingset_eviction``, which takes the
    folio's place in each of its slots.  Without one, a slot keeps the shadow
    it had: the swap-ins that do not consume it (``swapoff``'s reads, zswap's
    writeback) are simplified to leave it, where the kernel's would count a
    refault and its reclaim later leave a new one.
    """
    entry = folio.swap
    si = swp_swap_info(m, entry)
    spin_lock(si.lock)
    try:
        for off in range(entry.offset, entry.offset + folio.nr_pages):
            si.swap_cache[off] = None
            if shadow != _NO_SHADOW:
                si.shadows[off] = shadow
            si._sm[off] &= ~SWAP_HAS_CACHE & 0xFF
            if si._sm[off] == 0:
                swap_range_free(si, off, 1)
    finally:
        spin_unlock(si.lock)
    folio.clear(PG_swapcache)
    folio.swap = None


def folio_free_swap(m: Machine, folio: Folio) -> bool:
    """``folio_free_swap``: drop the folio from the swap cache if no PTE needs it.

    Only when not under writeback and every slot's count is 0
    (``folio_swapped``, under the area's lock); then ``swap_cache_del_folio``,
    which takes the lock again (the folio lock keeps the counts from rising
    in between: a new reference needs the folio); the folio is marked dirty
    (its only copy is now in memory).
    """
    if not folio.test(PG_swapcache) or folio.test(PG_writeback):
        return False
    si = swp_swap_info(m, folio.swap)
    swapped = False
    spin_lock(si.lock)
    try:
        off, sm = folio.swap.offset, si._sm
        for o in range(off, off + folio.nr_pages):
            if sm[o] & _COUNT_MASK:
                swapped = True
                break
    finally:
        spin_unlock(si.lock)
    if swapped:
        return False
    swap_cache_del_folio(m, folio)
    folio.mark_dirty()
    return True

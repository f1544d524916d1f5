"""The zram block device (model of drivers/block/zram/zram_drv.c, Linux 6.18).

One :class:`Zram` is one device as after ``hot_add``: uninitialised until
``disksize`` is written, then a table of ``disksize / 4096`` slots whose
pages are compressed into a zsmalloc pool.  Each operation has one path, as
in the driver:

* write  -> :meth:`Zram.zram_write_page` (same-filled? compress, huge?,
  ``zs_malloc``, mem_limit check, store, *then* free the old content);
* read   -> :meth:`Zram.zram_read_page` (fill / copy / decompress);
* discard and write-zeroes -> :meth:`Zram.zram_bio_discard` (free whole pages);
* swap slot free -> :meth:`Zram.zram_slot_free_notify` (trylock, ``miss_free``).

The block-device entry points (:meth:`pwrite`, :meth:`pread`,
:meth:`discard`) behave like ``pwrite``/``pread``/``BLKDISCARD`` on
``/dev/zramN`` opened with O_DIRECT: whole 4 KiB blocks only, the kernel's
range rules and errnos.  A multi-page request is one batch: same-filled
detection and compression run vectorised over it (one C call for the
kernel codecs), and only the zsmalloc placement, which is order-dependent,
runs page by page.

``dev.sysfs`` is the ``/sys/block/zramN`` directory: the kernel's attribute
names, file modes, text formats, parsers and errnos (see :mod:`.sysfs`).
"""

from __future__ import annotations

import errno
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pyzram.block.bio import (
    BLK_STS_IOERR,
    REQ_OP_DISCARD,
    REQ_OP_READ,
    REQ_OP_WRITE,
    REQ_OP_WRITE_ZEROES,
    Bio,
    bio_endio,
)
from pyzram.block.blkdev import (
    BLK_FEAT_STABLE_WRITES,
    BLK_FEAT_SYNCHRONOUS,
    BlockDevice,
    BlockDeviceOperations,
    Gendisk,
    blkdev_get,
    blkdev_put,
)
from pyzram.config import ZramConfig
from pyzram.lib.rwsem import RWSemaphore
from pyzram.mm.zsmalloc import CHAIN_SIZE_MAX, ZsPool
from pyzram.zram import table as T
from pyzram.zram.stat import IoStat, MmStat, format_debug_stat
from pyzram.zram.table import ZramTable
from pyzram.zram.writeback import BackingDev, free_block_bdev, read_from_bdev
from pyzram.zram.zcomp import Zcomp, ZcompParams

PAGE_SIZE = 4096
PAGE_SHIFT = 12
SECTOR_SHIFT = 9
SECTOR_SIZE = 512
SECTORS_PER_PAGE = PAGE_SIZE >> SECTOR_SHIFT
#: ZRAM_LOGICAL_BLOCK_SIZE: all zram I/O is in whole 4 KiB pages on x86_64.
ZRAM_LOGICAL_BLOCK_SIZE = PAGE_SIZE
#: BIO_MAX_VECS: the most pages one direct-I/O bio carries.
BIO_MAX_VECS = 256
ZRAM_PRIMARY_COMP = 0

_U64 = (1 << 64) - 1
_CLEAR_ON_ACCESS = _U64 ^ (T.IDLE | T.PP_SLOT)
_CLEAR_ON_ACCESS_NP = np.uint64(_CLEAR_ON_ACCESS)
# Batch classification masks (numpy scalars, built once).
_KIND_BITS = np.uint64(T.SAME | T.WB | T.HUGE | T.PRIORITY_MASK)
_SAME = np.uint64(T.SAME)
_WB = np.uint64(T.WB)
_SAME_WB = np.uint64(T.SAME | T.WB)
_HUGE = np.uint64(T.HUGE)
_SIZE_MASK = np.uint64(T.ZRAM_SIZE_MASK)
_PRIO_SHIFT = np.uint64(T.ZRAM_COMP_PRIORITY_BIT1)
_PRIO_BITS = np.uint64(T.PRIORITY_MASK)
# zram_free_page keeps only the lock bit (the WARN_ON in the kernel checks this).
_KEEP_ON_FREE = T.LOCK
#: read_pages of up to this many slots runs in plain Python (:meth:`Zram._read_small`).
_SMALL_READ = 32
#: Slots the small read path leaves to the numpy path: written back, or recompressed.
_RARE_KINDS = T.WB | T.PRIORITY_MASK
#: Slots that are not a plain compressed object of the primary algorithm.
_SMALL_SPECIAL = T.SAME | T.HUGE | _RARE_KINDS
_ZERO_PAGE = bytes(PAGE_SIZE)


def _put(page: Any, data: Any) -> None:
    """Copy 4096 bytes into a page buffer of any kind (bytearray, memoryview, numpy row)."""
    memoryview(page).cast("B")[:] = data


@dataclass
class ZramStats:
    """``struct zram_stats`` (zram_drv.h, 6.18: no writestall, no invalid_io)."""

    compr_data_size: int = 0
    failed_reads: int = 0
    failed_writes: int = 0
    notify_free: int = 0
    same_pages: int = 0
    huge_pages: int = 0
    huge_pages_since: int = 0
    pages_stored: int = 0
    max_used_pages: int = 0
    miss_free: int = 0
    bd_count: int = 0
    bd_reads: int = 0
    bd_writes: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


def _compress_or_empty(comp: Zcomp, page: bytes | memoryview) -> bytes:
    """One page through the backend; a codec error becomes ``b""`` (a failed write)."""
    try:
        return comp.backend.compress(page)
    except OSError:
        return b""


def page_same_filled(words: np.ndarray) -> np.ndarray:
    """``page_same_filled`` for a batch: which rows of 512 u64 words are all equal.

    Like the kernel, test the last word against the first before comparing
    the whole page, so a typical batch costs one vector compare.
    """
    cand = np.flatnonzero(words[:, 0] == words[:, -1])
    same = np.zeros(len(words), dtype=bool)
    if cand.size:
        sub = words[cand]
        same[cand] = (sub == sub[:, :1]).all(axis=1)
    return same


def _as_pages(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A read-only (N, 4096) uint8 view of ``data`` (no copy where possible)."""
    arr = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    return arr.reshape(-1, PAGE_SIZE)


class Zram:
    """A zram device: ``pyzram.Zram(config)`` is what ``hot_add`` gives.

    ``clock`` returns nanoseconds of ``ktime_get_boottime()``; tests inject
    a fake one to make idle ageing exact.
    """

    def __init__(
        self,
        config: ZramConfig | None = None,
        *,
        dev_id: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        from pyzram.zram.sysfs import ZramSysfs

        self.config = config or ZramConfig()
        self.dev_id = dev_id
        self.disk_name = f"zram{dev_id}"
        self.clock = clock
        self.init_lock = RWSemaphore()
        self.disksize = 0
        self.limit_pages = 0
        self.stats = ZramStats()
        self._stats_lock = threading.Lock()
        self.table: ZramTable | None = None
        self.mem_pool: ZsPool | None = None
        self.comps: list[Zcomp | None] = [None] * self.config.max_comps
        self.comp_algs: list[str | None] = [None] * self.config.max_comps
        self.comp_algs[ZRAM_PRIMARY_COMP] = self.config.default_comp
        self.params = [ZcompParams() for _ in range(self.config.max_comps)]
        self.num_active_comps = 0
        self.huge_class_size = 0
        self._claim = False
        self._open_lock = threading.Lock()
        #: Variants of the seed series (see zram/swap.py): how a swap read marks the
        #: slot accessed, and how reads fall back to the block path with a backing_dev.
        self.swap_read_ordering = "one_section"  # or "legacy"
        self.backing_read_fallback = "adjacent"  # or "as_posted"
        #: The backing device (CONFIG_ZRAM_WRITEBACK ``backing_dev``).
        self.backing_dev: BackingDev | None = None
        self.wb_limit_enable = False
        self.bd_wb_limit = 0
        self._wb_limit_lock = threading.Lock()
        self._pp_lock = threading.Lock()  # pp_in_progress
        #: Called at the interleaving points of the read path (race exploration).
        self.yield_point: Callable[[str, int], None] | None = None
        self.disk = Gendisk(
            self.disk_name,
            zram_devops,
            private_data=self,
            capacity_fn=lambda: self.disksize >> SECTOR_SHIFT,
            features=BLK_FEAT_SYNCHRONOUS | BLK_FEAT_STABLE_WRITES,
            logical_block_size=ZRAM_LOGICAL_BLOCK_SIZE,
        )
        self.sysfs = ZramSysfs(self)

    # -- state ----------------------------------------------------------------

    def init_done(self) -> bool:
        """``init_done``: disksize has been set."""
        return self.disksize != 0

    @property
    def nr_pages(self) -> int:
        return self.disksize >> PAGE_SHIFT

    @property
    def size(self) -> int:
        """Capacity in bytes (``set_capacity(disksize >> 9)``; 0 until init)."""
        return self.disksize

    # -- open / claim: what makes ``reset`` return EBUSY --------------------------

    def open(self) -> BlockDevice:
        """Open ``/dev/zramN`` (``blkdev_get``): one more opener, as swapon or an fd.

        ``EBUSY`` while a reset holds the claim.  Release with :meth:`release`.
        """
        return blkdev_get(self.disk)

    def release(self, bdev: BlockDevice | None = None) -> None:
        """Drop an opener taken with :meth:`open`."""
        blkdev_put(bdev or BlockDevice(self.disk))

    @property
    def openers(self) -> int:
        """``disk_openers``."""
        return self.disk._openers

    # -- init and reset -------------------------------------------------------

    def zram_meta_alloc(self, disksize: int) -> None:
        """``zram_meta_alloc``: the slot table and a fresh zsmalloc pool."""
        num_pages = disksize >> PAGE_SHIFT
        try:
            self.table = ZramTable(num_pages, self.config.track_entry_actime)
            self.mem_pool = ZsPool(
                self.disk_name,
                self.config.zsmalloc_chain_size,
                max_bytes=_arena_bytes(disksize),
            )
        except (MemoryError, ValueError, OSError):
            self.table = None
            raise OSError(errno.ENOMEM, "cannot allocate the slot table") from None
        # zs_huge_class_size() is read once, when the first pool exists.
        self.huge_class_size = self.mem_pool.huge_class_size

    def zram_meta_free(self) -> None:
        """``zram_meta_free``: free every slot, destroy the pool and the table.

        Only written-back slots need work one by one (their backing-device
        blocks); everything else goes with the pool, and the counters are
        reset by the caller, as ``zram_reset_device`` does.
        """
        tbl = self.table
        if tbl is not None and self.backing_dev is not None:
            for index in np.flatnonzero(tbl.flags_np & np.uint64(T.WB)).tolist():
                free_block_bdev(self, tbl.handle[index])
        self.table = None
        if self.mem_pool is not None:
            self.mem_pool.zs_destroy_pool()
        self.mem_pool = None

    def initialise(self, disksize: int) -> None:
        """The body of ``disksize_store`` under the write lock."""
        if self.init_done():
            raise OSError(errno.EBUSY, "Cannot change disksize for initialized device")
        disksize = (disksize + PAGE_SIZE - 1) & _U64 & ~(PAGE_SIZE - 1)  # PAGE_ALIGN
        if disksize == 0 or disksize >> PAGE_SHIFT > _max_table_entries():
            raise OSError(errno.ENOMEM, "cannot allocate the slot table")
        self.zram_meta_alloc(disksize)
        try:
            for prio, alg in enumerate(self.comp_algs):
                if alg is None:
                    continue
                self.comps[prio] = Zcomp.create(alg, self.params[prio])
                self.num_active_comps += 1
        except BaseException:
            self.zram_destroy_comps()
            self.zram_meta_free()
            raise
        self.disksize = disksize

    def zram_destroy_comps(self) -> None:
        """``zram_destroy_comps``: drop compressors and secondary algorithms."""
        for prio in range(len(self.comps)):
            self.comps[prio] = None
            if prio != ZRAM_PRIMARY_COMP:
                self.comp_algs[prio] = None
        self.num_active_comps = 0
        self.comp_algs[ZRAM_PRIMARY_COMP] = self.config.default_comp
        self.params = [ZcompParams() for _ in range(self.config.max_comps)]

    def zram_reset_device(self) -> None:
        """``zram_reset_device``: back to the state of a fresh ``hot_add``."""
        with self.init_lock.write():
            self.limit_pages = 0
            self.zram_meta_free()
            self.disksize = 0
            self.zram_destroy_comps()
            self.stats.reset()
            self.reset_bdev()

    def reset_bdev(self) -> None:
        """``reset_bdev``: release the backing device."""
        if self.backing_dev is not None:
            self.backing_dev.close()
            self.backing_dev = None

    def reset(self) -> None:
        """``reset_store`` after parsing: EBUSY while open or claimed."""
        with self._open_lock:
            if self.disk._openers or self._claim:
                raise OSError(errno.EBUSY, f"{self.disk_name} is in use")
            self._claim = True
        try:
            self.zram_reset_device()
        finally:
            with self._open_lock:
                self._claim = False

    # -- per-slot primitives --------------------------------------------------

    def zram_accessed(self, index: int) -> None:
        """``zram_accessed``: clear IDLE and PP_SLOT, stamp the access time."""
        tbl = self.table
        tbl.flags[index] &= _CLEAR_ON_ACCESS
        if tbl.ac_time is not None:
            tbl.ac_time[index] = self.clock()

    def zram_free_page(self, index: int) -> None:
        """``zram_free_page``: release whatever the slot holds (slot lock held)."""
        stored, compr, same, huge = self._free_slot(index)
        if stored:
            st = self.stats
            with self._stats_lock:
                st.pages_stored += stored
                st.compr_data_size += compr
                st.same_pages += same
                st.huge_pages += huge

    def _free_slot(self, index: int, pool_free: bool = True) -> tuple[int, int, int, int]:
        """The table and pool side of ``zram_free_page``; returns the stat deltas
        (pages_stored, compr_data_size, same_pages, huge_pages) for the caller to
        apply, so a batch updates the counters once.  ``pool_free=False``: the
        caller has already freed the slot's zsmalloc object (in batch order)."""
        tbl = self.table
        flags = tbl.flags[index]
        if tbl.ac_time is not None:
            tbl.ac_time[index] = 0
        huge = -1 if flags & T.HUGE else 0
        if flags & T.WB:
            free_block_bdev(self, tbl.handle[index])
            deltas = (-1, 0, 0, huge)
        elif flags & T.SAME:
            deltas = (-1, 0, -1, huge)
        else:
            handle = tbl.handle[index]
            if not handle:
                tbl.flags[index] = flags & _KEEP_ON_FREE
                return (0, 0, 0, huge)
            if pool_free:
                self.mem_pool.zs_free(handle)
            deltas = (-1, -(flags & T.ZRAM_SIZE_MASK), 0, huge)
        tbl.handle[index] = 0
        tbl.flags[index] = flags & _KEEP_ON_FREE
        return deltas

    # -- write ----------------------------------------------------------------

    def zram_write_page(self, page: bytes | np.ndarray, index: int) -> None:
        """``zram_write_page``: store one page in slot ``index`` (see :meth:`write_pages`)."""
        failed = self.write_pages(_as_pages(page)[:1], index)
        if failed is not None:
            raise failed

    @staticmethod
    def _classify_and_compress(
        pages: np.ndarray, comp: Zcomp
    ) -> tuple[np.ndarray, np.ndarray, list[bytes | memoryview], list[int]]:
        """Same-filled test and compression of a whole batch.

        Returns, per page, whether it is same-filled and its first u64 word
        (the fill value); and for the other pages, in order, the compressed
        objects and their lengths (0 or less where the codec failed): one
        vectorised test and one codec call for the batch.
        """
        n = len(pages)
        words = np.ascontiguousarray(pages).view(np.uint64).reshape(n, PAGE_SIZE // 8)
        same = page_same_filled(words)
        todo = np.flatnonzero(~same)
        objs: list[bytes | memoryview] = []
        lens: list[int] = []
        if todo.size:
            src = pages[todo] if todo.size < n else pages
            try:
                cbuf, csizes = comp.backend.compress_batch(src)
            except OSError:  # find the failing page: per-page calls, failures empty
                objs = [_compress_or_empty(comp, src[i].data) for i in range(len(src))]
                return same, words[:, 0], objs, [len(o) for o in objs]
            cview = memoryview(cbuf)
            stride = 2 * PAGE_SIZE
            lens = csizes.tolist()
            objs = [cview[j * stride : j * stride + c] for j, c in enumerate(lens)]
        return same, words[:, 0], objs, lens

    def write_pages(self, pages: np.ndarray, index: int | Sequence[int]) -> OSError | None:
        """Store ``pages`` (N x 4096 uint8) in slots ``index..index+N-1`` (or the
        slots listed in ``index``), in order.

        The batch form of ``zram_write_page`` + ``zram_accessed``, as
        ``zram_bio_write`` and ``zram_swap_submit_write`` run them, with the
        kernel's result: same-filled detection and compression run over the
        whole batch, and objects are placed with ``zs_malloc_bulk``, whose
        placement equals that of per-page calls.  The pool's state depends
        on the order of allocations and frees, so a page whose slot held
        something ends a run (its old content is freed after its own
        allocation and before the next page's), and while ``mem_limit``
        could be crossed every page is a run of its own, checked as the
        kernel checks it.  Stops at the first failing page and returns its
        error (codec failure ``EINVAL``; ``ENOMEM`` past mem_limit or from
        the pool): the pages before it are stored, it and the rest keep
        their old content.
        """
        n = len(pages)
        if n == 0:
            return None
        if n == 1:
            return self._write_one(pages[0], index if isinstance(index, int) else int(index[0]))
        comp = self.comps[ZRAM_PRIMARY_COMP]
        same, elements, objs, lens = self._classify_and_compress(pages, comp)
        slots = (
            np.arange(index, index + n, dtype=np.int64)
            if isinstance(index, int)
            else np.asarray(index, dtype=np.int64)
        )
        nz = (~same).nonzero()[0]  # nz[j]: the page of object j
        err: OSError | None = None
        stop = n
        if lens and min(lens) <= 0:  # the codec failed: the batch ends before that page
            first = next(j for j, c in enumerate(lens) if c <= 0)
            stop, lens = int(nz[first]), lens[:first]
            err = OSError(errno.EINVAL, f"{comp.name}: compression failed")
            if stop == 0:
                return err
        hcs = self.huge_class_size
        sizes = [PAGE_SIZE if c >= hcs else c for c in lens]
        objflags = np.array([T.HUGE | PAGE_SIZE if c == PAGE_SIZE else c for c in sizes], np.uint64)
        # jcount[k]: objects of the pages before k.
        jcount = np.concatenate(([0], np.cumsum(~same))).tolist()
        pool, tbl = self.mem_pool, self.table
        work = slots[:stop]
        new_handle = elements[:stop].copy()
        new_flags = np.where(same[:stop], np.uint64(T.SAME), np.uint64(0))
        max_used = 0
        done = 0  # pages [0, done) are stored
        freed = [0, 0, 0, 0]
        tbl.lock_slots(work)
        try:
            old = (tbl.flags_np[work] & np.uint64(T.ZRAM_SIZE_MASK | T.SAME | T.WB)).tolist()
            limit = self.limit_pages
            risky = limit and pool.pages_allocated + jcount[stop] * CHAIN_SIZE_MAX > limit
            # Old contents in the pool must be freed in page order between the allocations.
            in_pool = [
                k for k in range(stop) if old[k] and not tbl.flags[int(work[k])] & (T.SAME | T.WB)
            ]
            ends: Sequence[int] = ()
            replayed = False
            if risky:
                ends = range(1, stop + 1)  # mem_limit may be crossed: page by page
            elif in_pool:  # overwrites: each class replays its allocations and frees
                peak = self._overwrite_batch(
                    pages, objs, sizes, objflags, nz, work, old, in_pool, new_handle, new_flags
                )
                if peak is not None:
                    max_used, done, replayed = peak, stop, True
                else:  # near the end of the pool's arena: runs, one page at a time
                    ends = range(1, stop + 1)
            else:
                ends = [stop]
            for end in ends:
                j0, j1 = jcount[done], jcount[end]
                if j1 > j0:
                    try:
                        hs = pool.zs_malloc_bulk(sizes[j0:j1])
                    except OSError as e:
                        hs, err = list(getattr(e, "allocated", ())), e
                    alloced = pool.pages_allocated
                    max_used = max(max_used, alloced)  # update_used_max
                    if limit and alloced > limit and err is None:
                        pool.zs_free(hs.pop())
                        err = OSError(errno.ENOMEM, "zram: mem_limit reached")
                    j2 = j0 + len(hs)
                    rows = nz[j0:j2].tolist()
                    self._store_objects(pages, objs, sizes, hs, rows, j0)
                    if len(rows) == 1:  # a run of one (overwrites): no numpy call
                        new_handle[rows[0]] = hs[0]
                        new_flags[rows[0]] = objflags[j0]
                    elif rows:
                        new_handle[rows] = hs
                        new_flags[rows] = objflags[j0:j2]
                    if j2 < j1:  # the page of object j2 failed: the run ends before it
                        end = int(nz[j2])
                        stop = end
                for k in range(done, end):  # old contents go once the new ones are stored
                    if old[k]:
                        d = self._free_slot(int(work[k]))
                        for i in range(4):
                            freed[i] += d[i]
                done = end
                if done == stop:
                    break
            if replayed:
                for k in range(stop):  # the table side of zram_free_page (pool done)
                    if old[k]:
                        d = self._free_slot(int(work[k]), pool_free=False)
                        for i in range(4):
                            freed[i] += d[i]
            if done:
                w = work[:done]
                tbl.handle_np[w] = new_handle[:done]
                tbl.flags_np[w] = new_flags[:done] | np.uint64(T.LOCK)
                if tbl.ac_time_np is not None:
                    tbl.ac_time_np[w] = self.clock()  # zram_accessed
        finally:
            tbl.unlock_slots(work)
            j = jcount[done]
            self._account_write(done, done - j, sizes[:j], freed, max_used)
        return err

    def _write_one(self, page: np.ndarray, index: int) -> OSError | None:
        """A batch of one page (a 4 KiB ``pwrite``, one NBD block): ``zram_write_page``
        step by step as the kernel runs it, in plain Python, which for one page
        costs less than numpy's per-call overhead."""
        data = page.tobytes()
        tbl = self.table
        if data == data[:8] * 512:  # page_same_filled
            tbl.slot_lock(index)
            try:
                freed = self._free_slot(index)
                tbl.flags[index] |= T.SAME
                tbl.handle[index] = int.from_bytes(data[:8], "little")
                self.zram_accessed(index)
            finally:
                tbl.slot_unlock(index)
            self._account_write(1, 1, [], list(freed), 0)
            return None
        comp = self.comps[ZRAM_PRIMARY_COMP]
        obj = _compress_or_empty(comp, data)
        comp_len = len(obj)
        if comp_len <= 0:
            return OSError(errno.EINVAL, f"{comp.name}: compression failed")
        huge = comp_len >= self.huge_class_size
        if huge:
            comp_len = PAGE_SIZE
        pool = self.mem_pool
        try:
            handle = pool.zs_malloc(comp_len)
        except OSError as e:
            return e
        alloced = pool.pages_allocated  # zram_can_store_page: update_used_max, then the limit
        if self.limit_pages and alloced > self.limit_pages:
            pool.zs_free(handle)
            self._account_write(0, 0, [], [0, 0, 0, 0], alloced)
            return OSError(errno.ENOMEM, "zram: mem_limit reached")
        pool.zs_obj_write(handle, data if huge else obj)
        tbl.slot_lock(index)
        try:
            freed = self._free_slot(index)
            tbl.flags[index] |= (T.HUGE | PAGE_SIZE) if huge else comp_len
            tbl.handle[index] = handle
            self.zram_accessed(index)
        finally:
            tbl.slot_unlock(index)
        self._account_write(1, 0, [comp_len], list(freed), alloced)
        return None

    def _overwrite_batch(
        self, pages, objs, sizes, objflags, nz, work, old, in_pool, new_handle, new_flags
    ) -> int | None:
        """Place a batch that writes over stored slots with ``zs_malloc_free_bulk``:
        page k's new object is allocated, then its old one freed, in page order,
        as ``zram_write_page`` does.  Returns the peak ``pages_allocated`` after an
        allocation (for ``update_used_max``), or ``None`` if the pool asks the
        caller to go page by page."""
        tbl, pool = self.table, self.mem_pool
        stop = len(old)
        nzl = nz[: len(sizes)].tolist()
        per_page: list[int | None] = [None] * stop
        for j, k in enumerate(nzl):
            per_page[k] = sizes[j]
        olds = [0] * stop
        for k in in_pool:
            olds[k] = tbl.handle[int(work[k])]
        res = pool.zs_malloc_free_bulk(per_page, olds)
        if res is None:
            return None
        handles, peak = res
        hs = [handles[k] for k in nzl]
        self._store_objects(pages, objs, sizes, hs, nzl, 0)
        if nzl:
            new_handle[nzl] = hs
            new_flags[nzl] = objflags[: len(nzl)]
        return peak

    def _store_objects(self, pages, objs, sizes, hs, rows, j0) -> None:
        """``zs_obj_write`` of the objects just allocated: object ``j0 + i`` (page
        ``rows[i]``) goes to handle ``hs[i]``; a huge one is the page itself."""
        if not hs:
            return
        pool = self.mem_pool
        arena = pool.arena
        with pool.migrate_read():
            addrs = pool.obj_addrs(hs).tolist() if len(hs) > 1 else [pool.obj_addr(hs[0])]
            for i, a in enumerate(addrs):
                j = j0 + i
                size = sizes[j]
                if size == PAGE_SIZE:
                    arena[a : a + PAGE_SIZE] = pages[rows[i]].data
                else:
                    arena[a : a + size] = objs[j]

    def _account_write(
        self, stored: int, same: int, sizes: list[int], freed: list[int], max_used: int
    ) -> None:
        """Apply a batch's counter deltas once: what it stored and what it freed."""
        huge = sizes.count(PAGE_SIZE)
        st = self.stats
        with self._stats_lock:
            st.pages_stored += stored + freed[0]
            st.compr_data_size += sum(sizes) + freed[1]
            st.same_pages += same + freed[2]
            st.huge_pages += huge + freed[3]
            st.huge_pages_since += huge
            if max_used > st.max_used_pages:
                st.max_used_pages = max_used

    # -- read -----------------------------------------------------------------

    def read_pages(
        self,
        index: int | Sequence[int],
        n: int | None = None,
        *,
        ordering: str = "legacy",
        into: Sequence[Any] | None = None,
    ) -> tuple[bytearray | None, OSError | None]:
        """Read slots ``index..index+n-1`` (or the slots listed in ``index``).

        The batch form of ``zram_read_page`` + ``zram_accessed``: the batch's
        slots are locked, same-filled pages filled, and every compressed
        object decoded straight out of the pool's arena in one codec call
        (per compression priority), under ``migrate_lock``.  ``ordering`` is
        where the slots are marked accessed:

        * ``"legacy"`` (``zram_bio_read``, and the pre-series swap path): in a
          second critical section after the read — the window in which idle
          post-processing can take a slot that was just read;
        * ``"one_section"`` (the seed's ``zram_swap_submit_read``): in the same
          critical section as the read and the decompression.

        Slots written back (ZRAM_WB) are read from the backing device after
        the section, as the kernel does.  Returns the bytes and the error of
        the first failing page; pages from it on are not valid and not
        marked accessed (the kernel stops the batch there).

        ``into``, one writable 4096-byte buffer per slot (the pages of the
        folios being read), receives the pages instead, and the bytes
        returned are ``None``: a batch of compressed pages is decoded
        straight into them, as the kernel decompresses into the folio's
        pages, with no copy.

        One slot takes :meth:`_read_one`, up to :data:`_SMALL_READ` slots
        :meth:`_read_small` (plain Python), larger batches numpy; all three
        do the same steps in the same critical sections.
        """
        if into is not None and len(into) != (n if isinstance(index, int) else len(index)):
            raise ValueError("read_pages: one buffer per slot is needed")
        if n == 1 or (not isinstance(index, int) and len(index) == 1):
            one = self._read_one(index if n == 1 else int(index[0]), ordering)
            if one is not None:
                if into is None:
                    return one
                memoryview(into[0])[:] = one[0]
                return None, one[1]
        elif (n or len(index)) <= _SMALL_READ and self.yield_point is None:  # type: ignore[arg-type]
            idx = (
                list(range(index, index + n))  # type: ignore[arg-type]
                if isinstance(index, int)
                else index.tolist()
                if isinstance(index, np.ndarray)
                else list(index)
            )
            small = self._read_small(idx, ordering, into)
            if small is not None:
                return small
        slots = (
            np.arange(index, index + n, dtype=np.int64)
            if isinstance(index, int)
            else np.asarray(index if isinstance(index, np.ndarray) else list(index), np.int64)
        )
        n = len(slots)
        out = bytearray(n * PAGE_SIZE)
        arr = np.frombuffer(out, dtype=np.uint8).reshape(n, PAGE_SIZE)
        tbl = self.table
        one_section = ordering == "one_section"
        failed_at = n
        wb_rows: list[int] = []
        saved = None
        direct = False  # decoded straight into ``into``
        tbl.lock_slots(slots)
        try:
            flags = tbl.flags_np[slots]
            handles = tbl.handle_np[slots]
            kinds = flags & _KIND_BITS
            if not np.count_nonzero(kinds):  # the common batch: compressed, primary algorithm
                if np.count_nonzero(handles) == n:
                    direct = into is not None
                    failed_at = self._decode(arr if into is None else into, None, flags, handles, 0)
                elif np.count_nonzero(handles):
                    rows = handles.nonzero()[0]
                    failed_at = self._decode(arr, rows, flags[rows], handles[rows], 0)
            else:
                failed_at = self._read_mixed(arr, flags, kinds, handles)
                wb_rows = (kinds & _WB).nonzero()[0].tolist()
            if one_section:
                if wb_rows:  # backing-device reads come later and may fail: keep the marks
                    saved = (flags, tbl.ac_time_np[slots] if tbl.ac_time_np is not None else None)
                self._mark_accessed(slots[:failed_at])
        finally:
            tbl.unlock_slots(slots)
        hook = self.yield_point
        if hook is not None:
            for idx in slots.tolist():
                hook("read_unlocked", idx)
        if wb_rows:
            outv = memoryview(out)
            for k in wb_rows:
                blk = int(handles[k])
                if k < failed_at and read_from_bdev(self, blk, outv[k * PAGE_SIZE :][:PAGE_SIZE]):
                    failed_at = k
            if saved is not None and failed_at < n:
                self._unmark_accessed(slots[failed_at:], saved[0][failed_at:], saved[1], failed_at)
        if not one_section and failed_at:
            marked = slots[:failed_at]
            tbl.lock_slots(marked)
            try:
                self._mark_accessed(marked)
            finally:
                tbl.unlock_slots(marked)
        err = None
        if failed_at < n:
            msg = f"zram: decompression failed at slot {int(slots[failed_at])}"
            err = OSError(errno.EIO, msg)
        if into is None:
            return out, err
        if not direct:
            for k, buf in enumerate(into):
                memoryview(buf)[:] = arr[k]
        return None, err

    def _read_small(
        self, idx: list[int], ordering: str, into: Sequence[Any] | None
    ) -> tuple[bytearray | None, OSError | None] | None:
        """:meth:`read_pages` of a few slots (up to a swap_iocb's 32) in plain Python.

        The same steps, in the same critical sections, as the numpy path,
        which for a batch this small costs more in numpy's per-call overhead
        than the work itself: lock the slots together, decode the compressed
        ones with one codec call (:meth:`_fill_small` fills same-filled and
        empty pages and copies huge ones when there are any), mark them
        accessed (in this section for ``one_section``, in a second one for
        ``legacy``).  ``None``, with nothing changed, when a slot is written
        back or was recompressed: the numpy path handles those.
        """
        tbl = self.table
        fl, hd = tbl.flags, tbl.handle
        n = len(idx)
        out = bytearray(n * PAGE_SIZE) if into is None else None
        tbl.lock_slots(idx)
        try:
            handles: list[int] = []
            lengths = array("i")
            for i in idx:  # the common batch: every slot compressed by the primary algorithm
                f = fl[i]
                h = hd[i]
                if f & _SMALL_SPECIAL or not h:
                    break
                handles.append(h)
                lengths.append(f & T.ZRAM_SIZE_MASK)
            else:
                failed_at = self._decode_small(handles, lengths, out if into is None else into)
                if failed_at is None:
                    failed_at = n
            if len(handles) < n:
                flags = [fl[i] for i in idx]
                for f in flags:
                    if f & _RARE_KINDS:
                        return None
                failed_at = self._fill_small(flags, [hd[i] for i in idx], out, into)
            if ordering == "one_section":
                self._mark_accessed_list(idx[:failed_at])
        finally:
            tbl.unlock_slots(idx)
        if ordering != "one_section" and failed_at:
            marked = idx[:failed_at]
            tbl.lock_slots(marked)
            try:
                self._mark_accessed_list(marked)
            finally:
                tbl.unlock_slots(marked)
        err = None
        if failed_at < n:
            err = OSError(errno.EIO, f"zram: decompression failed at slot {idx[failed_at]}")
        return out, err

    def _decode_small(self, handles: list[int], lengths: array, dst: Any) -> int | None:
        """One codec call over a few compressed objects (slot locks held): the
        first failing one, or ``None``."""
        pool = self.mem_pool
        with pool.migrate_read():
            _, res = self.comps[0].backend.decompress_batch(
                pool.arena, pool.obj_addrs(handles), lengths, dst
            )
        if any(res):
            for j, r in enumerate(res):
                if r:
                    return j
        return None

    def _fill_small(
        self, flags: list[int], handles: list[int], out: bytearray | None, into: Any
    ) -> int:
        """The mixed small batch (slot locks held): fill same-filled and empty
        pages, copy huge ones, decode the rest.  Returns the first failing row,
        or ``len(flags)``."""
        n = len(flags)
        if into is None:
            view = memoryview(out)  # type: ignore[arg-type]
            pages: Sequence[Any] = [view[k << 12 : (k + 1) << 12] for k in range(n)]
        else:
            pages = into
        rows: list[int] = []
        for k, f in enumerate(flags):
            h = handles[k]
            if f & T.SAME:
                _put(pages[k], h.to_bytes(8, "little") * 512)  # zram_fill_page
            elif not h:
                if out is None:
                    _put(pages[k], _ZERO_PAGE)
            elif f & T.HUGE:  # stored raw: copied, not decoded
                pool = self.mem_pool
                with pool.migrate_read():
                    a = pool.obj_addr(h)
                    _put(pages[k], pool.arena[a : a + PAGE_SIZE])
            else:
                rows.append(k)
        if rows:
            lengths = array("i", [flags[k] & T.ZRAM_SIZE_MASK for k in rows])
            j = self._decode_small([handles[k] for k in rows], lengths, [pages[k] for k in rows])
            if j is not None:
                return rows[j]
        return n

    def _mark_accessed_list(self, idx: list[int]) -> None:
        """:meth:`_mark_accessed` of a few slots, in plain Python."""
        tbl = self.table
        fl = tbl.flags
        for i in idx:
            fl[i] &= _CLEAR_ON_ACCESS
        if tbl.ac_time is not None:
            now = self.clock()
            at = tbl.ac_time
            for i in idx:
                at[i] = now

    def _read_one(self, index: int, ordering: str) -> tuple[bytearray, OSError | None] | None:
        """A batch of one slot (the SWP_SYNCHRONOUS_IO fault, a 4 KiB pread): the
        same steps in plain Python, which for one page costs less than numpy's
        per-call overhead.  ``None`` for a written-back slot (the batch path
        reads it from the backing device)."""
        tbl = self.table
        tbl.slot_lock(index)
        try:
            if tbl.flags[index] & T.WB:
                return None
            page, err = self.read_from_zspool(index)
            if err is None and ordering == "one_section":
                self.zram_accessed(index)
        finally:
            tbl.slot_unlock(index)
        if self.yield_point is not None:
            self.yield_point("read_unlocked", index)
        if err is not None:
            msg = f"zram: decompression failed at slot {index}"
            return bytearray(PAGE_SIZE), OSError(errno.EIO, msg)
        if ordering != "one_section":
            tbl.slot_lock(index)
            self.zram_accessed(index)
            tbl.slot_unlock(index)
        return bytearray(page), None

    def _read_mixed(
        self, arr: np.ndarray, flags: np.ndarray, kinds: np.ndarray, handles: np.ndarray
    ) -> int:
        """A batch with same-filled, huge, written-back or recompressed slots: fill
        the same-filled pages, copy the huge ones, decode the rest per priority.
        Returns the first failing row (written-back rows are read later)."""
        n = len(arr)
        sw = kinds & _SAME_WB
        same = sw == _SAME
        if np.count_nonzero(same):
            rows = same.nonzero()[0]
            arr.view(np.uint64)[rows] = handles[rows, None]  # zram_fill_page
        stored = (sw == 0) & (handles != 0)  # holds a zsmalloc object
        failed = n
        if np.count_nonzero(kinds & _HUGE):
            huge = stored & ((kinds & _HUGE) != 0)
            stored &= ~huge
            pool = self.mem_pool
            arena = pool.arena
            rows = huge.nonzero()[0]
            with pool.migrate_read():
                addrs = pool.obj_addrs(handles[rows]).tolist()
                for k, a in zip(rows.tolist(), addrs, strict=True):
                    arr[k] = np.frombuffer(arena, dtype=np.uint8, count=PAGE_SIZE, offset=a)
        if not np.count_nonzero(stored):
            return failed
        prios = kinds & _PRIO_BITS
        if not np.count_nonzero(prios):  # all compressed by the primary algorithm
            rows = stored.nonzero()[0]
            return self._decode(arr, rows, flags[rows], handles[rows], 0)
        prios >>= _PRIO_SHIFT
        for prio in range(T.ZRAM_COMP_PRIORITY_MASK + 1):
            rows = (stored & (prios == prio)).nonzero()[0]
            if len(rows):
                failed = min(failed, self._decode(arr, rows, flags[rows], handles[rows], prio))
        return failed

    def _decode(
        self, arr: Any, rows: np.ndarray | None, flags: np.ndarray, handles, prio: int
    ) -> int:
        """``zram_read_from_zspool`` for compressed objects of one priority (slot
        locks held): one backend call decodes them out of the arena, into
        ``arr`` directly when they are the whole batch (``rows`` None; ``arr``
        is then the N x 4096 array or N page buffers).  Returns the first
        failing row, or ``len(arr)``."""
        pool = self.mem_pool
        backend = self.comps[prio].backend
        lengths = (flags & _SIZE_MASK).astype(np.int32)
        with pool.migrate_read():
            addrs = pool.obj_addrs(handles)
            if rows is None:
                _, res = backend.decompress_batch(pool.arena, addrs, lengths, arr)
            else:
                pages, res = backend.decompress_batch(pool.arena, addrs, lengths)
                arr[rows] = pages
        if not np.count_nonzero(res):
            return len(arr)
        first = int(res.nonzero()[0][0])
        return first if rows is None else int(rows[first])

    def _mark_accessed(self, slots: np.ndarray) -> None:
        """``zram_accessed`` of a batch (slot locks held): clear IDLE and PP_SLOT,
        stamp the access time."""
        if not len(slots):
            return
        tbl = self.table
        tbl.flags_np[slots] &= _CLEAR_ON_ACCESS_NP
        if tbl.ac_time_np is not None:
            tbl.ac_time_np[slots] = self.clock()

    def _unmark_accessed(self, slots, old_flags, old_actime, first) -> None:
        """Give slots whose read failed their IDLE/PP_SLOT bits and access time back:
        the kernel, stopping the batch there, never marked them."""
        tbl = self.table
        keep = np.uint64(T.IDLE | T.PP_SLOT)
        tbl.lock_slots(slots)
        try:
            cur = tbl.flags_np[slots]
            tbl.flags_np[slots] = (cur & ~keep) | (old_flags & keep) | np.uint64(T.LOCK)
            if old_actime is not None:
                tbl.ac_time_np[slots] = old_actime[first:]
        finally:
            tbl.unlock_slots(slots)

    def read_from_zspool(self, index: int) -> tuple[bytes, OSError | None]:
        """``read_from_zspool`` (slot lock held): the page of a slot not written back."""
        tbl = self.table
        flags, handle = tbl.flags[index], tbl.handle[index]
        if flags & T.SAME or not handle:
            return handle.to_bytes(8, "little") * 512 if flags & T.SAME else bytes(PAGE_SIZE), None
        if flags & T.HUGE:
            return self.mem_pool.zs_obj_read(handle, PAGE_SIZE), None
        prio = (flags >> T.ZRAM_COMP_PRIORITY_BIT1) & T.ZRAM_COMP_PRIORITY_MASK
        pool = self.mem_pool
        with pool.migrate_read():  # decode straight from the arena (zs_obj_read_begin)
            off = pool.obj_addr(handle)
            try:
                page = self.comps[prio].backend.decompress(
                    pool.arena[off : off + (flags & T.ZRAM_SIZE_MASK)]
                )
            except OSError as e:
                return b"", e
        if len(page) != PAGE_SIZE:
            return b"", OSError(errno.EINVAL, "short decompression")
        return page, None

    def zram_read_page(self, index: int) -> bytes:
        """``zram_read_page`` of one slot; ``OSError(EIO)`` if it cannot be decompressed."""
        out, err = self.read_pages(index, 1)
        if err is not None:
            raise err
        return bytes(out)

    # -- discard and swap free ------------------------------------------------

    def zram_bio_discard(self, sector: int, size: int) -> None:
        """``zram_bio_discard``: free every whole page of the range.

        A partial first page is skipped (zram works in whole pages), as is a
        partial last page; ``notify_free`` counts every page freed, written
        or not.
        """
        index = sector >> (PAGE_SHIFT - SECTOR_SHIFT)
        offset = (sector & (SECTORS_PER_PAGE - 1)) << SECTOR_SHIFT
        n = size
        if offset:
            if n <= PAGE_SIZE - offset:
                return
            n -= PAGE_SIZE - offset
            index += 1
        tbl = self.table
        freed = 0
        while n >= PAGE_SIZE:
            tbl.slot_lock(index)
            try:
                self.zram_free_page(index)
            finally:
                tbl.slot_unlock(index)
            freed += 1
            index += 1
            n -= PAGE_SIZE
        with self._stats_lock:
            self.stats.notify_free += freed

    def zram_slot_free_notify(self, index: int) -> None:
        """``zram_slot_free_notify``: the swap core freed slot ``index``.

        Called from a context that cannot sleep, so the slot lock is only
        tried: if it is held, ``miss_free`` counts a slot left allocated.
        """
        with self._stats_lock:
            self.stats.notify_free += 1
        tbl = self.table
        if not tbl.slot_trylock(index):
            with self._stats_lock:
                self.stats.miss_free += 1
            return
        try:
            self.zram_free_page(index)
        finally:
            tbl.slot_unlock(index)

    # -- block device entry points (O_DIRECT on /dev/zramN) --------------------

    def _check_dio(self, offset: int, length: int) -> None:
        """``blkdev_dio_invalid``: offset and length must be logical-block aligned."""
        if offset < 0 or length < 0:
            raise OSError(errno.EINVAL, "negative offset or length")
        if (offset | length) & (ZRAM_LOGICAL_BLOCK_SIZE - 1):
            raise OSError(
                errno.EINVAL,
                f"O_DIRECT I/O must be {ZRAM_LOGICAL_BLOCK_SIZE}-byte aligned "
                f"(offset {offset}, length {length})",
            )

    def pwrite(self, data: bytes | bytearray | memoryview | np.ndarray, offset: int) -> int:
        """Like ``os.pwrite`` on ``/dev/zramN`` opened ``O_DIRECT``.

        Returns the bytes written: a write that runs past the end is cut
        short at the end (``blkdev_write_iter``), one that starts at or past
        the end fails with ``ENOSPC``; misaligned offsets or lengths are
        ``EINVAL``.  Each bio of up to ``BIO_MAX_VECS`` pages that fails
        counts in ``failed_writes``, and the write then fails with ``EIO``.
        """
        buf = memoryview(data).cast("B")
        length = len(buf)
        self._check_dio(offset, length)
        if length == 0:
            return 0
        with self.init_lock.read():
            if offset >= self.disksize:
                raise OSError(errno.ENOSPC, "write starts at or past the end of the device")
            length = min(length, self.disksize - offset)
            pages = _as_pages(buf[:length])
            failed = None
            for start in range(0, len(pages), BIO_MAX_VECS):
                err = self.write_pages(
                    pages[start : start + BIO_MAX_VECS], (offset >> PAGE_SHIFT) + start
                )
                if err is not None:
                    with self._stats_lock:
                        self.stats.failed_writes += 1
                    failed = failed or err
        if failed is not None:
            raise OSError(errno.EIO, f"I/O error ({failed.strerror})")
        return length

    def pread(self, length: int, offset: int) -> bytes:
        """Like ``os.pread`` on ``/dev/zramN`` opened ``O_DIRECT``.

        Reads at or past the end return ``b""``; reads across it are cut
        short.  A page that cannot be decompressed fails its bio
        (``failed_reads``) and the read with ``EIO``.
        """
        self._check_dio(offset, length)
        with self.init_lock.read():
            if offset >= self.disksize or length == 0:
                return b""
            length = min(length, self.disksize - offset)
            n = length >> PAGE_SHIFT
            chunks = []
            failed = None
            for start in range(0, n, BIO_MAX_VECS):
                out, err = self.read_pages(
                    (offset >> PAGE_SHIFT) + start, min(BIO_MAX_VECS, n - start)
                )
                if err is not None:
                    with self._stats_lock:
                        self.stats.failed_reads += 1
                    failed = failed or err
                chunks.append(out)
        if failed is not None:
            raise OSError(errno.EIO, f"I/O error ({failed.strerror})")
        return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)

    def discard(self, offset: int, length: int) -> None:
        """``ioctl(BLKDISCARD)``: a whole-block range inside the device.

        ``blk_ioctl_discard`` refuses (``EINVAL``) an empty range, one not
        aligned to the logical block size (4096 for zram), and one past the
        end.  zram then frees every page of it (``zram_bio_discard``).
        """
        self._blk_ioctl_range(offset, length)
        with self.init_lock.read():
            self.zram_bio_discard(offset >> SECTOR_SHIFT, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """``ioctl(BLKZEROOUT)``: REQ_OP_WRITE_ZEROES, which zram treats as discard."""
        self.discard(offset, length)

    def _blk_ioctl_range(self, offset: int, length: int) -> None:
        """``blk_validate_byte_range``: non-empty, block aligned, inside the device."""
        if offset < 0 or length <= 0 or (offset | length) & (ZRAM_LOGICAL_BLOCK_SIZE - 1):
            raise OSError(errno.EINVAL, "range must be non-empty and 4096-byte aligned")
        if offset + length > self.disksize:
            raise OSError(errno.EINVAL, "range runs past the end of the device")

    # -- statistics -------------------------------------------------------------

    def mm_stat(self) -> MmStat:
        """``mm_stat_show``."""
        with self.init_lock.read():
            st = self.stats
            pool = self.mem_pool if self.init_done() else None
            return MmStat(
                orig_data_size=st.pages_stored << PAGE_SHIFT,
                compr_data_size=st.compr_data_size,
                mem_used_total=(pool.zs_get_total_pages() << PAGE_SHIFT) if pool else 0,
                mem_limit=self.limit_pages << PAGE_SHIFT,
                mem_used_max=st.max_used_pages << PAGE_SHIFT,
                same_pages=st.same_pages,
                pages_compacted=pool.pages_compacted if pool else 0,
                huge_pages=st.huge_pages,
                huge_pages_since=st.huge_pages_since,
            )

    def io_stat(self) -> IoStat:
        """``io_stat_show``."""
        st = self.stats
        return IoStat(st.failed_reads, st.failed_writes, 0, st.notify_free)

    def debug_stat(self) -> str:
        """``debug_stat_show``."""
        return format_debug_stat(self.stats.miss_free)

    def bd_stat(self) -> str:
        """``bd_stat_show``: bd_count, bd_reads, bd_writes in 4 KiB units."""
        st = self.stats
        return f"{st.bd_count:8d} {st.bd_reads:8d} {st.bd_writes:8d}\n"

    def check(self) -> None:
        """Assert that every counter equals what the table and the pool hold (tests)."""
        with self.init_lock.read():
            st = self.stats
            if not self.init_done():
                assert st.pages_stored == st.same_pages == st.huge_pages == 0
                return
            f = self.table.flags_np
            size = (f & np.uint64(T.ZRAM_SIZE_MASK)).astype(np.int64)
            same = (f & np.uint64(T.SAME)) != 0
            huge = (f & np.uint64(T.HUGE)) != 0
            assert int(same.sum()) == st.same_pages, "same_pages"
            assert int(huge.sum()) == st.huge_pages, "huge_pages"
            assert int(size.sum()) == st.compr_data_size, "compr_data_size"
            assert int(self.table.allocated_mask().sum()) == st.pages_stored, "pages_stored"
            assert not (f & np.uint64(T.LOCK)).any(), "a slot lock is held"
            live = self.table.handle_np[(size > 0)]
            assert len(set(live.tolist())) == len(live), "two slots share a handle"
            self.mem_pool.check()
            assert sum(c.objs_inuse for c in self.mem_pool.classes) == len(live)


# -- the block device: zram_submit_bio and zram_devops -----------------------------------


def _bio_pages(bio: Bio) -> tuple[np.ndarray, list[memoryview]]:
    views = [bv.view() for bv in bio.bvecs]
    data = b"".join(views) if len(views) != 1 else views[0]
    return _as_pages(data), views


def zram_bio_write(zram: Zram, bio: Bio) -> None:
    """``zram_bio_write``: every page of the bio in order; fail it on the first error."""
    pages, _ = _bio_pages(bio)
    index = bio.sector >> (PAGE_SHIFT - SECTOR_SHIFT)
    if zram.write_pages(pages, index) is not None:
        with zram._stats_lock:
            zram.stats.failed_writes += 1
        bio.status = BLK_STS_IOERR
    bio_endio(bio)


def zram_bio_read(zram: Zram, bio: Bio) -> None:
    """``zram_bio_read``: read, then mark accessed in a second critical section."""
    n = bio.size >> PAGE_SHIFT
    index = bio.sector >> (PAGE_SHIFT - SECTOR_SHIFT)
    pages = [
        v[j : j + PAGE_SIZE]
        for v in (bv.view() for bv in bio.bvecs)
        for j in range(0, len(v), PAGE_SIZE)
    ]
    _, err = zram.read_pages(index, n, ordering="legacy", into=pages)
    if err is not None:
        with zram._stats_lock:
            zram.stats.failed_reads += 1
        bio.status = BLK_STS_IOERR
    bio_endio(bio)


def zram_submit_bio(bio: Bio) -> None:
    """``zram_submit_bio``: READ, WRITE, DISCARD / WRITE_ZEROES.

    zram's queue has a 4096-byte logical block, so bios arrive page aligned;
    any other op is warned about and ended (``WARN_ON_ONCE``).
    """
    zram: Zram = bio.bdev.disk.private_data
    with zram.init_lock.read():
        if bio.op == REQ_OP_READ:
            zram_bio_read(zram, bio)
        elif bio.op == REQ_OP_WRITE:
            zram_bio_write(zram, bio)
        elif bio.op in (REQ_OP_DISCARD, REQ_OP_WRITE_ZEROES):
            zram.zram_bio_discard(bio.sector, bio.size)
            bio_endio(bio)
        else:
            bio.status = BLK_STS_IOERR
            bio_endio(bio)


def zram_open(disk: Gendisk) -> None:
    """``zram_open``: refused while ``reset`` holds the claim."""
    zram: Zram = disk.private_data
    if zram._claim:
        raise OSError(errno.EBUSY, f"{zram.disk_name} is being reset")


def zram_bdev_slot_free_notify(bdev: BlockDevice, index: int) -> None:
    """The pre-series ``block_device_operations.swap_slot_free_notify`` of zram."""
    bdev.disk.private_data.zram_slot_free_notify(index)


#: ``zram_devops``: one table for every zram disk (the swap_ops registry's key).
zram_devops = BlockDeviceOperations(
    "zram",
    submit_bio=zram_submit_bio,
    open=zram_open,
    swap_slot_free_notify=zram_bdev_slot_free_notify,
)


def _arena_bytes(disksize: int) -> int:
    """Address space to reserve for a pool serving ``disksize``: four times the
    device (objects, zspage tails, free extents), at most eight times RAM."""
    try:
        import os

        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 1 << 36
    return min(4 * disksize + (64 << 20), 8 * ram)


def _max_table_entries() -> int:
    """Largest slot table ``vzalloc`` could give: 16 bytes a slot within physical RAM."""
    try:
        import os

        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 1 << 40
    return ram // 16

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

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
from pyzram.mm.zsmalloc import ZsPool
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
#: Batches up to this many pages skip numpy (its per-call cost exceeds the work).
SMALL_BATCH = 4

_U64 = (1 << 64) - 1
_CLEAR_ON_ACCESS = _U64 ^ (T.IDLE | T.PP_SLOT)
# zram_free_page keeps only the lock bit (the WARN_ON in the kernel checks this).
_KEEP_ON_FREE = T.LOCK


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
        except (MemoryError, ValueError):
            raise OSError(errno.ENOMEM, "cannot allocate the slot table") from None
        self.mem_pool = ZsPool(self.disk_name, self.config.zsmalloc_chain_size)
        # zs_huge_class_size() is read once, when the first pool exists.
        self.huge_class_size = self.mem_pool.huge_class_size

    def zram_meta_free(self) -> None:
        """``zram_meta_free``: free every slot, destroy the pool and the table."""
        if self.table is not None and self.mem_pool is not None:
            for index in np.flatnonzero(self.table.allocated_mask()).tolist():
                self.zram_free_page(index)
        self.table = None
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

    def _free_slot(self, index: int) -> tuple[int, int, int, int]:
        """The table and pool side of ``zram_free_page``; returns the stat deltas
        (pages_stored, compr_data_size, same_pages, huge_pages) for the caller to
        apply, so a batch updates the counters once."""
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
    ) -> tuple[list[bool], list[int], list[bytes | memoryview]]:
        """Same-filled test and compression of a whole batch.

        Returns, per page, whether it is same-filled and its first u64 word
        (the fill value), and the compressed objects of the other pages in
        order.  Small batches stay in plain Python (``p == p[:8] * 512`` and
        one codec call per page cost less than numpy's per-call overhead);
        larger ones are one vectorised test and one batch codec call.
        """
        n = len(pages)
        if n <= SMALL_BATCH:
            blobs = [pages[k].tobytes() for k in range(n)]
            same_l = [b == b[:8] * 512 for b in blobs]
            elements = [int.from_bytes(b[:8], "little") for b in blobs]
            objs = [
                _compress_or_empty(comp, b) for b, s in zip(blobs, same_l, strict=True) if not s
            ]
            return same_l, elements, objs
        words = np.ascontiguousarray(pages).view(np.uint64).reshape(n, PAGE_SIZE // 8)
        same = page_same_filled(words)
        todo = np.flatnonzero(~same)
        objs: list[bytes | memoryview] = []
        if todo.size:
            src = pages[todo] if todo.size < n else pages
            try:
                cbuf, csizes = comp.backend.compress_batch(src)
            except OSError:  # find the failing page: per-page calls, failures empty
                objs = [_compress_or_empty(comp, src[i].data) for i in range(len(src))]
                return same.tolist(), words[:, 0].tolist(), objs
            cview = memoryview(cbuf)
            stride = 2 * PAGE_SIZE
            objs = [
                cview[j * stride : j * stride + c] if c > 0 else b""  # c <= 0: codec error
                for j, c in enumerate(csizes.tolist())
            ]
        return same.tolist(), words[:, 0].tolist(), objs

    def write_pages(self, pages: np.ndarray, index: int | Sequence[int]) -> OSError | None:
        """Store ``pages`` (N x 4096 uint8) in slots ``index..index+N-1`` (or the
        slots listed in ``index``), in order.

        The batch form of ``zram_write_page`` + ``zram_accessed``, as
        ``zram_bio_write`` runs them: same-filled detection and compression
        are done for the whole batch up front; placement, the mem_limit check
        and freeing the old content run page by page in slot order, because
        the pool's state depends on that order.  Stops at the first failing
        page and returns its error (``ENOMEM`` past mem_limit); the slot
        keeps its old content.
        """
        n = len(pages)
        if n == 0:
            return None
        comp = self.comps[ZRAM_PRIMARY_COMP]
        same_l, elements, objs = self._classify_and_compress(pages, comp)
        slots = range(index, index + n) if isinstance(index, int) else index
        pool, tbl = self.mem_pool, self.table
        flags, handles = tbl.flags, tbl.handle
        huge_class_size = self.huge_class_size
        limit = self.limit_pages
        free_slot, accessed = self._free_slot, self.zram_accessed
        # Counter deltas, applied once for the batch (also when it stops early).
        stored = compr = same_pages = huge_pages = huge_since = max_used = 0
        err: OSError | None = None
        j = 0
        held = -1  # the slot whose lock we hold, released on any exception
        try:
            for k, idx in enumerate(slots):
                if same_l[k]:
                    tbl.slot_lock(idx)
                    held = idx
                    d = free_slot(idx)
                    flags[idx] |= T.SAME
                    handles[idx] = elements[k]
                    same_pages += 1
                    stored += 1
                else:
                    obj = objs[j]
                    comp_len = len(obj)
                    j += 1
                    if comp_len <= 0:
                        err = OSError(errno.EINVAL, f"{comp.name}: compression failed")
                        return err
                    huge = comp_len >= huge_class_size
                    if huge:
                        comp_len = PAGE_SIZE
                    try:
                        handle = pool.zs_malloc(comp_len)
                    except OSError as e:
                        err = e
                        return err
                    alloced = pool.pages_allocated
                    if alloced > max_used:  # update_used_max
                        max_used = alloced
                    if limit and alloced > limit:
                        pool.zs_free(handle)
                        err = OSError(errno.ENOMEM, "zram: mem_limit reached")
                        return err
                    pool.zs_obj_write(handle, pages[k].data if huge else obj)
                    tbl.slot_lock(idx)
                    held = idx
                    d = free_slot(idx)
                    flags[idx] |= (T.HUGE | comp_len) if huge else comp_len
                    handles[idx] = handle
                    compr += comp_len
                    stored += 1
                    if huge:
                        huge_pages += 1
                        huge_since += 1
                stored += d[0]
                compr += d[1]
                same_pages += d[2]
                huge_pages += d[3]
                accessed(idx)
                held = -1
                tbl.slot_unlock(idx)
            return None
        finally:
            if held >= 0:
                tbl.slot_unlock(held)
            st = self.stats
            with self._stats_lock:
                st.pages_stored += stored
                st.compr_data_size += compr
                st.same_pages += same_pages
                st.huge_pages += huge_pages
                st.huge_pages_since += huge_since
                if max_used > st.max_used_pages:
                    st.max_used_pages = max_used

    # -- read -----------------------------------------------------------------

    def read_pages(
        self, index: int | Sequence[int], n: int | None = None, *, ordering: str = "legacy"
    ) -> tuple[bytearray, OSError | None]:
        """Read slots ``index..index+n-1`` (or the slots listed in ``index``).

        The batch form of ``zram_read_page`` + ``zram_accessed``.  Each slot's
        content is taken under its lock; decompression of the whole batch is
        one backend call.  ``ordering`` is where the slot is marked accessed:

        * ``"legacy"`` (``zram_bio_read``, and the pre-series swap path): in a
          second critical section after the read — the window in which idle
          post-processing can take a slot that was just read;
        * ``"one_section"`` (the seed's ``zram_swap_submit_read``): in the same
          critical section as the read.  A page that then fails to decompress
          gets its previous IDLE/PP_SLOT/ac_time back, as if never marked, as
          do the pages after it (the kernel stops the batch there).

        Returns the bytes and the error of the first failing page; pages
        from it on are not valid and not marked accessed.
        """
        slots = range(index, index + n) if isinstance(index, int) else list(index)
        n = len(slots)
        out = bytearray(n * PAGE_SIZE)
        outb = memoryview(out)
        tbl, pool = self.table, self.mem_pool
        one_section = ordering == "one_section"
        saved: list[tuple[int, int]] = []
        z_rows: list[int] = []
        z_objs: list[bytes] = []
        z_prio: list[int] = []
        wb_rows: list[tuple[int, int]] = []
        hook = self.yield_point
        for k, idx in enumerate(slots):
            tbl.slot_lock(idx)
            try:
                flags = tbl.flags[idx]
                handle = tbl.handle[idx]
                if flags & T.WB:
                    wb_rows.append((k, handle))  # read from the backing device after unlock
                elif flags & T.SAME:
                    if handle:
                        outb[k * PAGE_SIZE : (k + 1) * PAGE_SIZE] = (
                            handle.to_bytes(8, "little") * 512
                        )
                elif not handle:
                    pass  # never written or freed: reads as zeros
                elif flags & T.HUGE:
                    outb[k * PAGE_SIZE : (k + 1) * PAGE_SIZE] = pool.zs_obj_read(handle, PAGE_SIZE)
                else:
                    z_rows.append(k)
                    z_objs.append(pool.zs_obj_read(handle, flags & T.ZRAM_SIZE_MASK))
                    z_prio.append((flags >> T.ZRAM_COMP_PRIORITY_BIT1) & T.ZRAM_COMP_PRIORITY_MASK)
                if one_section:
                    saved.append((flags, tbl.ac_time[idx] if tbl.ac_time is not None else 0))
                    self.zram_accessed(idx)
            finally:
                tbl.slot_unlock(idx)
            if hook is not None:
                hook("read_unlocked", idx)
        failed_at = n
        for k, blk in wb_rows:
            if read_from_bdev(self, blk, outb[k * PAGE_SIZE : (k + 1) * PAGE_SIZE]):
                failed_at = min(failed_at, k)
        if z_rows:
            failed_at = min(failed_at, self._decompress_into(outb, z_rows, z_objs, z_prio, n))
        if one_section:
            for k in range(failed_at, n):  # undo the marks the kernel never made
                idx = slots[k]
                tbl.slot_lock(idx)
                keep = T.IDLE | T.PP_SLOT
                tbl.flags[idx] = (tbl.flags[idx] & ~keep & _U64) | (saved[k][0] & keep)
                if tbl.ac_time is not None:
                    tbl.ac_time[idx] = saved[k][1]
                tbl.slot_unlock(idx)
        else:
            for k in range(failed_at):
                idx = slots[k]
                tbl.slot_lock(idx)
                self.zram_accessed(idx)
                tbl.slot_unlock(idx)
        if failed_at < n:
            msg = f"zram: decompression failed at slot {slots[failed_at]}"
            return out, OSError(errno.EIO, msg)
        return out, None

    def read_from_zspool(self, index: int) -> tuple[bytes, OSError | None]:
        """``read_from_zspool`` (slot lock held): the page of a slot not written back."""
        tbl = self.table
        flags, handle = tbl.flags[index], tbl.handle[index]
        if flags & T.SAME or not handle:
            return handle.to_bytes(8, "little") * 512 if flags & T.SAME else bytes(PAGE_SIZE), None
        if flags & T.HUGE:
            return self.mem_pool.zs_obj_read(handle, PAGE_SIZE), None
        obj = self.mem_pool.zs_obj_read(handle, flags & T.ZRAM_SIZE_MASK)
        prio = (flags >> T.ZRAM_COMP_PRIORITY_BIT1) & T.ZRAM_COMP_PRIORITY_MASK
        try:
            page = self.comps[prio].backend.decompress(obj)
        except OSError as e:
            return b"", e
        if len(page) != PAGE_SIZE:
            return b"", OSError(errno.EINVAL, "short decompression")
        return page, None

    def _decompress_into(
        self, outb: memoryview, rows: list[int], objs: list[bytes], prios: list[int], n: int
    ) -> int:
        """Decompress ``objs`` into their ``rows`` of ``outb``; the first failing row, or n.

        Objects are grouped by the priority of the algorithm that compressed
        them (recompressed slots use a secondary one); each group is one
        backend batch call.
        """
        failed = n
        for prio in sorted(set(prios)):
            sel = [i for i, p in enumerate(prios) if p == prio] if len(set(prios)) > 1 else None
            g_rows = rows if sel is None else [rows[i] for i in sel]
            g_objs = objs if sel is None else [objs[i] for i in sel]
            failed = min(failed, self._decompress_group(outb, g_rows, g_objs, prio, n))
        return failed

    def _decompress_group(
        self, outb: memoryview, rows: list[int], objs: list[bytes], prio: int, n: int
    ) -> int:
        backend = self.comps[prio].backend
        if len(objs) <= SMALL_BATCH:
            for k, obj in zip(rows, objs, strict=True):
                try:
                    page = backend.decompress(obj)
                except OSError:
                    return k
                if len(page) != PAGE_SIZE:
                    return k
                outb[k * PAGE_SIZE : (k + 1) * PAGE_SIZE] = page
            return n
        lengths = np.fromiter((len(o) for o in objs), dtype=np.int32, count=len(objs))
        offsets = np.zeros(len(objs), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        pages, results = backend.decompress_batch(b"".join(objs), offsets, lengths)
        bad = np.flatnonzero(results)
        ok = len(rows) if not bad.size else int(bad[0])
        np.frombuffer(outb, dtype=np.uint8).reshape(n, PAGE_SIZE)[rows[:ok]] = pages[:ok]
        return n if not bad.size else rows[ok]

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
        return b"".join(chunks)

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
    data, err = zram.read_pages(index, n, ordering="legacy")
    pos = 0
    for bv in bio.bvecs:
        bv.view()[:] = data[pos : pos + bv.len]
        pos += bv.len
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


def _max_table_entries() -> int:
    """Largest slot table ``vzalloc`` could give: 16 bytes a slot within physical RAM."""
    try:
        import os

        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 1 << 40
    return ram // 16

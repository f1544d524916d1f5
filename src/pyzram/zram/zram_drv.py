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
range rules and errnos.  A request goes to the driver in bios of up to
``BIO_MAX_VECS`` pages through ``submit_bio``, and ``zram_bio_write`` /
``zram_bio_read`` run the per-page path above for each page of the bio, as
the kernel does; zram's ``swap_ops`` (:mod:`.swap`) run the same per-page
functions for each page of a ``swap_iocb``.

``dev.sysfs`` is the ``/sys/block/zramN`` directory: the kernel's attribute
names, file modes, text formats, parsers and errnos (see :mod:`.sysfs`).
"""

from __future__ import annotations

import errno
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

import cython
import numpy as np

from pyzram.block.bio import (
    BLK_STS_IOERR,
    REQ_OP_DISCARD,
    REQ_OP_READ,
    REQ_OP_WRITE,
    REQ_OP_WRITE_ZEROES,
    Bio,
    bio_endio,
    submit_bio_wait,
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
from pyzram.lib.atomic import (
    atomic64_add,
    atomic64_dec,
    atomic64_inc,
    atomic64_read,
    atomic64_set,
    atomic64_sub,
    atomic64_t,
    atomic64_try_cmpxchg,
)
from pyzram.lib.rwsem import RWSemaphore
from pyzram.lib.string import memcmp, memcpy_to_page, memset_l
from pyzram.mm.zsmalloc import IS_ERR_VALUE, ZsPool
from pyzram.zram import table as T
from pyzram.zram.stat import IoStat, MmStat, format_debug_stat
from pyzram.zram.table import ZramTable
from pyzram.zram.writeback import free_block_bdev, read_from_bdev
from pyzram.zram.zcomp import ZCOMP_BATCH, Zcomp, ZcompParams, ZcompStrm

PAGE_SIZE = 4096
PAGE_SHIFT = 12
SECTOR_SHIFT = 9
SECTOR_SIZE = 512
SECTORS_PER_PAGE = PAGE_SIZE >> SECTOR_SHIFT
#: ZRAM_LOGICAL_BLOCK_SIZE: all zram I/O is in whole 4 KiB pages on x86_64.
ZRAM_LOGICAL_BLOCK_SIZE = PAGE_SIZE
#: BIO_MAX_VECS: the most pages one direct-I/O bio carries.
BIO_MAX_VECS = 256
#: MAX_RW_COUNT: the most one read(2)/write(2) moves (INT_MAX rounded down to a page).
MAX_RW_COUNT = 0x7FFFFFFF & ~(PAGE_SIZE - 1)
#: The largest file offset (loff_t).
LLONG_MAX = (1 << 63) - 1
ZRAM_PRIMARY_COMP = 0

_U64 = (1 << 64) - 1
# Flag bits as C-typed module constants of the compiled form (zram_drv.pxd).
_SAME = T.SAME
_WB = T.WB
_HUGE = T.HUGE
_SIZE_MASK = T.ZRAM_SIZE_MASK
_PRIO_SHIFT = T.ZRAM_COMP_PRIORITY_BIT1
_PRIO_MASK = T.ZRAM_COMP_PRIORITY_MASK
_PG_SIZE = PAGE_SIZE
_PRIMARY = ZRAM_PRIMARY_COMP
_BATCH = ZCOMP_BATCH
#: zram_accessed clears these.
_CLEAR_ON_ACCESS = _U64 ^ (T.IDLE | T.PP_SLOT)
#: zram_free_page clears these first, whatever the slot holds.
_CLEAR_ON_FREE = _U64 ^ (T.IDLE | T.INCOMPRESSIBLE | T.PP_SLOT | T.PRIORITY_MASK)
_LAST_WORD = PAGE_SIZE - 8  # the offset of a page's last u64 word


#: The counters of ``struct zram_stats`` (zram_drv.h, 6.18: no writestall, no invalid_io).
ZRAM_STATS = (
    "compr_data_size",
    "failed_reads",
    "failed_writes",
    "notify_free",
    "same_pages",
    "huge_pages",
    "huge_pages_since",
    "pages_stored",
    "max_used_pages",
    "miss_free",
    "bd_count",
    "bd_reads",
    "bd_writes",
)


@cython.cclass
class ZramStats:
    """``struct zram_stats``: one :class:`~pyzram.lib.atomic.atomic64_t` per
    counter (:data:`ZRAM_STATS`), read with ``atomic64_read`` and changed only
    through the atomic helpers (``atomic64_inc(zram.stats.pages_stored)``)."""

    def __init__(self) -> None:
        self.compr_data_size = atomic64_t()
        self.failed_reads = atomic64_t()
        self.failed_writes = atomic64_t()
        self.notify_free = atomic64_t()
        self.same_pages = atomic64_t()
        self.huge_pages = atomic64_t()
        self.huge_pages_since = atomic64_t()
        self.pages_stored = atomic64_t()
        self.max_used_pages = atomic64_t()
        self.miss_free = atomic64_t()
        self.bd_count = atomic64_t()
        self.bd_reads = atomic64_t()
        self.bd_writes = atomic64_t()

    def reset(self) -> None:
        """Every counter back to 0 (``zram_reset_device``'s ``memset``)."""
        for name in ZRAM_STATS:
            atomic64_set(getattr(self, name), 0)

    def as_dict(self) -> dict[str, int]:
        """Every counter's value, by its kernel name (reports and tests)."""
        return {name: atomic64_read(getattr(self, name)) for name in ZRAM_STATS}


def page_same_filled(page: Any) -> int | None:
    """``page_same_filled``: the fill word if the page's 512 u64 words are all
    equal, else ``None``.

    As in the kernel, the last word is tested against the first (byte by
    byte, the first bytes first), so a typical page costs one comparison;
    then every word is tested against the one before it: here the page is
    compared with itself one word further on (``memcmp``, which stops at the
    first difference as the kernel's loop does), equal exactly when every
    word equals the first.  The word is read as x86-64 reads it,
    little-endian.

    The page is read as a ``bytearray``, as the kernel reads the memory
    ``kmap_local_page`` maps (compiled, its bytes are C loads): an order-0
    folio's page is one; another buffer (a page of a large folio, a bio's
    page) is copied into one first.
    """
    mem = page if type(page) is bytearray else bytearray(page)
    fill = 0
    for k in range(8):
        b = mem[k]
        if b != mem[_LAST_WORD + k]:
            return None
        fill |= b << (8 * k)
    return fill if memcmp(mem, 0, mem, 8, _LAST_WORD) == 0 else None


@cython.cclass
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
        self.table = None  # ZramTable, from disksize on
        self.mem_pool = None  # ZsPool, from disksize on
        self.comps = [None] * self.config.max_comps  # Zcomp per priority
        self.comp_algs = [None] * self.config.max_comps
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
        self.backing_dev = None  # BackingDev
        self.wb_limit_enable = False
        self.bd_wb_limit = 0
        self._wb_limit_lock = threading.Lock()
        self._pp_lock = threading.Lock()  # pp_in_progress
        #: Called at the interleaving points of the read path (race exploration).
        self.yield_point = None  # (point name, slot index) -> None
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

    # -- per-slot primitives (slot locks: ZramTable.slot_lock / slot_unlock) ----

    @cython.locals(tbl=ZramTable)
    def zram_accessed(self, index: int) -> None:
        """``zram_accessed`` (slot lock held): clear IDLE and PP_SLOT, stamp the
        access time."""
        tbl = self.table
        tbl.flags[index] &= _CLEAR_ON_ACCESS
        if tbl.ac_time is not None:
            tbl.ac_time[index] = self.clock()

    @cython.locals(tbl=ZramTable, flags=cython.ulong, handle=cython.ulong)
    def zram_free_page(self, index: int) -> None:
        """``zram_free_page`` (slot lock held): release whatever the slot holds."""
        tbl = self.table
        st = self.stats
        if tbl.ac_time is not None:
            tbl.ac_time[index] = 0
        flags = tbl.flags[index] & _CLEAR_ON_FREE  # IDLE, INCOMPRESSIBLE, PP_SLOT, priority
        if flags & _HUGE:
            flags &= ~_HUGE
            atomic64_dec(st.huge_pages)
        if flags & _WB:
            tbl.flags[index] = flags & ~_WB
            free_block_bdev(self, tbl.handle[index])
        elif flags & _SAME:
            tbl.flags[index] = flags & ~_SAME
            atomic64_dec(st.same_pages)
        else:
            tbl.flags[index] = flags
            handle = tbl.handle[index]
            if not handle:
                return
            self.mem_pool.zs_free(handle)
            atomic64_sub(flags & _SIZE_MASK, st.compr_data_size)
        atomic64_dec(st.pages_stored)
        tbl.handle[index] = 0
        tbl.flags[index] &= ~_SIZE_MASK  # zram_set_obj_size(index, 0)

    # -- write ----------------------------------------------------------------

    def update_used_max(self, pages: int) -> None:
        """``update_used_max``: raise ``max_used_pages`` to ``pages`` (a cmpxchg loop)."""
        cur_max = atomic64_read(self.stats.max_used_pages)
        while cur_max < pages:
            done, cur_max = atomic64_try_cmpxchg(self.stats.max_used_pages, cur_max, pages)
            if done:
                return

    def zram_can_store_page(self) -> bool:
        """``zram_can_store_page``: record the pool's peak, then check ``mem_limit``."""
        alloced_pages = self.mem_pool.zs_get_total_pages()
        self.update_used_max(alloced_pages)
        return not self.limit_pages or alloced_pages <= self.limit_pages

    @cython.locals(tbl=ZramTable)
    def write_same_filled_page(self, fill: int, index: int) -> int:
        """``write_same_filled_page``: no pool object, only the fill word."""
        tbl = self.table
        tbl.slot_lock(index)
        self.zram_free_page(index)
        tbl.flags[index] |= _SAME
        tbl.handle[index] = fill
        tbl.slot_unlock(index)
        atomic64_inc(self.stats.same_pages)
        atomic64_inc(self.stats.pages_stored)
        return 0

    @cython.locals(tbl=ZramTable)
    def write_incompressible_page(self, page: Any, index: int) -> int:
        """``write_incompressible_page``: the page stored raw in a huge-class object."""
        pool = self.mem_pool
        handle = pool.zs_malloc(_PG_SIZE)
        if IS_ERR_VALUE(handle):
            return handle
        if not self.zram_can_store_page():
            pool.zs_free(handle)
            return -errno.ENOMEM
        pool.zs_obj_write(handle, page, _PG_SIZE)
        tbl = self.table
        tbl.slot_lock(index)
        self.zram_free_page(index)
        tbl.flags[index] |= _HUGE | _PG_SIZE  # zram_set_flag(HUGE), zram_set_obj_size
        tbl.handle[index] = handle
        tbl.slot_unlock(index)
        st = self.stats
        atomic64_add(_PG_SIZE, st.compr_data_size)
        atomic64_inc(st.huge_pages)
        atomic64_inc(st.huge_pages_since)
        atomic64_inc(st.pages_stored)
        return 0

    @cython.locals(tbl=ZramTable, comp_len=cython.Py_ssize_t, comp=Zcomp, zstrm=ZcompStrm)
    def zram_write_page(self, page: Any, index: int) -> int:
        """``zram_write_page``: store one page (a 4096-byte buffer) in slot ``index``;
        0 or a negative errno.

        Same-filled pages keep only their fill word; the others are
        compressed into this CPU's stream buffer, given a pool object
        (``zs_malloc``; incompressible ones a raw page), checked against
        ``mem_limit``, copied into the object, and only then, under the slot
        lock, does the slot's old content go (``zram_free_page``).  A failed
        write keeps the old content.
        """
        fill = page_same_filled(page)
        if fill is not None:
            return self.write_same_filled_page(fill, index)
        comp = self.comps[_PRIMARY]
        zstrm = comp.zcomp_stream_get()
        comp_len = comp.zcomp_compress(zstrm, page)
        if comp_len <= 0:
            comp.zcomp_stream_put(zstrm)
            return comp_len or -errno.EINVAL
        if comp_len >= self.huge_class_size:
            comp.zcomp_stream_put(zstrm)
            return self.write_incompressible_page(page, index)
        pool = self.mem_pool
        handle = pool.zs_malloc(comp_len)
        if IS_ERR_VALUE(handle):
            comp.zcomp_stream_put(zstrm)
            return handle
        if not self.zram_can_store_page():
            comp.zcomp_stream_put(zstrm)
            pool.zs_free(handle)
            return -errno.ENOMEM
        pool.zs_obj_write(handle, zstrm.mem, comp_len)
        comp.zcomp_stream_put(zstrm)
        tbl = self.table
        tbl.slot_lock(index)
        self.zram_free_page(index)
        tbl.handle[index] = handle
        tbl.flags[index] |= comp_len  # zram_set_obj_size
        tbl.slot_unlock(index)
        atomic64_inc(self.stats.pages_stored)
        atomic64_add(comp_len, self.stats.compr_data_size)
        return 0

    # -- read -----------------------------------------------------------------

    @cython.locals(tbl=ZramTable)
    def read_same_filled_page(self, page: Any, index: int) -> int:
        """``read_same_filled_page``: fill the page with the slot's word (0 if empty),
        ``zram_fill_page``'s ``memset_l``."""
        tbl = self.table
        fill = tbl.handle[index]
        memset_l(page, fill, _PG_SIZE // 8)
        return 0

    @cython.locals(tbl=ZramTable, src=cython.Py_ssize_t)
    def read_incompressible_page(self, page: Any, index: int) -> int:
        """``read_incompressible_page``: copy the raw page out of its object
        (``copy_page``)."""
        pool = self.mem_pool
        tbl = self.table
        handle = tbl.handle[index]
        src = pool.zs_obj_read_begin(handle)
        memcpy_to_page(page, 0, pool.mem, src, _PG_SIZE)
        pool.zs_obj_read_end(handle)
        return 0

    @cython.locals(tbl=ZramTable, flags=cython.ulong, comp=Zcomp, zstrm=ZcompStrm)
    def read_compressed_page(self, page: Any, index: int) -> int:
        """``read_compressed_page``: decompress the object with the algorithm of
        the slot's priority, straight from the pool's memory into the page."""
        tbl = self.table
        flags = tbl.flags[index]
        handle = tbl.handle[index]
        comp = self.comps[(flags >> _PRIO_SHIFT) & _PRIO_MASK]
        zstrm = comp.zcomp_stream_get()
        pool = self.mem_pool
        src = pool.zs_obj_read_begin(handle)
        ret = comp.zcomp_decompress(zstrm, pool.arena, src, flags & _SIZE_MASK, page)
        pool.zs_obj_read_end(handle)
        comp.zcomp_stream_put(zstrm)
        return ret

    @cython.locals(tbl=ZramTable, flags=cython.ulong)
    def zram_read_from_zspool(self, page: Any, index: int) -> int:
        """``zram_read_from_zspool`` (slot lock held): 0 or a negative errno."""
        tbl = self.table
        flags = tbl.flags[index]
        if flags & _SAME or not tbl.handle[index]:
            return self.read_same_filled_page(page, index)
        if not flags & _HUGE:
            return self.read_compressed_page(page, index)
        return self.read_incompressible_page(page, index)

    @cython.locals(tbl=ZramTable)
    def zram_read_page(self, page: Any, index: int) -> int:
        """``zram_read_page``: read slot ``index`` into ``page`` (a writable 4096-byte
        buffer of bytes); 0 or a negative errno.

        The slot lock is held while the pool is read; a written-back slot is
        read from the backing device after it is dropped.  A buffer that is not
        a writable page is an error (``ValueError``; ``TypeError`` or
        ``BufferError`` if read-only) raised with the slot unlocked again and the
        buffer unchanged.
        """
        if len(page) != _PG_SIZE:  # (a bytearray's slice assignment would resize it)
            raise ValueError(f"zram_read_page: a {len(page)}-byte page")
        tbl = self.table
        tbl.slot_lock(index)
        if not tbl.flags[index] & _WB:
            try:
                ret = self.zram_read_from_zspool(page, index)
            finally:
                tbl.slot_unlock(index)
        else:
            blk_idx = tbl.handle[index]
            tbl.slot_unlock(index)
            ret = read_from_bdev(self, blk_idx, memoryview(page).cast("B"))
        return ret

    def read_slot_unlocked(self, index: int) -> None:
        """The point after a slot's read section is unlocked (the interleaving
        explorer's ``"read_unlocked"``): what a racing post-processing step can
        do here is what the read orderings differ in.  The read paths call it
        only while a ``yield_point`` is set (no call per page otherwise)."""
        hook = self.yield_point
        if hook is not None:
            hook("read_unlocked", index)

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
        while n >= PAGE_SIZE:
            self.table.slot_lock(index)
            self.zram_free_page(index)
            self.table.slot_unlock(index)
            atomic64_inc(self.stats.notify_free)
            index += 1
            n -= PAGE_SIZE

    def zram_slot_free_notify(self, index: int) -> None:
        """``zram_slot_free_notify``: the swap core freed slot ``index``.

        Called from a context that cannot sleep, so the slot lock is only
        tried: if it is held, ``miss_free`` counts a slot left allocated.
        """
        atomic64_inc(self.stats.notify_free)
        if not self.table.slot_trylock(index):
            atomic64_inc(self.stats.miss_free)
            return
        self.zram_free_page(index)
        self.table.slot_unlock(index)

    # -- block device entry points (O_DIRECT on /dev/zramN) --------------------

    def pwrite(self, data: bytes | bytearray | memoryview | np.ndarray, offset: int) -> int:
        """``pwrite(2)`` on ``/dev/zramN`` opened ``O_DIRECT``: the bytes written.

        The kernel's path, step by step: ``ksys_pwrite64`` and
        ``rw_verify_area`` (a negative offset, or one whose end overflows the
        file offset, is ``EINVAL``), ``vfs_write`` (at most ``MAX_RW_COUNT``
        bytes), :meth:`blkdev_write_iter` (nothing to write returns 0, a
        start at or past the end is ``ENOSPC``, a write across the end is cut
        there) and :meth:`blkdev_direct_IO` (offset and length must be
        multiples of the 4096-byte logical block, else ``EINVAL``; then bios
        of up to ``BIO_MAX_VECS`` pages).  A bio that fails counts in
        ``failed_writes``, and the write fails with ``EIO``.
        """
        buf = memoryview(data).cast("B")
        rw_verify_area(offset, len(buf))
        return self.blkdev_write_iter(buf[:MAX_RW_COUNT], offset)

    def pread_into(self, buf: bytearray | memoryview, offset: int) -> int:
        """``preadv(2)`` of one buffer on ``/dev/zramN`` opened ``O_DIRECT``: fill
        ``buf`` with the device's bytes at ``offset``; the bytes read.

        The device's batch entry point for block users: the pages are read
        in bios straight into ``buf``.  The kernel's path: ``rw_verify_area``
        (``EINVAL`` as for :meth:`pwrite`), ``vfs_read`` (at most
        ``MAX_RW_COUNT`` bytes), :meth:`blkdev_read_iter` (0 at or past the
        end, cut at the end) and :meth:`blkdev_direct_IO` (block alignment,
        ``EINVAL``).  A page that cannot be decompressed fails its bio
        (``failed_reads``) and the read with ``EIO``.
        """
        view = memoryview(buf).cast("B")
        rw_verify_area(offset, len(view))
        return self.blkdev_read_iter(view[:MAX_RW_COUNT], offset)

    def pread(self, length: int, offset: int) -> bytes:
        """``pread(2)`` on ``/dev/zramN`` opened ``O_DIRECT`` (see :meth:`pread_into`).

        Reads at or past the end return ``b""``; reads across it are cut short.
        """
        rw_verify_area(offset, length)
        out = bytearray(max(0, min(length, MAX_RW_COUNT, self.disksize - offset)))
        n = self.blkdev_read_iter(memoryview(out), offset)
        return bytes(out) if n == len(out) else bytes(out[:n])

    def blkdev_write_iter(self, buf: memoryview, pos: int) -> int:
        """``blkdev_write_iter``: the size rules of a write to a block device."""
        if not len(buf):
            return 0
        size = self.disksize  # bdev_nr_bytes
        if pos >= size:
            raise OSError(errno.ENOSPC, f"{self.disk_name}: write at or past the end")
        return self.blkdev_direct_IO(REQ_OP_WRITE, buf[: size - pos], pos)

    def blkdev_read_iter(self, buf: memoryview, pos: int) -> int:
        """``blkdev_read_iter``: the size rules of a read from a block device."""
        size = self.disksize
        if pos >= size:
            return 0
        buf = buf[: size - pos]
        if not len(buf):
            return 0
        return self.blkdev_direct_IO(REQ_OP_READ, buf, pos)

    def blkdev_direct_IO(self, op: int, buf: memoryview, pos: int) -> int:
        """``blkdev_direct_IO``: alignment (``blkdev_dio_invalid``), then the
        user's pages in bios of up to ``BIO_MAX_VECS`` pages, each submitted
        and waited for (``__blkdev_direct_IO``); ``EIO`` if any failed."""
        if not len(buf):
            return 0
        if (pos | len(buf)) & (ZRAM_LOGICAL_BLOCK_SIZE - 1):
            raise OSError(
                errno.EINVAL,
                f"O_DIRECT I/O must be {ZRAM_LOGICAL_BLOCK_SIZE}-byte aligned "
                f"(offset {pos}, length {len(buf)})",
            )
        bdev = BlockDevice(self.disk)
        failed = False
        step = BIO_MAX_VECS * PAGE_SIZE
        for start in range(0, len(buf), step):
            chunk = buf[start : start + step]
            bio = Bio(bdev, op, (pos + start) >> SECTOR_SHIFT)
            bio.add_page(chunk, len(chunk))
            if submit_bio_wait(bio):
                failed = True
        if failed:
            what = "read" if op == REQ_OP_READ else "write"
            raise OSError(errno.EIO, f"{self.disk_name}: I/O error on {what}")
        return len(buf)

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
            return MmStat(  # (positional, in the kernel's order: no keyword parsing)
                atomic64_read(st.pages_stored) << PAGE_SHIFT,  # orig_data_size
                atomic64_read(st.compr_data_size),  # compr_data_size
                (pool.zs_get_total_pages() << PAGE_SHIFT) if pool else 0,  # mem_used_total
                self.limit_pages << PAGE_SHIFT,  # mem_limit
                atomic64_read(st.max_used_pages) << PAGE_SHIFT,  # mem_used_max
                atomic64_read(st.same_pages),  # same_pages
                pool.pages_compacted if pool else 0,  # pages_compacted
                atomic64_read(st.huge_pages),  # huge_pages
                atomic64_read(st.huge_pages_since),  # huge_pages_since
            )

    def io_stat(self) -> IoStat:
        """``io_stat_show``."""
        st = self.stats
        return IoStat(
            atomic64_read(st.failed_reads),
            atomic64_read(st.failed_writes),
            0,
            atomic64_read(st.notify_free),
        )

    def debug_stat(self) -> str:
        """``debug_stat_show``."""
        return format_debug_stat(atomic64_read(self.stats.miss_free))

    def bd_stat(self) -> str:
        """``bd_stat_show``: bd_count, bd_reads, bd_writes in 4 KiB units."""
        st = self.stats.as_dict()
        return f"{st['bd_count']:8d} {st['bd_reads']:8d} {st['bd_writes']:8d}\n"

    def check(self) -> None:
        """Assert that every counter equals what the table and the pool hold (tests)."""
        with self.init_lock.read():
            st = self.stats.as_dict()
            if not self.init_done():
                assert st["pages_stored"] == st["same_pages"] == st["huge_pages"] == 0
                return
            f = self.table.flags_np
            size = (f & np.uint64(T.ZRAM_SIZE_MASK)).astype(np.int64)
            same = (f & np.uint64(T.SAME)) != 0
            huge = (f & np.uint64(T.HUGE)) != 0
            assert int(same.sum()) == st["same_pages"], "same_pages"
            assert int(huge.sum()) == st["huge_pages"], "huge_pages"
            assert int(size.sum()) == st["compr_data_size"], "compr_data_size"
            assert int(self.table.allocated_mask().sum()) == st["pages_stored"], "pages_stored"
            assert not (f & np.uint64(T.LOCK)).any(), "a slot lock is held"
            live = self.table.handle_np[(size > 0)]
            assert len(set(live.tolist())) == len(live), "two slots share a handle"
            self.mem_pool.check()
            assert sum(c.objs_inuse for c in self.mem_pool.classes) == len(live)


# -- the block device: zram_submit_bio and zram_devops -----------------------------------


def bio_pages(bio: Bio):
    """``bio_for_each_segment``: (slot index, 4096-byte page view) of every page
    of the bio, in order (a bio_vec may span several pages)."""
    index = bio.sector >> (PAGE_SHIFT - SECTOR_SHIFT)
    for bv in bio.bvecs:
        view = bv.view()
        for j in range(0, len(view), PAGE_SIZE):
            yield index, view[j : j + PAGE_SIZE]
            index += 1


def zram_write_pages(zram: Zram, pages: list, slots: Any) -> bool:
    """The loop of ``zram_bio_write`` and ``zram_swap_submit_write``: page ``j``
    to slot ``slots[j]`` through ``zram_write_page``, in order, each then marked
    accessed in its own slot-lock section; the first failing page stops it
    (``failed_writes``) and the result is False.  ``slots`` is an
    ``array("l")``: compiled, a typed view, so no slot is a Python int.

    The pages are handed to the codec :data:`ZCOMP_BATCH` at a time just before
    they are written (``zcomp_compress_ahead``, see :mod:`pyzram.zram.zcomp`):
    the same writes, in the same order."""
    tbl = zram.table
    comp = zram.comps[_PRIMARY]
    zstrm = comp.zcomp_stream_get()
    n = len(pages)
    lo = 0
    try:
        while lo < n:
            hi = min(lo + _BATCH, n)
            comp.zcomp_compress_ahead(zstrm, pages if n <= _BATCH else pages[lo:hi])
            for j in range(lo, hi):
                index = slots[j]
                if zram.zram_write_page(pages[j], index) < 0:
                    atomic64_inc(zram.stats.failed_writes)
                    return False
                tbl.slot_lock(index)
                zram.zram_accessed(index)
                tbl.slot_unlock(index)
            lo = hi
    finally:
        comp.zcomp_compress_ahead(zstrm, [])  # what was not taken is dropped
        comp.zcomp_stream_put(zstrm)
    return True


def zram_bio_write(zram: Zram, bio: Bio) -> None:
    """``zram_bio_write``: each page in order (:func:`zram_write_pages`); the first
    failing page fails the bio."""
    slots, pages = array("l"), []
    for index, page in bio_pages(bio):
        slots.append(index)
        pages.append(page)
    if not zram_write_pages(zram, pages, slots):
        bio.status = BLK_STS_IOERR
    bio_endio(bio)


@cython.locals(zram=Zram, tbl=ZramTable, index=cython.Py_ssize_t)
def zram_bio_read(zram: Zram, bio: Bio) -> None:
    """``zram_bio_read``: each page read, then marked accessed in a second
    critical section; the first failing page fails the bio (``failed_reads``)."""
    tbl = zram.table
    for index, page in bio_pages(bio):
        if zram.zram_read_page(page, index) < 0:
            atomic64_inc(zram.stats.failed_reads)
            bio.status = BLK_STS_IOERR
            break
        if zram.yield_point is not None:
            zram.read_slot_unlocked(index)
        tbl.slot_lock(index)
        zram.zram_accessed(index)
        tbl.slot_unlock(index)
    bio_endio(bio)


def zram_submit_bio(bio: Bio) -> None:
    """``zram_submit_bio``: READ, WRITE, DISCARD / WRITE_ZEROES.

    zram's queue has a 4096-byte logical block, so bios arrive page aligned;
    any other op is warned about and ended (``WARN_ON_ONCE``).
    """
    zram: Zram = bio.bdev.disk.private_data
    zram.init_lock.down_read()
    try:
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
    finally:
        zram.init_lock.up_read()


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


def rw_verify_area(pos: int, count: int) -> None:
    """``rw_verify_area`` (with ``ksys_pread64``/``ksys_pwrite64``'s own test): a
    negative offset, or one whose end does not fit ``loff_t``, is ``EINVAL``."""
    if pos < 0 or count < 0 or pos + count > LLONG_MAX:
        raise OSError(errno.EINVAL, f"invalid offset {pos} for {count} bytes")


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

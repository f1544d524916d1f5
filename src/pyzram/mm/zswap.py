"""zswap: a compressed cache in front of the swap areas (model of mm/zswap.c, 6.18).

``swap_writeout`` offers every folio that is not all zeroes to
:func:`zswap_store` before queueing it for the area's ``swap_ops``; a folio
zswap takes is done (no I/O).  ``swap_read_folio`` asks :func:`zswap_load`
before it reads: a hit decompresses into the folio and drops the entry.
Freeing a swap slot calls :func:`zswap_invalidate`.

What 6.18 does, and so this module:

* **One zsmalloc pool per compressor** (``zswap_pool``): the first enable
  creates the pool of ``compressor``; changing ``compressor`` creates (or
  revives) another and makes it current, the old one lives until its last
  entry is freed.  ``pool_total_size`` is the sum of every pool's
  ``zs_get_total_pages`` times PAGE_SIZE.
* **Per page** (``zswap_store_page``): each page of a large folio is one
  entry, compressed with the current pool's algorithm into a one-page
  output (``dlen = PAGE_SIZE``).  A page whose output would not be smaller
  than a page (or whose compression fails) is stored as it is, ``length ==
  PAGE_SIZE``, and counted in ``stored_incompressible_pages`` -- unless the
  memcg has ``zswap.writeback`` off, when it is rejected
  (``reject_compress_fail``, or ``reject_compress_poor`` for ``-ENOSPC``).
* **The limit**: ``zswap_check_limits`` before each folio: at or above
  ``max_pool_percent`` of total RAM the store fails (``pool_limit_hit``) and
  stays failing until the pool is at or below ``accept_threshold_percent``
  of that limit; a failed store while full queues ``shrink_worker``, which
  writes entries back (LRU order, second chance) until the pool is under
  the threshold.
* **Writeback** (``zswap_writeback_entry``): a new swap-cache folio for the
  slot, the entry decompressed into it, the entry freed (``zswpwb``,
  ``written_back_pages``) and the folio written by ``__swap_writepage``
  without a plug: the area's swap_ops get it at once.
* **Counters**: the debugfs files (:meth:`Zswap.debugfs`), ``zswpout`` /
  ``zswpin`` / ``zswpwb`` in ``vm_events``, ``Zswap`` / ``Zswapped`` in
  :meth:`Zswap.meminfo`.
* **Parameters** (:meth:`Zswap.param_write`): ``enabled`` and
  ``shrinker_enabled`` through ``kstrtobool``, the two percentages through
  ``kstrtouint`` (no range check, as in the kernel), ``compressor`` through
  the crypto API's names (``ENOENT`` for one it lacks), ``ENODEV`` where
  the kernel returns it.

Simplified: the per-CPU acomp contexts are per-thread backends; the xarrays
are dicts (one per 64 MiB of swap, as the kernel splits them); one
``list_lru`` per memcg (no NUMA nodes); ``shrink_worker`` runs in the
thread that queues it, right after the failed store (the kernel's is a
work item); a written-back folio leaves the swap cache when its write
ends (the kernel rotates it to the inactive tail and the next reclaim frees
it); memcg charging follows cgroup v1 (what these hosts use): nothing is
charged and ``obj_cgroup_may_zswap`` is always true.
"""

from __future__ import annotations

import zlib
from errno import EAGAIN, EEXIST, EINVAL, EIO, ENODEV, ENOENT, ENOMEM, ENOSPC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cython

from pyzram.lib.atomic import atomic_begin, atomic_end
from pyzram.lib.kstrtox import kstrtouint
from pyzram.lib.list import (
    INIT_LIST_HEAD,
    List,
    ListHead,
    list_add_tail,
    list_del,
    list_move_tail,
)
from pyzram.lib.percpu import PerCpu, this_cpu_ptr
from pyzram.lib.spinlock import spin_lock, spin_unlock, spinlock_t
from pyzram.lib.string import memcpy_to_page
from pyzram.lib.xarray import XArray, xa_empty, xa_erase, xa_load, xa_store
from pyzram.mm.folio import PAGE_SHIFT, PAGE_SIZE, Folio, PG_reclaim, SwpEntry, swp_entry
from pyzram.mm.swap import ZSWPIN, ZSWPOUT, ZSWPWB
from pyzram.mm.zsmalloc import IS_ERR_VALUE, ZsPool

if TYPE_CHECKING:
    from pyzram.mm.machine import Machine

#: ``ZSWAP_ADDRESS_SPACE_SHIFT``: one xarray per 64 MiB of swap.
ZSWAP_ADDRESS_SPACE_SHIFT = 14
ZSWAP_ADDRESS_SPACE_PAGES = 1 << ZSWAP_ADDRESS_SPACE_SHIFT
#: ``MAX_RECLAIM_RETRIES`` (mm/internal.h).
MAX_RECLAIM_RETRIES = 16
#: ``CONFIG_ZSWAP_COMPRESSOR_DEFAULT`` of the hosts (and Debian).
ZSWAP_COMPRESSOR_DEFAULT = "lzo"
#: ``CRYPTO_MAX_ALG_NAME``.
CRYPTO_MAX_ALG_NAME = 128
#: ``param_set_charp``: longer strings are ``ENOSPC``.
CHARP_MAX = 1024

# zswap_init_state
ZSWAP_UNINIT = 0
ZSWAP_INIT_SUCCEED = 1
ZSWAP_INIT_FAILED = 2

# enum lru_status (the ones shrink_memcg_cb returns)
LRU_REMOVED_RETRY = 1
LRU_ROTATE = 2
LRU_RETRY = 4
LRU_STOP = 5

#: The compression algorithms a crypto API may offer, by ``cra_name``; each also
#: answers to its ``cra_driver_name`` (:data:`CRYPTO_DRIVER_NAMES`).
CRYPTO_COMPRESSORS = ("lzo", "lzo-rle", "lz4", "lz4hc", "zstd", "deflate")
#: ``cra_driver_name`` of each, as 6.18 registers them: the scomp algorithms
#: (crypto/lzo.c, lzo-rle.c, lz4.c, lz4hc.c) are ``<name>-scomp``, the acomp ones
#: (crypto/zstd.c, deflate.c) ``<name>-generic`` (/proc/crypto's ``driver``).
CRYPTO_DRIVER_NAMES = {
    "lzo": "lzo-scomp",
    "lzo-rle": "lzo-rle-scomp",
    "lz4": "lz4-scomp",
    "lz4hc": "lz4hc-scomp",
    "zstd": "zstd-generic",
    "deflate": "deflate-generic",
}
_CRA_NAMES = {driver: name for name, driver in CRYPTO_DRIVER_NAMES.items()}


def crypto_cra_name(name: str) -> str | None:
    """The ``cra_name`` that ``name`` (a ``cra_name`` or ``cra_driver_name``) selects."""
    return name if name in CRYPTO_COMPRESSORS else _CRA_NAMES.get(name)


#: The debugfs files of /sys/kernel/debug/zswap, in the kernel's creation order.
DEBUGFS_FILES = (
    "pool_limit_hit",
    "reject_reclaim_fail",
    "reject_alloc_fail",
    "reject_kmemcache_fail",
    "reject_compress_fail",
    "reject_compress_poor",
    "decompress_fail",
    "written_back_pages",
    "pool_total_size",
    "stored_pages",
    "stored_incompressible_pages",
)

#: The module parameters of /sys/module/zswap/parameters.
PARAMETERS = (
    "accept_threshold_percent",
    "compressor",
    "enabled",
    "max_pool_percent",
    "shrinker_enabled",
)


# -- the crypto API's compressors ------------------------------------------------------


#: crypto/deflate.c's ``DEFLATE_DEF_WINBITS`` and ``DEFLATE_DEF_MEMLEVEL``: the latter
#: is ``MAX_MEM_LEVEL``, which include/linux/zconf.h defines as 8 (upstream zlib's is 9).
CRYPTO_DEFLATE_WINBITS = 11
CRYPTO_DEFLATE_MEMLEVEL = 8


class _CryptoDeflate:
    """crypto/deflate.c (``deflate_compress_one``): raw deflate, window 2^11,
    memLevel ``MAX_MEM_LEVEL`` (8 in the kernel's zconf.h), level
    ``Z_DEFAULT_COMPRESSION``, into a one-page output; the machine's zlib, whose
    output equals the kernel's lib/zlib_deflate on every page checked (as for
    zram's deflate backend, which has the same parameters)."""

    name = "deflate"

    def compress_into(self, page: Any, dst: bytearray) -> int:
        c = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION,
            zlib.DEFLATED,
            -CRYPTO_DEFLATE_WINBITS,
            CRYPTO_DEFLATE_MEMLEVEL,
        )
        out = c.compress(page) + c.flush(zlib.Z_FINISH)
        if len(out) > PAGE_SIZE:
            return -ENOSPC  # the output scatterlist is one page
        dst[: len(out)] = out
        return len(out)

    def decompress_into(self, src: Any, offset: int, length: int, page: Any) -> int:
        try:
            d = zlib.decompressobj(-CRYPTO_DEFLATE_WINBITS)
            out = d.decompress(memoryview(src)[offset : offset + length], PAGE_SIZE)
        except zlib.error:
            return -EINVAL
        if len(out) != PAGE_SIZE:
            return -EINVAL
        memoryview(page).cast("B")[:] = out
        return 0


#: crypto/zstd.c's ``ZSTD_DEF_LEVEL`` and ``ZSTD_MAX_SIZE`` (``BIT(ZSTD_MAX_WINDOWLOG)``,
#: 2^18): its parameters are ``zstd_get_params(ZSTD_DEF_LEVEL, ZSTD_MAX_SIZE)``.
CRYPTO_ZSTD_LEVEL = 3
CRYPTO_ZSTD_MAX_SIZE = 1 << 18


class _CryptoZstd:
    """crypto/zstd.c (``zstd_compress_one``): one page, one frame, the kernel's calls.

    The stream's parameters are ``zstd_get_params(3, 256 KiB)`` (window log 18,
    hash and chain log 16: sized for 256 KiB, not for a page as zram's are);
    ``zstd_compress_cctx`` (lib/zstd/zstd_compress_module.c) resets the
    context, pledges the page's size, sets each of them with
    ``ZSTD_CCtx_setParameter`` and calls ``ZSTD_compress2`` into the one-page
    output (``req->dlen``), which fits them to the pledged 4 KiB.  The same
    calls through python-zstandard's cffi bindings of the same libzstd
    (1.5.7, as 6.18's lib/zstd); without cffi, zram's zstd backend at level 3
    (``ZstdCompressor``), whose output is the same: level 3 is the double-fast
    strategy, which reads neither of the two parameters that then differ
    (search log 1 here, 2 there).
    """

    name = "zstd"

    def __init__(self) -> None:
        from pyzram.zram import backend_zstd

        self._ffi, self._lib = backend_zstd._ffi, backend_zstd._lib
        self._fallback = None
        if self._lib is None:
            from pyzram.zram.zcomp import ZcompParams

            self._fallback = backend_zstd.Backend(ZcompParams(level=CRYPTO_ZSTD_LEVEL))
            return
        lib, ffi = self._lib, self._ffi
        params = lib.ZSTD_getParams(CRYPTO_ZSTD_LEVEL, CRYPTO_ZSTD_MAX_SIZE, 0)
        c, f = params.cParams, params.fParams
        self._settings = (
            (lib.ZSTD_c_windowLog, c.windowLog),
            (lib.ZSTD_c_hashLog, c.hashLog),
            (lib.ZSTD_c_chainLog, c.chainLog),
            (lib.ZSTD_c_searchLog, c.searchLog),
            (lib.ZSTD_c_minMatch, c.minMatch),
            (lib.ZSTD_c_targetLength, c.targetLength),
            (lib.ZSTD_c_strategy, c.strategy),
            (lib.ZSTD_c_contentSizeFlag, f.contentSizeFlag),
            (lib.ZSTD_c_checksumFlag, f.checksumFlag),
            (lib.ZSTD_c_dictIDFlag, int(not f.noDictIDFlag)),
        )
        self._cctx = ffi.gc(lib.ZSTD_createCCtx(), lib.ZSTD_freeCCtx)
        self._dctx = ffi.gc(lib.ZSTD_createDCtx(), lib.ZSTD_freeDCtx)
        self._dst = ffi.new("char[]", PAGE_SIZE)

    def _check(self, n: int) -> int:
        """A libzstd result: its value, or ``-EINVAL`` for an error (``zstd_is_error``)."""
        return -EINVAL if self._lib.ZSTD_isError(n) else n

    def compress_into(self, page: Any, dst: bytearray) -> int:
        if self._fallback is not None:
            n = self._fallback.compress_into(page, dst)
            return n if n <= PAGE_SIZE else -EINVAL
        lib, ffi, cctx = self._lib, self._ffi, self._cctx
        src = ffi.from_buffer(page)
        # zstd_cctx_init: any error there is the call's error
        if self._check(lib.ZSTD_CCtx_reset(cctx, lib.ZSTD_reset_session_and_parameters)) < 0:
            return -EINVAL
        if self._check(lib.ZSTD_CCtx_setPledgedSrcSize(cctx, len(src))) < 0:
            return -EINVAL
        for param, value in self._settings:
            if self._check(lib.ZSTD_CCtx_setParameter(cctx, param, value)) < 0:
                return -EINVAL
        n = self._check(lib.ZSTD_compress2(cctx, self._dst, PAGE_SIZE, src, len(src)))
        if n < 0:
            return n
        dst[:n] = ffi.buffer(self._dst, n)
        return n

    def decompress_into(self, src: Any, offset: int, length: int, page: Any) -> int:
        """``zstd_decompress_one``: ``zstd_decompress_dctx`` into the page."""
        if self._fallback is not None:
            return self._fallback.decompress_into(src, offset, length, page)
        lib, ffi = self._lib, self._ffi
        data = ffi.from_buffer(memoryview(src)[offset : offset + length])
        out = ffi.from_buffer(memoryview(page).cast("B"), require_writable=True)
        n = lib.ZSTD_decompressDCtx(self._dctx, out, PAGE_SIZE, data, length)
        return 0 if not lib.ZSTD_isError(n) and n == PAGE_SIZE else -EINVAL


def crypto_alloc_acomp(name: str) -> Any:
    """``crypto_alloc_acomp``: a compressor by its ``cra_name`` or driver name.

    lzo, lzo-rle, lz4 and lz4hc are pyzram's kernel-identical C codecs (the
    same code zram's backends call; crypto/lz4.c's ``LZ4_compress_default``
    is zram's lz4 at acceleration 1, crypto/lz4hc.c's ``LZ4_compress_HC`` at
    ``LZ4HC_DEFAULT_CLEVEL`` is zram's lz4hc at level 9, and their bounded
    one-page output only fails where the unbounded one is larger than a
    page); zstd is crypto/zstd.c's calls (:class:`_CryptoZstd`); deflate is
    crypto/deflate.c's parameters on the machine's zlib (:class:`_CryptoDeflate`).
    """
    from pyzram.zram.zcomp import ZcompParams, _registry

    base = crypto_cra_name(name) or name
    if base == "deflate":
        return _CryptoDeflate()
    if base == "zstd":
        return _CryptoZstd()
    return _registry()[base](ZcompParams())


def host_crypto_compressors(path: str = "/proc/crypto") -> tuple[str, ...]:
    """The compression algorithms (``cra_name``) of the running kernel's crypto API."""
    try:
        return crypto_compressors(Path(path).read_text())
    except OSError:
        return ()


def crypto_compressors(text: str) -> tuple[str, ...]:
    """The compression algorithms (``cra_name``) a /proc/crypto text lists, in
    ``CRYPTO_COMPRESSORS`` names (a guest kernel's, say)."""
    names: list[str] = []
    for block in text.split("\n\n"):
        fields = dict(
            (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in block.splitlines())
        )
        if fields.get("type") in ("scomp", "acomp", "compression"):
            name = fields.get("name", "")
            if name in CRYPTO_COMPRESSORS and name not in names:
                names.append(name)
    return tuple(names)


def host_totalram_pages(path: str = "/proc/meminfo") -> int:
    """``totalram_pages()`` of the running kernel (``MemTotal`` in pages)."""
    return totalram_pages_of(Path(path).read_text())


def totalram_pages_of(meminfo: str) -> int:
    """``totalram_pages()`` from a /proc/meminfo text (``MemTotal`` in pages)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) >> (PAGE_SHIFT - 10)
    raise OSError(ENOENT, "no MemTotal in /proc/meminfo")


def kstrtobool(s: str) -> bool:
    """``kstrtobool``: the first one or two characters decide; ``EINVAL`` otherwise."""
    c = s[:1]
    if c in ("e", "E", "y", "Y", "t", "T", "1"):
        return True
    if c in ("d", "D", "n", "N", "f", "F", "0"):
        return False
    if c in ("o", "O"):
        if s[1:2] in ("n", "N"):
            return True
        if s[1:2] in ("f", "F"):
            return False
    raise OSError(EINVAL, "Invalid argument")


def strstrip(s: str) -> str:
    """``strstrip``: leading and trailing whitespace (``isspace``) removed."""
    return s.strip(" \t\n\v\f\r")


# -- objects -------------------------------------------------------------------------------


class ZswapPool:
    """``struct zswap_pool``: a zsmalloc pool and the compressor feeding it.

    ``ref`` is the percpu_ref: one for being current, one per entry.
    ``acomp_ctx`` is per CPU in the kernel, per thread here.
    """

    def __init__(self, name: str, tfm_name: str, chain_size: int, max_bytes: int) -> None:
        self.zs_pool = ZsPool(name, chain_size, max_bytes=max_bytes, handles_hint=1 << 12)
        self.tfm_name = tfm_name
        self.ref = 1
        self.killed = False
        #: ``pool->acomp_ctx``: (compressor, buffer) per CPU (here per thread).
        self._ctx = PerCpu(self._acomp_ctx_alloc)

    def _acomp_ctx_alloc(self) -> tuple[Any, Any]:
        """``zswap_cpu_comp_prepare``: a compressor and its two-page buffer, the
        buffer as a typed view once (compiled), not one per page converted where
        ``zs_obj_write`` takes it."""
        buffer = bytearray(2 * PAGE_SIZE)
        return (crypto_alloc_acomp(self.tfm_name), buffer)

    def acomp_ctx(self) -> tuple[Any, Any]:
        """This thread's compressor and its buffer (``raw_cpu_ptr(pool->acomp_ctx)``)."""
        return this_cpu_ptr(self._ctx)

    def __repr__(self) -> str:
        return f"<ZswapPool {self.zs_pool.name} {self.tfm_name} ref={self.ref}>"


class ZswapEntry(ListHead):
    """``struct zswap_entry`` (``lru``: its links on its memcg's LRU list)."""

    __slots__ = ("swpentry", "length", "referenced", "pool", "handle", "objcg")

    def __init__(self) -> None:
        INIT_LIST_HEAD(self)  # entry->lru
        self.swpentry: SwpEntry | None = None
        self.length = 0
        self.referenced = False
        self.pool: ZswapPool | None = None
        self.handle = 0
        self.objcg: Any = None


class ListLruOne(List):
    """``struct list_lru_one``: one memcg's list of entries, linked through them
    (``entry->lru``, :mod:`pyzram.lib.list`), oldest first; ``nr`` is
    ``nr_items``."""


class Zswap:
    """zswap's global state: parameters, pools, trees, LRU and counters.

    One per machine (``m.zswap``).  ``totalram_pages`` is the machine's RAM
    (the base of ``max_pool_percent``); ``compressors`` the crypto API's
    compression algorithms (the host has lzo, lzo-rle and deflate);
    ``chain_size`` is ``CONFIG_ZSMALLOC_CHAIN_SIZE``.
    """

    def __init__(
        self,
        *,
        totalram_pages: int = 1 << 20,
        compressors: tuple[str, ...] = CRYPTO_COMPRESSORS,
        default_compressor: str = ZSWAP_COMPRESSOR_DEFAULT,
        default_on: bool = False,
        shrinker_default_on: bool = False,
        chain_size: int = 8,
    ) -> None:
        self.totalram_pages = totalram_pages
        self.compressors = tuple(compressors)
        self.default_compressor = default_compressor
        self.chain_size = chain_size
        # tunables
        self.enabled = default_on
        self.compressor = default_compressor
        self.max_pool_percent = 20
        self.accept_thr_percent = 90
        self.shrinker_enabled = shrinker_default_on
        # state
        self.init_state = ZSWAP_UNINIT
        if not cython.compiled:  # compiled, a C mutex (zswap.pxd)
            self.init_lock = cython.pymutex()
        self.has_pool = False
        self.ever_enabled = False
        self.pools: list[ZswapPool] = []  # the current one first
        self.pools_lock = spinlock_t()
        self.pools_count = 0
        self.pool_reached_full = False
        self.trees: dict[int, list[XArray]] = {}
        self.tree_lock = spinlock_t()
        #: ``zswap_list_lru``: per memcg (None: the root), entries in LRU order.
        self.list_lru: dict[Any, ListLruOne] = {}
        self.lru_lock = spinlock_t()
        #: ``zswap_next_shrink``: the cursor of shrink_worker's walk (-1: none).
        self.next_shrink = -1
        #: The shrinker's ``nr_deferred`` per memcg (``shrink_slab``'s carried work).
        self.shrinker_nr_deferred: dict[Any, int] = {}
        #: ``lruvec->zswap_lruvec_state.nr_disk_swapins`` per memcg.
        self.nr_disk_swapins: dict[Any, int] = {}
        # statistics
        self.stored_pages = 0
        self.stored_incompressible_pages = 0
        self.pool_limit_hit = 0
        self.written_back_pages = 0
        self.reject_reclaim_fail = 0
        self.reject_compress_fail = 0
        self.reject_compress_poor = 0
        self.decompress_fail = 0
        self.reject_alloc_fail = 0
        self.reject_kmemcache_fail = 0
        self.shrink_work_queued = False
        if default_on:
            self.zswap_setup()

    @classmethod
    def from_running_kernel(cls, **kw: Any) -> Zswap:
        """The host's RAM and crypto compressors (lzo, lzo-rle, deflate here)."""
        kw.setdefault("totalram_pages", host_totalram_pages())
        kw.setdefault("compressors", host_crypto_compressors() or CRYPTO_COMPRESSORS)
        return cls(**kw)

    # -- crypto ---------------------------------------------------------------------

    def crypto_has_acomp(self, name: str) -> bool:
        """``crypto_has_acomp``: by ``cra_name`` or ``cra_driver_name``."""
        return crypto_cra_name(name) in self.compressors

    # -- pools ----------------------------------------------------------------------

    def zswap_pool_create(self, compressor: str) -> ZswapPool | None:
        """``zswap_pool_create``: a new pool, not yet on the list."""
        if not self.has_pool and compressor == "":
            return None
        self.pools_count += 1
        max_bytes = max(self.totalram_pages, 1 << 10) * PAGE_SIZE
        return ZswapPool(
            f"zswap{self.pools_count:x}",
            compressor[: CRYPTO_MAX_ALG_NAME - 1],
            self.chain_size,
            max_bytes,
        )

    def zswap_pool_current(self) -> ZswapPool | None:
        return self.pools[0] if self.pools else None

    def zswap_pool_current_get(self) -> ZswapPool | None:
        """``zswap_pool_current_get``: the current pool (read as under RCU), with a
        reference taken by ``zswap_pool_tryget`` (``percpu_ref_tryget``: an atomic
        increment that fails once the count is dead)."""
        pool = self.zswap_pool_current()
        if pool is None:
            return None
        atomic_begin()
        dead = pool.killed and pool.ref == 0
        if not dead:
            pool.ref += 1
        atomic_end()
        return None if dead else pool

    def zswap_pool_put(self, pool: ZswapPool) -> None:
        """``zswap_pool_put`` (``percpu_ref_put``, atomic): the release of the last
        reference, ``__zswap_pool_empty``, takes the pool off the list under
        ``zswap_pools_lock`` and destroys it (``__zswap_pool_release``)."""
        atomic_begin()
        pool.ref -= 1
        last = pool.ref == 0
        atomic_end()
        if last:
            spin_lock(self.pools_lock)
            try:
                if pool in self.pools:
                    self.pools.remove(pool)
            finally:
                spin_unlock(self.pools_lock)
            pool.zs_pool.zs_destroy_pool()

    def _pool_kill(self, pool: ZswapPool) -> None:
        """``percpu_ref_kill``: drop the initial (current) reference."""
        pool.killed = True
        self.zswap_pool_put(pool)

    def zswap_total_pages(self) -> int:
        """``zswap_total_pages``: pages held by every pool's zsmalloc."""
        total = 0
        for pool in self.pools:
            total += pool.zs_pool.zs_get_total_pages()
        return total

    def zswap_max_pages(self) -> int:
        return self.totalram_pages * self.max_pool_percent // 100

    def zswap_accept_thr_pages(self) -> int:
        return self.zswap_max_pages() * self.accept_thr_percent // 100

    def zswap_check_limits(self) -> bool:
        """``zswap_check_limits``: is the pool (still) full?"""
        cur_pages = self.zswap_total_pages()
        max_pages = self.zswap_max_pages()
        if cur_pages >= max_pages:
            self.pool_limit_hit += 1
            self.pool_reached_full = True
        elif self.pool_reached_full and cur_pages <= self.zswap_accept_thr_pages():
            self.pool_reached_full = False
        return self.pool_reached_full

    # -- setup and parameters ---------------------------------------------------------

    def zswap_setup(self) -> int:
        """``zswap_setup``: the first pool (falling back to the default compressor)."""
        if not self.crypto_has_acomp(self.compressor) and (
            self.compressor != self.default_compressor
        ):
            self.compressor = self.default_compressor  # pr_err "not available, using default"
        pool = None
        if self.crypto_has_acomp(self.compressor):
            pool = self.zswap_pool_create(self.compressor)
        else:
            self.compressor = ""  # WARN_ON_ONCE: Kconfig bug
        if pool is not None:
            self.pools.insert(0, pool)
            self.has_pool = True
            self.ever_enabled = True  # static_branch_enable(&zswap_ever_enabled)
        else:
            self.enabled = False
        self.init_state = ZSWAP_INIT_SUCCEED
        return 0

    def zswap_enabled_param_set(self, val: str) -> None:
        """``zswap_enabled_param_set``: the first write at run time sets zswap up."""
        with self.init_lock:
            if self.init_state == ZSWAP_UNINIT:
                self.zswap_setup()
            if self.init_state == ZSWAP_INIT_SUCCEED and self.has_pool:
                self.enabled = kstrtobool(val)
                return
        raise OSError(ENODEV, "No such device")

    def zswap_compressor_param_set(self, val: str) -> None:
        """``zswap_compressor_param_set``: a new (or revived) pool made current."""
        s = strstrip(val)
        with self.init_lock:
            if self.init_state == ZSWAP_UNINIT:
                self._param_set_charp(s)  # zswap_setup() checks it later
                return
            if self.init_state == ZSWAP_INIT_FAILED:
                raise OSError(ENODEV, "No such device")
            if self.has_pool and s == self.compressor:
                return
        if not self.crypto_has_acomp(s):
            raise OSError(ENOENT, f"compressor {s} not available")
        spin_lock(self.pools_lock)
        try:
            pool = next((p for p in self.pools if p.tfm_name == s and p.ref > 0), None)
            if pool is not None:  # zswap_pool_find_get + list_del_rcu + resurrect
                self.pools.remove(pool)
                pool.killed = False
                atomic_begin()  # percpu_ref_resurrect (the find_get ref is dropped)
                pool.ref += 1
                atomic_end()
        finally:
            spin_unlock(self.pools_lock)
        if pool is None:
            pool = self.zswap_pool_create(s)
        self._param_set_charp(s)
        spin_lock(self.pools_lock)
        try:
            old = self.zswap_pool_current()
            self.pools.insert(0, pool)
            self.has_pool = True
        finally:
            spin_unlock(self.pools_lock)
        if old is not None:
            self._pool_kill(old)

    def _param_set_charp(self, s: str) -> None:
        if len(s) > CHARP_MAX:
            raise OSError(ENOSPC, "string parameter too long")
        self.compressor = s

    def param_write(self, name: str, value: str | bytes) -> None:
        """A write to /sys/module/zswap/parameters/NAME: kernfs, then the param's ``set``.

        kernfs passes at most a page, NUL-terminated (a write with a NUL in
        it ends there); an empty write is a no-op.  Errors are ``OSError``
        with the kernel's errno.
        """
        if name not in PARAMETERS:
            raise OSError(ENOENT, f"no parameter {name}")
        raw = value.encode() if isinstance(value, str) else bytes(value)
        raw = raw[:PAGE_SIZE]
        if not raw:
            return
        text = raw.split(b"\0", 1)[0].decode("latin-1")
        if name == "enabled":
            self.zswap_enabled_param_set(text)
        elif name == "compressor":
            self.zswap_compressor_param_set(text)
        elif name == "shrinker_enabled":
            self.shrinker_enabled = kstrtobool(text)
        elif name == "max_pool_percent":
            self.max_pool_percent = kstrtouint(text, 0)
        else:
            self.accept_thr_percent = kstrtouint(text, 0)

    def param_read(self, name: str) -> str:
        """The text of /sys/module/zswap/parameters/NAME (``param_get_*``)."""
        if name == "enabled":
            return "Y\n" if self.enabled else "N\n"
        if name == "shrinker_enabled":
            return "Y\n" if self.shrinker_enabled else "N\n"
        if name == "compressor":
            return self.compressor + "\n"
        if name == "max_pool_percent":
            return f"{self.max_pool_percent}\n"
        if name == "accept_threshold_percent":
            return f"{self.accept_thr_percent}\n"
        raise OSError(ENOENT, f"no parameter {name}")

    # -- what the kernel shows ------------------------------------------------------

    def debugfs(self) -> dict[str, int]:
        """/sys/kernel/debug/zswap: every file's value (empty until zswap is set up)."""
        if self.init_state != ZSWAP_INIT_SUCCEED:
            return {}
        out = {}
        for name in DEBUGFS_FILES:
            if name == "pool_total_size":
                out[name] = self.zswap_total_pages() * PAGE_SIZE
            else:
                out[name] = getattr(self, name)
        return out

    def debugfs_read(self, name: str) -> str:
        """The text of /sys/kernel/debug/zswap/NAME (``%llu\\n``)."""
        values = self.debugfs()
        if name not in values:
            raise OSError(ENOENT, f"no debugfs file zswap/{name}")
        return f"{values[name]}\n"

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo ``Zswap`` and ``Zswapped``, in kB."""
        return {
            "Zswap": self.zswap_total_pages() << (PAGE_SHIFT - 10),
            "Zswapped": self.stored_pages << (PAGE_SHIFT - 10),
        }

    # -- trees and LRU --------------------------------------------------------------

    def swap_zswap_tree(self, swp: SwpEntry) -> XArray:
        """``swap_zswap_tree``: the xarray of the slot's 64 MiB."""
        return self.trees[swp.type][swp.offset >> ZSWAP_ADDRESS_SPACE_SHIFT]

    def zswap_lru_add(self, entry: ZswapEntry) -> None:
        spin_lock(self.lru_lock)
        try:
            memcg = _memcg_of(entry.objcg)
            lru = self.list_lru.get(memcg)
            if lru is None:
                lru = self.list_lru[memcg] = ListLruOne()
            list_add_tail(lru, entry)
        finally:
            spin_unlock(self.lru_lock)

    def zswap_lru_del(self, entry: ZswapEntry) -> None:
        spin_lock(self.lru_lock)
        try:
            lru = entry.lru_list
            if lru is not None:
                list_del(lru, entry)
        finally:
            spin_unlock(self.lru_lock)

    def lru_count(self, memcg: Any = None) -> int:
        spin_lock(self.lru_lock)
        try:
            lru = self.list_lru.get(memcg)
            return 0 if lru is None else lru.nr
        finally:
            spin_unlock(self.lru_lock)

    def zswap_entry_free(self, entry: ZswapEntry) -> None:
        """``zswap_entry_free``: off the LRU, object freed, counters down."""
        self.zswap_lru_del(entry)
        pool = entry.pool
        pool.zs_pool.zs_free(entry.handle)
        self.zswap_pool_put(pool)
        atomic_begin()  # atomic_long_dec(&zswap_stored_pages), and the incompressible count
        if entry.length == PAGE_SIZE:
            self.stored_incompressible_pages -= 1
        self.stored_pages -= 1
        atomic_end()

    def __repr__(self) -> str:
        pools = ", ".join(p.tfm_name for p in self.pools)
        return (
            f"<Zswap enabled={self.enabled} pools=[{pools}] stored={self.stored_pages} "
            f"total_pages={self.zswap_total_pages()}>"
        )


def _memcg_of(objcg: Any) -> Any:
    return objcg


def mem_cgroup_zswap_writeback_enabled(zs: Zswap, memcg: Any) -> bool:
    """``mem_cgroup_zswap_writeback_enabled``: ``memory.zswap.writeback`` (default on);
    always true while zswap is off (``zswap_is_enabled``), so that a memcg's
    setting never keeps pages from the swap device when zswap is not there to
    take them.  Simplified: a memcg has no parent here (cgroup v1, one level),
    so the kernel's walk up the hierarchy is the memcg's own setting."""
    if not zs.enabled:  # zswap_is_enabled()
        return True
    return memcg is None or getattr(memcg, "zswap_writeback", True)


# -- compressed storage --------------------------------------------------------------------------


def zswap_compress(zs: Zswap, page: memoryview, entry: ZswapEntry, pool: ZswapPool, memcg) -> bool:
    """``zswap_compress``: compress into a one-page output; store as-is when it does not fit."""
    acomp, buffer = pool.acomp_ctx()
    dlen = acomp.compress_into(page, buffer)
    comp_ret = dlen if dlen < 0 else 0
    if dlen > PAGE_SIZE:  # a codec that wrote past the one-page output: an overrun
        comp_ret, dlen = -EINVAL, 0
    alloc_ret = 0
    src: Any = buffer  # (zs_obj_write copies its first dlen bytes)
    if comp_ret or dlen <= 0 or dlen >= PAGE_SIZE:
        if not mem_cgroup_zswap_writeback_enabled(zs, memcg):
            comp_ret = comp_ret or -EINVAL
        else:
            comp_ret = 0
            dlen = PAGE_SIZE
            src = page
    if not comp_ret:
        handle = pool.zs_pool.zs_malloc(dlen)
        if IS_ERR_VALUE(handle):
            alloc_ret = handle
        else:
            pool.zs_pool.zs_obj_write(handle, src, dlen)
            entry.handle = handle
            entry.length = dlen
    if comp_ret == -ENOSPC or alloc_ret == -ENOSPC:
        zs.reject_compress_poor += 1
    elif comp_ret:
        zs.reject_compress_fail += 1
    elif alloc_ret:
        zs.reject_alloc_fail += 1
    return comp_ret == 0 and alloc_ret == 0


def zswap_decompress(zs: Zswap, entry: ZswapEntry, folio: Folio) -> bool:
    """``zswap_decompress``: the entry's page into the folio (order 0)."""
    pool = entry.pool
    zsp = pool.zs_pool
    page = folio.data  # (order 0: the folio is its one page)
    off = zsp.zs_obj_read_begin(entry.handle)
    try:
        if entry.length == PAGE_SIZE:
            memcpy_to_page(page, 0, zsp.mem, off, PAGE_SIZE)
            ret = 0
        else:
            acomp, _ = pool.acomp_ctx()
            ret = acomp.decompress_into(zsp.arena, off, entry.length, page)
    finally:
        zsp.zs_obj_read_end(entry.handle)
    if ret == 0:
        return True
    zs.decompress_fail += 1
    return False


# -- the main API ----------------------------------------------------------------------------------


@cython.locals(zs=Zswap)
def zswap_swapon(m: Machine, type_: int, nr_pages: int) -> int:
    """``zswap_swapon``: the area's xarrays, one per 64 MiB of slots."""
    zs = m.zswap
    nr = -(-nr_pages // ZSWAP_ADDRESS_SPACE_PAGES)
    spin_lock(zs.tree_lock)
    try:
        zs.trees[type_] = [
            XArray(i * ZSWAP_ADDRESS_SPACE_PAGES, ZSWAP_ADDRESS_SPACE_PAGES)
            for i in range(max(nr, 1))
        ]
    finally:
        spin_unlock(zs.tree_lock)
    return 0


@cython.locals(zs=Zswap)
def zswap_swapoff(m: Machine, type_: int) -> int:
    """``zswap_swapoff``: drop the area's xarrays; the entries left, freed.

    After ``swapoff`` there are none (``try_to_unuse`` loaded or invalidated
    every one; the kernel WARNs otherwise).  A failed ``swapon`` or a
    machine powered off (``release_swap_area``) may leave some: they are
    freed, and their number returned.
    """
    zs = m.zswap
    spin_lock(zs.tree_lock)
    try:
        trees = zs.trees.pop(type_, None)
    finally:
        spin_unlock(zs.tree_lock)
    left = [e for tree in trees or () for e in tree.values()]
    for entry in left:
        zs.zswap_entry_free(entry)
    return len(left)


def zswap_store_page(
    zs: Zswap, page: memoryview, swp: SwpEntry, objcg: Any, pool: ZswapPool, memcg: Any
) -> bool:
    """``zswap_store_page``: one page compressed, published in the tree, on the LRU."""
    entry = ZswapEntry()
    if not zswap_compress(zs, page, entry, pool, memcg):
        return False
    tree = zs.swap_zswap_tree(swp)
    spin_lock(zs.tree_lock)
    try:
        old = xa_store(tree, swp.offset, entry)
    finally:
        spin_unlock(zs.tree_lock)
    if old is not None:  # a stale entry of a redirtied folio
        zs.zswap_entry_free(old)
    atomic_begin()  # zswap_pool_get (percpu_ref_get)
    pool.ref += 1
    atomic_end()
    atomic_begin()  # atomic_long_inc(&zswap_stored_pages), and the incompressible count
    zs.stored_pages += 1
    if entry.length == PAGE_SIZE:
        zs.stored_incompressible_pages += 1
    atomic_end()
    entry.pool = pool
    entry.swpentry = swp
    entry.objcg = objcg
    entry.referenced = True
    if entry.length:
        zs.zswap_lru_add(entry)
    return True


def zswap_store(m: Machine, folio: Folio) -> bool:
    """``zswap_store``: store every page of a locked swap-cache folio, or none.

    On failure (or with zswap disabled) every entry at the folio's slots is
    invalidated, so a stale one cannot be written back over the new data.
    """
    zs: Zswap = m.zswap
    swp = folio.swap
    nr_pages = folio.nr_pages
    ret = False
    if zs.enabled:
        objcg = folio.memcg
        memcg = objcg
        # obj_cgroup_may_zswap: always true on cgroup v1 (nothing charged)
        if not zs.zswap_check_limits():
            pool = zs.zswap_pool_current_get()
            if pool is not None:
                for index in range(nr_pages):
                    if not zswap_store_page(
                        zs,
                        folio.page(index),
                        swp_entry(swp.type, swp.offset + index),
                        objcg,
                        pool,
                        memcg,
                    ):
                        break
                else:
                    m.vm_events.count(ZSWPOUT, nr_pages)
                    ret = True
                zs.zswap_pool_put(pool)
        if not ret and zs.pool_reached_full:
            queue_shrink_work(m)
    if not ret and zs.ever_enabled:  # never enabled: no entry can be stale
        spin_lock(zs.tree_lock)
        try:
            stale = []
            for index in range(nr_pages):
                off = swp.offset + index
                tree = zs.trees[swp.type][off >> ZSWAP_ADDRESS_SPACE_SHIFT]
                entry = xa_erase(tree, off)
                if entry is not None:
                    stale.append(entry)
        finally:
            spin_unlock(zs.tree_lock)
        for entry in stale:
            zs.zswap_entry_free(entry)
    return ret


def zswap_load(m: Machine, folio: Folio) -> int:
    """``zswap_load``: 0 (filled, uptodate, dirty, unlocked, entry dropped),
    ``-ENOENT`` (not here; still locked), ``-EIO`` / ``-EINVAL`` (unlocked,
    not uptodate)."""
    zs: Zswap = m.zswap
    if not zs.ever_enabled:  # zswap_never_enabled()
        return -ENOENT
    if folio.nr_pages > 1:
        folio.unlock()
        return -EINVAL
    swp = folio.swap
    tree = zs.swap_zswap_tree(swp)
    entry = xa_load(tree, swp.offset)
    if entry is None:
        return -ENOENT
    if not zswap_decompress(zs, entry, folio):
        folio.unlock()
        return -EIO
    folio.mark_uptodate()
    m.vm_events.count(ZSWPIN)
    folio.mark_dirty()
    spin_lock(zs.tree_lock)
    try:
        xa_erase(tree, swp.offset)
    finally:
        spin_unlock(zs.tree_lock)
    zs.zswap_entry_free(entry)
    folio.unlock()
    return 0


def zswap_invalidate(m: Machine, swp: SwpEntry) -> None:
    """``zswap_invalidate``: a freed slot's entry goes."""
    zs: Zswap = m.zswap
    trees = zs.trees.get(swp.type)
    if not trees:
        return
    tree = trees[swp.offset >> ZSWAP_ADDRESS_SPACE_SHIFT]
    if xa_empty(tree):
        return
    spin_lock(zs.tree_lock)
    try:
        entry = xa_erase(tree, swp.offset)
    finally:
        spin_unlock(zs.tree_lock)
    if entry is not None:
        zs.zswap_entry_free(entry)


def zswap_folio_swapin(m: Machine, folio: Folio | None) -> None:
    """``zswap_folio_swapin``: a read from the disk; the shrinker backs off by one."""
    zs: Zswap = m.zswap
    if folio is None or not zs.ever_enabled:
        return
    memcg = folio.memcg
    spin_lock(zs.lru_lock)
    try:
        zs.nr_disk_swapins[memcg] = zs.nr_disk_swapins.get(memcg, 0) + 1
    finally:
        spin_unlock(zs.lru_lock)


# -- writeback -----------------------------------------------------------------------------------


@cython.locals(zs=Zswap)
def zswap_writeback_entry(m: Machine, entry: ZswapEntry, swpentry: SwpEntry) -> int:
    """``zswap_writeback_entry``: resume the writeout zswap_store intercepted.

    0, or ``-EEXIST`` (the slot is in the swap cache: it is hot), ``-ENOMEM``
    (the slot was freed or holds another entry now), ``-EIO`` (decompression).
    """
    zs: Zswap = m.zswap
    folio = _swap_cache_alloc_folio(m, swpentry)
    if isinstance(folio, int):
        return folio
    tree = zs.swap_zswap_tree(swpentry)
    ret = 0
    if xa_load(tree, swpentry.offset) is not entry:
        ret = -ENOMEM
    elif not zswap_decompress(zs, entry, folio):
        ret = -EIO
    if ret:
        _swap_cache_del_folio(m, folio)
        folio.unlock()
        return ret
    spin_lock(zs.tree_lock)
    try:
        xa_erase(tree, swpentry.offset)
    finally:
        spin_unlock(zs.tree_lock)
    m.vm_events.count(ZSWPWB)
    zs.zswap_entry_free(entry)
    folio.mark_uptodate()
    folio.set(PG_reclaim)
    _swap_writepage_unplugged(m, folio)
    return 0


@cython.locals(zs=Zswap)
def shrink_memcg_cb(m: Machine, lru: ListLruOne, entry: ZswapEntry, arg: list | None) -> int:
    """``shrink_memcg_cb``: second chance, then write back (rotating first)."""
    zs: Zswap = m.zswap
    if entry.referenced:
        entry.referenced = False
        list_move_tail(lru, entry)
        return LRU_ROTATE
    list_move_tail(lru, entry)
    swpentry = entry.swpentry
    spin_unlock(zs.lru_lock)
    try:
        result = zswap_writeback_entry(m, entry, swpentry)
    finally:
        spin_lock(zs.lru_lock)
    if result:
        zs.reject_reclaim_fail += 1
        if result == -EEXIST and arg is not None:
            arg[0] = True
            return LRU_STOP
        return LRU_RETRY
    zs.written_back_pages += 1
    return LRU_REMOVED_RETRY


@cython.locals(zs=Zswap)
def list_lru_walk_one(m: Machine, memcg: Any, nr_to_walk: int, arg: list | None) -> tuple[int, int]:
    """``list_lru_walk_one``: ``(isolated, walked)`` over the memcg's LRU from its head."""
    zs: Zswap = m.zswap
    isolated = walked = 0
    spin_lock(zs.lru_lock)
    try:
        lru = zs.list_lru.get(memcg)
        while lru is not None and lru.nr and walked < nr_to_walk:
            entry = lru.oldest
            walked += 1
            status = shrink_memcg_cb(m, lru, entry, arg)
            if status == LRU_REMOVED_RETRY:
                isolated += 1
            elif status == LRU_STOP:
                break
    finally:
        spin_unlock(zs.lru_lock)
    return isolated, walked


def shrink_memcg(m: Machine, memcg: Any) -> int:
    """``shrink_memcg``: one entry of the memcg's LRU (one node here)."""
    if not mem_cgroup_zswap_writeback_enabled(m.zswap, memcg):
        return -ENOENT
    shrunk, scanned = list_lru_walk_one(m, memcg, 1, None)
    if not scanned:
        return -ENOENT
    return 0 if shrunk else -EAGAIN


@cython.locals(zs=Zswap)
def _mem_cgroup_iter(zs: Zswap) -> Any:
    """``mem_cgroup_iter(NULL, zswap_next_shrink, NULL)``: the memcg after the cursor,
    ``_WALK_END`` after the last one (the kernel's NULL), the first one after that."""
    spin_lock(zs.lru_lock)
    try:
        memcgs = list(zs.list_lru)
    finally:
        spin_unlock(zs.lru_lock)
    pos = zs.next_shrink + 1
    if pos >= len(memcgs):
        zs.next_shrink = -1
        return _WALK_END
    zs.next_shrink = pos
    return memcgs[pos]


def shrink_worker(m: Machine) -> None:
    """``shrink_worker``: write back, memcg by memcg, until under the accept threshold.

    Gives up after ``MAX_RECLAIM_RETRIES`` failures: a whole walk with no
    candidate, or a candidate memcg whose entry could not be written back.
    """
    zs: Zswap = m.zswap
    failures = attempts = 0
    thr = zs.zswap_accept_thr_pages()
    while True:
        memcg = _mem_cgroup_iter(zs)
        if memcg is _WALK_END:
            if not attempts:
                failures += 1
                if failures == MAX_RECLAIM_RETRIES:
                    break
            attempts = 0
        else:
            ret = shrink_memcg(m, memcg)
            if ret != -ENOENT:
                attempts += 1
                if ret:
                    failures += 1
                    if failures == MAX_RECLAIM_RETRIES:
                        break
        if zs.zswap_total_pages() <= thr:
            break


#: ``mem_cgroup_iter``'s end of a walk (the kernel's NULL cursor).
_WALK_END = object()


def queue_shrink_work(m: Machine) -> None:
    """``queue_work(shrink_wq, &zswap_shrink_work)``: run here, once at a time."""
    zs: Zswap = m.zswap
    if zs.shrink_work_queued:
        return
    zs.shrink_work_queued = True
    try:
        shrink_worker(m)
    finally:
        zs.shrink_work_queued = False


@cython.locals(zs=Zswap)
def zswap_shrinker_count(m: Machine, memcg: Any = None) -> int:
    """``zswap_shrinker_count``: freeable entries, less recent disk swap-ins,
    scaled by the pool's pages per stored page (cgroup v1: the pool-wide figures)."""
    zs: Zswap = m.zswap
    if not zs.shrinker_enabled or not mem_cgroup_zswap_writeback_enabled(zs, memcg):
        return 0
    nr_backing = zs.zswap_total_pages()
    nr_stored = zs.stored_pages
    if not nr_stored:
        return 0
    nr_freeable = zs.lru_count(memcg)
    if not nr_freeable:
        return 0
    spin_lock(zs.lru_lock)
    try:
        cur = zs.nr_disk_swapins.get(memcg, 0)
        remain = 0 if nr_freeable >= cur else cur - nr_freeable
        zs.nr_disk_swapins[memcg] = remain
    finally:
        spin_unlock(zs.lru_lock)
    nr_freeable -= cur - remain
    if not nr_freeable:
        return 0
    # mult_frac(nr_freeable, nr_backing, nr_stored)
    q, r = divmod(nr_freeable, nr_stored)
    return q * nr_backing + r * nr_backing // nr_stored


def zswap_shrinker_scan(m: Machine, memcg: Any, nr_to_scan: int) -> int:
    """``zswap_shrinker_scan``: walk ``nr_to_scan`` entries; freed, or -1 (SHRINK_STOP)."""
    zs: Zswap = m.zswap
    if not zs.shrinker_enabled or not mem_cgroup_zswap_writeback_enabled(zs, memcg):
        return -1
    hot = [False]
    freed, _ = list_lru_walk_one(m, memcg, nr_to_scan, hot)
    if hot[0]:
        return -1
    return freed if freed else -1


# -- the swap core, as zswap calls it ----------------------------------------------------------


def _swap_cache_alloc_folio(m: Machine, entry: SwpEntry) -> Folio | int:
    """``__read_swap_cache_async`` for writeback: a new folio, or -EEXIST / -ENOMEM.

    -EEXIST when the area is going away (``get_swap_device`` fails) or a
    folio is already cached for the slot (``folio_was_allocated`` false);
    -ENOMEM when the slot was freed meanwhile.
    """
    from pyzram.mm.swap import SWP_WRITEOK
    from pyzram.mm.swapfile import swap_cache_alloc_folio, swp_swap_info

    try:
        si = swp_swap_info(m, entry)  # get_swap_device
    except OSError:
        return -EEXIST
    if not si.flags & SWP_WRITEOK:  # swapoff under way: try_to_unuse will read it
        return -EEXIST
    try:
        return swap_cache_alloc_folio(m, entry)
    except OSError as e:
        return -EEXIST if e.errno == EEXIST else -ENOMEM


def _swap_cache_del_folio(m: Machine, folio: Folio) -> None:
    from pyzram.mm.swapfile import swap_cache_del_folio

    swap_cache_del_folio(m, folio)


def _swap_writepage_unplugged(m: Machine, folio: Folio) -> None:
    """``__swap_writepage(folio, NULL)``: submitted at once; the folio leaves the
    swap cache when its write has ended (see the module's simplifications)."""
    from pyzram.mm.folio import PG_dirty
    from pyzram.mm.page_io import __swap_writepage, swap_write_submit
    from pyzram.mm.swap import SwapIoCtx

    ctx = SwapIoCtx(m)
    __swap_writepage(ctx, folio)
    swap_write_submit(ctx)
    folio.lock()
    if not folio.test(PG_dirty):  # written: reclaim frees it
        _swap_cache_del_folio(m, folio)
    folio.unlock()


__all__ = [
    "DEBUGFS_FILES",
    "PARAMETERS",
    "Zswap",
    "ZswapEntry",
    "ZswapPool",
    "shrink_worker",
    "zswap_folio_swapin",
    "zswap_invalidate",
    "zswap_load",
    "zswap_shrinker_count",
    "zswap_shrinker_scan",
    "zswap_store",
    "zswap_swapoff",
    "zswap_swapon",
    "zswap_writeback_entry",
]

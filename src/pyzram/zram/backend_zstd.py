"""zstd backend (model of drivers/block/zram/backend_zstd.c).

Level default 3 (``zstd_default_clevel``), negative levels allowed, optional
dictionary.  Library codec (python-zstandard, which bundles the same zstd
release as Linux 6.18's lib/zstd, 1.5.7): one frame per page, no checksum.
Each thread gets its own compression context, as each CPU has its own
``zcomp_strm`` in the kernel.

Without a dictionary (``zstd_create`` / ``zstd_compress``): the parameters
of ``zstd_get_params(level, PAGE_SIZE)``, applied to a context and the page
compressed with them (``ZSTD_compress2``) — python-zstandard's
``ZstdCompressor(level=...).compress`` does the same.

With a dictionary (``zstd_setup_params``): a CDict built by reference from
the dictionary with ``zstd_get_cparams(level, PAGE_SIZE, dict_sz)`` and
each page compressed with ``ZSTD_compress_usingCDict``.  That call keeps the
CDict's window log (14 with an 8 KiB dictionary: sized for the dictionary
plus a page), while python-zstandard's ``compress`` derives the parameters
again for a 4 KiB source with the dictionary attached (window log 12); from
level 12 on (btlazy2 and the optimal parsers) about one page in ten then
comes out a few bytes different.  So with a dictionary the calls go through
python-zstandard's cffi bindings of the same libzstd (``ZSTD_getCParams``,
``ZSTD_createCDict_advanced``, ``ZSTD_compress_usingCDict``); where cffi is
not installed the backend falls back to ``ZstdCompressor(dict_data=...)``,
whose sizes differ from the kernel's at levels 12 and above
(``DICT_KERNEL_CALLS`` says which is in use).
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import zstandard

from pyzram.lib.percpu import PerCpu, this_cpu_ptr
from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend, ZcompParams

ZSTD_DEFAULT_CLEVEL = 3

try:  # python-zstandard's cffi backend: the full libzstd API, for the dictionary path
    from zstandard.backend_cffi import ffi as _ffi
    from zstandard.backend_cffi import lib as _lib
except ImportError:  # cffi is not installed
    _ffi = _lib = None

DICT_KERNEL_CALLS = _lib is not None


class _KernelCDict:
    """``zstd_setup_params``' CDict and ``zstd_compress_using_cdict`` per thread.

    ``zstd_create_cdict_byreference(dict, dict_sz, zstd_get_cparams(level,
    PAGE_SIZE, dict_sz), ...)``: ``ZSTD_createCDict_advanced`` by reference,
    content type auto (a trained dictionary's entropy tables and ID, or raw
    content).
    """

    def __init__(self, level: int, dictionary: bytes) -> None:
        self._dict = _ffi.new("char[]", dictionary)  # by reference: kept alive here
        cparams = _lib.ZSTD_getCParams(level, PAGE_SIZE, len(dictionary))
        custom_mem = _ffi.new("ZSTD_customMem *")  # zeroed: libzstd's allocator
        cdict = _lib.ZSTD_createCDict_advanced(
            self._dict,
            len(dictionary),
            _lib.ZSTD_dlm_byRef,
            _lib.ZSTD_dct_auto,
            cparams,
            custom_mem[0],
        )
        if cdict == _ffi.NULL:
            raise OSError(errno.EINVAL, "zstd: cannot create a CDict from the dictionary")
        self._cdict = _ffi.gc(cdict, _lib.ZSTD_freeCDict)
        self._strm = PerCpu(self._strm_alloc)  # zcomp_strm: per CPU (here per thread)

    @staticmethod
    def _strm_alloc() -> SimpleNamespace:
        """A compression context and its output (``zcomp_compress``: two pages)."""
        return SimpleNamespace(
            cctx=_ffi.gc(_lib.ZSTD_createCCtx(), _lib.ZSTD_freeCCtx),
            dst=_ffi.new("char[]", 2 * PAGE_SIZE),
        )

    def compress(self, page: bytes | memoryview) -> bytes:
        """``zstd_compress`` with a dictionary: ``ZSTD_compress_usingCDict``."""
        strm = this_cpu_ptr(self._strm)
        src = _ffi.from_buffer(page)
        n = _lib.ZSTD_compress_usingCDict(
            strm.cctx, strm.dst, 2 * PAGE_SIZE, src, len(src), self._cdict
        )
        if _lib.ZSTD_isError(n):
            raise OSError(errno.EINVAL, "zstd: " + _ffi.string(_lib.ZSTD_getErrorName(n)).decode())
        return _ffi.buffer(strm.dst, n)[:]


class Backend(ZcompBackend):
    name = "zstd"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._level = params.level_or(ZSTD_DEFAULT_CLEVEL)
        self._dict = zstandard.ZstdCompressionDict(params.dict) if params.dict else None
        self._cdict = (
            _KernelCDict(self._level, bytes(params.dict))
            if params.dict and DICT_KERNEL_CALLS
            else None
        )
        self._strm = PerCpu(self._strm_alloc)  # zcomp_strm: per CPU (here per thread)

    def _strm_alloc(self) -> SimpleNamespace:
        """This CPU's compressor and decompressor."""
        return SimpleNamespace(
            c=zstandard.ZstdCompressor(
                level=self._level, dict_data=self._dict, write_checksum=False
            ),
            d=zstandard.ZstdDecompressor(dict_data=self._dict),
        )

    def _ctx(self) -> SimpleNamespace:
        return this_cpu_ptr(self._strm)

    def compress(self, page: bytes | memoryview) -> bytes:
        if self._cdict is not None:
            return self._cdict.compress(page)
        return self._ctx().c.compress(page)

    def decompress(self, data: bytes | memoryview) -> bytes:
        try:
            return self._ctx().d.decompress(data, max_output_size=PAGE_SIZE)
        except zstandard.ZstdError as e:
            raise OSError(errno.EINVAL, f"zstd: {e}") from None

"""zstd backend (model of drivers/block/zram/backend_zstd.c).

Level default 3 (``zstd_default_clevel``), negative levels allowed, optional
dictionary (the kernel builds a CDict/DDict at init).  Library codec
(python-zstandard): one frame per page, no checksum.  python-zstandard's
contexts are not thread-safe, so each thread gets its own, as each CPU has
its own ``zcomp_strm`` in the kernel.
"""

from __future__ import annotations

import errno
import threading

import zstandard

from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend, ZcompParams

ZSTD_DEFAULT_CLEVEL = 3


class Backend(ZcompBackend):
    name = "zstd"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._level = params.level_or(ZSTD_DEFAULT_CLEVEL)
        self._dict = zstandard.ZstdCompressionDict(params.dict) if params.dict else None
        self._strm = threading.local()  # zcomp_strm: per thread, like per CPU

    def _ctx(self) -> threading.local:
        strm = self._strm
        if not hasattr(strm, "c"):
            strm.c = zstandard.ZstdCompressor(
                level=self._level, dict_data=self._dict, write_checksum=False
            )
            strm.d = zstandard.ZstdDecompressor(dict_data=self._dict)
        return strm

    def compress(self, page: bytes | memoryview) -> bytes:
        return self._ctx().c.compress(page)

    def decompress(self, data: bytes | memoryview) -> bytes:
        try:
            return self._ctx().d.decompress(data, max_output_size=PAGE_SIZE)
        except zstandard.ZstdError as e:
            raise OSError(errno.EINVAL, f"zstd: {e}") from None

"""zstd backend (model of drivers/block/zram/backend_zstd.c).

Level default 3 (``zstd_default_clevel``), negative levels allowed, optional
dictionary (the kernel builds a CDict/DDict at init).  Library codec
(python-zstandard): one frame per page, no checksum.
"""

from __future__ import annotations

import errno

import zstandard

from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend, ZcompParams

ZSTD_DEFAULT_CLEVEL = 3


class Backend(ZcompBackend):
    name = "zstd"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        level = params.level_or(ZSTD_DEFAULT_CLEVEL)
        zdict = zstandard.ZstdCompressionDict(params.dict) if params.dict else None
        self._c = zstandard.ZstdCompressor(level=level, dict_data=zdict, write_checksum=False)
        self._d = zstandard.ZstdDecompressor(dict_data=zdict)

    def compress(self, page: bytes | memoryview) -> bytes:
        return self._c.compress(page)

    def decompress(self, data: bytes | memoryview) -> bytes:
        try:
            return self._d.decompress(data, max_output_size=PAGE_SIZE)
        except zstandard.ZstdError as e:
            raise OSError(errno.EINVAL, f"zstd: {e}") from None

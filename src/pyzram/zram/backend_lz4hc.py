"""lz4hc backend (model of drivers/block/zram/backend_lz4hc.c).

Level default 9 (``LZ4HC_DEFAULT_CLEVEL``).  Library codec (python-lz4's
``high_compression`` mode, liblz4 1.9.x): the format is the kernel's, the
exact sizes may differ from the kernel's older LZ4HC by a few bytes.
"""

from __future__ import annotations

import errno

import lz4.block

from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend, ZcompParams

LZ4HC_DEFAULT_CLEVEL = 9


class Backend(ZcompBackend):
    name = "lz4hc"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._level = params.level_or(LZ4HC_DEFAULT_CLEVEL)
        self._kw = {"dict": params.dict} if params.dict else {}

    def compress(self, page: bytes | memoryview) -> bytes:
        return lz4.block.compress(
            bytes(page),
            mode="high_compression",
            compression=self._level,
            store_size=False,
            **self._kw,
        )

    def decompress(self, data: bytes | memoryview) -> bytes:
        try:
            return lz4.block.decompress(bytes(data), uncompressed_size=PAGE_SIZE, **self._kw)
        except lz4.block.LZ4BlockError as e:
            raise OSError(errno.EINVAL, f"lz4hc: {e}") from None

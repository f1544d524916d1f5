"""lz4 backend (model of drivers/block/zram/backend_lz4.c).

The level is LZ4's *acceleration* (default 1; below 1 acts as 1).  Without a
dictionary pages go through pyzram's C port of the kernel's lib/lz4
``LZ4_compress_fast``, which gives the kernel's exact compressed sizes.  With
a dictionary the kernel preloads an LZ4 stream (``LZ4_loadDict`` then
``LZ4_compress_fast_continue``); pyzram uses python-lz4's dictionary mode
there, which is format-compatible but may differ in size.
"""

from __future__ import annotations

import errno

import lz4.block

from pyzram.zram.zcomp import PAGE_SIZE, KernelCodecBackend, ZcompParams


class Backend(KernelCodecBackend):
    name = "lz4"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._dict = params.dict

    def compress(self, page: bytes | memoryview) -> bytes:
        if self._dict:
            return lz4.block.compress(
                bytes(page), store_size=False, acceleration=self._arg, dict=self._dict
            )
        return super().compress(page)

    def decompress(self, data: bytes | memoryview) -> bytes:
        if self._dict:
            try:
                return lz4.block.decompress(
                    bytes(data), uncompressed_size=PAGE_SIZE, dict=self._dict
                )
            except lz4.block.LZ4BlockError as e:
                raise OSError(errno.EINVAL, f"lz4: {e}") from None
        return super().decompress(data)

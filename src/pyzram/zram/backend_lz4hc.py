"""lz4hc backend (model of drivers/block/zram/backend_lz4hc.c).

Level default 9 (``LZ4HC_DEFAULT_CLEVEL``); ``LZ4_compress_HC`` treats a
level above 16 as 16 and one below 1 as 9.  Without a dictionary pages go
through pyzram's C port of the kernel's ``lib/lz4/lz4hc_compress.c`` (the
LZ4 1.7.x HC parser, ``_kcodec/lz4hc.c``), which gives the kernel's exact
compressed sizes at every level (checked against Debian's 6.18 kernel under
qemu, ``pyzram validate --kernel vm``).  Decoding is the kernel's
``LZ4_decompress_safe``, the same as lz4's.  With a dictionary the kernel
resets an HC stream, loads the dictionary (``LZ4_loadDictHC``) and calls
``LZ4_compress_HC_continue``; pyzram uses python-lz4's dictionary mode there
(liblz4's newer HC: the format is the kernel's, sizes may differ).
"""

from __future__ import annotations

import errno

import lz4.block

from pyzram.zram.zcomp import PAGE_SIZE, KernelCodecBackend, ZcompParams

LZ4HC_DEFAULT_CLEVEL = 9
LZ4HC_MAX_CLEVEL = 16


def effective_level(level: int) -> int:
    """The level ``LZ4HC_compress_generic`` runs at: above 16 is 16, below 1 is 9."""
    if level > LZ4HC_MAX_CLEVEL:
        return LZ4HC_MAX_CLEVEL
    return LZ4HC_DEFAULT_CLEVEL if level < 1 else level


class Backend(KernelCodecBackend):
    name = "lz4hc"
    level_default = LZ4HC_DEFAULT_CLEVEL

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._level = params.level_or(LZ4HC_DEFAULT_CLEVEL)
        self._arg = effective_level(self._level)
        self._dict = params.dict

    def compress(self, page: bytes | memoryview) -> bytes:
        if self._dict:
            return lz4.block.compress(
                bytes(page),
                mode="high_compression",
                compression=self._level,
                store_size=False,
                dict=self._dict,
            )
        return super().compress(page)

    def decompress(self, data: bytes | memoryview) -> bytes:
        if self._dict:
            try:
                return lz4.block.decompress(
                    bytes(data), uncompressed_size=PAGE_SIZE, dict=self._dict
                )
            except lz4.block.LZ4BlockError as e:
                raise OSError(errno.EINVAL, f"lz4hc: {e}") from None
        return super().decompress(data)

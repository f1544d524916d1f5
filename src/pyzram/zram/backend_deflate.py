"""deflate backend (model of drivers/block/zram/backend_deflate.c).

Raw deflate (no zlib header), window 2^11 (``DEFLATE_DEF_WINBITS``), memLevel 8,
level default ``Z_DEFAULT_COMPRESSION``.  Library codec (the machine's zlib).
"""

from __future__ import annotations

import errno
import zlib

from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend, ZcompParams

DEFLATE_DEF_WINBITS = 11
DEFLATE_DEF_MEMLEVEL = 8


class Backend(ZcompBackend):
    name = "deflate"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._level = params.level_or(zlib.Z_DEFAULT_COMPRESSION)
        if not -1 <= self._level <= 9:
            raise OSError(errno.EINVAL, f"deflate: level {self._level} out of range")

    def compress(self, page: bytes | memoryview) -> bytes:
        c = zlib.compressobj(self._level, zlib.DEFLATED, -DEFLATE_DEF_WINBITS, DEFLATE_DEF_MEMLEVEL)
        return c.compress(page) + c.flush(zlib.Z_FINISH)

    def decompress(self, data: bytes | memoryview) -> bytes:
        try:
            d = zlib.decompressobj(-DEFLATE_DEF_WINBITS)
            out = d.decompress(data, PAGE_SIZE)
            if d.unconsumed_tail or not d.eof:
                raise zlib.error("trailing or truncated data")
            return out
        except zlib.error as e:
            raise OSError(errno.EINVAL, f"deflate: {e}") from None

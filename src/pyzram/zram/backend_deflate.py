"""deflate backend (model of drivers/block/zram/backend_deflate.c).

``deflate_setup_params``: level default ``Z_DEFAULT_COMPRESSION``, window
``DEFLATE_DEF_WINBITS`` (-11: raw deflate, no zlib header, a 2 KiB window)
unless ``algorithm_params`` gave ``deflate.winbits`` (negative: raw; 9..15: a
zlib stream with its header and Adler-32), memLevel ``MAX_MEM_LEVEL`` (8).
``deflate_create`` fails (``EINVAL`` at ``disksize``) where the kernel's
``zlib_deflateInit2`` refuses a level outside -1..9.  A window outside 9..15
either way is refused here too, with ``EINVAL``; 6.18 itself does not get
that far: ``zlib_deflate_workspacesize`` hits its ``BUG_ON`` first (an oops
in the ``disksize`` writer).  Library codec (the machine's zlib).
"""

from __future__ import annotations

import errno
import zlib

from pyzram.zram.zcomp import PAGE_SIZE, ZCOMP_PARAM_NO_LEVEL, ZcompBackend, ZcompParams

DEFLATE_DEF_WINBITS = -11
DEFLATE_DEF_MEMLEVEL = 8


class Backend(ZcompBackend):
    name = "deflate"

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        self._level = params.level_or(zlib.Z_DEFAULT_COMPRESSION)
        w = params.deflate_winbits
        self._winbits = DEFLATE_DEF_WINBITS if w == ZCOMP_PARAM_NO_LEVEL else w
        if not -1 <= self._level <= 9:
            raise OSError(errno.EINVAL, f"deflate: level {self._level} out of range")
        if not 9 <= abs(self._winbits) <= 15:
            raise OSError(
                errno.EINVAL,
                f"deflate: winbits {self._winbits} out of range 9..15 (the 6.18 kernel "
                "hits BUG_ON in zlib_deflate_workspacesize here)",
            )

    def compress(self, page: bytes | memoryview) -> bytes:
        c = zlib.compressobj(self._level, zlib.DEFLATED, self._winbits, DEFLATE_DEF_MEMLEVEL)
        return c.compress(page) + c.flush(zlib.Z_FINISH)

    def decompress(self, data: bytes | memoryview) -> bytes:
        try:
            d = zlib.decompressobj(self._winbits)
            out = d.decompress(data, PAGE_SIZE)
            if d.unconsumed_tail or not d.eof:
                raise zlib.error("trailing or truncated data")
            return out
        except zlib.error as e:
            raise OSError(errno.EINVAL, f"deflate: {e}") from None

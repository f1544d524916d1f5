"""lzo-rle backend (model of drivers/block/zram/backend_lzorle.c): ``lzorle1x_1_compress``.

The kernel's default zram algorithm: LZO1X-1 with run-length encoding of
zero runs (bitstream version 1, Documentation/staging/lzo.rst).  Only the
kernel produces it; pyzram's C port of lib/lzo does too.
"""

from __future__ import annotations

from pyzram.zram.zcomp import KernelCodecBackend


class Backend(KernelCodecBackend):
    name = "lzo-rle"

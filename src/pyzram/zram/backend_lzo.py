"""lzo backend (model of drivers/block/zram/backend_lzo.c): kernel ``lzo1x_1_compress``.

Runs on pyzram's C port of lib/lzo/lzo1x_compress.c, which reproduces the
kernel's output byte for byte.  No level, no dictionary.
"""

from __future__ import annotations

from pyzram.zram.zcomp import KernelCodecBackend


class Backend(KernelCodecBackend):
    name = "lzo"

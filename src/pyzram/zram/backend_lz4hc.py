"""lz4hc backend (model of drivers/block/zram/backend_lz4hc.c).

Level default 9 (``LZ4HC_DEFAULT_CLEVEL``); ``LZ4_compress_HC`` treats a
level above 16 as 16 and one below 1 as 9.  Pages go through pyzram's C port
of the kernel's ``lib/lz4/lz4hc_compress.c`` (the LZ4 1.7.x HC parser,
``_kcodec/lz4hc.c``), which gives the kernel's exact compressed sizes at
every level (checked against Debian's 6.18 kernel under qemu, ``pyzram
validate --kernel vm``):

* without a dictionary, ``lz4hc_compress`` calls ``LZ4_compress_HC``;
* with one (``algorithm_params`` ``dict=``), ``LZ4_resetStreamHC`` at the
  level, ``LZ4_loadDictHC`` (the dictionary's last 64 KiB; where that is
  not the whole dictionary the backend returns ``-EINVAL`` for every page,
  so every write fails, :meth:`dict_loaded`) and
  ``LZ4_compress_HC_continue`` (the dictionary as the stream's external
  dictionary).

Decoding is lz4's: ``LZ4_decompress_safe``, with a dictionary
``LZ4_setStreamDecode`` and ``LZ4_decompress_safe_continue``.
"""

from __future__ import annotations

from pyzram.zram.zcomp import KernelCodecBackend, ZcompParams

LZ4HC_DEFAULT_CLEVEL = 9
LZ4HC_MAX_CLEVEL = 16
#: ``64 * KB``: the most of a dictionary ``LZ4_loadDictHC`` loads (its end).
LZ4HC_DICT_MAX = 64 * 1024


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

    def dict_loaded(self, size: int) -> int | None:
        """``LZ4_loadDictHC``'s return for a ``size``-byte dictionary."""
        return min(size, LZ4HC_DICT_MAX)

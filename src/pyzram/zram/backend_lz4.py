"""lz4 backend (model of drivers/block/zram/backend_lz4.c).

The level is LZ4's *acceleration* (default 1; below 1 acts as 1).  Pages go
through pyzram's C port of the kernel's lib/lz4 (``pyzram._kcodec``), which
gives the kernel's exact compressed bytes:

* without a dictionary, ``lz4_compress`` calls ``LZ4_compress_fast`` and
  ``lz4_decompress`` ``LZ4_decompress_safe``;
* with one (``algorithm_params`` ``dict=``), ``lz4_compress`` calls
  ``LZ4_loadDict`` on the CPU's stream, then ``LZ4_compress_fast_continue``
  (the dictionary as the stream's external dictionary; the stream is not
  reset between pages, which leaves the output unchanged, see
  ``_kcodec/kcodec.c``), and ``lz4_decompress`` ``LZ4_setStreamDecode``
  with the whole dictionary, then ``LZ4_decompress_safe_continue``.
  ``LZ4_loadDict`` loads the dictionary's last 64 KiB, nothing below 8
  bytes; where that is not the whole dictionary the backend returns
  ``-EINVAL`` for every page, so every write fails (:meth:`dict_loaded`).

Checked page by page against Debian's 6.18 kernel under qemu, with and
without a dictionary (``pyzram validate --kernel vm``).
"""

from __future__ import annotations

from pyzram.zram.zcomp import KernelCodecBackend

#: ``HASH_UNIT`` (``sizeof(size_t)``): a shorter dictionary loads nothing.
LZ4_HASH_UNIT = 8
#: ``64 * KB``: the most of a dictionary ``LZ4_loadDict`` loads (its end).
LZ4_DICT_MAX = 64 * 1024


class Backend(KernelCodecBackend):
    name = "lz4"

    def dict_loaded(self, size: int) -> int | None:
        """``LZ4_loadDict``'s return for a ``size``-byte dictionary."""
        return 0 if size < LZ4_HASH_UNIT else min(size, LZ4_DICT_MAX)
